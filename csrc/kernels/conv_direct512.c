/* vitc kernels: the AVX-512 build of the direct convolution (conv_direct.c says why a direct
 * kernel, and lays an image out on its padded width), and of the strided convs conv_phase.c runs.
 *
 * Here a vector holds 16 output channels instead of 8 positions. The weights are transposed once to
 * wT[k][o] (k a tap, o padded to a multiple of 16 with zeros) and a tile is up to 16 output
 * positions ow0..ow0+nw−1 of one output row oh, one zmm accumulator each:
 *     acc[j] += wT[k] · xpad[off_k + oh·sh·Wp + (ow0 + j)·sw],   off_k = c·Hp·Wp + ki·dh·Wp + kj·dw,
 * the input value broadcast from memory into the FMA, so a tap costs one vector load and nw FMAs
 * (the AVX2 build spends 6 loads and broadcasts on 8), at any stride: a strided conv needs no phase
 * images here. Row tiles compute no position past a row's end (flat tiles over the padded width
 * spent Wp − Wo of every Wp on them: 1/8 on a 14-wide map).
 * Each output element sums its taps with one FMA each from zero, in the order the AVX2 build does:
 * (c, ki, kj) at stride 1; at stride sh × sw conv_phase.c's order over its phase images, (c, ki mod
 * sh, kj mod sw, ki div sh, kj div sw), skipping the phase taps past the kernel (their zero
 * products change no sum). So the forward's bits equal the AVX2 build's.
 * The weight gradient is the same product the other way round, a vector per tap:
 *     acc[k] += xpad[off_k + oh·sh·Wp + ow·sw] · dyT[oh·Wo + ow],
 * dyT being dy transposed to (position, channel); each dW element sums its positions in order,
 * images in order, in parts fixed by N. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "conv_direct_plan.h"
#include "cpu.h"
#include "../core/error.h"
#include "../core/tensor.h"

#define VL 16   /* output channels per vector, and positions per forward tile at most */
#define KT 16   /* taps per weight-gradient tile at most */
#define DW_PARTS 8 /* as conv_direct.c: dW summed in parts fixed by N */
#define T512 __attribute__((target("avx512f,fma")))
#define AI512 static inline __attribute__((always_inline, target("avx512f,fma")))

int vt_direct_use_avx512(void) { return vt_use_avx512_kernels(); }

/* what the images share: the taps in summation order (above), as offsets into the padded image
 * and as indices into a weight row, and the channel blocks of 16 */
typedef struct {
    const vt_direct_plan *p;
    int64_t K, nch;     /* taps (C·kh·kw), blocks of VL output channels */
    int64_t *off, *tap; /* K each */
} taps;

static void taps_free(taps *t) { vt_free(t->off, sizeof(int64_t) * 2 * (size_t)t->K); }

static int taps_of(const vt_direct_plan *p, taps *t) {
    const vt_conv_direct_geom *g = p->g;
    int64_t sh = p->sh, sw = p->sw, K = 0;
    *t = (taps){.p = p, .K = g->C * g->kh * g->kw, .nch = (g->O + VL - 1) / VL};
    t->off = vt_alloc(sizeof(int64_t) * 2 * (size_t)t->K);
    if (!t->off) return vt_last_code();
    t->tap = t->off + t->K;
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t py = 0; py < sh; py++)
            for (int64_t px = 0; px < sw; px++)
                for (int64_t ki = py; ki < g->kh; ki += sh)
                    for (int64_t kj = px; kj < g->kw; kj += sw) {
                        t->off[K] = c * p->Pp + ki * g->dh * p->Wp + kj * g->dw;
                        t->tap[K++] = (c * g->kh + ki) * g->kw + kj;
                    }
    return 0;
}

/* the image the taps read: x itself when the conv has no padding (its planes are then the padded
 * ones and no tile reads past them), else x padded into xp */
static const float *padded(const vt_direct_plan *p, const float *x, float *xp) {
    const vt_conv_direct_geom *g = p->g;
    if (!(g->pt | g->pb | g->pl | g->pr)) return x;
    vt_direct_pad_image(p, x, xp);
    return xp;
}

/* out[c] = lanes c of r[0..15] (a 16 × 16 transpose in registers: pairs of floats, then of
 * doubles, then 128-bit lanes twice) */
AI512 void transpose16(const __m512 *r, __m512 *out) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* u[g + m] lane L: channel 4L + m of rows g..g+3 */
        __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
        __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int m = 0; m < 4; m++) {
        __m512 wa = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), wb = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xdd);
        __m512 wc = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88), wd = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xdd);
        out[m] = _mm512_shuffle_f32x4(wa, wc, 0x88);
        out[8 + m] = _mm512_shuffle_f32x4(wa, wc, 0xdd);
        out[4 + m] = _mm512_shuffle_f32x4(wb, wd, 0x88);
        out[12 + m] = _mm512_shuffle_f32x4(wb, wd, 0xdd);
    }
}

