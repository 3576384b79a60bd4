/* vitc kernels: reshape and permute as views (reshape copies only when no view exists). */
#include "view.h"

/* strides for viewing t as `shape` without a copy, if possible (the rule of PyTorch's
 * computeStride: each run of input dims that is contiguous in memory may be split/merged) */
static int view_strides(const vt_tensor *t, int nd, const int64_t *shape, int64_t *strides) {
    int64_t numel = vt_numel(t);
    if (numel == 0) { vt_contiguous_strides(nd, shape, strides); return 1; }
    int vd = nd - 1;
    int64_t chunk_base = t->ndim ? t->strides[t->ndim - 1] : 1, tensor_numel = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel *= t->shape[td];
        if (td == 0 || (t->shape[td - 1] != 1 && t->strides[td - 1] != tensor_numel * chunk_base)) {
            while (vd >= 0 && (view_numel < tensor_numel || shape[vd] == 1)) {
                strides[vd] = view_numel * chunk_base;
                view_numel *= shape[vd];
                vd--;
            }
            if (view_numel != tensor_numel) return 0;
            if (td > 0) {
                chunk_base = t->strides[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return vd == -1;
}

vt_tensor *vt_k_reshape(const vt_tensor *t, int nd, const int64_t *shape) {
    if (vt_check_shape(nd, shape, "reshape")) return NULL;
    if (vt_shape_numel(nd, shape) != vt_numel(t)) {
        char b1[128], b2[128];
        return vt_fail_null(VT_ESHAPE, "reshape: shape %s is invalid for input of shape %s",
                            vt_shape_str(nd, shape, b1, sizeof b1), vt_shape_str(t->ndim, t->shape, b2, sizeof b2));
    }
    int64_t strides[VT_MAX_DIMS];
    if (view_strides(t, nd, shape, strides)) return vt_view_of(t, nd, shape, strides, t->offset);
    vt_tensor *c = vt_clone(t);
    if (!c) return NULL;
    vt_tensor *r = vt_view_of(c, nd, shape, (vt_contiguous_strides(nd, shape, strides), strides), 0);
    vt_tensor_decref(c);
    return r;
}

vt_tensor *vt_k_permute(const vt_tensor *t, const int64_t *dims) {
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    unsigned seen = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t p = dims[d];
        if (vt_normalize_dim(&p, t->ndim, "permute")) return NULL;
        if (seen >> p & 1) return vt_fail_null(VT_EVALUE, "permute: dim %lld repeated", (long long)p);
        seen |= 1u << p;
        shape[d] = t->shape[p];
        strides[d] = t->strides[p];
    }
    return vt_view_of(t, t->ndim, shape, strides, t->offset);
}
