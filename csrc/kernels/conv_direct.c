/* vitc kernels: direct stride-1 convolution for few output channels (vt_k_conv2d_direct).
 *
 * Why: im2col + GEMM copies every input pixel kh·kw times into col and then runs a GEMM with only
 * O rows; with O = 16 (LV-ViT's small conv stems: 3×3, 16 → 16 channels on a 14×14 map) building
 * col and packing it cost more than the arithmetic. Here each image is copied once into a
 * zero-padded buffer of Hp × Wp planes, and the output is computed on the padded width: flat
 * output position i = oh·Wp + ow reads tap (ki, kj) of channel c at
 *     xpad[c·Hp·Wp + i + ki·dh·Wp + kj·dw],
 * the same offset for every i, so one tap is a contiguous vector load for 8 positions at once. The
 * Wp − Wo columns past each row's end are computed too and dropped when the rows are copied out.
 * Register tile: 4 output channels × 16 positions (8 ymm accumulators), taps in (c, ki, kj) order.
 * Images run in parallel, one thread each; the sums do not depend on the thread count.
 * On AVX-512 machines conv_direct512.c runs instead (a vector over output channels). */
#include <omp.h>
#include <string.h>
#include "conv_direct_plan.h"
#include "cpu.h"
#include "../core/error.h"
#include "../core/tensor.h"

#include "../core/vec8.h"

#define OB 4              /* output channels per tile */
#define TW VT_DIRECT_TW   /* flat positions per tile: two vectors of 8 */

typedef vt_direct_plan direct_plan;

/* R (<= OB) output channels' positions [i0, i0 + TW) into out (R rows Lp apart) */
AI void tile(const int R, const direct_plan *p, const float *restrict xp, const float *restrict w, int64_t i0,
             float *restrict out) {
    const vt_conv_direct_geom *g = p->g;
    int64_t kk = g->kh * g->kw, ck = g->C * kk;
    v8 acc[OB][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (v8){0};
    for (int64_t c = 0; c < g->C; c++) {
        const float *xc = xp + c * p->Pp + i0, *wc = w + c * kk;
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                const float *xs = xc + ki * g->dh * p->Wp + kj * g->dw;
                v8 x0 = ld8(xs), x1 = ld8(xs + 8);
                int64_t t = ki * g->kw + kj;
                for (int r = 0; r < R; r++) {
                    v8 wv = bc8(wc[r * ck + t]);
                    acc[r][0] += wv * x0;
                    acc[r][1] += wv * x1;
                }
            }
    }
    for (int r = 0; r < R; r++) {
        st8(out + r * p->Lp + i0, acc[r][0]);
        st8(out + r * p->Lp + i0 + 8, acc[r][1]);
    }
}

void vt_direct_pad_image(const direct_plan *p, const float *x, float *xp) {
    const vt_conv_direct_geom *g = p->g;
    memset(xp, 0, sizeof(float) * (size_t)p->xsz);
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t h = 0; h < g->H; h++)
            memcpy(xp + c * p->Pp + (h + g->pt) * p->Wp + g->pl, x + (c * g->H + h) * g->W, sizeof(float) * (size_t)g->W);
}

/* one image: pad x into xp, every tile into ob (O rows of Lp), then the valid columns (+ bias) to y */
AI void image(const direct_plan *p, const float *x, const float *w, const float *b, float *xp, float *ob, float *y) {
    const vt_conv_direct_geom *g = p->g;
    vt_direct_pad_image(p, x, xp);
    int64_t ck = g->C * g->kh * g->kw;
    for (int64_t o0 = 0; o0 < g->O; o0 += OB) {
        int64_t R = g->O - o0 < OB ? g->O - o0 : OB;
        const float *wo = w + o0 * ck;
        float *out = ob + o0 * p->Lp;
        for (int64_t i0 = 0; i0 < p->Lp; i0 += TW) {
            if (R == 4) tile(4, p, xp, wo, i0, out);
            else if (R == 3) tile(3, p, xp, wo, i0, out);
            else if (R == 2) tile(2, p, xp, wo, i0, out);
            else tile(1, p, xp, wo, i0, out);
        }
    }
    for (int64_t o = 0; o < g->O; o++) {
        float bo = b ? b[o] : 0.0f;
        for (int64_t oh = 0; oh < p->Ho; oh++) {
            const float *s = ob + o * p->Lp + oh * p->Wp;
            float *d = y + (o * p->Ho + oh) * p->Wo;
            for (int64_t ow = 0; ow < p->Wo; ow++) d[ow] = s[ow] + bo;
        }
    }
}

