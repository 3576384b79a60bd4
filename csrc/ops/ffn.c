/* vitc ops: the feed-forward layer Linear → GELU → Linear (ViT's MLP, SPEC §1.6) as one node.
 * Why one node: unfused, the second Linear saves the GELU output for its weight gradient while the
 * GELU saves its input, so every block keeps two (rows × hidden) activations until backward — the
 * largest tensors of a ViT step (hidden = 4·dim). Here only the pre-activation h is saved and the
 * GELU output is recomputed in backward (one elementwise pass, ~1 % of the step): a DeiT-Tiny step
 * at batch 32 keeps 12 × 19 MB less. Forward and backward do the same GEMMs as the three ops.
 *   forward:  h = x·w1ᵀ + b1, a = GELU(h), y = a·w2ᵀ + b2
 *   backward: a = GELU(h); dw2 = dyᵀ·a, db2 = Σ dy, da = dy·w2; dh = da ⊙ GELU'(h);
 *             dw1 = dhᵀ·x, db1 = Σ dh, dx = dh·w1 */
#include "ops_util.h"
#include "activation.h"

int vt_linear_gelu_linear_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    if (c->nin < 4 || !c->in[3]) return vt_fail(VT_ETYPE, "linear_gelu_linear: w2 is missing");
    VT_TRY(vt_arg_count(c, 1, 0));
    int64_t approx = c->args->i[0];
    if (approx != 0 && approx != 1)
        return vt_fail(VT_EVALUE, "linear_gelu_linear: approximate must be 0 ('none') or 1 ('tanh'), got %lld",
                       (long long)approx);
    vt_tensor *x = c->in[0], *w1 = c->in[1], *b1 = c->in[2], *w2 = c->in[3], *b2 = c->nin > 4 ? c->in[4] : NULL;
    if (w1->ndim == 2 && w2->ndim == 2 && w2->shape[1] != w1->shape[0])
        return vt_fail(VT_ESHAPE, "linear_gelu_linear: w2 has %lld input features but w1 makes %lld hidden features "
                       "(w1 (%lld, %lld), w2 (%lld, %lld))", (long long)w2->shape[1], (long long)w1->shape[0],
                       (long long)w1->shape[0], (long long)w1->shape[1], (long long)w2->shape[0],
                       (long long)w2->shape[1]);
    vt_tensor *h = vt_k_linear(x, w1, b1);
    if (!h) return vt_last_code();
    vt_tensor *a = vt_k_gelu(h, (int)approx);
    vt_tensor *y = a ? vt_k_linear(a, w2, b2) : NULL;
    vt_tensor_decref(a);
    if (!y) {
        vt_tensor_decref(h);
        return vt_last_code();
    }
    c->out[0] = y;
    c->nout = 1;
    int st = vt_save(c, x);
    if (!st) st = vt_save(c, w1);
    if (!st) st = vt_save(c, w2);
    if (!st) st = vt_save(c, h);
    vt_tensor_decref(h);
    return st;
}

int vt_linear_gelu_linear_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *w1 = n->saved[1], *w2 = n->saved[2], *h = n->saved[3];
    unsigned need = n->needs_input_grad;
    int approx = (int)n->args.i[0];
    int want_lower = (need & 7) != 0; /* x, w1 or b1: the gradient must go through the GELU */
    vt_tensor *a = vt_k_gelu(h, approx), *da = NULL, *dh = NULL;
    if (!a) return vt_last_code();
    int st = vt_k_linear_grads(gout[0], a, w2, want_lower ? &da : NULL, need & 8 ? &gin[3] : NULL,
                               need & 16 ? &gin[4] : NULL);
    vt_tensor_decref(a);
    if (st || !want_lower) return st;
    dh = vt_k_gelu_backward(da, h, approx);
    vt_tensor_decref(da);
    if (!dh) return vt_last_code();
    st = vt_k_linear_grads(dh, x, w1, need & 1 ? &gin[0] : NULL, need & 2 ? &gin[1] : NULL,
                           need & 4 ? &gin[2] : NULL);
    vt_tensor_decref(dh);
    return st;
}
