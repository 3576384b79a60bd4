/* vitc kernels: reductions over a set of dims. Every pass sees its input as a 3-d array
 * (O, R, I): R runs over the reduced elements, O and I over the kept ones before and after them.
 * A contiguous input whose reduced dims are adjacent is read in place (R contiguous when I = 1:
 * row reductions; otherwise blocks of I columns); any other input is permuted to (kept, reduced)
 * and copied once. Sums run in float lanes flushed to double every 1024 elements (rows) or 64
 * rows (columns); extremes in lanes too, then a second pass finds the first index. When there are
 * too few output rows to feed the threads, R is split into a number of chunks fixed by the shape
 * alone, so results do not depend on the thread count. The reduce op family (csrc/ops/reduce.c)
 * is built on these passes; vt_k_sum_to is the broadcasting backward every family shares. */
/* no FP traps are ever enabled; without this the vt_*f math of fastmath.h does not vectorize */
#pragma GCC optimize ("no-trapping-math")
#include <stdlib.h>
#include <string.h>
#include "reduce.h"
#include "fastmath.h"
#include "view.h"
#include "../core/simd.h"

/* ---- the (O, R, I) view --------------------------------------------------------------------- */

int vt_red3_plan(const vt_tensor *x, unsigned mask, vt_red3 *v) {
    int nd = x->ndim;
    int64_t R = 1, M = 1;
    for (int d = 0; d < nd; d++) {
        if (mask >> d & 1) R *= x->shape[d];
        else M *= x->shape[d];
    }
    v->reduced = R;
    if (vt_is_contiguous(x)) {
        /* in place when the reduced dims (ignoring size-1 dims) form one run */
        int first = -1, last = -1, ok = 1;
        for (int d = 0; d < nd; d++)
            if (x->shape[d] != 1 && (mask >> d & 1)) { if (first < 0) first = d; last = d; }
        int64_t O = 1, I = 1;
        for (int d = 0; d < nd; d++) {
            if (x->shape[d] == 1 || (mask >> d & 1)) continue;
            if (first < 0 || d < first) O *= x->shape[d];
            else if (d > last) I *= x->shape[d];
            else ok = 0;
        }
        if (ok) {
            vt_tensor_incref((vt_tensor *)x);
            v->t = (vt_tensor *)x;
            v->p = vt_f32(x);
            v->outer = O;
            v->inner = I;
            return VT_OK;
        }
    }
    int64_t perm[VT_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < nd; d++) if (!(mask >> d & 1)) perm[k++] = d;
    for (int d = 0; d < nd; d++) if (mask >> d & 1) perm[k++] = d;
    vt_tensor *pv = vt_k_permute(x, perm);
    if (!pv) return vt_last_code();
    vt_tensor *pc = vt_contiguous(pv); /* no copy when the permuted view is already contiguous */
    vt_tensor_decref(pv);
    if (!pc) return vt_last_code();
    v->t = pc;
    v->p = vt_f32(pc);
    v->outer = M;
    v->inner = 1;
    return VT_OK;
}

#define IB 128 /* columns per work item when I > 1 */

/* how many chunks to cut R into: only when too few (row, column block) units exist to keep the
 * threads busy; a pure function of the shape (determinism) */
static int64_t r_chunks(int64_t units, int64_t R, int64_t width) {
    if (units >= 16 || R * width < 65536) return 1;
    int64_t s = R * width / 16384;
    if (s > 64) s = 64;
    if (s > R) s = R;
    return s < 1 ? 1 : s;
}

/* ---- the passes ------------------------------------------------------------------------------
 * Work items are (o, block of up to IB columns, chunk of R). Each pass is a plain loop GCC
 * vectorizes: rows (I = 1) through LANES independent float accumulators, columns (I > 1) across
 * the block. Float partial sums are flushed into double every FBLK elements (rows) or FROWS rows
 * (columns), so the error does not grow with the length of the reduction. */

#define LANES 16
#define FBLK 1024
#define FROWS 64

/* sum LANES floats as a tree (vectorizes; no long dependency chain) */
static inline float lane_sum(float *a) {
    for (int h = LANES / 2; h; h >>= 1)
        for (int k = 0; k < h; k++) a[k] += a[k + h];
    return a[0];
}

