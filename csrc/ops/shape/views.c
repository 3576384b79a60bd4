/* vitc ops, shape family: views and copies. Views (reshape, permute, expand, slice/select, split)
 * share storage (core/tensor.h rule 1); their backward maps the gradient back to the input's geometry.
 * Copies (contiguous, cat/stack, flip) write contiguous outputs with parallel strided loops. The
 * indexing ops of the family (gather, index_select, index_put_, nonzero) are in indexing.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../ops_util.h"

/* ---- reshape ------------------------------------------------------------------------------- */

int vt_reshape_forward(vt_ctx *c) {
    int nd = VT_LIST_LEN(c->args, reshape, shape);
    if (nd > VT_MAX_DIMS) return vt_fail(VT_ESHAPE, "reshape: %d dimensions, at most %d supported", nd, VT_MAX_DIMS);
    return out1(c, vt_k_reshape(c->in[0], nd, c->args->i + IARG(reshape, shape)));
}
int vt_reshape_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    gin[0] = vt_k_reshape(gout[0], n->in_meta[0].ndim, n->in_meta[0].shape);
    return gin[0] ? VT_OK : vt_last_code();
}

/* ---- permute ------------------------------------------------------------------------------- */

int vt_permute_forward(vt_ctx *c) {
    int nd = VT_LIST_LEN(c->args, permute, dims);
    if (nd != c->in[0]->ndim) return vt_fail(VT_ESHAPE, "permute: %d dims given for a %d-d tensor", nd, c->in[0]->ndim);
    return out1(c, vt_k_permute(c->in[0], c->args->i + IARG(permute, dims)));
}
int vt_permute_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    int64_t inv[VT_MAX_DIMS];
    const int64_t *dims = n->args.i + IARG(permute, dims);
    int nd = VT_LIST_LEN(&n->args, permute, dims);
    for (int d = 0; d < nd; d++) {
        int64_t p = dims[d];
        if (p < 0) p += nd;
        inv[p] = d;
    }
    gin[0] = vt_k_permute(gout[0], inv);
    return gin[0] ? VT_OK : vt_last_code();
}

/* ---- contiguous ---------------------------------------------------------------------------- */

/* always a new tensor struct (an alias when already contiguous), so the result can carry its own
 * grad_fn */
int vt_contiguous_forward(vt_ctx *c) {
    return out1(c, vt_is_contiguous(c->in[0]) ? vt_alias(c->in[0]) : vt_clone(c->in[0]));
}
int vt_contiguous_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    (void)n;
    vt_tensor_incref(gout[0]);
    gin[0] = gout[0];
    return VT_OK;
}

/* ---- strided copies ------------------------------------------------------------------------- */

typedef struct { size_t es; } copyctx;

/* one row of dst = src; strides in bytes, any sign (flip walks backwards) */
static void copy_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    size_t es = ((const copyctx *)vctx)->es;
    if (s[0] == (int64_t)es && s[1] == (int64_t)es) { memcpy(p[0], p[1], (size_t)n * es); return; }
    if (es == 4) {
        float *d = (float *)p[0]; const float *x = (const float *)p[1];
        int64_t sd = s[0] / 4, sx = s[1] / 4;
        for (int64_t i = 0; i < n; i++) d[i * sd] = x[i * sx];
    } else if (es == 8) {
        int64_t *d = (int64_t *)p[0]; const int64_t *x = (const int64_t *)p[1];
        int64_t sd = s[0] / 8, sx = s[1] / 8;
        for (int64_t i = 0; i < n; i++) d[i * sd] = x[i * sx];
    } else if (es == 2) { /* bfloat16 */
        uint16_t *d = (uint16_t *)p[0]; const uint16_t *x = (const uint16_t *)p[1];
        int64_t sd = s[0] / 2, sx = s[1] / 2;
        for (int64_t i = 0; i < n; i++) d[i * sd] = x[i * sx];
    } else {
        uint8_t *d = (uint8_t *)p[0]; const uint8_t *x = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) d[i * s[0]] = x[i * s[1]];
    }
}

