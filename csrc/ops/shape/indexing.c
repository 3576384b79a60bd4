/* vitc ops, shape family: indexing (gather, index_select, index_put_, nonzero). Copies write
 * contiguous outputs with parallel strided loops; the scatter-add backwards partition their writes so
 * repeated indices accumulate without races and in a fixed order (bitwise reproducible for any thread
 * count). The views and plain copies of the family are in views.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../ops_util.h"

/* ---- index helpers ------------------------------------------------------------------------- */

/* every index in [lo, hi), else VT_EINDEX naming the first offender */
static int check_indices(const int64_t *p, int64_t n, int64_t lo, int64_t hi, const char *who, const char *where,
                         int64_t dim, int64_t size) {
    int bad = 0;
    #pragma omp parallel for if (n > 65536) reduction(| : bad) schedule(static)
    for (int64_t i = 0; i < n; i++) bad |= p[i] < lo || p[i] >= hi;
    if (!bad) return VT_OK;
    for (int64_t i = 0; i < n; i++)
        if (p[i] < lo || p[i] >= hi)
            return vt_fail(VT_EINDEX, "%s: index %lld is out of bounds for %s %lld with size %lld", who,
                           (long long)p[i], where, (long long)dim, (long long)size);
    return VT_OK;
}

/* n elements, big stride sb, small stride ss: mode 0 small = big, 1 big = small, 2 big += small */
#define RUN_COPY(T, D, SD, S, SS)                                                              \
    do {                                                                                       \
        T *d_ = (T *)(D);                                                                      \
        const T *s_ = (const T *)(S);                                                          \
        if ((SD) == 1 && (SS) == 1) memcpy(d_, s_, (size_t)n * sizeof(T));                     \
        else for (int64_t i = 0; i < n; i++) d_[i * (SD)] = s_[i * (SS)];                      \
    } while (0)

static inline void move_run(char *b, char *s, int64_t sb, int64_t ss, int64_t n, size_t es, int mode) {
    if (mode == 2) {
        float *B = (float *)b;
        const float *S = (const float *)s;
        if (sb == 1 && ss == 1) for (int64_t i = 0; i < n; i++) B[i] += S[i];
        else for (int64_t i = 0; i < n; i++) B[i * sb] += S[i * ss];
    } else if (mode == 0) {
        if (es == 4) RUN_COPY(float, s, ss, b, sb);
        else if (es == 8) RUN_COPY(int64_t, s, ss, b, sb);
        else RUN_COPY(uint8_t, s, ss, b, sb);
    } else {
        if (es == 4) RUN_COPY(float, b, sb, s, ss);
        else if (es == 8) RUN_COPY(int64_t, b, sb, s, ss);
        else RUN_COPY(uint8_t, b, sb, s, ss);
    }
}

/* A "big" tensor seen as (outer dims, a block of k dims addressed by one linear index, inner dims)
 * next to a "small" operand laid out (outer dims, n, inner dims): index_select's input and output,
 * index_add's gradient buffer and upstream gradient, index_put_'s destination and values.
 * Strides in elements; inner dims merged where both operands are contiguous across them. */
typedef struct {
    int no, ni;
    int64_t oshape[VT_MAX_DIMS], ob[VT_MAX_DIMS], os[VT_MAX_DIMS];
    int64_t ishape[VT_MAX_DIMS], ib[VT_MAX_DIMS], is[VT_MAX_DIMS];
    int64_t O, I, n, sn;
    char *big, *small;
    const int64_t *boff; /* n element offsets of the indexed block positions in big */
    size_t es;
} xgeom;

