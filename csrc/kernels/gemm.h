/* vitc kernels: single-precision GEMM, our register-tiled kernel for thin products and OpenBLAS
 * for the rest (gemm.c says which goes where and why), and B panels packed once for many A. */
#ifndef VT_KERNELS_GEMM_H
#define VT_KERNELS_GEMM_H
#include <stddef.h>
#include <stdint.h>

/* C (m × n, ldc) = alpha·op(A)·op(B) + beta·C, row-major, BLAS argument order; 0 or VT_E* */
int vt_k_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* C = A·op(B) + bias (n floats added to every row; A plain): bitwise as filling C's rows with the
 * bias and then vt_k_gemm with beta = 1, without the pass over C on our kernel's path */
int vt_k_gemm_bias(int transb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                   int64_t ldb, const float *bias, float *c, int64_t ldc);
/* C = (A·op(B)) ⊙ M (A plain; M m × n, rows ldm apart): bitwise as vt_k_gemm (beta = 0) and then
 * C ⊙= M, the multiply done in our kernel's last store where it runs */
int vt_k_gemm_mul(int transb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                  int64_t ldb, const float *mul, int64_t ldm, float *c, int64_t ldc);
enum { VT_GEMM_AUTO, VT_GEMM_BLAS, VT_GEMM_OWN };
void vt_gemm_set_mode(int mode); /* VT_GEMM_*: which path every product takes (benchmarks, tests) */
/* where AUTO sends C = op(A)·B (beta 0): 0 OpenBLAS, 1 our kernel, 2 OpenBLAS mirrored (Cᵀ = Bᵀ·A),
 * 3 the AVX-512 Aᵀ·B kernel (gemm_at512.c) */
int vt_gemm_auto_path(int transa, int64_t m, int64_t n, int64_t k);
/* the path vt_k_gemm takes for that product now, VITC_GEMM / vt_gemm_set_mode included */
int vt_gemm_path_now(int transa, int64_t m, int64_t n, int64_t k);
/* op(B) (k × n) packed once, then C (m×n, ldc) = A·B + beta·C (A plain, rows lda apart;
 * beta 0 or 1) for many A on the calling thread, bitwise as vt_k_gemm's own kernel computes them.
 * init allocates; pack strip s for every s in [0, nstrips) (any threads) before the first rows
 * call; free releases. B must stay alive meanwhile. */
typedef struct { float *p; const float *b; int64_t k, n, nstrips, sbk, sbn; size_t bytes;
                 void *bf; /* non-NULL: made under vitc.autocast, gemm_bf16.c's panel */ } vt_gemm_panel;
int vt_gemm_panel_init(vt_gemm_panel *pn, int transb, int64_t k, int64_t n, const float *b, int64_t ldb);
void vt_gemm_panel_pack(const vt_gemm_panel *pn, int64_t s);
void vt_gemm_panel_rows(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, float beta, float *c,
                        int64_t ldc);
/* y (m × n, contiguous) = a·op(B) + bias (bias NULL: none): the bias fills y first and the product
 * adds to it, as vt_k_linear does, so the bits are vt_k_linear's on the own kernel */
void vt_gemm_panel_linear(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, const float *bias,
                          float *y);
void vt_gemm_panel_free(vt_gemm_panel *pn);

#endif
