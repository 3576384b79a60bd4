/* vitc ops, attention: the multi-head self-attention ops on the packed qkv projection: attention
 * (ViT, arXiv 2010.11929 Appendix A, on a given (B, T, 3·H·Dh) projection), qkv_attention (the same
 * with the qkv and output projections folded in, what nn.Attention runs) and attention_apply
 * (DeepViT's attention reuse: given maps times this block's v). */
#include <string.h>
#include "drivers.h"

/* heads, need_weights, scale and dropout of an attention op whose packed width is C; fills
 * everything of ag but B and T */
static int attn_args(const vt_ctx *c, const char *who, int64_t C, const int64_t *shape, int ndim, attn_geom *ag) {
    char buf[128];
    int64_t H = ATTN_I(c->args, heads);
    if (H <= 0) return vt_fail(VT_EVALUE, "%s: heads must be positive, got %lld", who, (long long)H);
    if (C == 0 || C % (3 * H))
        return vt_fail(VT_ESHAPE, "%s: qkv's last dim %lld is not a positive multiple of 3*heads = %lld (shape %s)",
                       who, (long long)C, (long long)(3 * H), vt_shape_str(ndim, shape, buf, sizeof buf));
    ag->H = H;
    ag->Dh = C / (3 * H);
    ag->need_weights = ATTN_I(c->args, need_weights) != 0;
    ag->scale = ATTN_SCALE(c->args, ag->Dh);
    ag->p = ATTN_F(c->args, dropout_p);
    return check_dropout(who, ag->p);
}

int vt_attention_forward(vt_ctx *c) {
    vt_tensor *x = c->nin > 0 ? c->in[0] : NULL;
    VT_TRY(vt_require_f32(x, "attention", "qkv"));
    char buf[128];
    if (x->ndim != 3)
        return vt_fail(VT_ESHAPE, "attention: qkv must be 3-d (B, T, 3*heads*head_dim), got shape %s",
                       vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    attn_geom ag = {.B = x->shape[0], .T = x->shape[1]};
    VT_TRY(attn_args(c, "attention", x->shape[2], x->shape, x->ndim, &ag));
    vt_tensor *xc = unit_last(x);
    if (!xc) return vt_last_code();
    fwd_plan pl = vt_attn_forward_plan(ag.B, ag.T, ag.H, ag.Dh, ag.p);
    int st = vt_attn_packed_forward(c, xc, NULL, NULL, &pl, &ag, NULL);
    vt_tensor_decref(xc);
    return st;
}

int vt_attention_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    if (!(n->needs_input_grad & 1)) return VT_OK;
    return vt_attn_packed_backward(n, n->saved[0], n->saved[1], n->nsaved > 2 ? n->saved[2] : NULL, gout, NULL, NULL,
                                   NULL, &gin[0]);
}

/* whether qkv_attention's forward computes qkv per image into the staging (else vt_k_linear first) */
static int qkv_fused(const fwd_plan *pl, int64_t D, int proj, int64_t Do) { return pl->staged && D >= 1 && (!proj || Do >= 1); }

/* qkv = x·Wᵀ + b again, for a backward whose forward did not keep it (VITC_QKV_RECOMPUTE), computed
 * the way that forward did: per image against W packed once (vt_gemm_panel_linear) where it staged,
 * else vt_k_linear, so the bits are the forward's */
static vt_tensor *qkv_again(vt_node *n, vt_tensor *x, vt_tensor *w, vt_tensor *b, const vt_tensor *wo) {
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2], C = w->shape[0], H = ATTN_I(&n->args, heads);
    fwd_plan pl = vt_attn_forward_plan(B, T, H, C / (3 * H), ATTN_F(&n->args, dropout_p));
    if (!qkv_fused(&pl, D, wo != NULL, wo ? wo->shape[0] : 0)) return vt_k_linear(x, w, b);
    vt_tensor *xc = vt_contiguous(x), *wc = xc ? vt_contiguous(w) : NULL, *bc = b && wc ? vt_contiguous(b) : NULL;
    vt_tensor *qkv = wc && (!b || bc) ? vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, C}) : NULL;
    vt_gemm_panel pw = {0};
    if (qkv && vt_gemm_panel_init(&pw, 1, D, C, vt_f32(wc), D)) { vt_tensor_decref(qkv); qkv = NULL; }
    if (qkv) {
        const float *xp = vt_f32(xc), *bias = bc ? vt_f32(bc) : NULL;
        float *qp = vt_f32(qkv);
        #pragma omp parallel num_threads(pl.nt) if (pl.nt > 1)
        {
            #pragma omp for schedule(static)
            for (int64_t s = 0; s < pw.nstrips; s++) vt_gemm_panel_pack(&pw, s);
            #pragma omp for schedule(dynamic, 1)
            for (int64_t i = 0; i < B; i++) vt_gemm_panel_linear(&pw, T, xp + i * T * D, D, bias, qp + i * T * C);
        }
    }
    vt_gemm_panel_free(&pw);
    vt_tensor_decref(xc); vt_tensor_decref(wc); vt_tensor_decref(bc);
    return qkv;
}