/* four independent streams of LANES accumulators, so consecutive vector adds do not wait on
 * each other */
#define ROW_ACC(F)                                                                              \
    for (int64_t b = 0; b < n; b += FBLK) {                                                     \
        int64_t m = n - b < FBLK ? n - b : FBLK, r = 0;                                         \
        const float *q = p + b;                                                                 \
        float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0}, t = 0;        \
        for (; r + 4 * LANES <= m; r += 4 * LANES)                                              \
            _Pragma("GCC unroll 1") /* keep the lane loop for the loop vectorizer */            \
            for (int k = 0; k < LANES; k++) {                                                   \
                float v;                                                                        \
                v = q[r + k]; a0[k] += (F);                                                     \
                v = q[r + LANES + k]; a1[k] += (F);                                             \
                v = q[r + 2 * LANES + k]; a2[k] += (F);                                         \
                v = q[r + 3 * LANES + k]; a3[k] += (F);                                         \
            }                                                                                   \
        for (; r + LANES <= m; r += LANES)                                                      \
            _Pragma("GCC unroll 1")                                                             \
            for (int k = 0; k < LANES; k++) { float v = q[r + k]; a0[k] += (F); }               \
        for (; r < m; r++) { float v = q[r]; t += (F); }                                        \
        for (int k = 0; k < LANES; k++) a0[k] += (a1[k] + a2[k]) + a3[k];                       \
        tot += (double)lane_sum(a0) + t;                                                        \
    }

/* Σ f(p[r]) over n contiguous elements */
static inline __attribute__((always_inline)) double row_acc(const float *p, int64_t n, int kind, float c) {
    double tot = 0;
    if (kind == VT_ACC_EQNAN && c == c) kind = VT_ACC_EQ;
    switch (kind) {
    case VT_ACC_X: ROW_ACC(v); break;
    case VT_ACC_SQDEV: ROW_ACC((v - c) * (v - c)); break;
    case VT_ACC_EXP: ROW_ACC(vt_expf(v - c)); break;
    case VT_ACC_EQ: ROW_ACC(v == c ? 1.0f : 0.0f); break;
    case VT_ACC_EQNAN: ROW_ACC(v != v ? 1.0f : 0.0f); break;
    }
    return tot;
}

/* out[j] = row_acc of row j, for nrows rows of length n (c[j] per row, or none) */
VT_SIMD_CLONES static void rows_acc(const float *p, int64_t n, int64_t nrows, int kind, const float *c, double *out) {
    for (int64_t j = 0; j < nrows; j++) out[j] = row_acc(p + j * n, n, kind, c ? c[j] : 0.0f);
}

#define COL_ACC(F, CK)                                                                          \
    for (int64_t r0 = 0; r0 < nr; r0 += FROWS) {                                                \
        int64_t r1 = nr - r0 < FROWS ? nr : r0 + FROWS;                                         \
        for (int64_t k = 0; k < w; k++) f[k] = 0;                                               \
        for (int64_t r = r0; r < r1; r++) {                                                     \
            const float *row = q + r * I;                                                       \
            for (int64_t k = 0; k < w; k++) { float v = row[k], ck = (CK); (void)ck; f[k] += (F); } \
        }                                                                                       \
        for (int64_t k = 0; k < w; k++) acc[k] += f[k];                                         \
    }

/* acc[k] += Σ_r f(q[r·I + k]) for k < w, r < nr */
VT_SIMD_CLONES static void col_acc(const float *q, int64_t I, int64_t nr, int64_t w, int kind, const float *c, double *acc) {
    float f[IB];
    switch (kind) {
    case VT_ACC_X: COL_ACC(v, 0.0f); break; /* c may be NULL */
    case VT_ACC_SQDEV: COL_ACC((v - ck) * (v - ck), c[k]); break;
    case VT_ACC_EXP: COL_ACC(vt_expf(v - ck), c[k]); break;
    case VT_ACC_EQ: COL_ACC(v == ck ? 1.0f : 0.0f, c[k]); break;
    case VT_ACC_EQNAN: COL_ACC((v == ck) | ((v != v) & (ck != ck)) ? 1.0f : 0.0f, c[k]); break;
    }
}

