/* vitc kernels: strided convolutions with few output channels through the direct stride-1 kernel
 * (conv_direct.c), by phases.
 *
 * Why: the LV-ViT stem's first conv (7×7, stride 2, 16 output channels) made an im2col GEMM with 16
 * rows, which spends its time building col. Split the zero-padded input xpad into sh·sw phase
 * images, phase (py, px) holding xpad[i·sh + py][j·sw + px]. With ki = a·sh + py, kj = b·sw + px,
 *     y[o, oh, ow] = Σ_{c,ki,kj} w[o,c,ki,kj] · xpad[oh·sh + ki][ow·sw + kj]
 *                  = Σ_{c,py,px,a,b} w'[o,(c,py,px),a,b] · phase[c,py,px][oh + a][ow + b],
 * a stride-1, unpadded conv over C·sh·sw channels with a ⌈kh/sh⌉ × ⌈kw/sw⌉ kernel w', zero at the
 * taps past the original kernel (ki >= kh or kj >= kw). Phase images are Ho + ka − 1 rows by
 * Wo + kb − 1 columns, zero past xpad. The weight gradient is the direct kernel's dW' of that conv,
 * read back at the taps that exist. Bits do not depend on the thread count (the direct kernel's do
 * not). Dilation 1 only. On AVX-512 machines the forward and dW run in conv_direct512.c instead,
 * which reads the input at the stride with no phase images (in the same tap order, so the same
 * forward bits); dx runs phase by phase (below) there. */
#include <omp.h>
#include <string.h>
#include "conv_direct_plan.h"
#include "../core/error.h"
#include "../core/tensor.h"

#define PHASE_MAX_FLOATS (8 << 20) /* phase images for the whole batch stay under 32 MB */

typedef struct {
    int64_t sh, sw, Hp, Wp, Ho, Wo, ka, kb, Hq, Wq, Cq;
    vt_conv_direct_geom q; /* the stride-1 conv over the phase images */
} phase_plan;

static phase_plan plan_of(const vt_conv_direct_geom *g, int64_t sh, int64_t sw) {
    phase_plan p = {.sh = sh, .sw = sw, .Hp = g->H + g->pt + g->pb, .Wp = g->W + g->pl + g->pr};
    p.Ho = (p.Hp - g->kh) / sh + 1;
    p.Wo = (p.Wp - g->kw) / sw + 1;
    p.ka = (g->kh + sh - 1) / sh;
    p.kb = (g->kw + sw - 1) / sw;
    p.Hq = p.Ho + p.ka - 1;
    p.Wq = p.Wo + p.kb - 1;
    p.Cq = g->C * sh * sw;
    p.q = (vt_conv_direct_geom){.N = g->N, .C = p.Cq, .H = p.Hq, .W = p.Wq, .O = g->O, .kh = p.ka, .kw = p.kb,
                                .dh = 1, .dw = 1};
    return p;
}

int vt_k_conv2d_phase_wins(const vt_conv_direct_geom *g, int64_t sh, int64_t sw) {
    if ((sh == 1 && sw == 1) || g->dh != 1 || g->dw != 1) return 0;
    phase_plan p = plan_of(g, sh, sw);
    /* AVX-512 (conv_direct512.c, no phase images there): a phase kernel of 1×1 too (a kernel =
     * stride conv, a patch embedding's), and up to 64 output channels */
    int wins = vt_k_conv2d_direct_wins(g->O, p.ka, p.kb) || (vt_direct_use_avx512() && g->O <= 64);
    return wins && p.Ho > 0 && p.Wo > 0 &&
           (double)g->N * (double)(p.Cq * p.Hq * p.Wq) <= PHASE_MAX_FLOATS;
}

