/* vitc core: the strided N-d iterator. */
#ifndef VT_ITER_H
#define VT_ITER_H
#include "tensor.h"

#define VT_MAX_OPERANDS 4

/* One row of an elementwise loop: n elements, operand k at p[k] advancing s[k] bytes. */
typedef void (*vt_row_fn)(int64_t n, char **p, const int64_t *s, void *ctx);

/* Walk `shape` with `nops` operands (base pointers and per-dim byte strides), calling `fn` on
 * rows of the innermost (coalesced) dimension. Dims are merged where every operand is
 * contiguous across them, so a contiguous op is one long row per thread. Rows run in parallel
 * with OpenMP when the total is large; fn must be safe to call concurrently on distinct rows. */
void vt_iter(int nd, const int64_t *shape, int nops, char **base, int64_t strides[][VT_MAX_DIMS],
             vt_row_fn fn, void *ctx);

#endif
