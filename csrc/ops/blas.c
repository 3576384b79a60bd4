/* vitc ops: matmul and linear, forward and backward, on the kernels of csrc/kernels/matmul.c
 * (which say how views reach the GEMM without copies). */
#include <string.h>
#include "ops_util.h"

/* the last two dims swapped (a view); 1-d tensors are returned as they are */
static vt_tensor *transpose_last(const vt_tensor *t) {
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    if (t->ndim >= 2) {
        int d = t->ndim;
        int64_t s = shape[d - 1]; shape[d - 1] = shape[d - 2]; shape[d - 2] = s;
        s = strides[d - 1]; strides[d - 1] = strides[d - 2]; strides[d - 2] = s;
    }
    return vt_view_of(t, t->ndim, shape, strides, t->offset);
}

/* t with an inserted size-1 dim at `pos` (a view) */
static vt_tensor *unsqueeze(const vt_tensor *t, int pos) {
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d <= t->ndim; d++) {
        if (d == pos) { shape[nd] = 1; strides[nd++] = 1; }
        if (d < t->ndim) { shape[nd] = t->shape[d]; strides[nd++] = t->strides[d]; }
    }
    return vt_view_of(t, nd, shape, strides, t->offset);
}

int vt_matmul_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    vt_tensor *r = vt_k_matmul(c->in[0], c->in[1]);
    if (!r) return vt_last_code();
    c->out[0] = r;
    c->nout = 1;
    VT_TRY(vt_save(c, c->in[0]));
    return vt_save(c, c->in[1]);
}

/* dA = dC·Bᵀ, dB = Aᵀ·dC, with 1-d operands promoted to matrices and batch dims summed away */
int vt_matmul_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *a = n->saved[0], *b = n->saved[1];
    int st = VT_OK;
    vt_tensor *am = a->ndim == 1 ? vt_k_as_matrix(a, 1) : (vt_tensor_incref(a), a);
    vt_tensor *bm = b->ndim == 1 ? vt_k_as_matrix(b, 0) : (vt_tensor_incref(b), b);
    vt_tensor *g = gout[0], *gm = NULL;
    if (!am || !bm) { st = vt_last_code(); goto done; }
    /* restore the dims the 1-d operands dropped from the output */
    if (a->ndim == 1 && b->ndim == 1) gm = vt_k_reshape(g, 2, (int64_t[]){1, 1});
    else if (a->ndim == 1) gm = unsqueeze(g, g->ndim - 1);
    else if (b->ndim == 1) gm = unsqueeze(g, g->ndim);
    else { vt_tensor_incref(g); gm = g; }
    if (!gm) { st = vt_last_code(); goto done; }
    for (int i = 0; i < 2 && !st; i++) {
        if (!(n->needs_input_grad >> i & 1)) continue;
        vt_tensor *other = i == 0 ? bm : am, *ot = transpose_last(other), *full = NULL;
        if (!ot) { st = vt_last_code(); break; }
        if (i == 0) full = vt_k_matmul(gm, ot);
        else if (am->ndim > 2 && bm->ndim == 2) {
            /* b unbatched: dB = Σ_batch Aᵀ·dC as one GEMM over folded rows */
            /* rows = product of the leading dims, not numel / k: k or n may be 0 */
            int64_t k = am->shape[am->ndim - 1], nn = gm->shape[gm->ndim - 1];
            vt_tensor *a2 = vt_k_reshape(am, 2, (int64_t[]){vt_shape_numel(am->ndim - 1, am->shape), k});
            vt_tensor *g2 = vt_k_reshape(gm, 2, (int64_t[]){vt_shape_numel(gm->ndim - 1, gm->shape), nn});
            vt_tensor *a2t = a2 ? transpose_last(a2) : NULL;
            full = a2t && g2 ? vt_k_matmul(a2t, g2) : NULL;
            vt_tensor_decref(a2); vt_tensor_decref(g2); vt_tensor_decref(a2t);
        } else full = vt_k_matmul(ot, gm);
        vt_tensor_decref(ot);
        if (!full) { st = vt_last_code(); break; }
        const vt_meta *m = &n->in_meta[i];
        vt_tensor *red = NULL;
        if (m->ndim == 1) { /* squeeze the promoted dim, then sum any batch */
            int64_t len = m->shape[0];
            vt_tensor *s = vt_k_sum_to(full, 2, i == 0 ? (int64_t[]){1, len} : (int64_t[]){len, 1});
            red = s ? vt_k_reshape(s, 1, &len) : NULL;
            vt_tensor_decref(s);
        } else red = vt_k_sum_to(full, m->ndim, m->shape);
        vt_tensor_decref(full);
        if (!red) { st = vt_last_code(); break; }
        gin[i] = red;
    }
done:
    vt_tensor_decref(am);
    vt_tensor_decref(bm);
    vt_tensor_decref(gm);
    return st;
}

int vt_linear_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    vt_tensor *x = c->in[0], *w = c->in[1], *y = vt_k_linear(x, w, c->nin > 2 ? c->in[2] : NULL);
    if (!y) return vt_last_code();
    c->out[0] = y;
    c->nout = 1;
    VT_TRY(vt_save(c, x));
    return vt_save(c, w);
}

int vt_linear_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    unsigned need = n->needs_input_grad;
    return vt_k_linear_grads(gout[0], n->saved[0], n->saved[1], need & 1 ? &gin[0] : NULL, need & 2 ? &gin[1] : NULL,
                             n->nin > 2 && (need & 4) ? &gin[2] : NULL);
}