/* the work split shared by the passes */
typedef struct { int64_t nib, units, width, S; } split_t;
static split_t red_split(const vt_red3 *v) {
    split_t s;
    s.nib = (v->inner + IB - 1) / IB;
    s.units = v->outer * s.nib;
    s.width = v->inner < IB ? v->inner : IB;
    s.S = r_chunks(s.units, v->reduced, s.width);
    return s;
}
#define ITEM_DECODE(sp, w)                                                                      \
    int64_t u = (w) / (sp).S, s = (w) % (sp).S, o = u / (sp).nib, i0 = (u % (sp).nib) * IB;     \
    int64_t nw = I - i0 < IB ? I - i0 : IB, r0 = R * s / (sp).S, r1 = R * (s + 1) / (sp).S;     \
    (void)nw; (void)r1

/* rows per work item when whole rows are reduced: enough work to amortize a call */
static int64_t row_block(int64_t R) { return R >= 4096 ? 1 : 4096 / (R ? R : 1); }

/* out[j] = Σ_r f(x[o, r, i]; c[j]) for every output j = o·I + i (double) */
int vt_red_sum(const vt_red3 *v, int kind, const float *c, double *out) {
    int64_t O = v->outer, R = v->reduced, I = v->inner, M = O * I;
    if (M == 0) return VT_OK;
    split_t sp = red_split(v);
    const float *p = v->p;
    if (I == 1 && sp.S == 1) { /* whole rows: blocks of rows straight into out */
        int64_t rb = row_block(R), nb = (O + rb - 1) / rb;
        #pragma omp parallel for if (M * R > 32768) schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t o0 = b * rb, no = O - o0 < rb ? O - o0 : rb;
            rows_acc(p + o0 * R, R, no, kind, c ? c + o0 : NULL, out + o0);
        }
        return VT_OK;
    }
    double *part = calloc((size_t)(sp.units * sp.S * sp.width), sizeof(double));
    if (!part) return vt_fail(VT_ENOMEM, "reduce: out of memory");
    #pragma omp parallel for if (M * R > 32768) schedule(static)
    for (int64_t w = 0; w < sp.units * sp.S; w++) {
        ITEM_DECODE(sp, w);
        double *dst = part + w * sp.width;
        if (I == 1) rows_acc(p + o * R + r0, r1 - r0, 1, kind, c ? c + o : NULL, dst);
        else col_acc(p + (o * R + r0) * I + i0, I, r1 - r0, nw, kind, c ? c + o * I + i0 : NULL, dst);
    }
    for (int64_t u = 0; u < sp.units; u++) { /* combine the chunks in order */
        int64_t o = u / sp.nib, i0 = (u % sp.nib) * IB, nw = I - i0 < IB ? I - i0 : IB;
        for (int64_t k = 0; k < nw; k++) {
            double t = 0;
            for (int64_t s = 0; s < sp.S; s++) t += part[(u * sp.S + s) * sp.width + k];
            out[o * I + i0 + k] = t;
        }
    }
    free(part);
    return VT_OK;
}

/* ---- extremum passes: the value, then the first index holding it ----
 * NaN beats every number (PyTorch propagates it and returns the first NaN's index). */

static inline float better(float a, float b, int want_max) { /* NaN-propagating max/min */
    if (a != a || b != b) return a != a ? a : b;
    return want_max ? (a > b ? a : b) : (a < b ? a : b);
}

/* a lane keeps its value unless v beats it; a NaN v always gets in and then stays, since no
 * comparison with it is true */
#define BEST_STEP(M, V, CMP) M = ((V) CMP M) | ((V) != (V)) ? (V) : M
#define ROW_BEST(CMP)                                                                           \
    for (; r + 4 * LANES <= n; r += 4 * LANES)                                                  \
        _Pragma("GCC unroll 1")                                                                 \
        for (int k = 0; k < LANES; k++) {                                                       \
            BEST_STEP(m0[k], p[r + k], CMP);                                                    \
            BEST_STEP(m1[k], p[r + LANES + k], CMP);                                            \
            BEST_STEP(m2[k], p[r + 2 * LANES + k], CMP);                                        \
            BEST_STEP(m3[k], p[r + 3 * LANES + k], CMP);                                        \
        }

