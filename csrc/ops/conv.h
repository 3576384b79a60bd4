/* vitc ops: what the conv2d files share (conv.c: the op, its argument checks and the choice of
 * kernel; conv/gemm.c: the im2col + GEMM path; conv/patch.c: patchify convs) and the window arithmetic
 * conv/pool.c uses too. */
#ifndef VT_OPS_CONV_H
#define VT_OPS_CONV_H
#include <stdint.h>
#include "../core/error.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
/* the status of a GEMM that failed on a worker thread, restated on the calling thread (the message
 * is in the worker's thread-local buffer); 0 stays 0 */
static inline int conv_worker_status(int st) {
    if (!st) return VT_OK;
    if (st == VT_ENOMEM) return vt_fail(VT_ENOMEM, "conv2d: out of memory in a GEMM");
    return vt_fail(VT_ESHAPE, "conv2d: a GEMM dimension exceeds the BLAS integer range");
}

typedef struct {
    int64_t N, C, H, W, O, kh, kw, Ho, Wo;
    int64_t sh, sw, pt, pb, pl, pr, dh, dw, G;
} conv_geom;

/* output positions [*lo, *hi) of a row whose input column iw0 + ow·s lies in [0, W) */
static inline void valid_range(int64_t iw0, int64_t s, int64_t W, int64_t Wo, int64_t *lo, int64_t *hi) {
    int64_t l = iw0 >= 0 ? 0 : (-iw0 + s - 1) / s;
    int64_t h = iw0 <= W - 1 ? (W - 1 - iw0) / s + 1 : 0;
    l = min64(l, Wo);
    h = min64(h, Wo);
    *lo = l;
    *hi = h > l ? h : l;
}

/* conv/gemm.c: y = conv(x, w) + b (b may be NULL) through im2col + GEMM */
int vt_conv_gemm_forward(const conv_geom *g, const float *x, const float *w, const float *b, float *y);
/* conv/gemm.c: dx (arrives zeroed; NULL: not wanted) += its share through col2im and dw (arrives
 * zeroed; NULL: not wanted) = the weight gradient, for the output gradient gy */
int vt_conv_gemm_backward(const conv_geom *g, const float *x, const float *w, const float *gy, float *dx, float *dw);
/* conv/patch.c: kernel = stride, no padding, dilation 1, one group, as a GEMM over the patches:
 * whether g is such a conv, y = conv(x, w) + b, and its gradients (dx, dw: NULL when not wanted,
 * else written over whole) */
int vt_conv_patch_applies(const conv_geom *g);
int vt_conv_patch_forward(const conv_geom *g, const float *x, const float *w, const float *b, float *y);
int vt_conv_patch_backward(const conv_geom *g, const float *x, const float *w, const float *gy, float *dx, float *dw);

#endif
