/* vitc ops: the feed-forward layer Linear → GELU → Linear (ViT's MLP, lucidrains/vit-pytorch:vit_pytorch/vit.py `FeedForward`) as one node.
 * Why one node: unfused, the second Linear saves the GELU output for its weight gradient while the
 * GELU saves its input, so every block keeps two (rows × hidden) activations until backward — the
 * largest tensors of a ViT step (hidden = 4·dim). Here only the pre-activation h is saved and the
 * GELU output is recomputed in backward (one elementwise pass, ~2 % of the step): a DeiT-Tiny step
 * at batch 32 keeps 12 × 19 MB less. Forward and backward do the same GEMMs as the three ops.
 *   forward:  h = x·w1ᵀ + b1, a = GELU(h), y = a·w2ᵀ + b2 (in row blocks where both products run on
 *             vitc's own kernel: fused_forward)
 *   backward: a = GELU(h) and d = GELU'(h) in one pass; dw2 = dyᵀ·a, db2 = Σ dy;
 *             dh = (dy·w2) ⊙ d (one GEMM); dw1 = dhᵀ·x, db1 = Σ dh, dx = dh·w1 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "ops_util.h"
#include "../core/threads.h"

/* Row blocks through both layers: each thread takes FFN_ROWS rows at a time, writes their
 * h = x·w1ᵀ + b1 (the saved tensor), keeps a = GELU(h) in its scratch (FFN_ROWS × hidden, in L1/L2)
 * and computes y = a·w2ᵀ + b2 from there, against w1ᵀ and w2ᵀ packed once: the (rows × hidden) GELU
 * output never goes through memory, and one parallel region replaces four. Taken only when both
 * products would run on vitc's own kernel anyway (vt_gemm_path_now), whose bits the panels
 * reproduce (bias first, then the product added, as vt_k_linear), so the result is the three ops'.
 * Measured on the seed ViT's FFN (1700 × 64 → 128 → 64), two live workers alternating, 100 rounds,
 * both side orders: forward 13-14 % faster at 2 threads, 1-3 % at 1. */
#define FFN_ROWS 96

static int fused_forward(const vt_tensor *x, const vt_tensor *w1, const vt_tensor *b1, const vt_tensor *w2,
                         const vt_tensor *b2, int approx, vt_tensor **h_out, vt_tensor **y_out) {
    int64_t D = w1->shape[1], Hd = w1->shape[0], Do = w2->shape[0], M = vt_numel(x) / D;
    int64_t shape[VT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    vt_tensor *xc = vt_contiguous((vt_tensor *)x), *w1c = NULL, *w2c = NULL, *b1c = NULL, *b2c = NULL;
    vt_tensor *h = NULL, *y = NULL;
    vt_gemm_panel p1 = {0}, p2 = {0};
    float *scratch = NULL;
    int64_t nblk = (M + FFN_ROWS - 1) / FFN_ROWS;
    double flops = 2.0 * (double)M * (double)Hd * (double)(D + Do);
    int nt = flops < 2e6 ? 1 : vt_get_num_threads(), st; /* vt_k_gemm's rule for one thread */
    if (nt > nblk) nt = (int)nblk;
    size_t sbytes = sizeof(float) * (size_t)(FFN_ROWS * Hd) * (size_t)nt;
    if (!xc || !(w1c = vt_contiguous((vt_tensor *)w1)) || !(w2c = vt_contiguous((vt_tensor *)w2))) goto fail;
    if ((b1 && !(b1c = vt_contiguous((vt_tensor *)b1))) || (b2 && !(b2c = vt_contiguous((vt_tensor *)b2)))) goto fail;
    shape[x->ndim - 1] = Hd;
    if (!(h = vt_empty(VT_FLOAT32, x->ndim, shape))) goto fail;
    shape[x->ndim - 1] = Do;
    if (!(y = vt_empty(VT_FLOAT32, x->ndim, shape))) goto fail;
    if ((st = vt_gemm_panel_init(&p1, 1, D, Hd, vt_f32(w1c), D)) || (st = vt_gemm_panel_init(&p2, 1, Hd, Do, vt_f32(w2c), Hd)))
        goto fail;
    if (!(scratch = vt_alloc(sbytes))) goto fail;
    const float *xp = vt_f32(xc), *bp1 = b1c ? vt_f32(b1c) : NULL, *bp2 = b2c ? vt_f32(b2c) : NULL;
    float *hp = vt_f32(h), *yp = vt_f32(y);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *a = scratch + (size_t)omp_get_thread_num() * (size_t)(FFN_ROWS * Hd);
        #pragma omp for schedule(static)
        for (int64_t s = 0; s < p1.nstrips + p2.nstrips; s++)
            vt_gemm_panel_pack(s < p1.nstrips ? &p1 : &p2, s < p1.nstrips ? s : s - p1.nstrips);
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t r0 = blk * FFN_ROWS, mb = M - r0 < FFN_ROWS ? M - r0 : FFN_ROWS;
            float *hb = hp + r0 * Hd, *yb = yp + r0 * Do;
            vt_gemm_panel_linear(&p1, mb, xp + r0 * D, D, bp1, hb);
            vt_gelu_floats(a, hb, mb * Hd, approx);
            vt_gemm_panel_linear(&p2, mb, a, Hd, bp2, yb);
        }
    }
    vt_free(scratch, sbytes);
    vt_gemm_panel_free(&p1);
    vt_gemm_panel_free(&p2);
    vt_tensor *tmp[] = {xc, w1c, w2c, b1c, b2c};
    for (int i = 0; i < 5; i++) vt_tensor_decref(tmp[i]);
    *h_out = h;
    *y_out = y;
    return VT_OK;
