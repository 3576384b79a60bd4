/* vitc ops: reductions over dims (sum, mean, var, std, max/min, amax/amin, argmax/argmin,
 * logsumexp). Forward and backward side by side.
 *
 * Dim reductions take keepdim and the list of dims (empty = all; reduce.def); var/std add the
 * correction. Every kernel sees its input as a 3-d array (O, R, I): R runs
 * over the reduced elements, O and I over the kept ones before and after them. A contiguous input
 * whose reduced dims are adjacent is read in place (R contiguous when I = 1: row reductions;
 * otherwise blocks of I columns); any other input is permuted to (kept, reduced) and copied once.
 * Sums run in float lanes flushed to double every 1024 elements (rows) or 64 rows (columns);
 * extremes in lanes too, then a second pass finds the first index. When there are too few
 * output rows to feed the threads, R is split
 * into a number of chunks fixed by the shape alone, so results do not depend on the thread count.
 * Backward formulas follow PyTorch's tools/autograd/derivatives.yaml: var 2(x−μ)/(n−c)·g, std
 * the same over 2σ (0 where σ = 0), logsumexp g·exp(x−lse), amax/amin g/count on ties, max()/min()
 * likewise with NaN counting as a tie of NaN, max/min(dim) all of g to the returned index. */
/* no FP traps are ever enabled; without this the vt_*f math of kernels/fastmath.h does not vectorize */
#pragma GCC optimize ("no-trapping-math")
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops_util.h"

/* ---- dims ----------------------------------------------------------------------------------- */

/* every row with dims reads them through sum's slots */
#define SAME_DIM_ARGS(op) VT_SAME_IARG(sum, op, keepdim); VT_SAME_IARG(sum, op, dims)
SAME_DIM_ARGS(mean); SAME_DIM_ARGS(var); SAME_DIM_ARGS(std); SAME_DIM_ARGS(amax); SAME_DIM_ARGS(amin);
SAME_DIM_ARGS(max_dim); SAME_DIM_ARGS(min_dim); SAME_DIM_ARGS(argmax); SAME_DIM_ARGS(argmin); SAME_DIM_ARGS(logsumexp);
VT_SAME_FARG(var, std, correction);

/* how many dims the call lists (0: all dims) */
static int dim_count(const vt_ctx *c) { return VT_LIST_LEN(c->args, sum, dims); }

/* the keepdim flag and the dims list as a dim bitmask over x's dims */
static int parse_dims(const vt_ctx *c, const vt_tensor *x, unsigned *mask, int *keepdim) {
    const vt_args *a = c->args;
    *keepdim = (int)a->i[IARG(sum, keepdim)];
    int nd = dim_count(c);
    if (nd == 0) { *mask = x->ndim ? (1u << x->ndim) - 1 : 0; return VT_OK; }
    *mask = 0;
    for (int k = 0; k < nd; k++) {
        int64_t d = a->i[IARG(sum, dims) + k];
        VT_TRY(vt_normalize_dim(&d, x->ndim, WHO(c)));
        if (x->ndim == 0) continue;
        if (*mask >> d & 1) return vt_fail(VT_EVALUE, "%s: dim %lld appears more than once", WHO(c), (long long)d);
        *mask |= 1u << d;
    }
    return VT_OK;
}

/* output shape of reducing `mask` of x (keepdim: size 1; else dropped) */
static int reduced_shape(const vt_tensor *x, unsigned mask, int keepdim, int64_t *shape) {
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (mask >> d & 1) { if (keepdim) shape[nd++] = 1; }
        else shape[nd++] = x->shape[d];
    }
    return nd;
}

static int64_t reduced_count(const vt_tensor *x, unsigned mask) {
    int64_t n = 1;
    for (int d = 0; d < x->ndim; d++) if (mask >> d & 1) n *= x->shape[d];
    return n;
}

