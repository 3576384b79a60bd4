/* vitc kernels: new geometry for existing data (new references, core/tensor.h rules). */
#ifndef VT_KERNELS_VIEW_H
#define VT_KERNELS_VIEW_H
#include "../core/tensor.h"

/* t seen as `shape` (same element count): a view when the strides allow one (PyTorch's
 * computeStride rule), else a contiguous copy */
vt_tensor *vt_k_reshape(const vt_tensor *t, int ndim, const int64_t *shape);
/* the view with dim d of the result = dim dims[d] of t (dims may be negative) */
vt_tensor *vt_k_permute(const vt_tensor *t, const int64_t *dims);

#endif