/* ---- weight gradient ----------------------------------------------------------------------
 * dW[o, c, ki, kj] = Σ_n Σ_i dYp[n, o, i] · xpad[n, c, i + ki·dh·Wp + kj·dw] over the same flat
 * positions, dYp being dY laid out on the padded width with zeros in the dropped columns (so they
 * add nothing). Tile: R (<= 3) output channels × T (<= 3) taps of one kernel row, 9 vector sums. */
#define WB 3

/* horizontal sum of 8 lanes in a fixed order */
AI float hsum8(v8 v) {
    float s = 0.0f;
    for (int l = 0; l < 8; l++) s += v[l];
    return s;
}

AI void wtile(const int R, const int T, const direct_plan *p, const float *restrict xs, const float *restrict dy,
              int64_t tap_stride, float *restrict dw, int64_t dw_ostride) {
    v8 acc[WB][WB];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = (v8){0};
    for (int64_t i = 0; i < p->Lp; i += 8) {
        v8 d[WB];
        for (int r = 0; r < R; r++) d[r] = ld8(dy + r * p->Lp + i);
        for (int t = 0; t < T; t++) {
            v8 xv = ld8(xs + t * tap_stride + i);
            for (int r = 0; r < R; r++) acc[r][t] += d[r] * xv;
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) dw[r * dw_ostride + t] += hsum8(acc[r][t]);
}

/* one image's share added into dw (O, C, kh, kw): pad x into xp, lay dy out on the padded width in dyp */
AI void image_wgrad(const direct_plan *p, const float *x, const float *gy, float *xp, float *dyp, float *dw) {
    const vt_conv_direct_geom *g = p->g;
    vt_direct_pad_image(p, x, xp);
    memset(dyp, 0, sizeof(float) * (size_t)(g->O * p->Lp));
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t oh = 0; oh < p->Ho; oh++)
            memcpy(dyp + o * p->Lp + oh * p->Wp, gy + (o * p->Ho + oh) * p->Wo, sizeof(float) * (size_t)p->Wo);
    int64_t kk = g->kh * g->kw, ck = g->C * kk;
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t o0 = 0; o0 < g->O; o0 += WB)
            for (int64_t ki = 0; ki < g->kh; ki++)
                for (int64_t kj = 0; kj < g->kw; kj += WB) {
                    int R = (int)(g->O - o0 < WB ? g->O - o0 : WB), T = (int)(g->kw - kj < WB ? g->kw - kj : WB);
                    const float *xs = xp + c * p->Pp + ki * g->dh * p->Wp + kj * g->dw;
                    const float *dy = dyp + o0 * p->Lp;
                    float *d = dw + o0 * ck + c * kk + ki * g->kw + kj;
#define WT(r, t) if (R == r && T == t) wtile(r, t, p, xs, dy, g->dw, d, ck)
                    WT(3, 3); else WT(3, 2); else WT(3, 1); else WT(2, 3); else WT(2, 2); else WT(2, 1);
                    else WT(1, 3); else WT(1, 2); else WT(1, 1);
#undef WT
                }
}

static __attribute__((target("avx2,fma"))) void wgrad_avx2(const direct_plan *p, const float *x, const float *gy,
                                                           float *xp, float *dyp, float *dw) {
    image_wgrad(p, x, gy, xp, dyp, dw);
}

static void wgrad_base(const direct_plan *p, const float *x, const float *gy, float *xp, float *dyp, float *dw) {
    image_wgrad(p, x, gy, xp, dyp, dw);
}

typedef void (*image_fn)(const direct_plan *, const float *, const float *, const float *, float *, float *, float *);

static __attribute__((target("avx2,fma"))) void image_avx2(const direct_plan *p, const float *x, const float *w,
                                                           const float *b, float *xp, float *ob, float *y) {
    image(p, x, w, b, xp, ob, y);
}

static void image_base(const direct_plan *p, const float *x, const float *w, const float *b, float *xp, float *ob,
                       float *y) {
    image(p, x, w, b, xp, ob, y);
}

int vt_k_conv2d_direct_wins(int64_t O, int64_t kh, int64_t kw) {
    return O <= 32 && kh * kw > 1;
}