static void xgeom_init(xgeom *g, const vt_tensor *big, int p, int k, char *small, const int64_t *sst, int64_t n,
                       const int64_t *boff) {
    int nd = big->ndim;
    g->es = vt_dtype_size(big->dtype);
    g->big = (char *)big->storage->data + big->offset * (int64_t)g->es;
    g->small = small;
    g->boff = boff;
    g->n = n;
    g->no = p;
    g->O = 1;
    for (int d = 0; d < p; d++) {
        g->oshape[d] = big->shape[d];
        g->ob[d] = big->strides[d];
        g->os[d] = sst[d];
        g->O *= big->shape[d];
    }
    g->sn = sst[p];
    g->ni = 0;
    g->I = 1;
    for (int d = p + k, e = p + 1; d < nd; d++, e++) {
        int64_t s = big->shape[d];
        g->I *= s;
        if (s == 1) continue;
        int m = g->ni;
        if (m > 0 && g->ib[m - 1] == big->strides[d] * s && g->is[m - 1] == sst[e] * s) {
            g->ishape[m - 1] *= s;
            g->ib[m - 1] = big->strides[d];
            g->is[m - 1] = sst[e];
        } else {
            g->ishape[m] = s;
            g->ib[m] = big->strides[d];
            g->is[m] = sst[e];
            g->ni++;
        }
    }
}

/* offsets of outer index o in big and small */
static inline void xgeom_outer(const xgeom *g, int64_t o, int64_t *bo, int64_t *so) {
    *bo = *so = 0;
    for (int d = g->no - 1; d >= 0; d--) {
        int64_t c = o % g->oshape[d];
        o /= g->oshape[d];
        *bo += c * g->ob[d];
        *so += c * g->os[d];
    }
}

/* inner elements [lo, hi) of one row (a sub-range only when the inner dims merged into one) */
static void move_inner(const xgeom *g, char *bp, char *sp, int mode, int64_t lo, int64_t hi) {
    size_t es = g->es;
    if (g->ni <= 1) {
        int64_t sb = g->ni ? g->ib[0] : 1, ss = g->ni ? g->is[0] : 1;
        move_run(bp + lo * sb * (int64_t)es, sp + lo * ss * (int64_t)es, sb, ss, hi - lo, es, mode);
        return;
    }
    int last = g->ni - 1;
    int64_t len = g->ishape[last], rows = g->I / len;
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, ob = 0, os = 0;
        for (int d = last - 1; d >= 0; d--) {
            int64_t c = rem % g->ishape[d];
            rem /= g->ishape[d];
            ob += c * g->ib[d];
            os += c * g->is[d];
        }
        move_run(bp + ob * (int64_t)es, sp + os * (int64_t)es, g->ib[last], g->is[last], len, es, mode);
    }
}

/* mode 0 (select): rows (o, j) in parallel, any order. Modes 1 and 2 (put, add) may hit one big
 * row from several j: threads split (outer, inner chunk) and run j in order, so repeated indices
 * accumulate (or the last one wins) deterministically. */
static void xgeom_run(const xgeom *g, int mode) {
    int64_t O = g->O, n = g->n, I = g->I;
    if (O == 0 || n == 0 || I == 0) return;
    size_t es = g->es;
    int64_t work = O * n * I;
    if (mode == 0) {
        #pragma omp parallel if (work > 32768)
        {
            int64_t last_o = -1, bo = 0, so = 0;
            #pragma omp for schedule(static)
            for (int64_t r = 0; r < O * n; r++) {
                int64_t o = r / n, j = r % n;
                if (o != last_o) { xgeom_outer(g, o, &bo, &so); last_o = o; }
                move_inner(g, g->big + (bo + g->boff[j]) * (int64_t)es, g->small + (so + j * g->sn) * (int64_t)es, 0, 0, I);
            }
        }
        return;
    }
    /* few outer rows: the inner run is split too, so the threads share even a single outer row
     * (index_select's backward over dim 0 has O = 1: MixToken's (6272, 64) scatter ran on one
     * thread); chunks of whole 64-byte lines of floats where the run is short */
    int64_t chunk = I, nchunks = 1;
    if (g->ni <= 1 && O < 64 && work > 32768 && I >= 32) {
        chunk = I >= 2048 ? 512 : ((I + 3) / 4 + 15) & ~(int64_t)15;
        nchunks = (I + chunk - 1) / chunk;
    }
    #pragma omp parallel for if (work > 32768) schedule(static)
    for (int64_t t = 0; t < O * nchunks; t++) {
        int64_t o = t / nchunks, c = t % nchunks, bo, so;
        int64_t lo = c * chunk, hi = lo + chunk < I ? lo + chunk : I;
        xgeom_outer(g, o, &bo, &so);
        for (int64_t j = 0; j < n; j++)
            move_inner(g, g->big + (bo + g->boff[j]) * (int64_t)es, g->small + (so + j * g->sn) * (int64_t)es, mode, lo, hi);
    }
}

