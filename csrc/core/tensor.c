/* vitc core: tensor and storage lifetime, views, contiguous copies. Rules in tensor.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tensor.h"
#include "iter.h"
#include "bf16.h"
#include "simd.h"
#include "vec8.h"

#define VT_MAX_NUMEL ((int64_t)1 << 40)

size_t vt_dtype_size(vt_dtype dt) { return dt == VT_FLOAT32 ? 4 : dt == VT_INT64 ? 8 : dt == VT_BFLOAT16 ? 2 : 1; }
const char *vt_dtype_name(vt_dtype dt) {
    return dt == VT_FLOAT32 ? "float32" : dt == VT_INT64 ? "int64" : dt == VT_BOOL ? "bool" : dt == VT_BFLOAT16 ? "bfloat16" : "?";
}

int64_t vt_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}
int64_t vt_numel(const vt_tensor *t) { return vt_shape_numel(t->ndim, t->shape); }

char *vt_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
    return buf;
}

int vt_check_shape(int ndim, const int64_t *shape, const char *who) {
    if (ndim < 0 || ndim > VT_MAX_DIMS)
        return vt_fail(VT_ESHAPE, "%s: %d dimensions, at most %d supported", who, ndim, VT_MAX_DIMS);
    /* zero-size dims do not excuse huge ones: NumPy (and .numpy()) refuse those geometries too */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return vt_fail(VT_ESHAPE, "%s: negative size %lld in dimension %d", who, (long long)shape[i], i);
        int64_t d = shape[i] ? shape[i] : 1;
        if (n > VT_MAX_NUMEL / d)
            return vt_fail(VT_ESHAPE, "%s: shape too large (more than 2^40 elements)", who);
        n *= d;
    }
    return VT_OK;
}

int vt_normalize_dim(int64_t *dim, int ndim, const char *who) {
    int64_t n = ndim ? ndim : 1; /* 0-d tensors accept dim 0 / -1 like PyTorch */
    if (*dim < -n || *dim >= n)
        return vt_fail(VT_EINDEX, "%s: dim %lld out of range for a %d-d tensor", who, (long long)*dim, ndim);
    if (*dim < 0) *dim += n;
    return VT_OK;
}

int vt_require_dtype(const vt_tensor *t, vt_dtype dt, const char *who, const char *what) {
    if (!t) return vt_fail(VT_ETYPE, "%s: %s is missing", who, what);
    if (t->dtype == VT_BFLOAT16 && dt != VT_BFLOAT16)
        return vt_fail(VT_ETYPE, "%s: %s must be %s, got bfloat16 (a storage dtype: convert with .float() first)",
                       who, what, vt_dtype_name(dt));
    if (t->dtype != dt)
        return vt_fail(VT_ETYPE, "%s: %s must be %s, got %s", who, what, vt_dtype_name(dt), vt_dtype_name(t->dtype));
    return VT_OK;
}

int vt_require_f32(const vt_tensor *t, const char *who, const char *what) {
    return vt_require_dtype(t, VT_FLOAT32, who, what);
}

void vt_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