/* dst (a view) = the elements at src with element strides src_st over dst's shape; parallel */
static void copy_geom(vt_tensor *dst, const char *src, const int64_t *src_st) {
    size_t es = vt_dtype_size(dst->dtype);
    int nd = dst->ndim;
    char *base[2] = {(char *)dst->storage->data + dst->offset * (int64_t)es, (char *)src};
    int64_t st[VT_MAX_OPERANDS][VT_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        st[0][d] = dst->strides[d] * (int64_t)es;
        st[1][d] = src_st[d] * (int64_t)es;
    }
    copyctx k = {es};
    vt_iter(nd, dst->shape, 2, base, st, copy_row, &k);
}

/* dst = src for views of one shape and dtype (src may be broadcast, stride 0) */
static void copy_view(vt_tensor *dst, const vt_tensor *src) {
    copy_geom(dst, (const char *)src->storage->data + src->offset * (int64_t)vt_dtype_size(src->dtype), src->strides);
}

/* a view of t's storage: t's geometry with dim `dim` narrowed to [start, start+len) (drop: removed) */
static vt_tensor *narrow_view(const vt_tensor *t, int dim, int64_t start, int64_t len, int drop) {
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    int m = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (d == dim && drop) continue;
        shape[m] = d == dim ? len : t->shape[d];
        strides[m++] = t->strides[d];
    }
    int64_t off = t->offset + (len > 0 || drop ? start * t->strides[dim] : 0);
    return vt_view_of(t, m, shape, strides, off);
}

/* ---- expand -------------------------------------------------------------------------------- */

/* view of x broadcast to `shape` (stride 0 on new and size-1 dims); backward sums those dims away */
int vt_expand_forward(vt_ctx *c) {
    const vt_tensor *x = c->in[0];
    const int64_t *target = c->args->i + IARG(expand, shape);
    int nt = VT_LIST_LEN(c->args, expand, shape), lead = nt - x->ndim;
    char b1[128], b2[128];
    if (nt > VT_MAX_DIMS) return vt_fail(VT_ESHAPE, "expand: %d dimensions, at most %d supported", nt, VT_MAX_DIMS);
    if (lead < 0)
        return vt_fail(VT_ESHAPE, "expand: the number of sizes provided (%d) must be at least the tensor's number of "
                       "dimensions (%d)", nt, x->ndim);
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    for (int d = 0; d < nt; d++) {
        int64_t s = target[d];
        if (d < lead) {
            if (s < 0) return vt_fail(VT_EVALUE, "expand: size %lld is not allowed in a new leading dimension %d", (long long)s, d);
            shape[d] = s;
            strides[d] = 0;
            continue;
        }
        int64_t xs = x->shape[d - lead];
        if (s == -1) s = xs;
        if (s == xs) { shape[d] = s; strides[d] = x->strides[d - lead]; continue; }
        if (xs != 1 || s < 0)
            return vt_fail(VT_ESHAPE, "expand: the size %lld of dimension %d must match the target size %lld unless it "
                           "is 1 (input %s, target %s)", (long long)xs, d - lead, (long long)s,
                           vt_shape_str(x->ndim, x->shape, b1, sizeof b1), vt_shape_str(nt, target, b2, sizeof b2));
        shape[d] = s;
        strides[d] = 0;
    }
    return out1(c, vt_view_of(x, nt, shape, strides, x->offset));
}
int vt_expand_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    gin[0] = vt_k_sum_to(gout[0], n->in_meta[0].ndim, n->in_meta[0].shape);
    return gin[0] ? VT_OK : vt_last_code();
}

/* ---- slice / select ------------------------------------------------------------------------ */

/* geometry of the SLICE args a[] (start, len, step per dim; step 0 = select) applied to a tensor
 * of (nd, shape, strides): out ndim, shape, strides and the element offset it adds */
