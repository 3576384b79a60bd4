/* vitc ops: activation kernels other families may call (no autograd; new references or NULL
 * with the error set, core/tensor.h rules). */
#ifndef VT_ACTIVATION_H
#define VT_ACTIVATION_H
#include "ops.h"

/* softmax (log = 0) or log-softmax (log = 1) of float32 x over dim (any strides) */
vt_tensor *vt_k_softmax(const vt_tensor *x, int64_t dim, int log);
/* GELU, exact erf form (approximate = 0) or tanh form (approximate = 1) */
vt_tensor *vt_k_gelu(const vt_tensor *x, int approximate);

#endif
