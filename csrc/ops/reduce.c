/* vitc ops: reductions over dims (sum, mean, var, std, max/min, amax/amin, argmax/argmin,
 * logsumexp). Forward and backward side by side.
 *
 * Args of dim reductions: i[0] = keepdim, i[1] = number of dims (0 = all), i[2..] = the dims
 * (var/std add f[0] = correction). Every kernel sees its input as a 3-d array (O, R, I): R runs
 * over the reduced elements, O and I over the kept ones before and after them. A contiguous input
 * whose reduced dims are adjacent is read in place (R contiguous when I = 1: row reductions;
 * otherwise blocks of I columns); any other input is permuted to (kept, reduced) and copied once.
 * Sums accumulate in double. When there are too few output rows to feed the threads, R is split
 * into a number of chunks fixed by the shape alone, so results do not depend on the thread count.
 * Backward formulas follow PyTorch's tools/autograd/derivatives.yaml: var 2(x−μ)/(n−c)·g, std
 * the same over 2σ (0 where σ = 0), logsumexp g·exp(x−lse), amax/amin g/count on ties, max()/min()
 * likewise with NaN counting as a tie of NaN, max/min(dim) all of g to the returned index. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops_util.h"

#define WHO(c) (vt_ops[(c)->op].name)

/* ---- dims ----------------------------------------------------------------------------------- */

