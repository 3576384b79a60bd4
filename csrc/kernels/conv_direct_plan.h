/* vitc kernels: what conv_direct.c and its AVX-512 build (conv_direct512.c) share — the padded-width
 * layout of one image (conv_direct.c explains it). Internal to the two files. */
#ifndef VT_KERNELS_CONV_DIRECT_PLAN_H
#define VT_KERNELS_CONV_DIRECT_PLAN_H
#include <stdint.h>
#include "conv_direct.h"

#define VT_DIRECT_TW 16 /* flat output positions per tile; Lp is L rounded up to it */

typedef struct {
    const vt_conv_direct_geom *g;
    int64_t sh, sw;             /* stride: 1 but in the AVX-512 build's strided convs */
    int64_t Ho, Wo, Hp, Wp, Pp; /* output size, padded plane */
    int64_t L, Lp;              /* flat output positions Ho·Wp, rounded up to VT_DIRECT_TW */
    int64_t xsz;                /* padded-input floats, with the slack the last tile reads past */
} vt_direct_plan;

/* the plan of g at stride sh × sw (the AVX2 build runs stride 1 only) */
vt_direct_plan vt_direct_plan_of(const vt_conv_direct_geom *g, int64_t sh, int64_t sw);

/* x (C, H, W) into xp's zero-padded Hp × Wp planes, slack included */
void vt_direct_pad_image(const vt_direct_plan *p, const float *x, float *xp);

/* 1 when the AVX-512 build may run: AVX-512F, the hand-written kernels on (cpu.h), and VITC_ISA is
 * not "avx2" (which keeps the AVX2 build, so tests can run it on an AVX-512 machine); read once */
int vt_direct_use_avx512(void);
/* the AVX-512 builds of vt_k_conv2d_direct / _wgrad for a non-empty plan (same contracts) */
int vt_direct_forward_avx512(const vt_direct_plan *p, const float *x, const float *w, const float *b, float *y);
int vt_direct_wgrad_avx512(const vt_direct_plan *p, const float *x, const float *gy, float *dw);
/* the AVX-512 build of conv_phase.c's strided convs (vt_k_conv2d_phase / _wgrad, same contracts and
 * the same forward bits): the taps read the input at stride sh × sw directly, no phase images */
int vt_direct_strided_avx512(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x, const float *w,
                             const float *b, float *y);
int vt_direct_strided_wgrad_avx512(const vt_conv_direct_geom *g, int64_t sh, int64_t sw, const float *x,
                                   const float *gy, float *dw);

#endif