static int slice_geometry(int nd, const int64_t *shape, const int64_t *strides, const int64_t *a, int *ond,
                          int64_t *oshape, int64_t *ostrides, int64_t *off) {
    int m = 0;
    *off = 0;
    for (int d = 0; d < nd; d++) {
        int64_t start = a[3 * d], len = a[3 * d + 1], step = a[3 * d + 2];
        if (step == 0) {
            if (start < 0 || start >= shape[d])
                return vt_fail(VT_EINDEX, "index %lld is out of bounds for dimension %d with size %lld",
                               (long long)start, d, (long long)shape[d]);
            *off += start * strides[d];
            continue;
        }
        if (step < 0) return vt_fail(VT_EVALUE, "slice: step must be positive, got %lld", (long long)step);
        if (len < 0 || start < 0 || start > shape[d] ||
            (len > 0 && (start >= shape[d] || (len - 1) > (shape[d] - 1 - start) / step)))
            return vt_fail(VT_EINDEX, "slice: %lld elements from %lld in steps of %lld do not fit dimension %d of size %lld",
                           (long long)len, (long long)start, (long long)step, d, (long long)shape[d]);
        if (len > 0) *off += start * strides[d];
        oshape[m] = len;
        ostrides[m++] = strides[d] * step;
    }
    *ond = m;
    return VT_OK;
}

int vt_slice_forward(vt_ctx *c) {
    const vt_tensor *x = c->in[0];
    int nr = VT_LIST_LEN(c->args, slice, ranges);
    if (nr != 3 * x->ndim)
        return vt_fail(VT_EVALUE, "slice: expected 3 integers per dimension (%d), got %d", 3 * x->ndim, nr);
    int nd;
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS], off;
    VT_TRY(slice_geometry(x->ndim, x->shape, x->strides, c->args->i + IARG(slice, ranges), &nd, shape, strides, &off));
    return out1(c, vt_view_of(x, nd, shape, strides, x->offset + off));
}
/* the gradient lands in the same window of a zero tensor of the input's shape; a slice never maps
 * two outputs to one input element, so a copy (not an add) is exact */
int vt_slice_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    vt_tensor *z = vt_zeros(VT_FLOAT32, m->ndim, m->shape);
    if (!z) return vt_last_code();
    int nd;
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS], off;
    vt_tensor *v = NULL;
    if (slice_geometry(z->ndim, z->shape, z->strides, n->args.i + IARG(slice, ranges), &nd, shape, strides, &off) ||
        !(v = vt_view_of(z, nd, shape, strides, off))) {
        vt_tensor_decref(z);
        return vt_last_code();
    }
    copy_view(v, gout[0]);
    vt_tensor_decref(v);
    gin[0] = z;
    return VT_OK;
}

/* ---- split / unbind ------------------------------------------------------------------------ */

/* 1..3 views along dim in one node, so the backward writes one gradient buffer instead of one
 * zero-padded buffer per piece (qkv splits); more pieces go through SLICE from Python */
static int split_args(const vt_args *a, int ndim, int64_t *dim, int *drop, int *np) {
    *np = VT_LIST_LEN(a, split, sizes);
    if (*np < 1 || *np > VT_MAX_OUT) return vt_fail(VT_EVALUE, "split: expected 1..%d sizes, got %d", VT_MAX_OUT, *np);
    if (ndim == 0) return vt_fail(VT_ESHAPE, "split: cannot split a 0-d tensor");
    *dim = a->i[IARG(split, dim)];
    VT_TRY(vt_normalize_dim(dim, ndim, "split"));
    *drop = a->i[IARG(split, drop)] != 0;
    return VT_OK;
}