/* parse i[first..] into a dim bitmask over x's dims */
static int parse_dims(const vt_ctx *c, const vt_tensor *x, int first, unsigned *mask, int *keepdim) {
    const vt_args *a = c->args;
    if (a->ni < first + 2) return vt_fail(VT_EVALUE, "%s: missing dim arguments", WHO(c));
    *keepdim = (int)a->i[first];
    int64_t nd = a->i[first + 1];
    if (nd < 0 || first + 2 + nd > a->ni) return vt_fail(VT_EVALUE, "%s: bad dim list", WHO(c));
    if (nd == 0) { *mask = x->ndim ? (1u << x->ndim) - 1 : 0; return VT_OK; }
    *mask = 0;
    for (int64_t k = 0; k < nd; k++) {
        int64_t d = a->i[first + 2 + k];
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

static int out1(vt_ctx *c, vt_tensor *t) {
    if (!t) return vt_last_code();
    c->out[0] = t;
    c->nout = 1;
    return VT_OK;
}

/* ---- the (O, R, I) view --------------------------------------------------------------------- */

/* element (o, r, i) is p[(o·R + r)·I + i]; output element j = o·I + i is the row-major order of
 * the kept dims. t holds the data (a reference owned by the view). */
typedef struct { vt_tensor *t; const float *p; int64_t O, R, I; } red3;

static int red3_plan(const vt_tensor *x, unsigned mask, red3 *v) {
    int nd = x->ndim;
    int64_t R = 1, M = 1;
    for (int d = 0; d < nd; d++) {
        if (mask >> d & 1) R *= x->shape[d];
        else M *= x->shape[d];
    }
    v->R = R;
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
            v->O = O;
            v->I = I;
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
    v->O = M;
    v->I = 1;
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

/* ---- sum passes: out[j] = Σ_r f(x[o, r, i]) in double ---------------------------------------- */

enum { ACC_X, ACC_SQDEV, ACC_EXP }; /* f = x, (x − c_j)², exp(x − c_j) */

static double row_acc(const float *p, int64_t n, int kind, double c) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t r = 0;
    if (kind == ACC_X) {
        for (; r + 4 <= n; r += 4) { a0 += p[r]; a1 += p[r + 1]; a2 += p[r + 2]; a3 += p[r + 3]; }
        for (; r < n; r++) a0 += p[r];
    } else if (kind == ACC_SQDEV) {
        for (; r + 4 <= n; r += 4) {
            double d0 = p[r] - c, d1 = p[r + 1] - c, d2 = p[r + 2] - c, d3 = p[r + 3] - c;
            a0 += d0 * d0; a1 += d1 * d1; a2 += d2 * d2; a3 += d3 * d3;
        }
        for (; r < n; r++) { double d = p[r] - c; a0 += d * d; }
    } else {
        float cf = (float)c;
        for (; r + 4 <= n; r += 4) {
            a0 += expf(p[r] - cf); a1 += expf(p[r + 1] - cf); a2 += expf(p[r + 2] - cf); a3 += expf(p[r + 3] - cf);
        }
        for (; r < n; r++) a0 += expf(p[r] - cf);
    }
    return (a0 + a1) + (a2 + a3);
}

/* acc[k] += f(q[k]) for a block of w columns, rows r0..r1 of stride I */
static void col_acc(const float *q, int64_t I, int64_t nr, int64_t w, int kind, const double *c, double *acc) {
    for (int64_t r = 0; r < nr; r++, q += I) {
        if (kind == ACC_X) for (int64_t k = 0; k < w; k++) acc[k] += q[k];
        else if (kind == ACC_SQDEV) for (int64_t k = 0; k < w; k++) { double d = q[k] - c[k]; acc[k] += d * d; }
        else for (int64_t k = 0; k < w; k++) acc[k] += expf(q[k] - (float)c[k]);
    }
}

static int red_sum(const red3 *v, int kind, const double *c, double *out) {
    int64_t O = v->O, R = v->R, I = v->I, M = O * I;
    if (M == 0) return VT_OK;
    int64_t nib = (I + IB - 1) / IB, units = O * nib, width = I < IB ? I : IB;
    int64_t S = r_chunks(units, R, width);
    double *part = NULL;
    if (S > 1 && !(part = malloc(sizeof(double) * (size_t)(units * S * width))))
        return vt_fail(VT_ENOMEM, "reduce: out of memory");
    const float *p = v->p;
    #pragma omp parallel for if (M * R > 32768) schedule(static)
    for (int64_t w = 0; w < units * S; w++) {
        int64_t u = w / S, s = w % S, o = u / nib, i0 = (u % nib) * IB;
        int64_t nw = I - i0 < IB ? I - i0 : IB, r0 = R * s / S, r1 = R * (s + 1) / S;
        double *dst = part ? part + w * width : out + o * I + i0;
        if (I == 1) {
            dst[0] = row_acc(p + o * R + r0, r1 - r0, kind, c ? c[o] : 0);
        } else {
            double acc[IB];
            memset(acc, 0, sizeof(double) * (size_t)nw);
            col_acc(p + (o * R + r0) * I + i0, I, r1 - r0, nw, kind, c ? c + o * I + i0 : NULL, acc);
            memcpy(dst, acc, sizeof(double) * (size_t)nw);
        }
    }
    if (part) { /* combine the chunks in order */
        for (int64_t u = 0; u < units; u++) {
            int64_t o = u / nib, i0 = (u % nib) * IB, nw = I - i0 < IB ? I - i0 : IB;
            for (int64_t k = 0; k < nw; k++) {
                double t = 0;
                for (int64_t s = 0; s < S; s++) t += part[(u * S + s) * width + k];
                out[o * I + i0 + k] = t;
            }
        }
        free(part);
    }
    return VT_OK;
}

/* ---- extremum pass: best value, first index, number of ties ----------------------------------- */

/* NaN beats every number (PyTorch propagates it and returns its first index); ties keep the
 * first index and are counted (a NaN best counts the NaNs). */
typedef struct { float b; int64_t idx, cnt; } ext_t;

static inline __attribute__((always_inline)) void ext_step(ext_t *e, float x, int64_t r, int want_max) {
    if (x == e->b) e->cnt++;
    else if (want_max ? x > e->b : x < e->b) { e->b = x; e->idx = r; e->cnt = 1; }
    else if (x != x && e->b == e->b) { e->b = x; e->idx = r; e->cnt = 1; }
    else if (x != x) e->cnt++; /* another NaN */
}

static inline void ext_merge(ext_t *a, const ext_t *b, int want_max) {
    int an = a->b != a->b, bn = b->b != b->b;
    if (an) { if (bn) a->cnt += b->cnt; return; }
    if (bn || (want_max ? b->b > a->b : b->b < a->b)) *a = *b;
    else if (b->b == a->b) a->cnt += b->cnt;
}

static inline __attribute__((always_inline)) ext_t ext_row(const float *p, int64_t r0, int64_t r1, int want_max) {
    ext_t e = {p[r0], r0, 1};
    for (int64_t r = r0 + 1; r < r1; r++) ext_step(&e, p[r], r, want_max);
    return e;
}

static inline __attribute__((always_inline)) void ext_cols(const float *q, int64_t I, int64_t r0, int64_t r1,
                                                           int64_t w, ext_t *e, int want_max) {
    for (int64_t k = 0; k < w; k++) { e[k].b = q[r0 * I + k]; e[k].idx = r0; e[k].cnt = 1; }
    for (int64_t r = r0 + 1; r < r1; r++) {
        const float *row = q + r * I;
        for (int64_t k = 0; k < w; k++) ext_step(&e[k], row[k], r, want_max);
    }
}

/* best[j], idx[j] (r index), cnt[j] (ties) for every output j; idx and cnt may be NULL; R >= 1 */
static int red_ext(const red3 *v, int want_max, float *best, int64_t *idx, int64_t *cnt) {
    int64_t O = v->O, R = v->R, I = v->I, M = O * I;
    if (M == 0) return VT_OK;
    int64_t nib = (I + IB - 1) / IB, units = O * nib, width = I < IB ? I : IB;
    int64_t S = r_chunks(units, R, width);
    ext_t *part = malloc(sizeof(ext_t) * (size_t)(units * S * width));
    if (!part) return vt_fail(VT_ENOMEM, "reduce: out of memory");
    const float *p = v->p;
    #pragma omp parallel for if (M * R > 32768) schedule(static)
    for (int64_t w = 0; w < units * S; w++) {
        int64_t u = w / S, s = w % S, o = u / nib, i0 = (u % nib) * IB;
        int64_t nw = I - i0 < IB ? I - i0 : IB, r0 = R * s / S, r1 = R * (s + 1) / S;
        ext_t *dst = part + w * width;
        if (I == 1) dst[0] = want_max ? ext_row(p + o * R, r0, r1, 1) : ext_row(p + o * R, r0, r1, 0);
        else if (want_max) ext_cols(p + o * R * I + i0, I, r0, r1, nw, dst, 1);
        else ext_cols(p + o * R * I + i0, I, r0, r1, nw, dst, 0);
    }
    #pragma omp parallel for if (M * S > 32768) schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t o = u / nib, i0 = (u % nib) * IB, nw = I - i0 < IB ? I - i0 : IB;
        for (int64_t k = 0; k < nw; k++) {
            ext_t e = part[u * S * width + k];
            for (int64_t s = 1; s < S; s++) ext_merge(&e, &part[(u * S + s) * width + k], want_max);
            int64_t j = o * I + i0 + k;
            best[j] = e.b;
            if (idx) idx[j] = e.idx;
            if (cnt) cnt[j] = e.cnt;
        }
    }
    free(part);
    return VT_OK;
}

/* ---- backward maps: a gradient of the input's shape from small keepdim-shaped tensors ------- */

enum { BW_BCAST, BW_DEV, BW_EXP, BW_EQ, BW_EQNAN };
typedef struct { int kind; float scale; } bwctx;

/* operands: out, then h (BW_BCAST) or x, a, h; a and h broadcast over the reduced dims */
static void bw_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const bwctx *k = vctx;
    float *o = (float *)p[0];
    int64_t so = s[0] / 4;
    if (k->kind == BW_BCAST) {
        const float *h = (const float *)p[1];
        int64_t sh = s[1] / 4;
        float sc = k->scale;
        for (int64_t i = 0; i < n; i++) o[i * so] = h[i * sh] * sc;
        return;
    }
    const float *x = (const float *)p[1], *a = (const float *)p[2], *h = (const float *)p[3];
    int64_t sx = s[1] / 4, sa = s[2] / 4, sh = s[3] / 4;
    switch (k->kind) {
    case BW_DEV: for (int64_t i = 0; i < n; i++) o[i * so] = (x[i * sx] - a[i * sa]) * h[i * sh]; break;
    case BW_EXP: for (int64_t i = 0; i < n; i++) o[i * so] = expf(x[i * sx] - a[i * sa]) * h[i * sh]; break;
    case BW_EQ: for (int64_t i = 0; i < n; i++) o[i * so] = h[i * sh] * (float)(x[i * sx] == a[i * sa]); break;
    case BW_EQNAN:
        for (int64_t i = 0; i < n; i++) {
            float xv = x[i * sx], av = a[i * sa];
            o[i * so] = h[i * sh] * (float)(av != av ? xv != xv : xv == av);
        }
        break;
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

/* sum of x over the dims in mask, scaled, with kept size-1 dims (keepdim layout) */
static vt_tensor *sum_keep(const vt_tensor *x, unsigned mask, double scale) {
    vt_tensor *out = keep_tensor(x, mask);
    if (!out) return NULL;
    int64_t M = vt_numel(out);
    if (M == 0) return out;
    float *o = vt_f32(out);
    if (vt_numel(x) == 0) { for (int64_t j = 0; j < M; j++) o[j] = (float)(0.0 * scale); return out; }
    red3 v;
    double *acc = malloc(sizeof(double) * (size_t)M);
    if (!acc) { vt_tensor_decref(out); return vt_fail_null(VT_ENOMEM, "sum: out of memory"); }
    int st = red3_plan(x, mask, &v);
    if (!st) {
        st = red_sum(&v, ACC_X, NULL, acc);
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
    vt_tensor *s = sum_keep(g, mask, 1.0);
    if (!s) return NULL;
    vt_tensor *r = vt_k_reshape(s, ndim, shape);
    vt_tensor_decref(s);
    return r;
}

static int sum_like_forward(vt_ctx *c, int mean) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(c, x, 0, &mask, &keepdim));
    int64_t count = reduced_count(x, mask);
    double scale = mean ? (count ? 1.0 / (double)count : NAN) : 1.0;
    return out1(c, finish_shape(sum_keep(x, mask, scale), x, mask, keepdim));
}

/* gradient of a sum: g broadcast back over the reduced dims (times 1/count for mean) */
static int sum_like_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int mean) {
    vt_tensor x = meta_tensor(&n->in_meta[0]);
    vt_ctx c = {.op = n->op, .args = &n->args};
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(&c, &x, 0, &mask, &keepdim));
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