/* qkv_attention: the projection qkv = x·Wᵀ + b and attention in one node, optionally followed by
 * the output projection y = out·W_oᵀ + b_o (apply_projection, inputs 3 and 4). Staged plans (the seed
 * ViT's small images) fuse both projections per image (qkv_proj, out_proj); others run
 * vt_k_linear before and after the same attention. Saves qkv, A, [dropout draws], x, W
 * [, out, W_o] (W stands in out's slot under VITC_ATTN_RECOMPUTE=2: the attention backward
 * rebuilds out); with VITC_QKV_RECOMPUTE its bias (or W) stands in qkv's and out's slots and qkv_again
 * recomputes qkv in backward. */
int vt_qkv_attention_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    int proj = c->args->i[IARG(qkv_attention, apply_projection)] != 0;
    vt_tensor *x = c->in[0], *w = c->in[1], *b = c->nin > 2 ? c->in[2] : NULL;
    vt_tensor *wo = proj && c->nin > 3 ? c->in[3] : NULL, *bo = proj && c->nin > 4 ? c->in[4] : NULL;
    const char *who = "qkv_attention";
    VT_TRY(vt_require_f32(x, who, "input"));
    VT_TRY(vt_require_f32(w, who, "weight"));
    if (b) VT_TRY(vt_require_f32(b, who, "bias"));
    if (proj) VT_TRY(vt_require_f32(wo, who, "proj_weight"));
    if (bo) VT_TRY(vt_require_f32(bo, who, "proj_bias"));
    char b1[128], b2[128];
    if (x->ndim != 3 || w->ndim != 2 || w->shape[1] != x->shape[2])
        return vt_fail(VT_ESHAPE, "%s: input must be (B, T, dim) and weight (3*heads*head_dim, dim), got %s and %s",
                       who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1), vt_shape_str(w->ndim, w->shape, b2, sizeof b2));
    int64_t C = w->shape[0], D = x->shape[2];
    if (b && (b->ndim != 1 || b->shape[0] != C))
        return vt_fail(VT_ESHAPE, "%s: bias must have shape (%lld,), got %s", who, (long long)C,
                       vt_shape_str(b->ndim, b->shape, b1, sizeof b1));
    attn_geom ag = {.B = x->shape[0], .T = x->shape[1], .recompute_from = c->save && qkv_recompute() ? (b ? b : w) : NULL};
    ag.drop_out = proj && c->save && (ag.recompute_from || attn_recompute_out());
    VT_TRY(attn_args(c, who, C, w->shape, w->ndim, &ag));
    int64_t HD = ag.H * ag.Dh, Do = proj ? wo->shape[0] : 0;
    if (proj && (wo->ndim != 2 || wo->shape[1] != HD))
        return vt_fail(VT_ESHAPE, "%s: proj_weight must be (out_dim, heads*head_dim = %lld), got %s", who,
                       (long long)HD, vt_shape_str(wo->ndim, wo->shape, b1, sizeof b1));
    if (bo && (bo->ndim != 1 || bo->shape[0] != Do))
        return vt_fail(VT_ESHAPE, "%s: proj_bias must have shape (%lld,), got %s", who, (long long)Do,
                       vt_shape_str(bo->ndim, bo->shape, b1, sizeof b1));
    fwd_plan pl = vt_attn_forward_plan(ag.B, ag.T, ag.H, ag.Dh, ag.p);
    vt_tensor *ao = NULL;
    int st;
    if (!qkv_fused(&pl, D, proj, Do)) {
        vt_tensor *qkv = vt_k_linear(x, w, b);
        if (!qkv) return vt_last_code();
        st = vt_attn_packed_forward(c, qkv, NULL, NULL, &pl, &ag, NULL);
        vt_tensor_decref(qkv);
        if (!st && proj) { /* y replaces the attention output, which is kept for W_o's gradient */
            vt_tensor *y = vt_k_linear(c->out[0], wo, bo);
            if (!y) return vt_last_code();
            ao = c->out[0];
            c->out[0] = y;
            if (ag.drop_out) { vt_tensor_decref(ao); ao = NULL; } /* recomputed in backward */
        }
    } else {
        vt_tensor *xc = vt_contiguous(x), *wc = xc ? vt_contiguous(w) : NULL, *bc = b && wc ? vt_contiguous(b) : NULL;
        vt_tensor *woc = proj && wc ? vt_contiguous(wo) : NULL, *boc = bo && wc ? vt_contiguous(bo) : NULL, *qkv = NULL;
        qkv_proj pj = {0};
        out_proj po = {0};
        st = !xc || !wc || (b && !bc) || (proj && !woc) || (bo && !boc) ? vt_last_code() : VT_OK;
        if (!st && c->save && !ag.recompute_from && !(qkv = vt_empty(VT_FLOAT32, 3, (int64_t[]){ag.B, ag.T, C})))
            st = vt_last_code();
        if (!st) st = vt_gemm_panel_init(&pj.wt, 1, D, C, vt_f32(wc), D);
        if (!st && proj) st = vt_gemm_panel_init(&po.wt, 1, HD, Do, vt_f32(woc), HD);
        if (!st) {
            pj.x = vt_f32(xc);
            pj.sbx = ag.T * D;
            pj.ldx = D;
            pj.bias = bc ? vt_f32(bc) : NULL;
            po.bias = boc ? vt_f32(boc) : NULL;
            po.Do = Do;
            st = vt_attn_packed_forward(c, qkv, &pj, proj ? &po : NULL, &pl, &ag, &ao);
        }
        vt_gemm_panel_free(&pj.wt);
        vt_gemm_panel_free(&po.wt);
        vt_tensor_decref(qkv);
        vt_tensor_decref(bc);
        vt_tensor_decref(wc);
        vt_tensor_decref(xc);
        vt_tensor_decref(woc);
        vt_tensor_decref(boc);
    }
    if (!st) st = vt_save(c, x);
    if (!st) st = vt_save(c, w);
    if (!st && proj) st = vt_save(c, ao ? ao : ag.recompute_from ? ag.recompute_from : w); /* < 3 dims: recompute */
    if (!st && proj) st = vt_save(c, wo);
    vt_tensor_decref(ao);
    return st;
}

