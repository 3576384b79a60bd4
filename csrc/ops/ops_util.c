#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xmmintrin.h>
#include "ops_util.h"

/* SSE's movntps is in the x86-64 baseline, so this needs no ISA dispatch */
void vt_stream_copy(float *dst, const float *src, int64_t n) {
    if ((uintptr_t)dst & 15) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
        return;
    }
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
    _mm_sfence(); /* the stores are weakly ordered: finish them before another thread may read */
}

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

int vt_use_avx2_kernels(void) {
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *isa = getenv("VITC_ISA");
        r = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !(isa && !strcmp(isa, "baseline"));
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}