/* element offsets in t of linear indices idx[] over t's dims [p, p+k) (negatives wrapped) */
static int64_t *block_offsets(const vt_tensor *t, int p, int k, const int64_t *idx, int64_t n) {
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!off) return vt_fail_null(VT_ENOMEM, "out of memory for %lld index offsets", (long long)n);
    int64_t M = vt_shape_numel(k, t->shape + p);
    #pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t j = 0; j < n; j++) {
        int64_t v = idx[j] < 0 ? idx[j] + M : idx[j], o = 0;
        for (int d = p + k - 1; d >= p; d--) {
            o += (v % t->shape[d]) * t->strides[d];
            v /= t->shape[d];
        }
        off[j] = o;
    }
    return off;
}

/* the (dim, ndims, wrap) arguments of index_select / index_put_ (one layout) checked against t and the index */
VT_SAME_IARG(index_select, index_put_, dim);
VT_SAME_IARG(index_select, index_put_, ndims);
VT_SAME_IARG(index_select, index_put_, wrap);
static int index_args(const vt_ctx *c, const vt_tensor *t, const vt_tensor *idx, const char *who, int *p, int *k,
                      int *wrap) {
    if (!t) return vt_fail(VT_ETYPE, "%s: input is missing", who);
    VT_TRY(vt_require_dtype(idx, VT_INT64, who, "index"));
    if (idx->ndim > 1) return vt_fail(VT_ESHAPE, "%s: index must be 0-d or 1-d, got %d dimensions", who, idx->ndim);
    if (t->ndim == 0) return vt_fail(VT_ESHAPE, "%s: input must have at least one dimension", who);
    int64_t dim = c->args->i[IARG(index_select, dim)], nk = c->args->i[IARG(index_select, ndims)];
    VT_TRY(vt_normalize_dim(&dim, t->ndim, who));
    if (nk < 1 || dim + nk > t->ndim)
        return vt_fail(VT_EVALUE, "%s: %lld dims from dim %lld do not fit a %d-d input", who, (long long)nk,
                       (long long)dim, t->ndim);
    *p = (int)dim;
    *k = (int)nk;
    *wrap = c->args->i[IARG(index_select, wrap)] != 0;
    int64_t M = vt_shape_numel(*k, t->shape + *p);
    return check_indices(vt_i64(idx), vt_numel(idx), *wrap ? -M : 0, M, who, *k == 1 ? "dimension" : "the dims from",
                         dim, M);
}

/* shape of x with dims [p, p+k) replaced by one dim of n */
static int selected_shape(const vt_tensor *x, int p, int k, int64_t n, int64_t *shape) {
    int m = 0;
    for (int d = 0; d < p; d++) shape[m++] = x->shape[d];
    shape[m++] = n;
    for (int d = p + k; d < x->ndim; d++) shape[m++] = x->shape[d];
    return m;
}

/* ---- gather -------------------------------------------------------------------------------- */

/* fibers of the index along dim (all other coordinates fixed): a fiber reads/writes one fiber of
 * x, so the scatter-add of the backward never has two threads touching one element.
 * x: any strides (0-d handled as (1,)); index and out/g contiguous of the index's shape. */
