/* vitc ops: conv2d whose kernel equals its stride, unpadded, dilation 1, one group ("patchify": a
 * ViT patch embedding, the 2×2/2 projection at the end of LV-ViT's conv stem), as the GEMM it is.
 *
 * The windows do not overlap, so an image's col
 *     col[(c, ki, kj), (oh, ow)] = x[c, oh·kh + ki, ow·kw + kj]        (K × P, K = C·kh·kw, P = Ho·Wo)
 * is a permutation of its pixels that lie in a window: each appears once, none twice. With W as
 * (O × K) (its own layout), per image n:
 *     y_n = W·col_n + b                         (written straight into y's (O, P) plane block);
 *     dcol_n = Wᵀ·dy_n, put back into dx_n by the inverse permutation: every pixel is written once,
 *              no col2im accumulation; the pixels of no window (the trailing rows and columns
 *              PyTorch's floor drops) get 0;
 *     dW = Σ_n dy_n·col_nᵀ, the one product with inner dimension N·P, summed image by image in
 *          DW_PARTS runs of images fixed by N (each run on one thread into its own buffer, then the
 *          runs in order), so its bits do not depend on the thread count (conv/gemm.c's conv_run
 *          does the same); every other element is one vt_k_gemm sum whatever thread computes it.
 * An image's col and the products stay in cache (LV-ViT-Tiny-MNIST's projection: 64 × 49 floats).
 * Images run in parallel, one thread each, with single-threaded GEMMs; fewer images than threads
 * run one after another with vt_k_gemm threading each product. conv.c says which shapes come here. */
#include <omp.h>
#include <string.h>
#include "../conv.h"
#include "../ops_util.h"
#include "../../kernels/gemm.h"

#define DW_PARTS 8

typedef struct {
    int64_t N, C, H, W, O, kh, kw, Ho, Wo, P, K;
} patch_geom;

static patch_geom patch_geom_of(const conv_geom *g) {
    return (patch_geom){.N = g->N, .C = g->C, .H = g->H, .W = g->W, .O = g->O, .kh = g->kh, .kw = g->kw,
                        .Ho = g->Ho, .Wo = g->Wo, .P = g->Ho * g->Wo, .K = g->C * g->kh * g->kw};
}

int vt_conv_patch_applies(const conv_geom *g) {
    return g->kh == g->sh && g->kw == g->sw && g->kh * g->kw > 1 && !(g->pt | g->pb | g->pl | g->pr) &&
           g->dh == 1 && g->dw == 1 && g->G == 1;
}

/* col (K × P) of one image xn (C, H, W) */
VT_SIMD_CLONES static void image_to_col(const patch_geom *q, const float *restrict xn, float *restrict col) {
    const int64_t C = q->C, kh = q->kh, kw = q->kw, Ho = q->Ho, Wo = q->Wo, H = q->H, W = q->W, P = q->P;
    for (int64_t c = 0; c < C; c++)
        for (int64_t ki = 0; ki < kh; ki++)
            for (int64_t kj = 0; kj < kw; kj++) {
                float *d = col + ((c * kh + ki) * kw + kj) * P;
                for (int64_t oh = 0; oh < Ho; oh++) {
                    const float *s = xn + (c * H + oh * kh + ki) * W + kj;
                    for (int64_t ow = 0; ow < Wo; ow++) d[oh * Wo + ow] = s[ow * kw];
                }
            }
}

/* dx_n (C, H, W) from dcol (K × P): each pixel of a window from its one entry, the others 0 */
VT_SIMD_CLONES static void col_to_image(const patch_geom *q, const float *restrict col, float *restrict dxn) {
    const int64_t C = q->C, kh = q->kh, kw = q->kw, Ho = q->Ho, Wo = q->Wo, H = q->H, W = q->W, P = q->P;
    const int64_t hc = Ho * kh, wc = Wo * kw;
    for (int64_t c = 0; c < C; c++) {
        float *pl = dxn + c * H * W;
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ki = 0; ki < kh; ki++) {
                float *d = pl + (oh * kh + ki) * W;
                for (int64_t kj = 0; kj < kw; kj++) {
                    const float *s = col + ((c * kh + ki) * kw + kj) * P + oh * Wo;
                    for (int64_t ow = 0; ow < Wo; ow++) d[ow * kw + kj] = s[ow];
                }
                for (int64_t w = wc; w < W; w++) d[w] = 0.0f;
            }
        memset(pl + hc * W, 0, sizeof(float) * (size_t)((H - hc) * W));
    }
}

/* threads for a loop over `units` images: one image per thread at a time, or 1 (one after another,
 * each product threaded by vt_k_gemm) when there are fewer images than threads */