int vt_split_forward(vt_ctx *c) {
    const vt_tensor *x = c->in[0];
    int64_t dim = 0;
    int drop = 0, np = 0;
    VT_TRY(split_args(c->args, x->ndim, &dim, &drop, &np));
    int64_t total = 0;
    for (int k = 0; k < np; k++) {
        int64_t s = c->args->i[IARG(split, sizes) + k];
        if (s < 0 || (drop && s != 1))
            return vt_fail(VT_EVALUE, "split: piece %d has invalid size %lld", k, (long long)s);
        total += s;
    }
    if (total != x->shape[dim])
        return vt_fail(VT_ESHAPE, "split: piece sizes sum to %lld but dimension %lld has size %lld", (long long)total,
                       (long long)dim, (long long)x->shape[dim]);
    int64_t pos = 0;
    for (int k = 0; k < np; k++) {
        int64_t s = c->args->i[IARG(split, sizes) + k];
        if (!(c->out[k] = narrow_view(x, (int)dim, pos, s, drop))) return vt_last_code();
        c->nout = k + 1;
        pos += s;
    }
    return VT_OK;
}
int vt_split_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    int64_t dim = n->args.i[IARG(split, dim)];
    int drop = n->args.i[IARG(split, drop)] != 0, np = VT_LIST_LEN(&n->args, split, sizes), missing = 0;
    vt_normalize_dim(&dim, m->ndim, "split");
    for (int k = 0; k < np; k++) missing |= !gout[k];
    vt_tensor *g = missing ? vt_zeros(VT_FLOAT32, m->ndim, m->shape) : vt_empty(VT_FLOAT32, m->ndim, m->shape);
    if (!g) return vt_last_code();
    int64_t pos = 0;
    for (int k = 0; k < np; k++) {
        int64_t s = n->args.i[IARG(split, sizes) + k];
        if (gout[k]) {
            vt_tensor *v = narrow_view(g, (int)dim, pos, s, drop);
            if (!v) { vt_tensor_decref(g); return vt_last_code(); }
            copy_view(v, gout[k]);
            vt_tensor_decref(v);
        }
        pos += s;
    }
    gin[0] = g;
    return VT_OK;
}

/* ---- cat / stack --------------------------------------------------------------------------- */

/* PyTorch's legacy rule: cat skips 1-d empty tensors whatever the other shapes */
static int cat_skipped(int ndim, const int64_t *shape) { return ndim == 1 && shape[0] == 0; }

/* inputs of one dtype; cat: same shape except along dim; stack: same shape, a new dim. The
 * output is contiguous; each input is one strided copy into its window. */