/* a shape-only stand-in for an input, from a node's metadata (backward re-parses the dims) */
static vt_tensor meta_tensor(const vt_meta *m) {
    vt_tensor t;
    memset(&t, 0, sizeof t);
    t.ndim = m->ndim;
    t.dtype = m->dtype;
    memcpy(t.shape, m->shape, sizeof t.shape);
    return t;
}

/* ---- backward maps: a gradient of the input's shape from small keepdim-shaped tensors ------- */

enum { BW_BCAST, BW_DEV, BW_EXP, BW_EQ, BW_EQNAN };
typedef struct { int kind; float scale; } bwctx;

/* E(xv, av, hv) over a row; contiguous fast paths for the two usual layouts: a and h constant
 * along the row (reducing the last dims) or all operands contiguous (reducing leading dims) */
#define BWLOOP(E)                                                                               \
    do {                                                                                        \
        if (so == 1 && sx == 1 && sa == 0 && sh == 0) {                                         \
            const float av = a[0], hv = h[0];                                                   \
            for (int64_t i = 0; i < n; i++) { float xv = x[i]; o[i] = (E); }                    \
        } else if (so == 1 && sx == 1 && sa == 1 && sh == 1) {                                  \
            for (int64_t i = 0; i < n; i++) { float xv = x[i], av = a[i], hv = h[i]; o[i] = (E); } \
        } else {                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                   \
                float xv = x[i * sx], av = a[i * sa], hv = h[i * sh];                           \
                o[i * so] = (E);                                                                \
            }                                                                                   \
        }                                                                                       \
    } while (0)

/* operands: out, then h (BW_BCAST) or x, a, h; a and h broadcast over the reduced dims */
VT_SIMD_CLONES static void bw_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const bwctx *k = vctx;
    float *o = (float *)p[0];
    int64_t so = s[0] / 4;
    if (k->kind == BW_BCAST) {
        const float *h = (const float *)p[1];
        int64_t sh = s[1] / 4;
        float sc = k->scale;
        if (sh == 0 && so == 1) { float v = h[0] * sc; for (int64_t i = 0; i < n; i++) o[i] = v; }
        else if (sh == 1 && so == 1) for (int64_t i = 0; i < n; i++) o[i] = h[i] * sc;
        else for (int64_t i = 0; i < n; i++) o[i * so] = h[i * sh] * sc;
        return;
    }
    const float *x = (const float *)p[1], *a = (const float *)p[2], *h = (const float *)p[3];
    int64_t sx = s[1] / 4, sa = s[2] / 4, sh = s[3] / 4;
    switch (k->kind) {
    case BW_DEV: BWLOOP((xv - av) * hv); break;
    case BW_EXP: BWLOOP(vt_expf(xv - av) * hv); break;
    case BW_EQ: BWLOOP(hv * (float)(xv == av)); break;
    case BW_EQNAN: BWLOOP(hv * (float)((xv == av) | ((xv != xv) & (av != av)))); break;
    }
}

static vt_tensor *bw_map(const char *who, int kind, float scale, const vt_tensor *x, const vt_tensor *a,
                         const vt_tensor *h) {
    bwctx k = {kind, scale};
    const vt_tensor *in[3] = {x, a, h};
    return vt_map(who, VT_FLOAT32, kind == BW_BCAST ? 1 : 3, kind == BW_BCAST ? in + 2 : in, bw_row, &k);
}

/* the incoming gradient of output 0 in keepdim layout (zeros when none arrived), contiguous */
static vt_tensor *grad_keep(const vt_node *n, vt_tensor **gout, const vt_tensor *x, unsigned mask) {
    int64_t ks[VT_MAX_DIMS];
    int nd = reduced_shape(x, mask, 1, ks);
    if (!gout[0]) return vt_zeros(VT_FLOAT32, nd, ks);
    vt_tensor *g = vt_k_reshape(gout[0], nd, ks);
    if (!g) return NULL;
    vt_tensor *gc = vt_contiguous(g);
    vt_tensor_decref(g);
    return gc;
}

