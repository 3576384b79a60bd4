/* vitc kernels: the GEMMs of vitc.autocast (bf16 inputs, f32 accumulation and output).
 * gemm.c's entry points hand off here while the core/amp.h flag is on; the product is
 * C = alpha·op(A)·op(B) + beta·C with every element of A and B first rounded to bfloat16 (round to
 * nearest, ties to even, as core/bf16.h) and the exact products summed in f32. */
#ifndef VT_KERNELS_GEMM_BF16_H
#define VT_KERNELS_GEMM_BF16_H
#include <stdint.h>
#include "gemm.h"

/* 1 when gemm.c should hand its product to this file: autocast is on and the calling thread is not
 * already inside this file's f32 fallback */
int vt_bf16_gemm_wanted(void);
/* vt_k_gemm's arguments and result (sizes already checked, m, n, k > 0, alpha != 0) */
int vt_k_gemm_bf16(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* the packed-panel API of gemm.h in bf16: init sets pn->bf; pack and rows return 1 when they did
 * the work here (0: gemm.c's f32 code runs, on the fallback's rounded copy) */
int vt_bf16_panel_init(vt_gemm_panel *pn, int transb, int64_t k, int64_t n, const float *b, int64_t ldb);
int vt_bf16_panel_pack(const vt_gemm_panel *pn, int64_t s);
int vt_bf16_panel_rows(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, float beta, float *c,
                       int64_t ldc);
void vt_bf16_panel_free(vt_gemm_panel *pn);

/* which kernel runs: 1 the AVX512-BF16 one, 0 the fallback (inputs rounded into f32 copies, then
 * the f32 GEMM); force_fallback(1) selects the fallback on any CPU (tests, benchmarks) */
int vt_bf16_gemm_native(void);
void vt_bf16_gemm_force_fallback(int on);

#endif