/* positions ow0..ow0+NW−1 of one output row (xs = xpad + oh·sh·Wp + ow0·sw), one channel block of
 * `no` channels: y[o·ostride + j] = sum + b[o] (y at the block's first channel, row and column,
 * b NULL: no bias); SW the column stride */
AI512 void fwd_tile(const int NW, const int64_t SW, const taps *t, const float *restrict xs,
                    const float *restrict wT, float *restrict y, int64_t ostride, int64_t no, const float *b) {
    __m512 acc[VL], out[VL];
    for (int j = 0; j < VL; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < t->K; k++) {
        __m512 wv = _mm512_loadu_ps(wT + k * VL);
        const float *xk = xs + t->off[k];
        for (int j = 0; j < NW; j++) acc[j] = _mm512_fmadd_ps(wv, _mm512_set1_ps(xk[j * SW]), acc[j]);
    }
    transpose16(acc, out);
    __mmask16 m = (__mmask16)((1u << NW) - 1);
    for (int64_t o = 0; o < no; o++) {
        __m512 v = b ? _mm512_add_ps(out[o], _mm512_set1_ps(b[o])) : _mm512_add_ps(out[o], _mm512_setzero_ps());
        _mm512_mask_storeu_ps(y + o * ostride, m, v);
    }
}

/* fwd_tile with a constant width (the accumulators stay in registers) and stride 1, 2 or any */
AI512 void fwd_tile_sw(const int NW, int64_t sw, const taps *t, const float *xs, const float *wT, float *y,
                       int64_t ostride, int64_t no, const float *b) {
    if (sw == 1) fwd_tile(NW, 1, t, xs, wT, y, ostride, no, b);
    else if (sw == 2) fwd_tile(NW, 2, t, xs, wT, y, ostride, no, b);
    else fwd_tile(NW, sw, t, xs, wT, y, ostride, no, b);
}

static T512 void fwd_image(const taps *t, const float *x, const float *wT, const float *b, float *xbuf, float *y) {
    const vt_direct_plan *p = t->p;
    const vt_conv_direct_geom *g = p->g;
    const float *xp = padded(p, x, xbuf);
    int64_t P = p->Ho * p->Wo;
    /* with no dropped columns (stride 1, Wp = Wo) the rows are one flat row: tiles run across row ends */
    int flat = p->sh == 1 && p->sw == 1 && p->Wp == p->Wo;
    int64_t rows = flat ? 1 : p->Ho, rlen = flat ? p->Ho * p->Wo : p->Wo, sw = p->sw;
    for (int64_t ch = 0; ch < t->nch; ch++) {
        int64_t o0 = ch * VL, no = g->O - o0 < VL ? g->O - o0 : VL;
        for (int64_t oh = 0; oh < rows; oh++)
            for (int64_t ow0 = 0; ow0 < rlen; ow0 += VL) {
                int nw = (int)(rlen - ow0 < VL ? rlen - ow0 : VL);
                const float *xs = xp + oh * p->sh * p->Wp + ow0 * sw, *wc = wT + ch * t->K * VL;
                float *yt = y + o0 * P + oh * rlen + ow0;
                const float *bo = b ? b + o0 : NULL;
                switch (nw) {
#define FT(n) case n: fwd_tile_sw(n, sw, t, xs, wc, yt, P, no, bo); break;
                FT(1) FT(2) FT(3) FT(4) FT(5) FT(6) FT(7) FT(8) FT(9) FT(10) FT(11) FT(12) FT(13) FT(14) FT(15)
                default: fwd_tile_sw(VL, sw, t, xs, wc, yt, P, no, bo);
#undef FT
                }
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
    int64_t wsz = t.nch * t.K * VL, per = p->xsz;
    size_t bytes = sizeof(float) * (size_t)(wsz + per * nt);
    float *buf = vt_alloc(bytes);
    if (!buf) {
        taps_free(&t);
        return vt_last_code();
    }
    float *wT = buf; /* wT[ch][k][o % VL], zero past O */
    memset(wT, 0, sizeof(float) * (size_t)wsz);
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t k = 0; k < t.K; k++) wT[(o / VL * t.K + k) * VL + o % VL] = w[o * t.K + t.tap[k]];
    int64_t xstride = g->C * g->H * g->W, ystride = g->O * p->Ho * p->Wo;
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *xp = buf + wsz + per * omp_get_thread_num();
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < g->N; n++) fwd_image(&t, x + n * xstride, wT, b, xp, y + n * ystride);
    }
    vt_free(buf, bytes);
    taps_free(&t);
    return 0;
}

/* taps [k0, k0 + Q) of one channel block, summed over every output position, added into
 * dwT[k][o % VL] */