direct_plan vt_direct_plan_of(const vt_conv_direct_geom *g, int64_t sh, int64_t sw) {
    direct_plan p = {.g = g, .sh = sh, .sw = sw, .Hp = g->H + g->pt + g->pb, .Wp = g->W + g->pl + g->pr};
    p.Ho = (p.Hp - g->dh * (g->kh - 1) - 1) / sh + 1;
    p.Wo = (p.Wp - g->dw * (g->kw - 1) - 1) / sw + 1;
    p.Pp = p.Hp * p.Wp;
    p.L = p.Ho * p.Wp;
    p.Lp = (p.L + TW - 1) / TW * TW;
    /* the last tile of the last channel reads up to (kw − 1)·dw + (Lp − L) floats past C planes */
    p.xsz = g->C * p.Pp + g->dw * (g->kw - 1) + (p.Lp - p.L);
    return p;
}

/* dW is summed in DW_PARTS contiguous runs of images (fewer for a small batch), each run on one
 * thread in image order into its own buffer, then the runs in order: the parts depend on N only,
 * so dW's bits do not depend on the thread count (as ops/conv/gemm.c's conv_run does for the GEMM path) */
#define DW_PARTS 8

int vt_k_conv2d_direct_wgrad(const vt_conv_direct_geom *g, const float *x, const float *gy, float *dw) {
    direct_plan p = vt_direct_plan_of(g, 1, 1);
    int64_t dwsz = g->O * g->C * g->kh * g->kw;
    memset(dw, 0, sizeof(float) * (size_t)dwsz);
    if (g->N == 0 || dwsz == 0 || p.Ho <= 0 || p.Wo <= 0) return 0;
    if (vt_direct_use_avx512()) return vt_direct_wgrad_avx512(&p, x, gy, dw);
    int64_t nparts = g->N < DW_PARTS ? g->N : DW_PARTS;
    int nt = omp_get_max_threads();
    if (nt > nparts) nt = (int)nparts;
    if (nt < 1) nt = 1;
    int64_t per = p.xsz + g->O * p.Lp, total = per * nt + dwsz * (nparts - 1);
    size_t bytes = sizeof(float) * (size_t)total;
    float *buf = vt_alloc(bytes);
    if (!buf) return vt_last_code();
    float *parts = buf + per * nt; /* parts 1.. (part 0 sums into dw) */
    memset(parts, 0, sizeof(float) * (size_t)(dwsz * (nparts - 1)));
    void (*fn)(const direct_plan *, const float *, const float *, float *, float *, float *) =
        vt_use_avx2_kernels() ? wgrad_avx2 : wgrad_base;
    int64_t xstride = g->C * g->H * g->W, ystride = g->O * p.Ho * p.Wo;
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *xp = buf + per * omp_get_thread_num(), *dyp = xp + p.xsz;
        #pragma omp for schedule(static)
        for (int64_t q = 0; q < nparts; q++) {
            float *d = q ? parts + dwsz * (q - 1) : dw;
            for (int64_t n = g->N * q / nparts; n < g->N * (q + 1) / nparts; n++)
                fn(&p, x + n * xstride, gy + n * ystride, xp, dyp, d);
        }
    }
    for (int64_t q = 1; q < nparts; q++)
        for (int64_t e = 0; e < dwsz; e++) dw[e] += parts[dwsz * (q - 1) + e];
    vt_free(buf, bytes);
    return 0;
}

int vt_k_conv2d_direct(const vt_conv_direct_geom *g, const float *x, const float *w, const float *b, float *y) {
    direct_plan p = vt_direct_plan_of(g, 1, 1);
    if (g->N == 0 || g->O == 0 || p.Ho <= 0 || p.Wo <= 0) return 0;
    if (vt_direct_use_avx512()) return vt_direct_forward_avx512(&p, x, w, b, y);
    int nt = omp_get_max_threads();
    if (nt > g->N) nt = (int)g->N;
    if (nt < 1) nt = 1;
    int64_t per = p.xsz + g->O * p.Lp;
    size_t bytes = sizeof(float) * (size_t)(per * nt);
    float *buf = vt_alloc(bytes);
    if (!buf) return vt_last_code();
    image_fn fn = vt_use_avx2_kernels() ? image_avx2 : image_base;
    int64_t xstride = g->C * g->H * g->W, ystride = g->O * p.Ho * p.Wo;
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *xp = buf + per * omp_get_thread_num(), *ob = xp + p.xsz;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < g->N; n++) fn(&p, x + n * xstride, w, b, xp, ob, y + n * ystride);
    }
    vt_free(buf, bytes);
    return 0;
}
