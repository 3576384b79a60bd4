#include <string.h>
#include "ops_util.h"

int vt_arg_count(const vt_ctx *c, int ni, int nf) {
    if (c->args->ni < ni || c->args->nf < nf)
        return vt_fail(VT_EVALUE, "%s: expected %d integer and %d float arguments, got %d and %d",
                       vt_ops[c->op].name, ni, nf, c->args->ni, c->args->nf);
    return VT_OK;
}

int vt_need_inputs(const vt_ctx *c, int n) {
    if (c->nin < n) return vt_fail(VT_ETYPE, "%s: expected %d tensor arguments, got %d", vt_ops[c->op].name, n, c->nin);
    for (int i = 0; i < n; i++)
        if (!c->in[i]) return vt_fail(VT_ETYPE, "%s: tensor argument %d is missing", vt_ops[c->op].name, i);
    return VT_OK;
}

int vt_require_dtype(const vt_tensor *t, vt_dtype dt, const char *who, const char *what) {
    if (!t) return vt_fail(VT_ETYPE, "%s: %s is missing", who, what);
    if (t->dtype != dt)
        return vt_fail(VT_ETYPE, "%s: %s must be %s, got %s", who, what, vt_dtype_name(dt), vt_dtype_name(t->dtype));
    return VT_OK;
}

int vt_require_f32(const vt_tensor *t, const char *who, const char *what) {
    return vt_require_dtype(t, VT_FLOAT32, who, what);
}

void vt_iter(int nd, const int64_t *shape, int nops, char **base, int64_t strides[][VT_MAX_DIMS],
             vt_row_fn fn, void *ctx) {
    int64_t sh[VT_MAX_DIMS], st[VT_MAX_OPERANDS][VT_MAX_DIMS];
    int m = 0;
    /* drop size-1 dims and merge dims that are contiguous for every operand */
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 0) return;
        if (shape[d] == 1) continue;
        int merge = m > 0;
        for (int k = 0; k < nops && merge; k++) merge = st[k][m - 1] == strides[k][d] * shape[d];
        if (merge) {
            sh[m - 1] *= shape[d];
            for (int k = 0; k < nops; k++) st[k][m - 1] = strides[k][d];
        } else {
            sh[m] = shape[d];
            for (int k = 0; k < nops; k++) st[k][m] = strides[k][d];
            m++;
        }
    }
    if (m == 0) { /* a single element */
        int64_t s1[VT_MAX_OPERANDS] = {0};
        fn(1, base, s1, ctx);
        return;
    }
    int64_t inner = sh[m - 1], rows = 1;
    for (int d = 0; d < m - 1; d++) rows *= sh[d];
    int64_t is[VT_MAX_OPERANDS];
    for (int k = 0; k < nops; k++) is[k] = st[k][m - 1];
    /* split long single rows so both cores get work */
    int64_t chunk = inner, nchunks = 1;
    if (rows == 1 && inner > 65536) { nchunks = 64; chunk = (inner + 63) / 64; }
    int64_t total = rows * nchunks;
    #pragma omp parallel for if (rows * inner > 32768) schedule(static)
    for (int64_t r = 0; r < total; r++) {
        int64_t row = r / nchunks, part = r % nchunks;
        int64_t start = part * chunk, len = inner - start < chunk ? inner - start : chunk;
        if (len <= 0) continue;
        char *p[VT_MAX_OPERANDS];
        for (int k = 0; k < nops; k++) p[k] = base[k] + start * is[k];
        int64_t rem = row;
        for (int d = m - 2; d >= 0; d--) {
            int64_t idx = rem % sh[d];
            rem /= sh[d];
            for (int k = 0; k < nops; k++) p[k] += idx * st[k][d];
        }
        fn(len, p, is, ctx);
    }
}

vt_tensor *vt_map(const char *who, vt_dtype odt, int nin, const vt_tensor **in, vt_row_fn fn, void *ctx) {
    int nd = in[0]->ndim;
    int64_t shape[VT_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof(int64_t) * (size_t)nd);
    for (int k = 1; k < nin; k++) {
        int64_t prev[VT_MAX_DIMS];
        memcpy(prev, shape, sizeof prev);
        if (vt_broadcast_shapes(nd, prev, in[k]->ndim, in[k]->shape, &nd, shape, who)) return NULL;
    }
    vt_tensor *out = vt_empty(odt, nd, shape);
    if (!out) return NULL;
    char *base[VT_MAX_OPERANDS];
    int64_t strides[VT_MAX_OPERANDS][VT_MAX_DIMS];
    base[0] = (char *)out->storage->data;
    for (int d = 0; d < nd; d++) strides[0][d] = out->strides[d] * (int64_t)vt_dtype_size(odt);
    for (int k = 0; k < nin; k++) {
        size_t es = vt_dtype_size(in[k]->dtype);
        base[k + 1] = (char *)in[k]->storage->data + in[k]->offset * (int64_t)es;
        vt_broadcast_strides(in[k], nd, shape, strides[k + 1]);
        for (int d = 0; d < nd; d++) strides[k + 1][d] *= (int64_t)es;
    }
    vt_iter(nd, shape, nin + 1, base, strides, fn, ctx);
    return out;
}
