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
 * not). Dilation 1 only. */
#include <omp.h>
#include <string.h>
#include "conv_direct.h"
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
                                .dh = 1, .dw = 1, .phase_sh = sh, .phase_sw = sw, .phase_kh = g->kh, .phase_kw = g->kw};
    return p;
}

int vt_k_conv2d_phase_wins(const vt_conv_direct_geom *g, int64_t sh, int64_t sw) {
    if ((sh == 1 && sw == 1) || g->dh != 1 || g->dw != 1) return 0;
    phase_plan p = plan_of(g, sh, sw);
    return vt_k_conv2d_direct_wins(g->O, p.ka, p.kb) && p.Ho > 0 && p.Wo > 0 &&
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
                for (int64_t i = 0; i < p->Hq; i++) {
                    int64_t h = i * p->sh + py - g->pt; /* row of x (unpadded) */
                    for (int64_t j = 0; j < p->Wq; j++) {
                        int64_t w = j * p->sw + px - g->pl;
                        d[i * p->Wq + j] = h >= 0 && h < g->H && w >= 0 && w < g->W ? xc[h * g->W + w] : 0.0f;
                    }
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