static void gather_fibers(int nd, const int64_t *xst, char *xbase, const int64_t *ishape, const int64_t *idx,
                          char *obase, int dim, size_t es, int add) {
    int64_t ist[VT_MAX_DIMS];
    vt_contiguous_strides(nd, ishape, ist);
    int64_t L = ishape[dim], total = vt_shape_numel(nd, ishape);
    if (total == 0) return;
    int64_t F = total / L, step = ist[dim], xs = xst[dim];
    #pragma omp parallel for if (total > 32768) schedule(static)
    for (int64_t f = 0; f < F; f++) {
        int64_t rem = f, xo = 0, io = 0;
        for (int d = nd - 1; d >= 0; d--) {
            if (d == dim) continue;
            int64_t c = rem % ishape[d];
            rem /= ishape[d];
            xo += c * xst[d];
            io += c * ist[d];
        }
        const int64_t *ip = idx + io;
        if (add) {
            float *X = (float *)xbase + xo;
            const float *G = (const float *)obase + io;
            for (int64_t j = 0; j < L; j++) X[ip[j * step] * xs] += G[j * step];
        } else if (es == 4) {
            const float *X = (const float *)xbase + xo;
            float *O = (float *)obase + io;
            for (int64_t j = 0; j < L; j++) O[j * step] = X[ip[j * step] * xs];
        } else if (es == 8) {
            const int64_t *X = (const int64_t *)xbase + xo;
            int64_t *O = (int64_t *)obase + io;
            for (int64_t j = 0; j < L; j++) O[j * step] = X[ip[j * step] * xs];
        } else {
            const uint8_t *X = (const uint8_t *)xbase + xo;
            uint8_t *O = (uint8_t *)obase + io;
            for (int64_t j = 0; j < L; j++) O[j * step] = X[ip[j * step] * xs];
        }
    }
}

/* out = x[..., index[...], ...] along dim (torch.gather); index saved for the scatter-add backward */
int vt_gather_forward(vt_ctx *c) {
    const vt_tensor *x = c->in[0], *idx = c->in[1];
    if (!x) return vt_fail(VT_ETYPE, "gather: input is missing");
    VT_TRY(vt_require_dtype(idx, VT_INT64, "gather", "index"));
    char b1[128], b2[128];
    if (x->ndim != idx->ndim)
        return vt_fail(VT_ESHAPE, "gather: index of shape %s has %d dimensions but the input of shape %s has %d",
                       vt_shape_str(idx->ndim, idx->shape, b1, sizeof b1), idx->ndim,
                       vt_shape_str(x->ndim, x->shape, b2, sizeof b2), x->ndim);
    int64_t dim = c->args->i[IARG(gather, dim)];
    VT_TRY(vt_normalize_dim(&dim, x->ndim, "gather"));
    for (int d = 0; d < x->ndim; d++)
        if (d != dim && idx->shape[d] > x->shape[d])
            return vt_fail(VT_ESHAPE, "gather: index of shape %s is larger than the input of shape %s in dimension %d",
                           vt_shape_str(idx->ndim, idx->shape, b1, sizeof b1),
                           vt_shape_str(x->ndim, x->shape, b2, sizeof b2), d);
    int nd = x->ndim ? x->ndim : 1;
    int64_t one = 1, ishape[VT_MAX_DIMS], xst[VT_MAX_DIMS];
    memcpy(ishape, x->ndim ? idx->shape : &one, sizeof(int64_t) * (size_t)nd);
    memcpy(xst, x->ndim ? x->strides : &one, sizeof(int64_t) * (size_t)nd);
    int64_t size = x->ndim ? x->shape[dim] : 1;
    vt_tensor *ic = vt_contiguous((vt_tensor *)idx), *out = NULL;
    if (!ic) return vt_last_code();
    int st = check_indices(vt_i64(ic), vt_numel(ic), 0, size, "gather", "dimension", dim, size);
    if (!st && !(out = vt_empty(x->dtype, idx->ndim, idx->shape))) st = vt_last_code();
    if (!st) {
        size_t es = vt_dtype_size(x->dtype);
        gather_fibers(nd, xst, (char *)x->storage->data + x->offset * (int64_t)es, ishape, vt_i64(ic),
                      (char *)out->storage->data, (int)dim, es, 0);
        st = vt_save(c, ic);
    }
    vt_tensor_decref(ic);
    if (st) { vt_tensor_decref(out); return st; }
    return out1(c, out);
}
int vt_gather_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    const vt_tensor *ic = n->saved[0];
    int64_t dim = n->args.i[IARG(gather, dim)];
    VT_TRY(vt_normalize_dim(&dim, m->ndim, "gather"));
    vt_tensor *gx = vt_zeros(VT_FLOAT32, m->ndim, m->shape);
    if (!gx) return vt_last_code();
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) { vt_tensor_decref(gx); return vt_last_code(); }
    int nd = m->ndim ? m->ndim : 1;
    int64_t one = 1, ishape[VT_MAX_DIMS], xst[VT_MAX_DIMS];
    memcpy(ishape, m->ndim ? ic->shape : &one, sizeof(int64_t) * (size_t)nd);
    memcpy(xst, m->ndim ? gx->strides : &one, sizeof(int64_t) * (size_t)nd);
    gather_fibers(nd, xst, (char *)vt_f32(gx), ishape, vt_i64(ic), (char *)vt_f32(g), (int)dim, 4, 1);
    vt_tensor_decref(g);
    gin[0] = gx;
    return VT_OK;
}