/* a contiguous float tensor of keepdim shape (new ref) */
static vt_tensor *keep_tensor(const vt_tensor *x, unsigned mask) {
    int64_t ks[VT_MAX_DIMS];
    int nd = reduced_shape(x, mask, 1, ks);
    return vt_empty(VT_FLOAT32, nd, ks);
}

/* reshape a keepdim-shaped result r to the requested output layout (steals r) */
static vt_tensor *finish_shape(vt_tensor *r, const vt_tensor *x, unsigned mask, int keepdim) {
    if (!r || keepdim) return r;
    int64_t shape[VT_MAX_DIMS];
    int nd = reduced_shape(x, mask, 0, shape);
    vt_tensor *o = vt_k_reshape(r, nd, shape);
    vt_tensor_decref(r);
    return o;
}

/* ---- sum / mean ---------------------------------------------------------------------------- */

static int sum_like_forward(vt_ctx *c, int mean) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(c, x, &mask, &keepdim));
    int64_t count = reduced_count(x, mask);
    double scale = mean ? (count ? 1.0 / (double)count : NAN) : 1.0;
    return out1(c, finish_shape(vt_k_sum_dims(x, mask, scale), x, mask, keepdim));
}

/* gradient of a sum: g broadcast back over the reduced dims (times 1/count for mean) */
static int sum_like_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int mean) {
    vt_tensor x = meta_tensor(&n->in_meta[0]);
    vt_ctx c = {.op = n->op, .args = &n->args};
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(&c, &x, &mask, &keepdim));
    int64_t count = reduced_count(&x, mask);
    vt_tensor *g = grad_keep(n, gout, &x, mask);
    if (!g) return vt_last_code();
    /* vt_map broadcasts g to its own shape only: give it x's shape via a stride-0 view */
    int64_t st[VT_MAX_DIMS];
    for (int d = 0; d < x.ndim; d++) st[d] = (mask >> d & 1) ? 0 : g->strides[d];
    vt_tensor *e = vt_view_of(g, x.ndim, x.shape, st, g->offset);
    vt_tensor_decref(g);
    if (!e) return vt_last_code();
    gin[0] = bw_map(vt_ops[n->op].name, BW_BCAST, mean ? (count ? 1.0f / (float)count : NAN) : 1.0f, NULL, NULL, e);
    vt_tensor_decref(e);
    return gin[0] ? VT_OK : vt_last_code();
}

int vt_sum_forward(vt_ctx *c) { return sum_like_forward(c, 0); }
int vt_sum_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return sum_like_backward(n, gout, gin, 0); }
int vt_mean_forward(vt_ctx *c) { return sum_like_forward(c, 1); }
int vt_mean_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return sum_like_backward(n, gout, gin, 1); }

/* ---- var / std ----------------------------------------------------------------------------- */

/* Two passes, double accumulation: μ = Σx/n, then Σ(x−μ)²/max(0, n−c) (PyTorch's definition;
 * n−c <= 0 gives inf or NaN as there). Saves x and μ (keepdim) and, for std, σ (keepdim). */
static int var_like_forward(vt_ctx *c, int is_std) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(c, x, &mask, &keepdim));
    double corr = c->args->f[FARG(var, correction)], n = (double)reduced_count(x, mask), dof = n - corr > 0 ? n - corr : 0;
    vt_tensor *out = keep_tensor(x, mask), *mu = keep_tensor(x, mask);
    double *acc = NULL;
    int st = VT_OK;
    if (!out || !mu) goto fail;
    int64_t M = vt_numel(out);
    float *o = vt_f32(out), *m = vt_f32(mu);
    if (n == 0) {
        for (int64_t j = 0; j < M; j++) o[j] = m[j] = NAN;
    } else if (M) {
        vt_red3 v;
        if (!(acc = malloc(sizeof(double) * (size_t)M))) { vt_fail(VT_ENOMEM, "%s: out of memory", WHO(c)); goto fail; }
        if ((st = vt_red3_plan(x, mask, &v))) goto fail;
        st = vt_red_sum(&v, VT_ACC_X, NULL, acc);
        for (int64_t j = 0; j < M && !st; j++) m[j] = (float)(acc[j] / n);
        if (!st) st = vt_red_sum(&v, VT_ACC_SQDEV, m, acc);
        vt_tensor_decref(v.t);
        if (st) goto fail;
        for (int64_t j = 0; j < M; j++) {
            double var = acc[j] / dof;
            o[j] = (float)(is_std ? sqrt(var) : var);
        }
        free(acc);
        acc = NULL;
    }
    if (vt_save(c, x) || vt_save(c, mu) || (is_std && vt_save(c, out))) goto fail;
    vt_tensor_decref(mu);
    return out1(c, finish_shape(out, x, mask, keepdim));
