/* vitc kernels: broadcasting float32 arithmetic (new references or NULL with the error set). */
#ifndef VT_KERNELS_ARITH_H
#define VT_KERNELS_ARITH_H
#include "../core/tensor.h"

vt_tensor *vt_k_add(const vt_tensor *a, const vt_tensor *b); /* a + b, NumPy broadcasting */
vt_tensor *vt_k_mul(const vt_tensor *a, const vt_tensor *b); /* a ⊙ b, NumPy broadcasting */
vt_tensor *vt_k_scale(const vt_tensor *a, float s);          /* a·s */

#endif
