/* vitc ops: small helpers every op family uses, defined once here. */
#ifndef VT_OPS_UTIL_H
#define VT_OPS_UTIL_H
#include <stdlib.h>
#include <string.h>
#include "ops.h"
#include "../core/simd.h"
#include "../core/iter.h"

/* the name of the op a forward runs, for error messages */
#define WHO(c) (vt_ops[(c)->op].name)

/* a memory switch (vitc.set_recompute / VITC_*_RECOMPUTE): when set (not empty), on unless "0";
 * when unset or empty, `unset`. Read at every forward, so it can be flipped in-process between steps */
static inline int env_switch(const char *name, int unset) {
    const char *e = getenv(name);
    return e && e[0] ? strcmp(e, "0") != 0 : unset;
}

/* t becomes the op's single output; a NULL t (a failed kernel) returns its error code */
static inline int out1(vt_ctx *c, vt_tensor *t) {
    if (!t) return vt_last_code();
    c->out[0] = t;
    c->nout = 1;
    return VT_OK;
}

/* whether backward must fill the gradient of input i */
static inline int wants(const vt_node *n, int i) { return n->needs_input_grad >> i & 1; }

/* the gradient of output 0, or zeros of its shape when none arrived (new ref) */
static inline vt_tensor *grad0(const vt_node *n, vt_tensor **gout) {
    if (gout[0]) { vt_tensor_incref(gout[0]); return gout[0]; }
    return vt_zeros(VT_FLOAT32, n->out_meta[0].ndim, n->out_meta[0].shape);
}

/* the gradient of output 0 as a contiguous tensor, or zeros of its shape when none came (new ref) */
static inline vt_tensor *grad_out(const vt_node *n, vt_tensor **gout) {
    if (gout[0]) return vt_contiguous(gout[0]);
    return vt_zeros(VT_FLOAT32, n->out_meta[0].ndim, n->out_meta[0].shape);
}

/* release t[0..n) and clear the slots */
static inline void decref_all(vt_tensor **t, int n) {
    for (int i = 0; i < n; i++) { vt_tensor_decref(t[i]); t[i] = NULL; }
}

#endif