fail:
    free(acc);
    if (out) vt_tensor_decref(out);
    if (mu) vt_tensor_decref(mu);
    return vt_last_code();
}

static int var_like_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int is_std) {
    vt_tensor xm = meta_tensor(&n->in_meta[0]);
    vt_ctx c = {.op = n->op, .args = &n->args};
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(&c, &xm, &mask, &keepdim));
    double dof = (double)reduced_count(&xm, mask) - n->args.f[FARG(var, correction)];
    vt_tensor *x = n->saved[0], *mu = n->saved[1];
    vt_tensor *h = grad_keep(n, gout, &xm, mask);
    if (!h) return vt_last_code();
    /* h = g·2/(n−c) (var) or g/((n−c)·σ), 0 where σ = 0 (std): the per-output factor of x − μ.
     * h may be gout itself: work on a copy */
    vt_tensor *hw = vt_clone(h);
    vt_tensor_decref(h);
    if (!hw) return vt_last_code();
    float *hp = vt_f32(hw);
    const float *sd = is_std ? vt_f32(n->saved[2]) : NULL;
    int64_t M = vt_numel(hw);
    for (int64_t j = 0; j < M; j++) {
        if (is_std) hp[j] = sd[j] == 0.0f ? 0.0f : (float)(hp[j] / (dof * (double)sd[j]));
        else hp[j] = (float)(hp[j] * (2.0 / dof));
    }
    gin[0] = bw_map(vt_ops[n->op].name, BW_DEV, 1.0f, x, mu, hw);
    vt_tensor_decref(hw);
    return gin[0] ? VT_OK : vt_last_code();
}

int vt_var_forward(vt_ctx *c) { return var_like_forward(c, 0); }
int vt_var_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return var_like_backward(n, gout, gin, 0); }
int vt_std_forward(vt_ctx *c) { return var_like_forward(c, 1); }
int vt_std_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return var_like_backward(n, gout, gin, 1); }

/* ---- amax / amin / max() / min() --------------------------------------------------------- */

/* PyTorch's errors for empty reductions: a named empty dim is an IndexError, an all-reduce of
 * an empty tensor a RuntimeError */
static int check_nonempty(const vt_ctx *c, const vt_tensor *x, unsigned mask, int all) {
    if (vt_numel(x) && x->ndim) return VT_OK;
    if (all && vt_numel(x) == 0)
        return vt_fail(VT_ERUNTIME, "%s(): Expected reduction dim to be specified for input.numel() == 0. "
                       "Specify the reduction dim with the 'dim' argument.", WHO(c));
    for (int d = 0; d < x->ndim; d++)
        if ((mask >> d & 1) && x->shape[d] == 0)
            return vt_fail(VT_EINDEX, "%s(): Expected reduction dim %d to have non-zero size.", WHO(c), d);
    return VT_OK;
}

