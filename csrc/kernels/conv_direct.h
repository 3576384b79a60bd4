/* vitc kernels: direct stride-1 convolution for few output channels (conv_direct.c says why). */
#ifndef VT_KERNELS_CONV_DIRECT_H
#define VT_KERNELS_CONV_DIRECT_H
#include <stdint.h>

/* One stride-1, single-group conv2d over NCHW float32: x (N, C, H, W), w (O, C, kh, kw), b (O) or
 * NULL -> y (N, O, Ho, Wo), Ho = H + pt + pb − dh·(kh−1), Wo likewise. Each output element sums its
 * taps in (c, ki, kj) order on one thread, so the bits do not depend on the thread count.
 * 0 or VT_ENOMEM. */
typedef struct {
    int64_t N, C, H, W, O, kh, kw, pt, pb, pl, pr, dh, dw;
} vt_conv_direct_geom;
int vt_k_conv2d_direct(const vt_conv_direct_geom *g, const float *x, const float *w, const float *b, float *y);
/* dw (O, C, kh, kw) = the weight gradient of that conv for the output gradient gy (N, O, Ho, Wo),
 * written over dw; summed in parts fixed by N, so its bits do not depend on the thread count */
int vt_k_conv2d_direct_wgrad(const vt_conv_direct_geom *g, const float *x, const float *gy, float *dw);
/* whether vt_k_conv2d_direct is the better path for this stride-1, single-group conv: few output
 * channels (an im2col GEMM with so few rows spends its time building col), not 1×1 */
int vt_k_conv2d_direct_wins(int64_t O, int64_t kh, int64_t kw);

/* The same for a strided conv (stride sh × sw, dilation 1) through phase images (conv_phase.c): its
 * forward and its dW, and whether that path applies and wins (few output channels, a phase kernel
 * larger than 1×1 — on AVX-512 up to 64 output channels and any phase kernel —, phase images of
 * the batch under 32 MB). Same contracts as above. */
int vt_k_conv2d_phase_wins(const vt_conv_direct_geom *g, int64_t sh, int64_t sw);
int vt_k_conv2d_phase(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x, const float *w,
                      const float *b, float *y);
int vt_k_conv2d_phase_wgrad(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x, const float *gy,
                            float *dw);
/* dx (N, C, H, W) = the input gradient of that strided conv for gy, written over dx, through the
 * direct kernel once per phase (conv_phase.c); whether it applies and wins (AVX-512 only, 16, 32, 48
 * or 64 input channels, where the phase path applies) */
int vt_k_conv2d_phase_dgrad_wins(const vt_conv_direct_geom *g, int64_t sh, int64_t sw);
int vt_k_conv2d_phase_dgrad(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *w, const float *gy,
                            float *dx);

#endif