/* ---- index_select / index_put_ ------------------------------------------------------------- */

/* out = x with dims [p, p+k) replaced by the n indexed positions (k = 1: torch.index_select;
 * k > 1 serves boolean masks and multi-dim advanced indexing without flattening x) */
int vt_index_select_forward(vt_ctx *c) {
    const vt_tensor *x = c->in[0], *idx = c->in[1];
    int p, k, wrap;
    VT_TRY(index_args(c, x, idx, "index_select", &p, &k, &wrap));
    vt_tensor *ic = vt_contiguous((vt_tensor *)idx);
    if (!ic) return vt_last_code();
    int64_t n = vt_numel(ic), shape[VT_MAX_DIMS];
    int nd = selected_shape(x, p, k, n, shape);
    vt_tensor *out = vt_empty(x->dtype, nd, shape);
    int64_t *boff = out ? block_offsets(x, p, k, vt_i64(ic), n) : NULL;
    int st = boff ? VT_OK : vt_last_code();
    if (!st) {
        xgeom g;
        xgeom_init(&g, x, p, k, (char *)out->storage->data, out->strides, n, boff);
        xgeom_run(&g, 0);
        st = vt_save(c, ic);
    }
    free(boff);
    vt_tensor_decref(ic);
    if (st) { vt_tensor_decref(out); return st; }
    return out1(c, out);
}
/* index_add of g into zeros: repeated indices accumulate */
int vt_index_select_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    const vt_tensor *ic = n->saved[0];
    int64_t dim = n->args.i[IARG(index_select, dim)];
    VT_TRY(vt_normalize_dim(&dim, m->ndim, "index_select"));
    int p = (int)dim, k = (int)n->args.i[IARG(index_select, ndims)];
    vt_tensor *gx = vt_zeros(VT_FLOAT32, m->ndim, m->shape);
    if (!gx) return vt_last_code();
    const vt_tensor *g = gout[0];
    int64_t cnt = vt_numel(ic);
    int64_t *boff = block_offsets(gx, p, k, vt_i64(ic), cnt);
    if (!boff) { vt_tensor_decref(gx); return vt_last_code(); }
    xgeom xg;
    xgeom_init(&xg, gx, p, k, (char *)vt_f32(g), g->strides, cnt, boff);
    xgeom_run(&xg, 2);
    free(boff);
    gin[0] = gx;
    return VT_OK;
}

/* dst[.., index, ..] = values in place (setitem with tensor/mask indices); values broadcast to the
 * selected shape; with repeated indices the last value wins. Not differentiable: refused while a
 * graph could see it, like every in-place op. */