/* xq (N, C·sh·sw, Hq, Wq): the phase images of x (N, C, H, W) */
static void split_phases(const vt_conv_direct_geom *g, const phase_plan *p, const float *x, float *xq) {
    int64_t planes = g->N * g->C;
    #pragma omp parallel for if (planes * p->Hq * p->Wq * p->sh * p->sw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++) {
        const float *xc = x + t * g->H * g->W;
        for (int64_t py = 0; py < p->sh; py++)
            for (int64_t px = 0; px < p->sw; px++) {
                float *d = xq + ((t * p->sh + py) * p->sw + px) * p->Hq * p->Wq;
                /* columns [lo, hi) of a phase row read x's columns j·sw + px − pl, the rest are padding */
                int64_t w0 = px - g->pl, lo = w0 >= 0 ? 0 : (-w0 + p->sw - 1) / p->sw;
                int64_t hi = w0 < g->W ? (g->W - 1 - w0) / p->sw + 1 : 0;
                hi = hi < p->Wq ? hi : p->Wq;
                lo = lo < hi ? lo : hi;
                /* locals: the build has -fno-strict-aliasing, so a float store could change p's fields */
                const int64_t Hq = p->Hq, Wq = p->Wq, sh = p->sh, sw = p->sw, H = g->H, W = g->W, pt = g->pt;
                for (int64_t i = 0; i < Hq; i++, d += Wq) {
                    int64_t h = i * sh + py - pt; /* row of x (unpadded) */
                    if (h < 0 || h >= H) { memset(d, 0, sizeof(float) * (size_t)Wq); continue; }
                    const float *s = xc + h * W + w0;
                    for (int64_t j = 0; j < lo; j++) d[j] = 0.0f;
                    for (int64_t j = lo; j < hi; j++) d[j] = s[j * sw];
                    for (int64_t j = hi; j < Wq; j++) d[j] = 0.0f;
                }
            }
    }
}

/* index of w[o, c, ki, kj] in w' (O, C·sh·sw, ka, kb) */
static int64_t phase_tap(const vt_conv_direct_geom *g, const phase_plan *p, int64_t o, int64_t c, int64_t ki,
                         int64_t kj) {
    int64_t cq = (c * p->sh + ki % p->sh) * p->sw + kj % p->sw;
    return ((o * p->Cq + cq) * p->ka + ki / p->sh) * p->kb + kj / p->sw;
}

/* phase images (and w' when w is given) in one buffer; NULL on failure */
static float *prepare(const vt_conv_direct_geom *g, const phase_plan *p, const float *x, const float *w,
                      size_t *bytes) {
    int64_t xqsz = g->N * p->Cq * p->Hq * p->Wq, wqsz = g->O * p->Cq * p->ka * p->kb;
    *bytes = sizeof(float) * (size_t)(xqsz + wqsz);
    float *buf = vt_alloc(*bytes);
    if (!buf) return NULL;
    split_phases(g, p, x, buf);
    if (w) {
        float *wq = buf + xqsz;
        memset(wq, 0, sizeof(float) * (size_t)wqsz);
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t ki = 0; ki < g->kh; ki++)
                    for (int64_t kj = 0; kj < g->kw; kj++)
                        wq[phase_tap(g, p, o, c, ki, kj)] = w[((o * g->C + c) * g->kh + ki) * g->kw + kj];
    }
    return buf;
}

int vt_k_conv2d_phase(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x, const float *w,
                      const float *b, float *y) {
    if (vt_direct_use_avx512()) return vt_direct_strided_avx512(g, sh, sw, x, w, b, y);
    phase_plan p = plan_of(g, sh, sw);
    size_t bytes;
    float *buf = prepare(g, &p, x, w, &bytes);
    if (!buf) return vt_last_code();
    int st = vt_k_conv2d_direct(&p.q, buf, buf + g->N * p.Cq * p.Hq * p.Wq, b, y);
    vt_free(buf, bytes);
    return st;
}

int vt_k_conv2d_phase_wgrad(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x, const float *gy,
                            float *dw) {
    if (vt_direct_use_avx512()) return vt_direct_strided_wgrad_avx512(g, sh, sw, x, gy, dw);
    phase_plan p = plan_of(g, sh, sw);
    size_t bytes;
    float *buf = prepare(g, &p, x, NULL, &bytes); /* the w' slot holds dW' */
    if (!buf) return vt_last_code();
    float *dwq = buf + g->N * p.Cq * p.Hq * p.Wq;
    int st = vt_k_conv2d_direct_wgrad(&p.q, buf, gy, dwq);
    if (!st)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t ki = 0; ki < g->kh; ki++)
                    for (int64_t kj = 0; kj < g->kw; kj++)
                        dw[((o * g->C + c) * g->kh + ki) * g->kw + kj] = dwq[phase_tap(g, &p, o, c, ki, kj)];
    vt_free(buf, bytes);
    return st;
}