/* Two passes in double: μ = Σx/n, then Σ(x−μ)²/max(0, n−c) (PyTorch's definition; n−c <= 0
 * gives inf or NaN as there). Saves x and μ (keepdim) and, for std, σ (keepdim). */
static int var_like_forward(vt_ctx *c, int is_std) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    VT_TRY(vt_arg_count(c, 2, 1));
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(c, x, 0, &mask, &keepdim));
    double corr = c->args->f[0], n = (double)reduced_count(x, mask), dof = n - corr > 0 ? n - corr : 0;
    vt_tensor *out = keep_tensor(x, mask), *mu = keep_tensor(x, mask);
    double *acc = NULL;
    int st = VT_OK;
    if (!out || !mu) goto fail;
    int64_t M = vt_numel(out);
    float *o = vt_f32(out), *m = vt_f32(mu);
    if (n == 0) {
        for (int64_t j = 0; j < M; j++) o[j] = m[j] = NAN;
    } else if (M) {
        red3 v;
        if (!(acc = malloc(sizeof(double) * (size_t)M * 2))) { vt_fail(VT_ENOMEM, "%s: out of memory", WHO(c)); goto fail; }
        double *mean = acc + M;
        if ((st = red3_plan(x, mask, &v))) goto fail;
        st = red_sum(&v, ACC_X, NULL, mean);
        for (int64_t j = 0; j < M && !st; j++) mean[j] /= n;
        if (!st) st = red_sum(&v, ACC_SQDEV, mean, acc);
        vt_tensor_decref(v.t);
        if (st) goto fail;
        for (int64_t j = 0; j < M; j++) {
            double var = acc[j] / dof;
            o[j] = (float)(is_std ? sqrt(var) : var);
            m[j] = (float)mean[j];
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
    VT_TRY(parse_dims(&c, &xm, 0, &mask, &keepdim));
    double dof = (double)reduced_count(&xm, mask) - n->args.f[0];
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

/* values over the dims; saves x, the values and the tie count (keepdim) for the backward */
static int extreme_forward(vt_ctx *c, int want_max, int all) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim = 0;
    if (all) mask = x->ndim ? (1u << x->ndim) - 1 : 0;
    else VT_TRY(parse_dims(c, x, 0, &mask, &keepdim));
    VT_TRY(check_nonempty(c, x, mask, all || c->args->i[1] == 0));
    vt_tensor *out = keep_tensor(x, mask), *cnt = keep_tensor(x, mask);
    int64_t *ci = NULL;
    red3 v = {0};
    if (!out || !cnt) goto fail;
    int64_t M = vt_numel(out);
    if (M) {
        if (!(ci = malloc(sizeof(int64_t) * (size_t)M))) { vt_fail(VT_ENOMEM, "%s: out of memory", WHO(c)); goto fail; }
        if (red3_plan(x, mask, &v)) goto fail;
        int st = red_ext(&v, want_max, vt_f32(out), NULL, ci);
        vt_tensor_decref(v.t);
        if (st) goto fail;
        float *cf = vt_f32(cnt), *of = vt_f32(out);
        /* amax counts x == value (PyTorch: no tie when the value is NaN); max() counts NaNs too */
        for (int64_t j = 0; j < M; j++) cf[j] = (float)(!all && of[j] != of[j] ? 0 : ci[j]);
        free(ci);
        ci = NULL;
    }
    if (vt_save(c, x) || vt_save(c, out) || vt_save(c, cnt)) goto fail;
    vt_tensor_decref(cnt);
    return out1(c, finish_shape(out, x, mask, keepdim));
fail:
    free(ci);
    if (out) vt_tensor_decref(out);
    if (cnt) vt_tensor_decref(cnt);
    return vt_last_code();
}

/* gin = (g / count) · [x ties the value]: the gradient shared evenly among ties */
static int extreme_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int all) {
    vt_tensor xm = meta_tensor(&n->in_meta[0]);
    unsigned mask = xm.ndim ? (1u << xm.ndim) - 1 : 0;
    if (!all) {
        vt_ctx c = {.op = n->op, .args = &n->args};
        int keepdim;
        VT_TRY(parse_dims(&c, &xm, 0, &mask, &keepdim));
    }
    vt_tensor *g = grad_keep(n, gout, &xm, mask);
    if (!g) return vt_last_code();
    vt_tensor *h = vt_clone(g);
    vt_tensor_decref(g);
    if (!h) return vt_last_code();
    float *hp = vt_f32(h);
    const float *cf = vt_f32(n->saved[2]);
    for (int64_t j = 0; j < vt_numel(h); j++) hp[j] /= cf[j];
    gin[0] = bw_map(vt_ops[n->op].name, all ? BW_EQNAN : BW_EQ, 1.0f, n->saved[0], n->saved[1], h);
    vt_tensor_decref(h);
    return gin[0] ? VT_OK : vt_last_code();
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
    VT_TRY(parse_dims(c, x, 0, mask, keepdim));
    if (c->args->i[1] > 1) return vt_fail(VT_EVALUE, "%s: expects a single dim, got %lld", WHO(c), (long long)c->args->i[1]);
    *dim = -1;
    for (int d = 0; d < x->ndim; d++) if (*mask >> d & 1) *dim = d;
    return VT_OK;
}