int vt_cat_forward(vt_ctx *c) {
    int nin = c->nin, stack = c->args->i[IARG(cat, stack)] != 0;
    const char *who = stack ? "stack" : "cat";
    char b1[128], b2[128];
    if (nin < 1) return vt_fail(VT_EVALUE, "%s: expected a non-empty list of tensors", who);
    for (int i = 0; i < nin; i++) {
        if (!c->in[i]) return vt_fail(VT_ETYPE, "%s: tensor %d is missing", who, i);
        if (c->in[i]->dtype != c->in[0]->dtype)
            return vt_fail(VT_ETYPE, "%s: tensor 0 is %s but tensor %d is %s", who, vt_dtype_name(c->in[0]->dtype), i,
                           vt_dtype_name(c->in[i]->dtype));
    }
    int ref = 0;
    if (!stack) {
        while (ref < nin && cat_skipped(c->in[ref]->ndim, c->in[ref]->shape)) ref++;
        if (ref == nin) return out1(c, vt_empty(c->in[0]->dtype, 1, (int64_t[]){0}));
        if (c->in[ref]->ndim == 0) return vt_fail(VT_ESHAPE, "cat: zero-dimensional tensor %d cannot be concatenated", ref);
    }
    const vt_tensor *r = c->in[ref];
    int nd = r->ndim + stack;
    int64_t dim = c->args->i[IARG(cat, dim)];
    if (nd > VT_MAX_DIMS) return vt_fail(VT_ESHAPE, "stack: %d dimensions, at most %d supported", nd, VT_MAX_DIMS);
    VT_TRY(vt_normalize_dim(&dim, nd, who));
    int64_t total = 0;
    for (int i = 0; i < nin; i++) {
        const vt_tensor *t = c->in[i];
        if (!stack && cat_skipped(t->ndim, t->shape)) continue;
        int ok = t->ndim == r->ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == r->shape[d] || (!stack && d == dim);
        if (!ok && stack)
            return vt_fail(VT_ESHAPE, "stack: all tensors must have the same shape: tensor 0 has shape %s, tensor %d "
                           "has shape %s", vt_shape_str(r->ndim, r->shape, b1, sizeof b1), i,
                           vt_shape_str(t->ndim, t->shape, b2, sizeof b2));
        if (!ok)
            return vt_fail(VT_ESHAPE, "cat: shapes must match except in dimension %lld: tensor %d has shape %s, tensor "
                           "%d has shape %s", (long long)dim, ref, vt_shape_str(r->ndim, r->shape, b1, sizeof b1), i,
                           vt_shape_str(t->ndim, t->shape, b2, sizeof b2));
        total += stack ? 1 : t->shape[dim];
    }
    int64_t shape[VT_MAX_DIMS];
    for (int d = 0, e = 0; d < nd; d++) shape[d] = stack && d == dim ? total : r->shape[e++];
    shape[dim] = total;
    vt_tensor *out = vt_empty(r->dtype, nd, shape);
    if (!out) return vt_last_code();
    size_t es = vt_dtype_size(r->dtype);
    int64_t pos = 0;
    for (int i = 0; i < nin; i++) {
        const vt_tensor *t = c->in[i];
        if (!stack && cat_skipped(t->ndim, t->shape)) continue;
        int64_t len = stack ? 1 : t->shape[dim];
        vt_tensor *win = narrow_view(out, (int)dim, pos, len, 0);
        if (!win) { vt_tensor_decref(out); return vt_last_code(); }
        int64_t st[VT_MAX_DIMS]; /* t's strides in the window's dims (stack: a size-1 dim) */
        for (int d = 0, e = 0; d < nd; d++) st[d] = stack && d == dim ? 0 : t->strides[e++];
        copy_geom(win, (const char *)t->storage->data + t->offset * (int64_t)es, st);
        vt_tensor_decref(win);
        pos += len;
    }
    return out1(c, out);
}
/* each input's gradient is its window of g (a view, no copy); skipped or empty inputs get zeros */
int vt_cat_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    int stack = n->args.i[IARG(cat, stack)] != 0;
    const vt_tensor *g = gout[0];
    int64_t dim = n->args.i[IARG(cat, dim)], pos = 0;
    for (int i = 0; i < n->nin; i++) {
        const vt_meta *m = &n->in_meta[i];
        int64_t numel = vt_shape_numel(m->ndim, m->shape);
        if (numel == 0) {
            if (wants(n, i) && !(gin[i] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
            if (stack) pos++;
            continue;
        }
        VT_TRY(vt_normalize_dim(&dim, g->ndim, "cat"));
        int64_t len = stack ? 1 : m->shape[dim];
        if (wants(n, i) && !(gin[i] = narrow_view(g, (int)dim, pos, len, stack))) return vt_last_code();
        pos += len;
    }
    return VT_OK;
}

/* ---- flip ---------------------------------------------------------------------------------- */

/* a copy read backwards: the source starts at the last element of each flipped dim and walks
 * with a negated stride */
static vt_tensor *flip_copy(const vt_tensor *x, unsigned mask) {
    vt_tensor *out = vt_empty(x->dtype, x->ndim, x->shape);
    if (!out || vt_numel(x) == 0) return out;
    int64_t st[VT_MAX_DIMS], off = x->offset;
    for (int d = 0; d < x->ndim; d++) {
        st[d] = mask >> d & 1 ? -x->strides[d] : x->strides[d];
        if (mask >> d & 1) off += (x->shape[d] - 1) * x->strides[d];
    }
    copy_geom(out, (const char *)x->storage->data + off * (int64_t)vt_dtype_size(x->dtype), st);
    return out;
}

static int flip_mask(const vt_args *a, int ndim, unsigned *mask) {
    *mask = 0;
    for (int k = 0; k < VT_LIST_LEN(a, flip, dims); k++) {
        int64_t d = a->i[IARG(flip, dims) + k];
        VT_TRY(vt_normalize_dim(&d, ndim, "flip"));
        if (*mask >> d & 1) return vt_fail(VT_EVALUE, "flip: dim %lld appears more than once", (long long)d);
        *mask |= 1u << d;
    }
    if (ndim == 0) *mask = 0;
    return VT_OK;
}

int vt_flip_forward(vt_ctx *c) {
    unsigned mask;
    VT_TRY(flip_mask(c->args, c->in[0]->ndim, &mask));
    return out1(c, flip_copy(c->in[0], mask));
}
int vt_flip_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    unsigned mask;
    VT_TRY(flip_mask(&n->args, n->in_meta[0].ndim, &mask));
    gin[0] = flip_copy(gout[0], mask);
    return gin[0] ? VT_OK : vt_last_code();
}
