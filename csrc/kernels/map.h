/* vitc kernels: apply a row function over broadcast operands into a new tensor. */
#ifndef VT_KERNELS_MAP_H
#define VT_KERNELS_MAP_H
#include "../core/iter.h"

/* Broadcast the inputs, allocate a contiguous output of dtype `odt` and iterate
 * (output is operand 0). Inputs may be NULL-terminated early (nin 1..3). */
vt_tensor *vt_map(const char *who, vt_dtype odt, int nin, const vt_tensor **in, vt_row_fn fn, void *ctx);

#endif
