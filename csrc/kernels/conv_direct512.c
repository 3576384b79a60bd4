/* vitc kernels: the AVX-512 build of the direct stride-1 convolution (conv_direct.c says why a
 * direct kernel, and lays an image out on its padded width).
 *
 * Here a vector holds 16 output channels instead of 8 positions. The weights are transposed once to
 * wT[k][o] (k the tap (c, ki, kj), o padded to a multiple of 16 with zeros) and a tile is 16 flat
 * output positions i0..i0+15 with one zmm accumulator each:
 *     acc[j] += wT[k] · xpad[off_k + i0 + j],   off_k = c·Hp·Wp + ki·dh·Wp + kj·dw,
 * the input value broadcast from memory into the FMA, so a tap costs one vector load and 16 FMAs
 * (the AVX2 build spends 6 loads and broadcasts on 8). Each output element still sums its taps in
 * (c, ki, kj) order with one FMA each from zero, so the forward's bits equal the AVX2 build's.
 * The weight gradient is the same product the other way round, a vector per tap:
 *     acc[k] += xpad[off_k + i] · dyT[i],
 * dyT being dy transposed to (position, channel) on the padded width, zero in the dropped columns;
 * each dW element sums its positions in order, images in order, in parts fixed by N. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "conv_direct_plan.h"
#include "cpu.h"
#include "../core/error.h"
#include "../core/tensor.h"

#define VL 16   /* output channels per vector */
#define KT 16   /* taps per weight-gradient tile */
#define DW_PARTS 8 /* as conv_direct.c: dW summed in parts fixed by N */
#define T512 __attribute__((target("avx512f,fma")))
#define AI512 static inline __attribute__((always_inline, target("avx512f,fma")))

int vt_direct_use_avx512(void) { return vt_use_avx512_kernels(); }

/* what the images share: tap offsets (K rounded up to KT, the extra taps reading offset 0) and the
 * channel blocks of 16 */
typedef struct {
    const vt_direct_plan *p;
    int64_t K, Kp, nch; /* taps, taps rounded up to KT, blocks of VL output channels */
    int64_t *off;       /* Kp */
} taps;

static int taps_of(const vt_direct_plan *p, taps *t) {
    const vt_conv_direct_geom *g = p->g;
    int64_t kk = g->kh * g->kw;
    *t = (taps){.p = p, .K = g->C * kk, .nch = (g->O + VL - 1) / VL};
    t->Kp = (t->K + KT - 1) / KT * KT;
    t->off = vt_alloc(sizeof(int64_t) * (size_t)t->Kp);
    if (!t->off) return vt_last_code();
    for (int64_t k = 0; k < t->Kp; k++) {
        int64_t c = k / kk, ki = k % kk / g->kw, kj = k % g->kw;
        t->off[k] = k < t->K ? c * p->Pp + ki * g->dh * p->Wp + kj * g->dw : 0;
    }
    return 0;
}

/* 16 positions from i0 of one channel block: out[(i0 + j)·VL + o] */
AI512 void fwd_tile(const taps *t, const float *restrict xp, const float *restrict wT, int64_t i0,
                    float *restrict out) {
    __m512 acc[VL];
    for (int j = 0; j < VL; j++) acc[j] = _mm512_setzero_ps();
    const float *xs = xp + i0;
    for (int64_t k = 0; k < t->K; k++) {
        __m512 wv = _mm512_loadu_ps(wT + k * VL);
        const float *xk = xs + t->off[k];
        for (int j = 0; j < VL; j++) acc[j] = _mm512_fmadd_ps(wv, _mm512_set1_ps(xk[j]), acc[j]);
    }
    for (int j = 0; j < VL; j++) _mm512_storeu_ps(out + (i0 + j) * VL, acc[j]);
}

static T512 void fwd_image(const taps *t, const float *x, const float *wT, const float *b, float *xp, float *ob,
                           float *y) {
    const vt_direct_plan *p = t->p;
    const vt_conv_direct_geom *g = p->g;
    vt_direct_pad_image(p, x, xp);
    for (int64_t ch = 0; ch < t->nch; ch++)
        for (int64_t i0 = 0; i0 < p->Lp; i0 += VT_DIRECT_TW)
            fwd_tile(t, xp, wT + ch * t->K * VL, i0, ob + ch * p->Lp * VL);
    for (int64_t o = 0; o < g->O; o++) {
        const float *s = ob + o / VL * p->Lp * VL + o % VL;
        float bo = b ? b[o] : 0.0f;
        for (int64_t oh = 0; oh < p->Ho; oh++) {
            float *d = y + (o * p->Ho + oh) * p->Wo;
            for (int64_t ow = 0; ow < p->Wo; ow++) d[ow] = s[(oh * p->Wp + ow) * VL] + bo;
        }
    }
}