/* values (float) and int64 indices of the extreme along dim; saves the indices */
static int extreme_dim_forward(vt_ctx *c, int want_max) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, WHO(c), "input"));
    unsigned mask;
    int keepdim, dim = -1;
    VT_TRY(one_dim(c, x, &mask, &keepdim, &dim));
    if (c->args->i[1] != 1) return vt_fail(VT_EVALUE, "%s: expects exactly one dim", WHO(c));
    VT_TRY(check_nonempty(c, x, mask, 0));
    int64_t ks[VT_MAX_DIMS];
    int knd = reduced_shape(x, mask, 1, ks);
    vt_tensor *val = vt_empty(VT_FLOAT32, knd, ks), *idx = vt_empty(VT_INT64, knd, ks);
    if (!val || !idx) goto fail;
    if (vt_numel(val)) {
        red3 v;
        if (red3_plan(x, mask, &v)) goto fail;
        int st = red_ext(&v, want_max, vt_f32(val), vt_i64(idx), NULL);
        vt_tensor_decref(v.t);
        if (st) goto fail;
    }
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
    int all = c->args->i[1] == 0;
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
        red3 v;
        if (!(val = malloc(sizeof(float) * (size_t)M))) { vt_fail(VT_ENOMEM, "%s: out of memory", WHO(c)); goto fail; }
        if (red3_plan(x, mask, &v)) goto fail;
        int st = red_ext(&v, want_max, val, vt_i64(idx), NULL);
        vt_tensor_decref(v.t);
        if (st) goto fail;
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
    VT_TRY(parse_dims(c, x, 0, &mask, &keepdim));
    vt_tensor *out = keep_tensor(x, mask);
    double *acc = NULL;
    if (!out) return vt_last_code();
    int64_t M = vt_numel(out), R = reduced_count(x, mask);
    float *o = vt_f32(out);
    if (R == 0) {
        for (int64_t j = 0; j < M; j++) o[j] = -INFINITY;
    } else if (M) {
        red3 v;
        if (!(acc = malloc(sizeof(double) * (size_t)M * 2))) { vt_fail(VT_ENOMEM, "logsumexp: out of memory"); goto fail; }
        double *mx = acc + M;
        if (red3_plan(x, mask, &v)) goto fail;
        int st = red_ext(&v, 1, o, NULL, NULL);
        for (int64_t j = 0; j < M; j++) mx[j] = isinf(o[j]) ? 0.0 : (double)o[j];
        if (!st) st = red_sum(&v, ACC_EXP, mx, acc);
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
    VT_TRY(parse_dims(&c, &xm, 0, &mask, &keepdim));
    vt_tensor *g = grad_keep(n, gout, &xm, mask);
    if (!g) return vt_last_code();
    gin[0] = bw_map("logsumexp", BW_EXP, 1.0f, n->saved[0], n->saved[1], g);
    vt_tensor_decref(g);
    return gin[0] ? VT_OK : vt_last_code();
}
