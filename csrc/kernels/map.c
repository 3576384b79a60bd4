#include <string.h>
#include "map.h"

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