static inline __attribute__((always_inline)) float row_best(const float *p, int64_t n, int want_max) {
    float b = want_max ? -__builtin_inff() : __builtin_inff(), m0[LANES], m1[LANES], m2[LANES], m3[LANES];
    int64_t r = 0;
    for (int k = 0; k < LANES; k++) m0[k] = m1[k] = m2[k] = m3[k] = b;
    if (want_max) { ROW_BEST(>); }
    else { ROW_BEST(<); }
    for (int k = 0; k < LANES; k++)
        b = better(b, better(better(m0[k], m1[k], want_max), better(m2[k], m3[k], want_max), want_max), want_max);
    for (; r < n; r++) b = better(b, p[r], want_max);
    return b;
}

VT_SIMD_CLONES static void rows_best(const float *p, int64_t n, int64_t nrows, int want_max, float *out) {
    if (want_max) for (int64_t j = 0; j < nrows; j++) out[j] = row_best(p + j * n, n, 1);
    else for (int64_t j = 0; j < nrows; j++) out[j] = row_best(p + j * n, n, 0);
}

#define COL_BEST(CMP)                                                                           \
    for (int64_t r = 0; r < nr; r++) {                                                          \
        const float *row = q + r * I;                                                           \
        for (int64_t k = 0; k < w; k++) { float v = row[k]; m[k] = (v CMP m[k]) | (v != v) ? v : m[k]; } \
    }

VT_SIMD_CLONES static void col_best(const float *q, int64_t I, int64_t nr, int64_t w, int want_max, float *m) {
    for (int64_t k = 0; k < w; k++) m[k] = want_max ? -__builtin_inff() : __builtin_inff();
    if (want_max) COL_BEST(>)
    else COL_BEST(<)
}

/* best[j] = max (or min) over r, NaN-propagating; R >= 1 */
int vt_red_best(const vt_red3 *v, int want_max, float *best) {
    int64_t O = v->outer, R = v->reduced, I = v->inner, M = O * I;
    if (M == 0) return VT_OK;
    split_t sp = red_split(v);
    const float *p = v->p;
    if (I == 1 && sp.S == 1) {
        int64_t rb = row_block(R), nb = (O + rb - 1) / rb;
        #pragma omp parallel for if (M * R > 32768) schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t o0 = b * rb, no = O - o0 < rb ? O - o0 : rb;
            rows_best(p + o0 * R, R, no, want_max, best + o0);
        }
        return VT_OK;
    }
    float *part = malloc(sizeof(float) * (size_t)(sp.units * sp.S * sp.width));
    if (!part) return vt_fail(VT_ENOMEM, "reduce: out of memory");
    #pragma omp parallel for if (M * R > 32768) schedule(static)
    for (int64_t w = 0; w < sp.units * sp.S; w++) {
        ITEM_DECODE(sp, w);
        float *dst = part + w * sp.width;
        if (I == 1) rows_best(p + o * R + r0, r1 - r0, 1, want_max, dst);
        else col_best(p + (o * R + r0) * I + i0, I, r1 - r0, nw, want_max, dst);
    }
    for (int64_t u = 0; u < sp.units; u++) {
        int64_t o = u / sp.nib, i0 = (u % sp.nib) * IB, nw = I - i0 < IB ? I - i0 : IB;
        for (int64_t k = 0; k < nw; k++) {
            float b = part[u * sp.S * sp.width + k];
            for (int64_t s = 1; s < sp.S; s++) b = better(b, part[(u * sp.S + s) * sp.width + k], want_max);
            best[o * I + i0 + k] = b;
        }
    }
    free(part);
    return VT_OK;
}

