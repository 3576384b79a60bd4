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

/* bfloat16 is a storage dtype: only the ops that move, view, convert or store it take it; the
 * rest (all compute, which reads float32) refuse it here with one message naming the op */
static const char *const bf16_ops[] = {"reshape", "permute", "contiguous", "slice", "expand", "to_dtype", "fill_",
                                       "copy_", "optim_view", "optim_zero", "adam_step", "adafactor_step"};

int vt_bf16_gate(const vt_ctx *c) {
    for (int i = 0; i < c->nin; i++) {
        if (!c->in[i] || c->in[i]->dtype != VT_BFLOAT16) continue;
        const char *name = vt_ops[c->op].name;
        for (size_t k = 0; k < sizeof bf16_ops / sizeof bf16_ops[0]; k++)
            if (!strcmp(name, bf16_ops[k])) return VT_OK;
        return vt_fail(VT_ETYPE, "%s: does not accept bfloat16 (tensor argument %d); bfloat16 is a storage dtype in "
                       "vitc: convert with .float() first", name, i);
    }
    return VT_OK;
}

int vt_need_inputs(const vt_ctx *c, int n) {
    if (c->nin < n) return vt_fail(VT_ETYPE, "%s: expected %d tensor arguments, got %d", vt_ops[c->op].name, n, c->nin);
    for (int i = 0; i < n; i++)
        if (!c->in[i]) return vt_fail(VT_ETYPE, "%s: tensor argument %d is missing", vt_ops[c->op].name, i);
    return VT_OK;
}