/* values over the dims; saves x and the values (keepdim) for the backward */
static int extreme_forward(vt_ctx *c, int want_max, int all) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim = 0;
    if (all) mask = x->ndim ? (1u << x->ndim) - 1 : 0;
    else VT_TRY(parse_dims(c, x, &mask, &keepdim));
    VT_TRY(check_nonempty(c, x, mask, all || dim_count(c) == 0));
    vt_tensor *out = keep_tensor(x, mask);
    if (!out) return vt_last_code();
    if (vt_numel(out)) {
        vt_red3 v;
        int st = vt_red3_plan(x, mask, &v);
        if (!st) {
            st = vt_red_best(&v, want_max, vt_f32(out));
            vt_tensor_decref(v.t);
        }
        if (st) { vt_tensor_decref(out); return st; }
    }
    if (vt_save(c, x) || vt_save(c, out)) { vt_tensor_decref(out); return vt_last_code(); }
    return out1(c, finish_shape(out, x, mask, keepdim));
}

/* gin = (g / count) · [x ties the value]: the gradient shared evenly among ties. amax counts
 * x == value, so a NaN value has no ties and its gradient is NaN (PyTorch's formula); max()
 * counts NaN as tying NaN (PyTorch's evenly_distribute_backward). The count is taken here, not
 * in the forward, so inference does not pay for it. */
static int extreme_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int all) {
    vt_tensor xm = meta_tensor(&n->in_meta[0]);
    unsigned mask = xm.ndim ? (1u << xm.ndim) - 1 : 0;
    if (!all) {
        vt_ctx c = {.op = n->op, .args = &n->args};
        int keepdim;
        VT_TRY(parse_dims(&c, &xm, &mask, &keepdim));
    }
    vt_tensor *x = n->saved[0], *val = n->saved[1];
    vt_tensor *g = grad_keep(n, gout, &xm, mask);
    if (!g) return vt_last_code();
    vt_tensor *h = vt_clone(g);
    vt_tensor_decref(g);
    if (!h) return vt_last_code();
    int64_t M = vt_numel(h);
    double *cnt = malloc(sizeof(double) * (size_t)(M ? M : 1));
    vt_red3 v;
    int st = cnt ? vt_red3_plan(x, mask, &v) : vt_fail(VT_ENOMEM, "%s: out of memory", vt_ops[n->op].name);
    if (!st) {
        st = vt_red_sum(&v, all ? VT_ACC_EQNAN : VT_ACC_EQ, vt_f32(val), cnt);
        vt_tensor_decref(v.t);
    }
    if (!st) {
        float *hp = vt_f32(h);
        for (int64_t j = 0; j < M; j++) hp[j] = (float)(hp[j] / cnt[j]);
        gin[0] = bw_map(vt_ops[n->op].name, all ? BW_EQNAN : BW_EQ, 1.0f, x, val, h);
        if (!gin[0]) st = vt_last_code();
    }
    free(cnt);
    vt_tensor_decref(h);
    return st;
}

int vt_amax_forward(vt_ctx *c) { return extreme_forward(c, 1, 0); }
int vt_amax_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return extreme_backward(n, gout, gin, 0); }
int vt_amin_forward(vt_ctx *c) { return extreme_forward(c, 0, 0); }
int vt_amin_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return extreme_backward(n, gout, gin, 0); }
int vt_max_forward(vt_ctx *c) { return extreme_forward(c, 1, 1); }
int vt_max_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return extreme_backward(n, gout, gin, 1); }
int vt_min_forward(vt_ctx *c) { return extreme_forward(c, 0, 1); }
int vt_min_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return extreme_backward(n, gout, gin, 1); }

/* ---- max/min over one dim with indices, argmax/argmin -------------------------------------- */

/* the single dim of a one-dim reduction (ndim 0: dim 0 of a 1-element view) */
static int one_dim(const vt_ctx *c, const vt_tensor *x, unsigned *mask, int *keepdim, int *dim) {
    VT_TRY(parse_dims(c, x, mask, keepdim));
    if (dim_count(c) > 1) return vt_fail(VT_EVALUE, "%s: expects a single dim, got %d", WHO(c), dim_count(c));
    *dim = -1;
    for (int d = 0; d < x->ndim; d++) if (*mask >> d & 1) *dim = d;
    return VT_OK;
}