/* ---- input gradient ------------------------------------------------------------------------
 * dx at phase (py, px), the pixels h = i·sh + py − pt, w = j·sw + px − pl, gets only the taps
 * ki = a·sh + py, kj = b·sw + px (a < ka_p, b < kb_p):
 *     dxq_p[c][i][j] = Σ_{o,a,b} w[o, c, a·sh + py, b·sw + px] · dY[o][i − a][j − b],
 * a stride-1 conv of dY (zero outside) padded by ka_p − 1, kb_p − 1 on each side with that sub-kernel
 * flipped and its channels swapped (the transposed conv of each phase), through the direct kernel;
 * each dx pixel is one pixel of one phase, so the phases are copied into dx, not added. */
int vt_k_conv2d_phase_dgrad_wins(const vt_conv_direct_geom *g, int64_t sh, int64_t sw) {
    /* dx's channels are the direct kernel's outputs, 16 to a vector: fewer than 16 leave lanes
     * idle (1 channel, the stem's first conv: 4× slower than col2im), so whole vectors only */
    return vt_direct_use_avx512() && g->C % 16 == 0 && g->C <= 64 && vt_k_conv2d_phase_wins(g, sh, sw);
}

int vt_k_conv2d_phase_dgrad(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *w, const float *gy,
                            float *dx) {
    phase_plan p = plan_of(g, sh, sw);
    const int64_t N = g->N, C = g->C, O = g->O, H = g->H, W = g->W, kh = g->kh, kw = g->kw;
    memset(dx, 0, sizeof(float) * (size_t)(N * C * H * W));
    if (N == 0 || C == 0) return 0;
    /* one buffer for the largest phase's flipped weights and output */
    int64_t Hd = p.Ho + p.ka - 1, Wd = p.Wo + p.kb - 1, wsz = C * O * p.ka * p.kb;
    size_t bytes = sizeof(float) * (size_t)(wsz + N * C * Hd * Wd);
    float *buf = vt_alloc(bytes);
    if (!buf) return vt_last_code();
    float *wt = buf, *dq = buf + wsz;
    int st = 0;
    for (int64_t py = 0; py < sh && !st; py++)
        for (int64_t px = 0; px < sw && !st; px++) {
            int64_t ka = (kh - py + sh - 1) / sh, kb = (kw - px + sw - 1) / sw; /* taps of this phase */
            if (ka <= 0 || kb <= 0) continue; /* no tap reaches it: its pixels' gradient is 0 */
            for (int64_t c = 0; c < C; c++)
                for (int64_t o = 0; o < O; o++)
                    for (int64_t a = 0; a < ka; a++)
                        for (int64_t b = 0; b < kb; b++)
                            wt[((c * O + o) * ka + a) * kb + b] =
                                w[((o * C + c) * kh + (ka - 1 - a) * sh + py) * kw + (kb - 1 - b) * sw + px];
            vt_conv_direct_geom q = {.N = N, .C = O, .H = p.Ho, .W = p.Wo, .O = C, .kh = ka, .kw = kb, .pt = ka - 1,
                                     .pb = ka - 1, .pl = kb - 1, .pr = kb - 1, .dh = 1, .dw = 1};
            int64_t hq = p.Ho + ka - 1, wq = p.Wo + kb - 1; /* rows i and columns j of dxq_p */
            if ((st = vt_k_conv2d_direct(&q, gy, wt, NULL, dq))) break;
            #pragma omp parallel for if (N * C * hq * wq > 32768) schedule(static)
            for (int64_t t = 0; t < N * C; t++) {
                const float *s = dq + t * hq * wq;
                float *d = dx + t * H * W;
                for (int64_t i = 0; i < hq; i++) {
                    int64_t h = i * sh + py - g->pt;
                    if (h < 0 || h >= H) continue;
                    for (int64_t j = 0; j < wq; j++) {
                        int64_t x = j * sw + px - g->pl;
                        if (x >= 0 && x < W) d[h * W + x] = s[i * wq + j];
                    }
                }
            }
        }
    vt_free(buf, bytes);
    return st;
}