/* the output projection's gradients (dW_o = gyᵀ·out, db_o = Σ gy), dqkv as attention's backward
 * (its dout from gy·W_o), then the qkv projection's: dx = dqkv·W, dW = dqkvᵀ·x, db = Σ dqkv.
 * In staged plans dx_b = dqkv_b·W is computed per image from the staged rows (in_grad), so the
 * K = 3·H·Dh product reads dqkv from L2 instead of memory: the op's forward+backward 4-5 % faster
 * at 1 and 2 threads (two live workers alternating, 80 rounds), the seed step 0-7 % (bench/ab.py,
 * both side orders). dW and db still read dqkv from memory (vt_k_linear_grads): a per-image
 * chunked dW_c += dqkv_bᵀ·x_b as well measured no faster at 2 threads and 6 % slower at 1 (its
 * chunk of dW, W's panel and the staging overflow L2). Under VITC_QKV_RECOMPUTE qkv is recomputed
 * first (qkv_again) and the attention output by the attention backward, W_o's gradients after it. */
int vt_qkv_attention_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    unsigned need = n->needs_input_grad;
    int proj = n->args.i[IARG(qkv_attention, apply_projection)] != 0, ns = n->nsaved - (proj ? 4 : 2);
    vt_tensor *x = n->saved[ns], *w = n->saved[ns + 1], *dqkv = NULL;
    vt_tensor *ao = proj ? n->saved[ns + 2] : NULL, *wo = proj ? n->saved[ns + 3] : NULL;
    /* slots of fewer dims than qkv's and ao's 3 hold stand-ins: VITC_QKV_RECOMPUTE dropped them */
    vt_tensor *slot0 = n->saved[0], *ao_again = NULL;
    int want_wo = proj && (need & 24) && gout[0];
    if (want_wo && ao->ndim < 3 && !(ao_again = vt_empty(VT_FLOAT32, 3, (int64_t[]){x->shape[0], x->shape[1], wo->shape[1]})))
        return vt_last_code();
    if (want_wo && !ao_again)
        VT_TRY(vt_k_linear_grads(gout[0], ao, wo, NULL, need & 8 ? &gin[3] : NULL, need & 16 ? &gin[4] : NULL));
    if (!(need & 7) && !ao_again) return VT_OK;
    vt_tensor *wc = need & 1 ? vt_contiguous(w) : NULL;
    vt_tensor *qkv = slot0->ndim < 3 ? qkv_again(n, x, w, slot0->ndim == 1 ? slot0 : NULL, wo) : slot0;
    if (qkv == slot0) vt_tensor_incref(qkv);
    int st = (need & 1) && !wc ? vt_last_code() : !qkv ? vt_last_code() : VT_OK;
    in_grad ig = {.w = wc ? vt_f32(wc) : NULL, .D = w->shape[1]};
    if (!st) st = vt_attn_packed_backward(n, qkv, n->saved[1], ns > 2 ? n->saved[2] : NULL, gout, wo, wc ? &ig : NULL,
                                          ao_again, &dqkv);
    vt_tensor_decref(qkv);
    vt_tensor_decref(wc);
    if (!st && ao_again) /* W_o's gradients from the recomputed attention output */
        st = vt_k_linear_grads(gout[0], ao_again, wo, NULL, need & 8 ? &gin[3] : NULL, need & 16 ? &gin[4] : NULL);
    vt_tensor_decref(ao_again);
    if (st || !(need & 7)) {
        vt_tensor_decref(ig.dx);
        vt_tensor_decref(dqkv);
        return st;
    }
    if (ig.dx) gin[0] = ig.dx; /* computed per image; dqkv still feeds dW and db */
    st = vt_k_linear_grads(dqkv, x, w, (need & 1) && !ig.dx ? &gin[0] : NULL, need & 2 ? &gin[1] : NULL,
                           n->nin > 2 && (need & 4) ? &gin[2] : NULL);
    vt_tensor_decref(dqkv);
    return st;
}

