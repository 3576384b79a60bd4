/* vitc kernels: which instruction set the hand-written kernels (gemm.c, attention) run on. */
#ifndef VT_KERNELS_CPU_H
#define VT_KERNELS_CPU_H

/* 1 when the hand-written AVX2 + FMA kernels may run: the CPU has both and VITC_ISA is not
 * "baseline" (which forces the portable kernels, for tests); read once */
int vt_use_avx2_kernels(void);

#endif