/* idx[j] = first r with x[o, r, i] == c[j] (a NaN c matches the first NaN) */
int vt_red_first(const vt_red3 *v, const float *c, int64_t *idx) {
    int64_t O = v->outer, R = v->reduced, I = v->inner, M = O * I;
    if (M == 0) return VT_OK;
    split_t sp = red_split(v);
    int64_t *part = malloc(sizeof(int64_t) * (size_t)(sp.units * sp.S * sp.width));
    if (!part) return vt_fail(VT_ENOMEM, "reduce: out of memory");
    const float *p = v->p;
    #pragma omp parallel for if (M * R > 32768) schedule(static)
    for (int64_t w = 0; w < sp.units * sp.S; w++) {
        ITEM_DECODE(sp, w);
        int64_t *dst = part + w * sp.width;
        if (I == 1) {
            const float *row = p + o * R;
            float t = c[o];
            int64_t r = r0;
            if (t == t) while (r < r1 && row[r] != t) r++;
            else while (r < r1 && row[r] == row[r]) r++;
            dst[0] = r < r1 ? r : -1;
        } else {
            const float *q = p + o * R * I + i0, *ck = c + o * I + i0;
            for (int64_t k = 0; k < nw; k++) dst[k] = -1;
            int64_t left = nw;
            for (int64_t r = r0; r < r1 && left; r++) {
                const float *row = q + r * I;
                for (int64_t k = 0; k < nw; k++) {
                    float x = row[k];
                    if (dst[k] < 0 && (x == ck[k] || (x != x && ck[k] != ck[k]))) { dst[k] = r; left--; }
                }
            }
        }
    }
    for (int64_t u = 0; u < sp.units; u++) {
        int64_t o = u / sp.nib, i0 = (u % sp.nib) * IB, nw = I - i0 < IB ? I - i0 : IB;
        for (int64_t k = 0; k < nw; k++) {
            int64_t r = -1;
            for (int64_t s = 0; s < sp.S && r < 0; s++) r = part[(u * sp.S + s) * sp.width + k];
            idx[o * I + i0 + k] = r < 0 ? 0 : r; /* always found: c came from these values */
        }
    }
    free(part);
    return VT_OK;
}

/* ---- sums that keep or drop dims ------------------------------------------------------------- */

/* an uninitialised float tensor of x's shape with the dims in mask set to 1 */
static vt_tensor *keepdim_empty(const vt_tensor *x, unsigned mask) {
    int64_t ks[VT_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ks[d] = (mask >> d & 1) ? 1 : x->shape[d];
    return vt_empty(VT_FLOAT32, x->ndim, ks);
}

vt_tensor *vt_k_sum_dims(const vt_tensor *x, unsigned mask, double scale) {
    vt_tensor *out = keepdim_empty(x, mask);
    if (!out) return NULL;
    int64_t M = vt_numel(out);
    if (M == 0) return out;
    float *o = vt_f32(out);
    if (vt_numel(x) == 0) { for (int64_t j = 0; j < M; j++) o[j] = (float)(0.0 * scale); return out; }
    vt_red3 v;
    double *acc = malloc(sizeof(double) * (size_t)M);
    if (!acc) { vt_tensor_decref(out); return vt_fail_null(VT_ENOMEM, "sum: out of memory"); }
    int st = vt_red3_plan(x, mask, &v);
    if (!st) {
        st = vt_red_sum(&v, VT_ACC_X, NULL, acc);
        vt_tensor_decref(v.t);
    }
    if (!st) for (int64_t j = 0; j < M; j++) o[j] = (float)(acc[j] * scale);
    free(acc);
    if (st) { vt_tensor_decref(out); return NULL; }
    return out;
}

vt_tensor *vt_k_sum_to(const vt_tensor *g, int ndim, const int64_t *shape) {
    if (g->ndim == ndim && !memcmp(g->shape, shape, sizeof(int64_t) * (size_t)ndim)) {
        vt_tensor_incref((vt_tensor *)g);
        return (vt_tensor *)g;
    }
    int lead = g->ndim - ndim;
    if (lead < 0) return vt_fail_null(VT_ESHAPE, "sum_to: target has more dims than the gradient");
    unsigned mask = 0;
    for (int d = 0; d < g->ndim; d++)
        if (d < lead || (shape[d - lead] == 1 && g->shape[d] != 1)) mask |= 1u << d;
    vt_tensor *s = vt_k_sum_dims(g, mask, 1.0);
    if (!s) return NULL;
    vt_tensor *r = vt_k_reshape(s, ndim, shape);
    vt_tensor_decref(s);
    return r;
}
