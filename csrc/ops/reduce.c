/* vitc ops: reductions over dims (sum, mean, ...). Forward and backward side by side.
 * Args of dim reductions: i[0] = keepdim, i[1] = number of dims (0 = all), i[2..] = the dims.
 * Sums accumulate in double per output element (rows) or in float per column (column sums), so a
 * reduction over 1e4+ elements stays within 1e-5 relative of PyTorch's pairwise sums. */
#include <math.h>
#include <string.h>
#include "ops_util.h"

/* parse i[0..] into a dim bitmask over x's dims */
static int parse_dims(const vt_ctx *c, const vt_tensor *x, int first, unsigned *mask, int *keepdim) {
    const vt_args *a = c->args;
    if (a->ni < first + 2) return vt_fail(VT_EVALUE, "%s: missing dim arguments", vt_ops[c->op].name);
    *keepdim = (int)a->i[first];
    int64_t nd = a->i[first + 1];
    if (nd < 0 || first + 2 + nd > a->ni) return vt_fail(VT_EVALUE, "%s: bad dim list", vt_ops[c->op].name);
    if (nd == 0) { *mask = x->ndim ? (1u << x->ndim) - 1 : 0; return VT_OK; }
    *mask = 0;
    for (int64_t k = 0; k < nd; k++) {
        int64_t d = a->i[first + 2 + k];
        VT_TRY(vt_normalize_dim(&d, x->ndim, vt_ops[c->op].name));
        if (x->ndim == 0) continue;
        if (*mask >> d & 1) return vt_fail(VT_EVALUE, "%s: dim %lld appears more than once", vt_ops[c->op].name, (long long)d);
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

/* o[j] += row[j] for j in [0, n): the column-sum inner loop */
VT_SIMD_CLONES static void add_row(float *o, const float *row, int64_t n) {
    for (int64_t j = 0; j < n; j++) o[j] += row[j];
}

/* Σ row[0..n) in double: 4 independent accumulators so the loop vectorises */
VT_SIMD_CLONES static double row_sum(const float *row, int64_t n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) { a0 += row[r]; a1 += row[r + 1]; a2 += row[r + 2]; a3 += row[r + 3]; }
    for (; r < n; r++) a0 += row[r];
    return (a0 + a1) + (a2 + a3);
}

/* sum of x over the dims in mask, shaped with kept size-1 dims (keepdim layout) */
static vt_tensor *sum_keep(const vt_tensor *x, unsigned mask) {
    int nd = x->ndim;
    int64_t oshape[VT_MAX_DIMS];
    reduced_shape(x, mask, 1, oshape);
    vt_tensor *out = vt_zeros(VT_FLOAT32, nd, oshape);
    if (!out || vt_numel(x) == 0) return out;
    /* bring reduced dims last: perm = kept dims then reduced dims */
    int64_t perm[VT_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < nd; d++) if (!(mask >> d & 1)) perm[k++] = d;
    int nkeep = k;
    for (int d = 0; d < nd; d++) if (mask >> d & 1) perm[k++] = d;
    int64_t M = vt_numel(out), R = vt_numel(x) / (M ? M : 1);
    float *o = vt_f32(out);
    /* prefix case: x contiguous and the reduced dims are the leading ones -> column sums */
    int prefix = vt_is_contiguous(x) && M >= 16; /* narrow outputs sum faster as rows */
    for (int d = 0; d < nd && prefix; d++) prefix = (d < nd - nkeep) == (int)(mask >> d & 1);
    if (prefix) {
        const float *p = vt_f32(x);
        int64_t nblk = (M + 255) / 256;
        #pragma omp parallel for if (nblk > 1 && R * M > 65536) schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t j0 = b * 256, j1 = j0 + 256 < M ? j0 + 256 : M;
            for (int64_t r = 0; r < R; r++) add_row(o + j0, p + r * M + j0, j1 - j0);
        }
        return out;
    }
    vt_tensor *pv = vt_k_permute(x, perm);
    if (!pv) { vt_tensor_decref(out); return NULL; }
    vt_tensor *pc = vt_contiguous(pv);
    vt_tensor_decref(pv);
    if (!pc) { vt_tensor_decref(out); return NULL; }
    const float *p = vt_f32(pc);
    /* few long rows: split each row into a fixed number of chunks (not per thread, so the result
     * does not depend on the thread count), sum chunks in parallel, add partials in order */
    enum { NCHUNK = 64 };
    if (M < 16 && R >= 65536) {
        double part[16][NCHUNK];
        int64_t len = (R + NCHUNK - 1) / NCHUNK;
        #pragma omp parallel for collapse(2) schedule(static)
        for (int64_t j = 0; j < M; j++)
            for (int c = 0; c < NCHUNK; c++) {
                int64_t r0 = c * len, r1 = r0 + len < R ? r0 + len : R;
                part[j][c] = r0 < r1 ? row_sum(p + j * R + r0, r1 - r0) : 0.0;
            }
        for (int64_t j = 0; j < M; j++) {
            double s = 0;
            for (int c = 0; c < NCHUNK; c++) s += part[j][c];
            o[j] = (float)s;
        }
    } else {
        #pragma omp parallel for if (R * M > 65536) schedule(static)
        for (int64_t j = 0; j < M; j++) o[j] = (float)row_sum(p + j * R, R);
    }
    vt_tensor_decref(pc);
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
    vt_tensor *s = sum_keep(g, mask);
    if (!s) return NULL;
    vt_tensor *r = vt_k_reshape(s, ndim, shape);
    vt_tensor_decref(s);
    return r;
}