/* the extreme values (val, M floats) and the first index holding each (idx) */
static int value_and_index(const vt_tensor *x, unsigned mask, int want_max, float *val, int64_t *idx) {
    vt_red3 v;
    VT_TRY(vt_red3_plan(x, mask, &v));
    int st = vt_red_best(&v, want_max, val);
    if (!st) st = vt_red_first(&v, val, idx);
    vt_tensor_decref(v.t);
    return st;
}

/* values (float) and int64 indices of the extreme along dim; saves the indices */
static int extreme_dim_forward(vt_ctx *c, int want_max) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim, dim = -1;
    VT_TRY(one_dim(c, x, &mask, &keepdim, &dim));
    if (dim_count(c) != 1) return vt_fail(VT_EVALUE, "%s: expects exactly one dim", WHO(c));
    VT_TRY(check_nonempty(c, x, mask, 0));
    int64_t ks[VT_MAX_DIMS];
    int knd = reduced_shape(x, mask, 1, ks);
    vt_tensor *val = vt_empty(VT_FLOAT32, knd, ks), *idx = vt_empty(VT_INT64, knd, ks);
    if (!val || !idx) goto fail;
    if (vt_numel(val) && value_and_index(x, mask, want_max, vt_f32(val), vt_i64(idx))) goto fail;
    if (vt_save(c, idx)) goto fail;
    /* finish_shape steals its argument, also on failure */
    vt_tensor *v0 = finish_shape(val, x, mask, keepdim), *v1 = finish_shape(idx, x, mask, keepdim);
    if (!v0 || !v1) {
        if (v0) vt_tensor_decref(v0);
        if (v1) vt_tensor_decref(v1);
        return vt_last_code();
    }
    c->out[0] = v0;
    c->out[1] = v1;
    c->nout = 2;
    return VT_OK;
fail:
    if (val) vt_tensor_decref(val);
    if (idx) vt_tensor_decref(idx);
    return vt_last_code();
}

/* all of g goes to the returned index: gin[o, idx[o, i], i] = g[o, i] */
static int extreme_dim_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor xm = meta_tensor(&n->in_meta[0]);
    vt_ctx c = {.op = n->op, .args = &n->args};
    unsigned mask;
    int keepdim, dim = -1;
    VT_TRY(one_dim(&c, &xm, &mask, &keepdim, &dim));
    vt_tensor *gx = vt_zeros(VT_FLOAT32, xm.ndim, xm.shape);
    if (!gx) return vt_last_code();
    vt_tensor *g = gout[0] ? grad_keep(n, gout, &xm, mask) : NULL;
    if (gout[0] && !g) { vt_tensor_decref(gx); return vt_last_code(); }
    if (g) {
        int64_t O = 1, R = dim >= 0 ? xm.shape[dim] : 1, I = 1;
        for (int d = 0; d < xm.ndim; d++) { if (d < dim) O *= xm.shape[d]; else if (d > dim) I *= xm.shape[d]; }
        const float *gp = vt_f32(g);
        const int64_t *ip = vt_i64(n->saved[0]); /* contiguous: made by the forward */
        float *o = vt_f32(gx);
        #pragma omp parallel for if (O * I > 32768) schedule(static)
        for (int64_t j = 0; j < O * I; j++) {
            int64_t oo = j / I, i = j % I;
            o[(oo * R + ip[j]) * I + i] = gp[j];
        }
        vt_tensor_decref(g);
    }
    gin[0] = gx;
    return VT_OK;
}

int vt_max_dim_forward(vt_ctx *c) { return extreme_dim_forward(c, 1); }
int vt_max_dim_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return extreme_dim_backward(n, gout, gin); }
int vt_min_dim_forward(vt_ctx *c) { return extreme_dim_forward(c, 0); }
int vt_min_dim_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return extreme_dim_backward(n, gout, gin); }