int vt_direct_forward_avx512(const vt_direct_plan *p, const float *x, const float *w, const float *b, float *y) {
    const vt_conv_direct_geom *g = p->g;
    taps t;
    VT_TRY(taps_of(p, &t));
    int nt = omp_get_max_threads();
    if (nt > g->N) nt = (int)g->N;
    if (nt < 1) nt = 1;
    int64_t wsz = t.nch * t.K * VL, per = p->xsz + t.nch * p->Lp * VL;
    size_t bytes = sizeof(float) * (size_t)(wsz + per * nt);
    float *buf = vt_alloc(bytes);
    if (!buf) {
        vt_free(t.off, sizeof(int64_t) * (size_t)t.Kp);
        return vt_last_code();
    }
    float *wT = buf; /* wT[ch][k][o % VL], zero past O */
    memset(wT, 0, sizeof(float) * (size_t)wsz);
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t k = 0; k < t.K; k++) wT[(o / VL * t.K + k) * VL + o % VL] = w[o * t.K + k];
    int64_t xstride = g->C * g->H * g->W, ystride = g->O * p->Ho * p->Wo;
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *xp = buf + wsz + per * omp_get_thread_num(), *ob = xp + p->xsz;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < g->N; n++) fwd_image(&t, x + n * xstride, wT, b, xp, ob, y + n * ystride);
    }
    vt_free(buf, bytes);
    vt_free(t.off, sizeof(int64_t) * (size_t)t.Kp);
    return 0;
}

/* taps [k0, k0 + KT) of one channel block, summed over every position, added into dwT[k][o % VL] */
AI512 void wgrad_tile(const taps *t, const float *restrict xp, const float *restrict dyT, int64_t k0,
                      float *restrict dwT) {
    __m512 acc[KT];
    const float *xs[KT];
    for (int q = 0; q < KT; q++) acc[q] = _mm512_setzero_ps(), xs[q] = xp + t->off[k0 + q];
    for (int64_t i = 0; i < t->p->Lp; i++) {
        __m512 d = _mm512_loadu_ps(dyT + i * VL);
        for (int q = 0; q < KT; q++) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(xs[q][i]), d, acc[q]);
    }
    for (int q = 0; q < KT; q++)
        _mm512_storeu_ps(dwT + (k0 + q) * VL, _mm512_add_ps(_mm512_loadu_ps(dwT + (k0 + q) * VL), acc[q]));
}

/* one image's share added into dwT (nch, Kp, VL) */
static T512 void wgrad_image(const taps *t, const float *x, const float *gy, float *xp, float *dyT, float *dwT) {
    const vt_direct_plan *p = t->p;
    const vt_conv_direct_geom *g = p->g;
    vt_direct_pad_image(p, x, xp);
    memset(dyT, 0, sizeof(float) * (size_t)(t->nch * p->Lp * VL));
    for (int64_t o = 0; o < g->O; o++) {
        float *d = dyT + o / VL * p->Lp * VL + o % VL;
        for (int64_t oh = 0; oh < p->Ho; oh++) {
            const float *s = gy + (o * p->Ho + oh) * p->Wo;
            for (int64_t ow = 0; ow < p->Wo; ow++) d[(oh * p->Wp + ow) * VL] = s[ow];
        }
    }
    for (int64_t ch = 0; ch < t->nch; ch++)
        for (int64_t k0 = 0; k0 < t->Kp; k0 += KT)
            wgrad_tile(t, xp, dyT + ch * p->Lp * VL, k0, dwT + ch * t->Kp * VL);
}

int vt_direct_wgrad_avx512(const vt_direct_plan *p, const float *x, const float *gy, float *dw) {
    const vt_conv_direct_geom *g = p->g;
    taps t;
    VT_TRY(taps_of(p, &t));
    int64_t nparts = g->N < DW_PARTS ? g->N : DW_PARTS;
    int nt = omp_get_max_threads();
    if (nt > nparts) nt = (int)nparts;
    if (nt < 1) nt = 1;
    int64_t partsz = t.nch * t.Kp * VL, per = p->xsz + t.nch * p->Lp * VL;
    size_t bytes = sizeof(float) * (size_t)(per * nt + partsz * nparts);
    float *buf = vt_alloc(bytes);
    if (!buf) {
        vt_free(t.off, sizeof(int64_t) * (size_t)t.Kp);
        return vt_last_code();
    }
    float *parts = buf + per * nt;
    memset(parts, 0, sizeof(float) * (size_t)(partsz * nparts));
    int64_t xstride = g->C * g->H * g->W, ystride = g->O * p->Ho * p->Wo;
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *xp = buf + per * omp_get_thread_num(), *dyT = xp + p->xsz;
        #pragma omp for schedule(static)
        for (int64_t q = 0; q < nparts; q++)
            for (int64_t n = g->N * q / nparts; n < g->N * (q + 1) / nparts; n++)
                wgrad_image(&t, x + n * xstride, gy + n * ystride, xp, dyT, parts + partsz * q);
    }
    /* dw[o][k] = the parts in order */
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t k = 0; k < t.K; k++) {
            const float *s = parts + (o / VL * t.Kp + k) * VL + o % VL;
            float acc = s[0];
            for (int64_t q = 1; q < nparts; q++) acc += s[partsz * q];
            dw[o * t.K + k] = acc;
        }
    vt_free(buf, bytes);
    vt_free(t.off, sizeof(int64_t) * (size_t)t.Kp);
    return 0;
}