int vt_index_put_forward(vt_ctx *c) {
    vt_tensor *dst = c->in[0];
    const vt_tensor *idx = c->in[1], *val = c->in[2];
    int p, k, wrap;
    VT_TRY(index_args(c, dst, idx, "index_put_", &p, &k, &wrap));
    if (!val) return vt_fail(VT_ETYPE, "index_put_: values are missing");
    if (vt_grad_enabled() && (dst->requires_grad || val->requires_grad))
        return vt_fail(VT_ERUNTIME, "index_put_: a tensor that requires grad is being used in an in-place operation "
                       "(wrap it in vitc.no_grad())");
    if (val->dtype != dst->dtype)
        return vt_fail(VT_ETYPE, "index_put_: values are %s but the destination is %s", vt_dtype_name(val->dtype),
                       vt_dtype_name(dst->dtype));
    for (int d = 0; d < dst->ndim; d++)
        if (dst->strides[d] == 0 && dst->shape[d] > 1)
            return vt_fail(VT_ERUNTIME, "index_put_: the destination has several elements in one memory location "
                           "(an expanded tensor); clone() it first");
    vt_tensor *ic = vt_contiguous((vt_tensor *)idx);
    if (!ic) return vt_last_code();
    int64_t n = vt_numel(ic), shape[VT_MAX_DIMS], bshape[VT_MAX_DIMS], vst[VT_MAX_DIMS];
    int nd = selected_shape(dst, p, k, n, shape), bnd, st = VT_OK;
    if (vt_broadcast_shapes(nd, shape, val->ndim, val->shape, &bnd, bshape, "index_put_")) st = vt_last_code();
    else if (bnd != nd || memcmp(bshape, shape, sizeof(int64_t) * (size_t)nd)) {
        char b1[128], b2[128];
        st = vt_fail(VT_ESHAPE, "index_put_: values of shape %s do not broadcast to the indexed shape %s",
                     vt_shape_str(val->ndim, val->shape, b1, sizeof b1), vt_shape_str(nd, shape, b2, sizeof b2));
    }
    int64_t *boff = st ? NULL : block_offsets(dst, p, k, vt_i64(ic), n);
    if (!st && !boff) st = vt_last_code();
    if (!st) {
        vt_broadcast_strides(val, nd, shape, vst);
        xgeom g;
        size_t es = vt_dtype_size(val->dtype);
        xgeom_init(&g, dst, p, k, (char *)val->storage->data + val->offset * (int64_t)es, vst, n, boff);
        xgeom_run(&g, 1);
    }
    free(boff);
    vt_tensor_decref(ic);
    if (st) return st;
    vt_tensor_incref(dst);
    vt_mark_modified(dst);
    return out1(c, dst);
}

/* ---- nonzero ------------------------------------------------------------------------------- */

/* positions of true elements in row-major order: per-block counts, a prefix sum, then each block
 * writes its own range (fixed blocks, so the result does not depend on the thread count) */
int vt_nonzero_forward(vt_ctx *c) {
    VT_TRY(vt_require_dtype(c->in[0], VT_BOOL, "nonzero", "mask"));
    int flat = c->args->i[IARG(nonzero, flat)] != 0;
    vt_tensor *m = vt_contiguous(c->in[0]);
    if (!m) return vt_last_code();
    const uint8_t *mp = vt_u8(m);
    int64_t N = vt_numel(m), B = 65536, nb = (N + B - 1) / B;
    int64_t *cnt = malloc(sizeof(int64_t) * (size_t)(nb + 1));
    if (!cnt) { vt_tensor_decref(m); return vt_fail(VT_ENOMEM, "nonzero: out of memory"); }
    #pragma omp parallel for if (N > 2 * B) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t s = 0, hi = (b + 1) * B < N ? (b + 1) * B : N;
        for (int64_t i = b * B; i < hi; i++) s += mp[i] != 0;
        cnt[b + 1] = s;
    }
    cnt[0] = 0;
    for (int64_t b = 0; b < nb; b++) cnt[b + 1] += cnt[b];
    int nd = m->ndim;
    int64_t shape[2] = {cnt[nb], nd};
    vt_tensor *out = vt_empty(VT_INT64, flat ? 1 : 2, shape);
    if (out) {
        int64_t *o = vt_i64(out);
        #pragma omp parallel for if (N > 2 * B) schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t w = cnt[b], hi = (b + 1) * B < N ? (b + 1) * B : N;
            for (int64_t i = b * B; i < hi; i++) {
                if (!mp[i]) continue;
                if (flat) { o[w++] = i; continue; }
                int64_t rem = i;
                for (int d = nd - 1; d >= 0; d--) {
                    o[w * nd + d] = rem % m->shape[d];
                    rem /= m->shape[d];
                }
                w++;
            }
        }
    }
    free(cnt);
    vt_tensor_decref(m);
    return out1(c, out);
}