/* ---- attention_apply: O = M·v with given maps (DeepViT attention reuse, arXiv 2103.11886 §5) ----
 * qkv (B, T, 3·H·Dh) supplies v (its q and k are not read), maps M (B, H, T, T) come from another
 * block; O_h = M[b,h]·v_h, heads concatenated head-major. Backward: dv_h = M[b,h]ᵀ·dO_h into the v
 * part of a zero dqkv, dM[b,h] = dO_h·v_hᵀ (so the block that made M gets its gradient). */
int vt_attention_apply_forward(vt_ctx *c) {
    const char *who = "attention_apply";
    vt_tensor *x = c->nin > 0 ? c->in[0] : NULL, *m = c->nin > 1 ? c->in[1] : NULL;
    VT_TRY(vt_require_f32(x, who, "qkv"));
    VT_TRY(vt_require_f32(m, who, "maps"));
    char b1[128], b2[128];
    int64_t H = c->args->i[IARG(attention_apply, heads)];
    if (H <= 0) return vt_fail(VT_EVALUE, "attention_apply: heads must be positive, got %lld", (long long)H);
    if (x->ndim != 3 || x->shape[2] == 0 || H > x->shape[2] / 3 || x->shape[2] % (3 * H))
        return vt_fail(VT_ESHAPE, "attention_apply: qkv must be (B, T, 3*heads*head_dim) with heads = %lld, got %s",
                       (long long)H, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int64_t B = x->shape[0], T = x->shape[1], Dh = x->shape[2] / (3 * H), HD = H * Dh;
    if (m->ndim != 4 || m->shape[0] != B || m->shape[1] != H || m->shape[2] != T || m->shape[3] != T)
        return vt_fail(VT_ESHAPE, "attention_apply: maps must be (B, heads, T, T) = (%lld, %lld, %lld, %lld) for qkv %s, "
                       "got %s", (long long)B, (long long)H, (long long)T, (long long)T,
                       vt_shape_str(x->ndim, x->shape, b1, sizeof b1), vt_shape_str(m->ndim, m->shape, b2, sizeof b2));
    vt_tensor *xc = unit_last(x), *mc = NULL, *out = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    if (!xc || !(mc = vt_contiguous(m)) || !(out = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD}))) goto fail;
    int64_t pairs = B * H;
    int nt = team_size(pairs, pairs * T * T * Dh);
    if (pairs && T && (st = scratch_alloc(&scr, pack_floats(T, T, Dh, Dh) + 16, nt))) goto done;
    const float *xp = vt_f32(xc), *mp = vt_f32(mc);
    float *op = vt_f32(out);
    int64_t sb = xc->strides[0], ldx = xc->strides[1];
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t bh = 0; bh < pairs; bh++) {
        if (!T) continue;
        int64_t b = bh / H, h = bh % H;
        vt_attn_head hd = {.tq = T, .tk = T, .dh = Dh, .dv = Dh, .v = xp + b * sb + 2 * HD + h * Dh, .ldv = ldx};
        vt_attn_apply(&hd, mp + bh * T * T, T, op + b * T * HD + h * Dh, HD, scratch_mine(&scr));
    }
    c->out[0] = out;
    c->nout = 1;
    out = NULL;
    if ((st = vt_save(c, xc)) || (st = vt_save(c, mc))) goto done;
    goto done;