AI512 void wgrad_tile(const int Q, const taps *t, const float *restrict xp, const float *restrict dyT, int64_t k0,
                      float *restrict dwT) {
    const vt_direct_plan *p = t->p;
    __m512 acc[KT];
    const float *xs[KT];
    for (int q = 0; q < Q; q++) acc[q] = _mm512_setzero_ps(), xs[q] = xp + t->off[k0 + q];
    const int64_t Ho = p->Ho, Wo = p->Wo, sw = p->sw, rs = p->sh * p->Wp;
    for (int64_t oh = 0; oh < Ho; oh++) {
        const float *d = dyT + oh * Wo * VL;
        int64_t r = oh * rs;
        for (int64_t ow = 0; ow < Wo; ow++) {
            __m512 dv = _mm512_loadu_ps(d + ow * VL);
            for (int q = 0; q < Q; q++) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(xs[q][r + ow * sw]), dv, acc[q]);
        }
    }
    for (int q = 0; q < Q; q++)
        _mm512_storeu_ps(dwT + (k0 + q) * VL, _mm512_add_ps(_mm512_loadu_ps(dwT + (k0 + q) * VL), acc[q]));
}

/* one image's share added into dwT (nch, K, VL) */
static T512 void wgrad_image(const taps *t, const float *x, const float *gy, float *xbuf, float *dyT, float *dwT) {
    const vt_direct_plan *p = t->p;
    const vt_conv_direct_geom *g = p->g;
    int64_t P = p->Ho * p->Wo;
    const float *xp = padded(p, x, xbuf);
    if (g->O % VL) memset(dyT, 0, sizeof(float) * (size_t)(t->nch * P * VL));
    for (int64_t o = 0; o < g->O; o++) {
        float *d = dyT + o / VL * P * VL + o % VL;
        const float *s = gy + o * P;
        for (int64_t i = 0; i < P; i++) d[i * VL] = s[i];
    }
    for (int64_t ch = 0; ch < t->nch; ch++)
        for (int64_t k0 = 0; k0 < t->K; k0 += KT) {
            const float *dc = dyT + ch * P * VL;
            float *dwc = dwT + ch * t->K * VL;
            switch (t->K - k0 < KT ? (int)(t->K - k0) : KT) { /* a constant tap count, as fwd_tile's width */
#define WT(n) case n: wgrad_tile(n, t, xp, dc, k0, dwc); break;
            WT(1) WT(2) WT(3) WT(4) WT(5) WT(6) WT(7) WT(8) WT(9) WT(10) WT(11) WT(12) WT(13) WT(14) WT(15)
            default: wgrad_tile(KT, t, xp, dc, k0, dwc);
#undef WT
            }
        }
}

int vt_direct_wgrad_avx512(const vt_direct_plan *p, const float *x, const float *gy, float *dw) {
    const vt_conv_direct_geom *g = p->g;
    taps t;
    VT_TRY(taps_of(p, &t));
    int64_t nparts = g->N < DW_PARTS ? g->N : DW_PARTS;
    int nt = omp_get_max_threads();
    if (nt > nparts) nt = (int)nparts;
    if (nt < 1) nt = 1;
    int64_t partsz = t.nch * t.K * VL, per = p->xsz + t.nch * p->Ho * p->Wo * VL;
    size_t bytes = sizeof(float) * (size_t)(per * nt + partsz * nparts);
    float *buf = vt_alloc(bytes);
    if (!buf) {
        taps_free(&t);
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
    /* dw[o][tap] = the parts in order */
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t k = 0; k < t.K; k++) {
            const float *s = parts + (o / VL * t.K + k) * VL + o % VL;
            float acc = s[0];
            for (int64_t q = 1; q < nparts; q++) acc += s[partsz * q];
            dw[o * t.K + t.tap[k]] = acc;
        }
    vt_free(buf, bytes);
    taps_free(&t);
    return 0;
}

int vt_direct_strided_avx512(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x, const float *w,
                             const float *b, float *y) {
    vt_direct_plan p = vt_direct_plan_of(g, sh, sw);
    if (g->N == 0 || g->O == 0 || p.Ho <= 0 || p.Wo <= 0) return 0;
    return vt_direct_forward_avx512(&p, x, w, b, y);
}

int vt_direct_strided_wgrad_avx512(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x,
                                   const float *gy, float *dw) {
    vt_direct_plan p = vt_direct_plan_of(g, sh, sw);
    int64_t dwsz = g->O * g->C * g->kh * g->kw;
    memset(dw, 0, sizeof(float) * (size_t)dwsz);
    if (g->N == 0 || dwsz == 0 || p.Ho <= 0 || p.Wo <= 0) return 0;
    return vt_direct_wgrad_avx512(&p, x, gy, dw);
}
