/* vitc kernels: matrix products on vt_k_gemm (new references or NULL with the error set). */
#ifndef VT_KERNELS_MATMUL_H
#define VT_KERNELS_MATMUL_H
#include "../core/tensor.h"

/* torch.matmul of float32 a and b: 1-d operands promoted to a row (left) or column (right) and
 * the added dim dropped again, batch dims broadcast; transposed views go to the GEMM as flags */
vt_tensor *vt_k_matmul(const vt_tensor *a, const vt_tensor *b);
/* a 1-d t as a matrix view: row vector (1, k) when left, column (k, 1) otherwise */
vt_tensor *vt_k_as_matrix(const vt_tensor *t, int left);
/* y = x·Wᵀ + b, x (..., in), W (out, in) as PyTorch stores it, b (out) or NULL; checks its inputs */
vt_tensor *vt_k_linear(const vt_tensor *x, const vt_tensor *w, const vt_tensor *b);
/* the gradients of vt_k_linear from g = dy: dx = g·W, dW = gᵀ·x (rows folded), db = Σ_rows g.
 * Each of dx, dw, db is filled (new ref) when non-NULL; on failure all filled ones are released
 * and set back to NULL. */
int vt_k_linear_grads(const vt_tensor *g, const vt_tensor *x, const vt_tensor *w, vt_tensor **dx, vt_tensor **dw,
                      vt_tensor **db);
/* dx = (g·W) ⊙ m, m contiguous of x's size (a GELU's derivative): bitwise vt_k_linear_grads' dx
 * followed by dx ⊙= m, the multiply done as the GEMM stores (new ref in *dx, or NULL and the error) */
int vt_k_linear_dx_times(const vt_tensor *g, const vt_tensor *x, const vt_tensor *w, const vt_tensor *m,
                         vt_tensor **dx);

#endif