int vt_is_contiguous(const vt_tensor *t) {
    if (vt_numel(t) == 0) return 1; /* no element to misplace: contiguous whatever the strides (as torch) */
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int vt_same_shape(const vt_tensor *a, const vt_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

int vt_broadcast_shapes(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out,
                        const char *who) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : sa[i - (n - na)];
        int64_t db = i < n - nb ? 1 : sb[i - (n - nb)];
        if (da != db && da != 1 && db != 1) {
            char b1[128], b2[128];
            return vt_fail(VT_ESHAPE, "%s: shapes %s and %s cannot be broadcast together", who,
                           vt_shape_str(na, sa, b1, sizeof b1), vt_shape_str(nb, sb, b2, sizeof b2));
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return VT_OK;
}

void vt_broadcast_strides(const vt_tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        if (i < lead) strides[i] = 0;
        else strides[i] = (t->shape[i - lead] == 1 && shape[i] != 1) ? 0 : t->strides[i - lead];
    }
}

static vt_tensor *tensor_struct(vt_storage *s, vt_dtype dt, int ndim, const int64_t *shape,
                                const int64_t *strides, int64_t offset) {
    vt_tensor *t = calloc(1, sizeof *t);
    if (!t) return vt_fail_null(VT_ENOMEM, "out of memory allocating a tensor header");
    t->refcount = 1;
    t->storage = s;
    t->offset = offset;
    t->ndim = ndim;
    t->dtype = dt;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    if (strides && ndim) memcpy(t->strides, strides, sizeof(int64_t) * (size_t)ndim);
    else vt_contiguous_strides(ndim, shape, t->strides);
    return t;
}

vt_tensor *vt_empty(vt_dtype dt, int ndim, const int64_t *shape) {
    if (vt_check_shape(ndim, shape, "empty")) return NULL;
    if ((unsigned)dt >= VT_NDTYPES) return vt_fail_null(VT_ETYPE, "unknown dtype %d", (int)dt);
    size_t nbytes = (size_t)vt_shape_numel(ndim, shape) * vt_dtype_size(dt);
    vt_storage *s = calloc(1, sizeof *s);
    if (!s) return vt_fail_null(VT_ENOMEM, "out of memory allocating a storage header");
    s->refcount = 1;
    s->nbytes = nbytes;
    s->data = vt_alloc(nbytes);
    if (!s->data) { free(s); return NULL; }
    vt_tensor *t = tensor_struct(s, dt, ndim, shape, NULL, 0);
    if (!t) vt_storage_decref(s);
    return t;
}

vt_tensor *vt_zeros(vt_dtype dt, int ndim, const int64_t *shape) {
    vt_tensor *t = vt_empty(dt, ndim, shape);
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

vt_tensor *vt_full(vt_dtype dt, int ndim, const int64_t *shape, double value) {
    vt_tensor *t = vt_empty(dt, ndim, shape);
    if (!t) return NULL;
    int64_t n = vt_numel(t);
    if (dt == VT_FLOAT32) { float v = (float)value, *p = vt_f32(t); for (int64_t i = 0; i < n; i++) p[i] = v; }
    else if (dt == VT_INT64) { int64_t v = (int64_t)value, *p = vt_i64(t); for (int64_t i = 0; i < n; i++) p[i] = v; }
    else if (dt == VT_BFLOAT16) { uint16_t v = vt_f32_to_bf16((float)value), *p = vt_bf16(t); for (int64_t i = 0; i < n; i++) p[i] = v; }
    else memset(t->storage->data, value != 0, (size_t)n);
    return t;
}

vt_tensor *vt_empty_like(const vt_tensor *t) { return vt_empty(t->dtype, t->ndim, t->shape); }
vt_tensor *vt_zeros_like(const vt_tensor *t) { return vt_zeros(t->dtype, t->ndim, t->shape); }

vt_tensor *vt_wrap_foreign(vt_dtype dt, int ndim, const int64_t *shape, void *data,
                           void (*release)(void *), void *owner) {
    if (vt_check_shape(ndim, shape, "from_numpy")) return NULL;
    vt_storage *s = calloc(1, sizeof *s);
    if (!s) return vt_fail_null(VT_ENOMEM, "out of memory allocating a storage header");
    s->refcount = 1;
    s->data = data;
    s->nbytes = (size_t)vt_shape_numel(ndim, shape) * vt_dtype_size(dt);
    s->release = release;
    s->owner = owner;
    vt_tensor *t = tensor_struct(s, dt, ndim, shape, NULL, 0);
    if (!t) { s->release = NULL; s->data = NULL; free(s); }
    return t;
}

vt_tensor *vt_view_of(const vt_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset) {
    if (vt_check_shape(ndim, shape, "view")) return NULL;
    /* every reachable element must lie inside the storage */
    int64_t last = offset, numel = vt_shape_numel(ndim, shape);
    for (int i = 0; i < ndim; i++) {
        if (strides[i] < 0) return vt_fail_null(VT_EVALUE, "view: negative stride");
        if (shape[i] > 0) last += (shape[i] - 1) * strides[i];
    }
    if (numel > 0 && (offset < 0 || (size_t)(last + 1) * vt_dtype_size(t->dtype) > t->storage->nbytes))
        return vt_fail_null(VT_ESHAPE, "view: geometry exceeds the storage");
    vt_tensor *v = tensor_struct(t->storage, t->dtype, ndim, shape, strides, offset);
    if (v) __atomic_add_fetch(&t->storage->refcount, 1, __ATOMIC_RELAXED);
    return v;
}

vt_tensor *vt_alias(const vt_tensor *t) { return vt_view_of(t, t->ndim, t->shape, t->strides, t->offset); }

/* one row of a copy: element size in ctx, any strides (contiguous rows become memcpy) */
static void copy_row(int64_t n, char **p, const int64_t *s, void *ctx) {
    size_t es = *(const size_t *)ctx;
    if (s[0] == (int64_t)es && s[1] == (int64_t)es) { memcpy(p[0], p[1], (size_t)n * es); return; }
    if (es == 4) for (int64_t i = 0; i < n; i++) *(uint32_t *)(p[0] + i * s[0]) = *(const uint32_t *)(p[1] + i * s[1]);
    else if (es == 8) for (int64_t i = 0; i < n; i++) *(uint64_t *)(p[0] + i * s[0]) = *(const uint64_t *)(p[1] + i * s[1]);
    else if (es == 2) for (int64_t i = 0; i < n; i++) *(uint16_t *)(p[0] + i * s[0]) = *(const uint16_t *)(p[1] + i * s[1]);
    else for (int64_t i = 0; i < n; i++) p[0][i * s[0]] = p[1][i * s[1]];
}

/* dst[i·ldd + j] = src[i + j·lds] for i < ni, j < nj: 8×8 blocks through registers (8 unit-stride
 * loads, the shuffles of transpose8, 8 unit-stride stores), the edges element by element */
VT_SIMD_CLONES static void transpose_tile(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t ni,
                                          int64_t nj) {
    int64_t i = 0;
    for (; i + 8 <= ni; i += 8) {
        int64_t j = 0;
        for (; j + 8 <= nj; j += 8) {
            v8 r[8];
            for (int k = 0; k < 8; k++) r[k] = ld8(src + i + (j + k) * lds);
            transpose8(r);
            for (int k = 0; k < 8; k++) st8(dst + (i + k) * ldd + j, r[k]);
        }
        for (; j < nj; j++)
            for (int k = 0; k < 8; k++) dst[(i + k) * ldd + j] = src[i + k + j * lds];
    }
    for (; i < ni; i++)
        for (int64_t j = 0; j < nj; j++) dst[i * ldd + j] = src[i + j * lds];
}

/* A batch of 2-d transposes: 4-byte elements whose source has a unit-stride second-to-last dim and
 * a strided last one (a transposed view, as a patch embedding's (B, D, N) -> (B, N, D)), while the
 * destination's last dim is unit-stride. Row by row through vt_iter every read is a source stride
 * apart (LV-ViT-Tiny-MNIST's (128, 49, 64) token copy took ~290 µs at 2 threads on Zen 4, PyTorch's
 * 75); in TT × TT tiles of 8×8 register transposes both sides stay in L1. 0 when the geometry is
 * not this one (nothing written). Moving 4 bytes as floats is exact: loads and stores do no
 * arithmetic, NaN payloads included. */
#define TT 32
static int copy_transposed(char *dst_base, const int64_t *dst_strides, const vt_tensor *src) {
    int nd = src->ndim;
    if (vt_dtype_size(src->dtype) != 4 || nd < 2) return 0;
    const int64_t *sh = src->shape, *ss = src->strides;
    int64_t R = sh[nd - 2], C = sh[nd - 1], lds = ss[nd - 1], ldd = dst_strides[nd - 2], outer = 1;
    if (ss[nd - 2] != 1 || lds == 1 || dst_strides[nd - 1] != 1 || R < 8 || C < 8) return 0;
    for (int d = 0; d < nd - 2; d++) outer *= sh[d];
    int64_t tr = (R + TT - 1) / TT, tc = (C + TT - 1) / TT, units = outer * tr * tc;
    const float *s0 = (const float *)src->storage->data + src->offset;
    float *d0 = (float *)dst_base;
    #pragma omp parallel for if (outer * R * C > 32768) schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t o = u / (tr * tc), t = u % (tr * tc), i0 = t / tc * TT, j0 = t % tc * TT;
        int64_t so = 0, dof = 0, rem = o;
        for (int d = nd - 3; d >= 0; d--) {
            int64_t idx = rem % sh[d];
            rem /= sh[d];
            so += idx * ss[d];
            dof += idx * dst_strides[d];
        }
        int64_t ni = R - i0 < TT ? R - i0 : TT, nj = C - j0 < TT ? C - j0 : TT;
        transpose_tile(s0 + so + i0 + j0 * lds, lds, d0 + dof + i0 * ldd + j0, ldd, ni, nj);
    }
    return 1;
}
#undef TT

/* dst (geometry of src's shape, strides dst_strides in elements, at dst_base) <- src */
static void copy_geometry(char *dst_base, const int64_t *dst_strides, const vt_tensor *src) {
    if (vt_numel(src) > 0 && copy_transposed(dst_base, dst_strides, src)) return;
    size_t es = vt_dtype_size(src->dtype);
    char *base[2] = {dst_base, (char *)src->storage->data + src->offset * (int64_t)es};
    int64_t strides[2][VT_MAX_DIMS];
    for (int d = 0; d < src->ndim; d++) {
        strides[0][d] = dst_strides[d] * (int64_t)es;
        strides[1][d] = src->strides[d] * (int64_t)es;
    }
    vt_iter(src->ndim, src->shape, 2, base, strides, copy_row, &es);
}

vt_tensor *vt_clone(const vt_tensor *t) {
    vt_tensor *c = vt_empty(t->dtype, t->ndim, t->shape);
    if (c) copy_geometry(c->storage->data, c->strides, t);
    return c;
}

vt_tensor *vt_contiguous(vt_tensor *t) {
    if (vt_is_contiguous(t)) { vt_tensor_incref(t); return t; }
    return vt_clone(t);
}

int vt_copy_into(vt_tensor *dst, const vt_tensor *src) {
    if (!vt_same_shape(dst, src) || dst->dtype != src->dtype)
        return vt_fail(VT_ESHAPE, "copy: destination and source differ in shape or dtype");
    copy_geometry((char *)dst->storage->data + dst->offset * (int64_t)vt_dtype_size(dst->dtype), dst->strides, src);
    return VT_OK;
}

void vt_tensor_incref(vt_tensor *t) { if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED); }

void vt_storage_decref(vt_storage *s) {
    if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (s->release) s->release(s->owner);
    else vt_free(s->data, s->nbytes);
    free(s);
}

/* set once by autograd at start-up (vt_autograd_init); core knows nodes only as opaque pointers */
static vt_grad_fn_release_fn grad_fn_release;

void vt_set_grad_fn_release(vt_grad_fn_release_fn fn) { grad_fn_release = fn; }

void vt_tensor_decref(vt_tensor *t) {
    if (!t || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    /* only autograd sets grad_fn and hooks, and it installs the release before either */
    if ((t->grad_fn || t->hooks) && grad_fn_release) grad_fn_release(t);
    vt_tensor_decref(t->grad);
    vt_storage_decref(t->storage);
    free(t);
}