/* ---- sum / mean ---------------------------------------------------------------------------- */

static int sum_like_forward(vt_ctx *c, int mean) {
    vt_tensor *x = c->in[0];
    VT_TRY(vt_require_f32(x, vt_ops[c->op].name, "input"));
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(c, x, 0, &mask, &keepdim));
    vt_tensor *s = sum_keep(x, mask);
    if (!s) return vt_last_code();
    int64_t shape[VT_MAX_DIMS], count = 1;
    for (int d = 0; d < x->ndim; d++) if (mask >> d & 1) count *= x->shape[d];
    int nd = reduced_shape(x, mask, keepdim, shape);
    vt_tensor *r = vt_k_reshape(s, nd, shape);
    vt_tensor_decref(s);
    if (r && mean) {
        vt_tensor *m = vt_k_scale(r, count ? 1.0f / (float)count : NAN);
        vt_tensor_decref(r);
        r = m;
    }
    if (!r) return vt_last_code();
    c->out[0] = r;
    c->nout = 1;
    return VT_OK;
}

/* gradient of a sum: g broadcast back over the reduced dims (times 1/count for mean) */
static int sum_like_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int mean) {
    const vt_meta *im = &n->in_meta[0];
    vt_tensor tmp = {0};
    tmp.ndim = im->ndim;
    memcpy(tmp.shape, im->shape, sizeof tmp.shape);
    vt_ctx c = {.op = n->op, .args = &n->args};
    unsigned mask;
    int keepdim;
    VT_TRY(parse_dims(&c, &tmp, 0, &mask, &keepdim));
    int64_t kshape[VT_MAX_DIMS], count = 1;
    reduced_shape(&tmp, mask, 1, kshape);
    for (int d = 0; d < im->ndim; d++) if (mask >> d & 1) count *= im->shape[d];
    vt_tensor *g = gout[0] ? vt_k_reshape(gout[0], im->ndim, kshape) : vt_zeros(VT_FLOAT32, im->ndim, kshape);
    if (!g) return vt_last_code();
    vt_tensor *ones = vt_full(VT_FLOAT32, im->ndim, im->shape, mean ? (count ? 1.0 / (double)count : NAN) : 1.0);
    if (!ones) { vt_tensor_decref(g); return vt_last_code(); }
    gin[0] = vt_k_mul(ones, g);
    vt_tensor_decref(ones);
    vt_tensor_decref(g);
    return gin[0] ? VT_OK : vt_last_code();
}

int vt_sum_forward(vt_ctx *c) { return sum_like_forward(c, 0); }
int vt_sum_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return sum_like_backward(n, gout, gin, 0); }
int vt_mean_forward(vt_ctx *c) { return sum_like_forward(c, 1); }
int vt_mean_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return sum_like_backward(n, gout, gin, 1); }