fail:
    st = vt_last_code();
    vt_gemm_panel_free(&p1);
    vt_gemm_panel_free(&p2);
    vt_tensor *all[] = {xc, w1c, w2c, b1c, b2c, h, y};
    for (int i = 0; i < 7; i++) vt_tensor_decref(all[i]);
    return st;
}

/* h = x·w1ᵀ + b1 again, for a backward whose forward did not keep it (VITC_FFN_RECOMPUTE), the way
 * that forward computed it: in FFN_ROWS row blocks against w1ᵀ packed once where fused_forward ran
 * (the blocks' products are independent, so their bits are the forward's), else vt_k_linear */
static vt_tensor *hidden_again(const vt_tensor *x, const vt_tensor *w1, const vt_tensor *b1, const vt_tensor *w2);

/* the fused plan applies: 2-d weights that chain, both products on the own kernel */
static int fused_applies(const vt_tensor *x, const vt_tensor *w1, const vt_tensor *w2) {
    if (w1->ndim != 2 || w2->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w1->shape[1]) return 0;
    int64_t D = w1->shape[1], Hd = w1->shape[0], Do = w2->shape[0];
    if (D < 1 || Hd < 1 || Do < 1 || w2->shape[1] != Hd) return 0;
    int64_t M = vt_numel(x) / D;
    return M >= 1 && vt_gemm_path_now(0, M, Hd, D) == 1 && vt_gemm_path_now(0, M, Do, Hd) == 1;
}

/* VITC_FFN_RECOMPUTE=1: the pre-activation h (rows × hidden, the largest tensor a ViT block keeps:
 * 12 × 19 MB in a DeiT-Tiny step at batch 32) is not saved but recomputed in backward from x and w1,
 * which are saved anyway; bitwise the same. The cost is the first layer's GEMM once more, and the
 * backward holding h, GELU(h) and GELU'(h) at once (three rows × hidden tensors, one layer at a
 * time, where the saved h made it two besides h). Read at every forward, so tests can flip it. */
static int ffn_recompute(void) { return env_switch("VITC_FFN_RECOMPUTE", 0); }