/* index of the first extreme over one dim, or over the flattened tensor when no dim is given
 * (keepdim then keeps every dim as size 1, like PyTorch) */
static int arg_forward(vt_ctx *c, int want_max) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim, dim = -1;
    VT_TRY(one_dim(c, x, &mask, &keepdim, &dim));
    int all = dim_count(c) == 0;
    if (all && vt_numel(x) == 0)
        return vt_fail(VT_EINDEX, "%s(): Expected reduction dim to be specified for input.numel() == 0.", WHO(c));
    VT_TRY(check_nonempty(c, x, mask, 0));
    int64_t ks[VT_MAX_DIMS];
    int knd = reduced_shape(x, mask, 1, ks);
    vt_tensor *idx = vt_empty(VT_INT64, knd, ks);
    float *val = NULL;
    if (!idx) return vt_last_code();
    int64_t M = vt_numel(idx);
    if (M) {
        if (!(val = malloc(sizeof(float) * (size_t)M))) { vt_fail(VT_ENOMEM, "%s: out of memory", WHO(c)); goto fail; }
        if (value_and_index(x, mask, want_max, val, vt_i64(idx))) goto fail;
        free(val);
        val = NULL;
    }
    return out1(c, finish_shape(idx, x, mask, keepdim));
fail:
    free(val);
    vt_tensor_decref(idx);
    return vt_last_code();
}

int vt_argmax_forward(vt_ctx *c) { return arg_forward(c, 1); }
int vt_argmin_forward(vt_ctx *c) { return arg_forward(c, 0); }

/* ---- logsumexp ----------------------------------------------------------------------------- */

/* lse = m + log Σ exp(x − m), m the max (0 when it is ±inf, as PyTorch, so rows of −inf give −inf
 * and rows with +inf give +inf); an empty reduction gives −inf. Saves x and lse (keepdim). */
int vt_logsumexp_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(c, x, &mask, &keepdim));
    vt_tensor *out = keep_tensor(x, mask);
    double *acc = NULL;
    if (!out) return vt_last_code();
    int64_t M = vt_numel(out), R = reduced_count(x, mask);
    float *o = vt_f32(out);
    if (R == 0) {
        for (int64_t j = 0; j < M; j++) o[j] = -INFINITY;
    } else if (M) {
        vt_red3 v;
        if (!(acc = malloc(sizeof(double) * (size_t)M * 2))) { vt_fail(VT_ENOMEM, "logsumexp: out of memory"); goto fail; }
        float *mx = (float *)(acc + M);
        if (vt_red3_plan(x, mask, &v)) goto fail;
        int st = vt_red_best(&v, 1, o);
        for (int64_t j = 0; j < M; j++) mx[j] = isinf(o[j]) ? 0.0f : o[j];
        if (!st) st = vt_red_sum(&v, VT_ACC_EXP, mx, acc);
        vt_tensor_decref(v.t);
        if (st) goto fail;
        for (int64_t j = 0; j < M; j++) o[j] = (float)(log(acc[j]) + mx[j]);
        free(acc);
        acc = NULL;
    }
    if (vt_save(c, x) || vt_save(c, out)) goto fail;
    return out1(c, finish_shape(out, x, mask, keepdim));
fail:
    free(acc);
    vt_tensor_decref(out);
    return vt_last_code();
}

/* gin = g·exp(x − lse) = g·softmax(x) over the reduced dims */
int vt_logsumexp_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor xm = meta_tensor(&n->in_meta[0]);
    vt_ctx c = {.op = n->op, .args = &n->args};
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(&c, &xm, &mask, &keepdim));
    vt_tensor *g = grad_keep(n, gout, &xm, mask);
    if (!g) return vt_last_code();
    gin[0] = bw_map("logsumexp", BW_EXP, 1.0f, n->saved[0], n->saved[1], g);
    vt_tensor_decref(g);
    return gin[0] ? VT_OK : vt_last_code();
}
