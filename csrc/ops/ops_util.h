/* vitc ops: shared machinery for kernels — argument checks and the strided N-d iterator. */
#ifndef VT_OPS_UTIL_H
#define VT_OPS_UTIL_H
#include "ops.h"
#include "../core/simd.h"
#include "../core/iter.h"

/* Broadcast the inputs, allocate a contiguous output of dtype `odt` and iterate
 * (output is operand 0). Inputs may be NULL-terminated early (nin 1..3). */
vt_tensor *vt_map(const char *who, vt_dtype odt, int nin, const vt_tensor **in, vt_row_fn fn, void *ctx);

/* 1 when the hand-written AVX2 + FMA kernels (attention, gemm) may run: the CPU has both and
 * VITC_ISA is not "baseline" (which forces the portable kernels, for tests); read once */
int vt_use_avx2_kernels(void);

#endif