static vt_tensor *hidden_again(const vt_tensor *x, const vt_tensor *w1, const vt_tensor *b1, const vt_tensor *w2) {
    if (!fused_applies(x, w1, w2) || (b1 && (b1->ndim != 1 || b1->shape[0] != w1->shape[0])))
        return vt_k_linear(x, w1, b1);
    int64_t D = w1->shape[1], Hd = w1->shape[0], M = vt_numel(x) / D;
    int64_t shape[VT_MAX_DIMS], nblk = (M + FFN_ROWS - 1) / FFN_ROWS;
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = Hd;
    vt_tensor *xc = vt_contiguous((vt_tensor *)x), *w1c = xc ? vt_contiguous((vt_tensor *)w1) : NULL;
    vt_tensor *b1c = b1 && w1c ? vt_contiguous((vt_tensor *)b1) : NULL;
    vt_tensor *h = w1c && (!b1 || b1c) ? vt_empty(VT_FLOAT32, x->ndim, shape) : NULL;
    vt_gemm_panel p1 = {0};
    if (h && vt_gemm_panel_init(&p1, 1, D, Hd, vt_f32(w1c), D)) { vt_tensor_decref(h); h = NULL; }
    if (h) {
        const float *xp = vt_f32(xc), *bp1 = b1c ? vt_f32(b1c) : NULL;
        float *hp = vt_f32(h);
        int nt = vt_get_num_threads();
        if (nt > nblk) nt = (int)nblk;
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            #pragma omp for schedule(static)
            for (int64_t s = 0; s < p1.nstrips; s++) vt_gemm_panel_pack(&p1, s);
            #pragma omp for schedule(static)
            for (int64_t blk = 0; blk < nblk; blk++) {
                int64_t r0 = blk * FFN_ROWS, mb = M - r0 < FFN_ROWS ? M - r0 : FFN_ROWS;
                vt_gemm_panel_linear(&p1, mb, xp + r0 * D, D, bp1, hp + r0 * Hd);
            }
        }
    }
    vt_gemm_panel_free(&p1);
    vt_tensor_decref(xc); vt_tensor_decref(w1c); vt_tensor_decref(b1c);
    return h;
}

int vt_linear_gelu_linear_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    if (c->nin < 4 || !c->in[3]) return vt_fail(VT_ETYPE, "linear_gelu_linear: w2 is missing");
    int64_t approx = c->args->i[IARG(linear_gelu_linear, approximate)];
    if (approx != 0 && approx != 1)
        return vt_fail(VT_EVALUE, "linear_gelu_linear: approximate must be 0 ('none') or 1 ('tanh'), got %lld",
                       (long long)approx);
    vt_tensor *x = c->in[0], *w1 = c->in[1], *b1 = c->in[2], *w2 = c->in[3], *b2 = c->nin > 4 ? c->in[4] : NULL;
    if (w1->ndim == 2 && w2->ndim == 2 && w2->shape[1] != w1->shape[0])
        return vt_fail(VT_ESHAPE, "linear_gelu_linear: w2 has %lld input features but w1 makes %lld hidden features "
                       "(w1 (%lld, %lld), w2 (%lld, %lld))", (long long)w2->shape[1], (long long)w1->shape[0],
                       (long long)w1->shape[0], (long long)w1->shape[1], (long long)w2->shape[0],
                       (long long)w2->shape[1]);
    vt_tensor *h = NULL, *y = NULL;
    if (vt_require_f32(x, "linear_gelu_linear", "input") || vt_require_f32(w1, "linear_gelu_linear", "w1") ||
        vt_require_f32(w2, "linear_gelu_linear", "w2") || (b1 && vt_require_f32(b1, "linear_gelu_linear", "b1")) ||
        (b2 && vt_require_f32(b2, "linear_gelu_linear", "b2")))
        return vt_last_code();
    if ((!b1 || (b1->ndim == 1 && b1->shape[0] == w1->shape[0])) && (!b2 || (b2->ndim == 1 && b2->shape[0] == w2->shape[0])) &&
        fused_applies(x, w1, w2)) {
        VT_TRY(fused_forward(x, w1, b1, w2, b2, (int)approx, &h, &y));
    } else { /* vt_k_linear checks the shapes and names what is wrong */
        if (!(h = vt_k_linear(x, w1, b1))) return vt_last_code();
        vt_tensor *a = vt_k_gelu(h, (int)approx);
        y = a ? vt_k_linear(a, w2, b2) : NULL;
        vt_tensor_decref(a);
        if (!y) {
            vt_tensor_decref(h);
            return vt_last_code();
        }
    }
    c->out[0] = y;
    c->nout = 1;
    int st = vt_save(c, x);
    if (!st) st = vt_save(c, w1);
    if (!st) st = vt_save(c, w2);
    if (c->save && ffn_recompute()) { /* w1 again in h's slot marks it, b1 follows */
        if (!st) st = vt_save(c, w1);
        if (!st && b1) st = vt_save(c, b1);
    } else if (!st)
        st = vt_save(c, h);
    vt_tensor_decref(h);
    return st;
}

