/* vitc kernels: reductions over dims (reduce.c explains the (O, R, I) passes). */
#ifndef VT_KERNELS_REDUCE_H
#define VT_KERNELS_REDUCE_H
#include "../core/tensor.h"

/* x (float32) seen as (O, R, I) = (outer, reduced, inner) around the reduced dims: element
 * (o, r, i) is p[(o·R + r)·I + i]; output element j = o·I + i is the row-major order of the kept
 * dims. t holds the data (a reference owned by the view: vt_tensor_decref(v.t) when done). */
typedef struct { vt_tensor *t; const float *p; int64_t outer, reduced, inner; } vt_red3;
/* the view of x reducing the dims whose bits are set in mask (in place when it can be) */
int vt_red3_plan(const vt_tensor *x, unsigned mask, vt_red3 *v);

/* what vt_red_sum adds up: x, (x − c)², exp(x − c), [x = c], [x = c or both NaN] */
enum { VT_ACC_X, VT_ACC_SQDEV, VT_ACC_EXP, VT_ACC_EQ, VT_ACC_EQNAN };
/* out[j] = Σ_r f(x[o, r, i]; c[j]) for every output j = o·I + i, in double (c NULL for VT_ACC_X) */
int vt_red_sum(const vt_red3 *v, int kind, const float *c, double *out);
/* best[j] = max (want_max) or min over r, NaN-propagating; R >= 1 */
int vt_red_best(const vt_red3 *v, int want_max, float *best);
/* idx[j] = first r with x[o, r, i] == c[j] (a NaN c matches the first NaN) */
int vt_red_first(const vt_red3 *v, const float *c, int64_t *idx);

/* sum of float32 x over the dims in mask, times scale, with the summed dims kept as size 1 */
vt_tensor *vt_k_sum_dims(const vt_tensor *x, unsigned mask, double scale);
/* g summed down to `shape` (NumPy broadcasting run backwards: leading dims and dims of size 1 in
 * shape are summed away); g itself (a new reference) when it already has that shape */
vt_tensor *vt_k_sum_to(const vt_tensor *g, int ndim, const int64_t *shape);

#endif
