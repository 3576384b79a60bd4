/* vitc kernels: C = Aᵀ·B for A (k × m) and B (k × n), both row-major and long in K, on AVX-512
 * (gemm_at512.c): the weight gradients vt_k_gemm sends here. */
#ifndef VT_KERNELS_GEMM_AT512_H
#define VT_KERNELS_GEMM_AT512_H
#include <stdint.h>

/* 1 when this kernel takes the product: the AVX-512 kernels may run and the product is long in K */
int vt_gemm_at512_wanted(int64_t m, int64_t n, int64_t k);
/* C (m × n, ldc) = Aᵀ·B; 0 or VT_E* (allocation); m, n, k positive */
int vt_gemm_at512(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                  int64_t ldc);

#endif