/* The backward stays unfused: the same row blocks for it (a = GELU(h), da = gy·w2 in scratch,
 * dh = da ⊙ GELU'(h), dx = dh·w1, weight gradients after) measured no faster at 2 threads and
 * 4-6 % slower at 1 (the op's forward+backward, two live workers alternating, 100 rounds, both
 * side orders), so it was dropped. What it does instead: GELU(h) and GELU'(h) in one pass (they
 * share Φ(h) and the Gaussian, the costly part: exact GELU is compute-bound, ~1.3 ns an element
 * on one thread here, against ~0.2 for a relu), then dh = (dy·w2) ⊙ GELU'(h), the factor applied as
 * the GEMM stores (vt_k_linear_dx_times) instead of a pass over da. The
 * second layer's weight gradients are taken before da exists, so a is freed first and at most two
 * (rows × hidden) tensors are alive at once, as with separate ops. */
int vt_linear_gelu_linear_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *w1 = n->saved[1], *w2 = n->saved[2], *h = n->saved[3];
    unsigned need = n->needs_input_grad;
    int approx = (int)n->args.i[IARG(linear_gelu_linear, approximate)];
    int want_lower = (need & 7) != 0; /* x, w1 or b1: the gradient must go through the GELU */
    vt_tensor *a = NULL, *d = NULL, *da = NULL;
    /* h's slot holding w1's storage: VITC_FFN_RECOMPUTE dropped h, b1 (if any) is the slot after */
    if (h->storage == w1->storage) h = hidden_again(x, w1, n->nsaved > 4 ? n->saved[4] : NULL, w2);
    else vt_tensor_incref(h);
    if (!h) return vt_last_code();
    int st = want_lower ? vt_gelu_with_grad(h, approx, &a, &d) : ((a = vt_k_gelu(h, approx)) ? VT_OK : vt_last_code());
    if (st) { vt_tensor_decref(h); return st; }
    st = vt_k_linear_grads(gout[0], a, w2, NULL, need & 8 ? &gin[3] : NULL, need & 16 ? &gin[4] : NULL);
    vt_tensor_decref(a);
    if (!st && want_lower) {
        st = vt_k_linear_dx_times(gout[0], h, w2, d, &da); /* dh = (dy·w2) ⊙ GELU'(h) (h: a's shape) */
        vt_tensor_decref(d); /* before the first layer's gradients are allocated */
        d = NULL;
        if (!st)
            st = vt_k_linear_grads(da, x, w1, need & 1 ? &gin[0] : NULL, need & 2 ? &gin[1] : NULL,
                                   need & 4 ? &gin[2] : NULL);
    }
    vt_tensor_decref(d);
    vt_tensor_decref(da);
    vt_tensor_decref(h);
    return st;
}