fail:
    st = vt_last_code();
done:
    scratch_free(&scr);
    vt_tensor_decref(xc); vt_tensor_decref(mc); vt_tensor_decref(out);
    return st;
}

int vt_attention_apply_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *m = n->saved[1];
    int64_t H = n->args.i[IARG(attention_apply, heads)], B = x->shape[0], T = x->shape[1], C = x->shape[2];
    int64_t Dh = C / (3 * H), HD = H * Dh;
    int want_x = n->needs_input_grad & 1, want_m = n->needs_input_grad >> 1 & 1;
    int64_t tkp = pad8(T);
    vt_tensor *g = gout[0] ? vt_contiguous(gout[0]) : NULL, *dx = NULL, *dm = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    if (!g) return gout[0] ? vt_last_code() : VT_OK; /* no gradient reached the output: none to pass */
    if (want_x && !(dx = vt_zeros(VT_FLOAT32, 3, x->shape))) goto fail;
    if (want_m && !(dm = vt_empty(VT_FLOAT32, 4, m->shape))) goto fail;
    int64_t pairs = B * H;
    int nt = team_size(pairs, 2 * pairs * T * T * Dh);
    if (pairs && T && (st = scratch_alloc(&scr, T * tkp + pack_floats(T, T, Dh, Dh) + 16, nt))) goto done;
    const float *xp = vt_f32(x), *mp = vt_f32(m), *gp = vt_f32(g);
    float *dxp = dx ? vt_f32(dx) : NULL, *dmp = dm ? vt_f32(dm) : NULL;
    int64_t sb = x->strides[0], ldx = x->strides[1];
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t bh = 0; bh < pairs; bh++) {
        if (!T) continue;
        int64_t b = bh / H, h = bh % H;
        float *s = scratch_mine(&scr), *aux = s + T * tkp;
        vt_attn_head hd = {.tq = T, .tk = T, .dh = Dh, .dv = Dh, .v = xp + b * sb + 2 * HD + h * Dh, .ldv = ldx};
        vt_attn_apply_backward(&hd, mp + bh * T * T, T, gp + b * T * HD + h * Dh, HD, s, tkp,
                               dxp ? dxp + b * T * C + 2 * HD + h * Dh : NULL, C, aux);
        if (dmp)
            for (int64_t i = 0; i < T; i++) memcpy(dmp + bh * T * T + i * T, s + i * tkp, sizeof(float) * (size_t)T);
    }
    gin[0] = dx;
    gin[1] = dm;
    dx = dm = NULL;
    goto done;
fail:
    st = vt_last_code();
done:
    scratch_free(&scr);
    vt_tensor_decref(g); vt_tensor_decref(dx); vt_tensor_decref(dm);
    return st;
}