static int image_threads(int64_t units) {
    int nt = omp_get_max_threads();
    return units >= nt ? nt : 1;
}

int vt_conv_patch_forward(const conv_geom *g, const float *x, const float *w, const float *b, float *y) {
    patch_geom q = patch_geom_of(g);
    if (q.N == 0) return VT_OK;
    int nt = image_threads(q.N);
    size_t bytes = sizeof(float) * (size_t)(q.K * q.P * nt);
    float *buf = vt_alloc(bytes);
    if (!buf) return vt_last_code();
    int st = VT_OK;
    #pragma omp parallel num_threads(nt) if (nt > 1) reduction(|:st)
    {
        float *col = buf + q.K * q.P * omp_get_thread_num();
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < q.N; n++) {
            float *yn = y + n * q.O * q.P;
            for (int64_t o = 0; b && o < q.O; o++)
                for (int64_t p = 0; p < q.P; p++) yn[o * q.P + p] = b[o];
            image_to_col(&q, x + n * q.C * q.H * q.W, col);
            st |= vt_k_gemm(0, 0, q.O, q.P, q.K, 1.0f, w, q.K, col, q.P, b ? 1.0f : 0.0f, yn, q.P);
        }
    }
    vt_free(buf, bytes);
    return conv_worker_status(st);
}

/* image n's share: dx_n (dx non-NULL) and dw_part += dy_n·col_nᵀ (dw_part non-NULL); col and dcol
 * are the thread's K × P buffers */
static int image_backward(const patch_geom *q, int64_t n, const float *x, const float *wt, const float *gy,
                          float *dx, float *dw_part, float *col, float *dcol) {
    const float *gyn = gy + n * q->O * q->P;
    int st = VT_OK;
    if (dw_part) {
        image_to_col(q, x + n * q->C * q->H * q->W, col);
        st |= vt_k_gemm(0, 1, q->O, q->K, q->P, 1.0f, gyn, q->P, col, q->P, 1.0f, dw_part, q->K);
    }
    if (dx) {
        st |= vt_k_gemm(0, 0, q->K, q->P, q->O, 1.0f, wt, q->O, gyn, q->P, 0.0f, dcol, q->P);
        col_to_image(q, dcol, dx + n * q->C * q->H * q->W);
    }
    return st;
}

int vt_conv_patch_backward(const conv_geom *g, const float *x, const float *w, const float *gy, float *dx, float *dw) {
    patch_geom q = patch_geom_of(g);
    int64_t dwsz = dw ? q.O * q.K : 0, nparts = dw ? min64(q.N, DW_PARTS) : 0;
    if (dw) memset(dw, 0, sizeof(float) * (size_t)dwsz);
    if (q.N == 0) return VT_OK;
    /* work units: dW's runs of images, or single images when dW is not wanted */
    int64_t units = dw ? nparts : q.N;
    int nt = image_threads(units);
    int64_t per = q.K * q.P * 2, wtsz = dx ? q.K * q.O : 0;
    size_t bytes = sizeof(float) * (size_t)(per * nt + wtsz + dwsz * (nparts > 1 ? nparts - 1 : 0));
    float *buf = vt_alloc(bytes);
    if (!buf) return vt_last_code();
    float *wt = buf + per * nt, *parts = wt + wtsz; /* Wᵀ (K × O); dW of runs 1.. (run 0 sums into dw) */
    for (int64_t o = 0; o < q.O && dx; o++)
        for (int64_t k = 0; k < q.K; k++) wt[k * q.O + o] = w[o * q.K + k];
    if (nparts > 1) memset(parts, 0, sizeof(float) * (size_t)(dwsz * (nparts - 1)));
    int st = VT_OK;
    #pragma omp parallel num_threads(nt) if (nt > 1) reduction(|:st)
    {
        float *col = buf + per * omp_get_thread_num(), *dcol = col + q.K * q.P;
        #pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            if (!dw) { st |= image_backward(&q, u, x, wt, gy, dx, NULL, col, dcol); continue; }
            float *part = u ? parts + dwsz * (u - 1) : dw;
            for (int64_t n = q.N * u / nparts; n < q.N * (u + 1) / nparts; n++)
                st |= image_backward(&q, n, x, wt, gy, dx, part, col, dcol);
        }
    }
    if (!st)
        for (int64_t u = 1; u < nparts; u++)
            for (int64_t e = 0; e < dwsz; e++) dw[e] += parts[dwsz * (u - 1) + e];
    vt_free(buf, bytes);
    return conv_worker_status(st);
}
