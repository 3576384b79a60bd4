/* vitc kernels: which instruction set the hand-written kernels (gemm.c, attention) run on. */
#ifndef VT_KERNELS_CPU_H
#define VT_KERNELS_CPU_H

/* 1 when the hand-written AVX2 + FMA kernels may run: the CPU has both and VITC_ISA is not
 * "baseline" (which forces the portable kernels, for tests); read once */
int vt_use_avx2_kernels(void);

/* 1 when the AVX-512 builds of the hand-written kernels (attention, the direct convolution) may run:
 * the AVX2 ones may, the CPU has AVX512F, and VITC_ISA is not "avx2" (which keeps the AVX2 builds,
 * for tests) or "baseline"; read once */
int vt_use_avx512_kernels(void);

/* 1 when the AVX512-BF16 GEMM (gemm_bf16.c) may run: AVX512F, AVX512BW and AVX512-BF16 (VDPBF16PS)
 * and VITC_ISA is not "baseline"; read once */
int vt_cpu_has_avx512bf16(void);

#endif
