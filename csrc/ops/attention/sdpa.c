/* vitc ops, attention: torch.nn.functional.scaled_dot_product_attention on the per-head kernels. */
#include <stdlib.h>
#include <string.h>
#include "../../core/rng.h"
#include "drivers.h"

/* batch geometry shared by forward and backward: broadcast batch shape and per-batch offsets */
typedef struct {
    int nbd;
    int64_t bshape[VT_MAX_DIMS], nb, L, S, E, Ev;
    int64_t *off; /* nb × 4: offsets of q, k, v, mask for each batch index */
    int64_t ms0, ms1;
} sdpa_geom;

static int sdpa_geometry(sdpa_geom *g, const vt_tensor *q, const vt_tensor *k, const vt_tensor *v,
                         const vt_tensor *mask) {
    char b1[128], b2[128], b3[128];
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2)
        return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: query, key and value need at least 2 dims (..., T, E), "
                       "got %d-d, %d-d and %d-d", q->ndim, k->ndim, v->ndim);
    int nq = q->ndim, nk = k->ndim, nv = v->ndim;
    g->L = q->shape[nq - 2];
    g->E = q->shape[nq - 1];
    g->S = k->shape[nk - 2];
    g->Ev = v->shape[nv - 1];
    if (k->shape[nk - 1] != g->E || v->shape[nv - 2] != g->S)
        return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: query %s, key %s and value %s do not fit "
                       "(need (..., L, E), (..., S, E), (..., S, Ev))", vt_shape_str(nq, q->shape, b1, sizeof b1),
                       vt_shape_str(nk, k->shape, b2, sizeof b2), vt_shape_str(nv, v->shape, b3, sizeof b3));
    if (g->E == 0) return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: the embedding dim E must be positive");
    int64_t t1[VT_MAX_DIMS];
    int n1;
    if (vt_broadcast_shapes(nq - 2, q->shape, nk - 2, k->shape, &n1, t1, "scaled_dot_product_attention") ||
        vt_broadcast_shapes(n1, t1, nv - 2, v->shape, &g->nbd, g->bshape, "scaled_dot_product_attention"))
        return vt_last_code();
    int nbd = g->nbd;
    int64_t full[VT_MAX_DIMS], sm[VT_MAX_DIMS];
    memcpy(full, g->bshape, sizeof(int64_t) * (size_t)nbd);
    full[nbd] = g->L;
    full[nbd + 1] = g->S;
    if (mask) {
        int nm;
        int64_t ms[VT_MAX_DIMS];
        int ok = mask->ndim <= nbd + 2 &&
                 !vt_broadcast_shapes(mask->ndim, mask->shape, nbd + 2, full, &nm, ms, "scaled_dot_product_attention") &&
                 nm == nbd + 2 && !memcmp(ms, full, sizeof(int64_t) * (size_t)nm);
        if (!ok)
            return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: attn_mask of shape %s does not broadcast to "
                           "the attention shape %s", vt_shape_str(mask->ndim, mask->shape, b1, sizeof b1),
                           vt_shape_str(nbd + 2, full, b2, sizeof b2));
        vt_broadcast_strides(mask, nbd + 2, full, sm);
        g->ms0 = sm[nbd];
        g->ms1 = sm[nbd + 1];
    }
    g->nb = vt_shape_numel(nbd, g->bshape);
    g->off = malloc(sizeof(int64_t) * 4 * (size_t)(g->nb ? g->nb : 1));
    if (!g->off) return vt_fail(VT_ENOMEM, "scaled_dot_product_attention: out of memory");
    int64_t st[4][VT_MAX_DIMS] = {{0}};
    const vt_tensor *ts[3] = {q, k, v};
    for (int t = 0; t < 3; t++) {
        vt_tensor geo = *ts[t];
        geo.ndim -= 2; /* batch dims only */
        vt_broadcast_strides(&geo, nbd, g->bshape, st[t]);
    }
    if (mask) memcpy(st[3], sm, sizeof sm); /* its first nbd entries are the batch strides */
    for (int64_t i = 0; i < g->nb; i++) {
        int64_t rem = i, o[4] = {0, 0, 0, 0};
        for (int d = nbd - 1; d >= 0; d--) {
            int64_t idx = rem % g->bshape[d];
            rem /= g->bshape[d];
            for (int t = 0; t < 4; t++) o[t] += idx * st[t][d];
        }
        memcpy(g->off + 4 * i, o, sizeof o);
    }
    return VT_OK;
}

static vt_attn_head sdpa_head(const sdpa_geom *g, int64_t bi, const vt_tensor *q, const vt_tensor *k,
                              const vt_tensor *v, const vt_tensor *mask, int causal, float scale, float p,
                              uint64_t seed, uint64_t base) {
    const int64_t *o = g->off + 4 * bi;
    vt_attn_head h = {.tq = g->L, .tk = g->S, .dh = g->E, .dv = g->Ev, .q = vt_f32(q) + o[0], .k = vt_f32(k) + o[1],
                      .v = vt_f32(v) + o[2], .ldq = q->strides[q->ndim - 2], .ldk = k->strides[k->ndim - 2],
                      .ldv = v->strides[v->ndim - 2], .scale = scale, .causal = causal, .dropout_p = p,
                      .seed = seed, .base = base, .elem0 = (uint64_t)(bi * g->L * g->S)};
    if (mask) {
        h.ms0 = g->ms0;
        h.ms1 = g->ms1;
        if (mask->dtype == VT_BOOL) h.mask_keep = vt_u8(mask) + o[3];
        else h.mask_add = vt_f32(mask) + o[3];
    }
    return h;
}

/* E^-1/2 when default_scale, else the given scale */
static double sdpa_scale(const vt_args *a, int64_t E) {
    return a->i[IARG(scaled_dot_product_attention, default_scale)] ? 1.0 / sqrt((double)E)
                                                                   : a->f[FARG(scaled_dot_product_attention, scale)];
}

/* inputs q (..., L, E), k (..., S, E), v (..., S, Ev), attn_mask or NULL (bool: True takes part;
 * float: added to the scores), batch dims broadcast. Saves q, k, v, P, the dropout draws, mask;
 * under attn_recompute_maps() the draws stand in P's slot too (int64, so never taken for P) and the
 * backward recomputes each P with the forward's kernel (bitwise the same). */
int vt_sdpa_forward(vt_ctx *c) {
    const char *who = "scaled_dot_product_attention";
    if (c->nin < 3) return vt_fail(VT_EVALUE, "%s: expected query, key, value (and attn_mask)", who);
    vt_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2], *mask = c->nin > 3 ? c->in[3] : NULL;
    VT_TRY(vt_require_f32(q, who, "query"));
    VT_TRY(vt_require_f32(k, who, "key"));
    VT_TRY(vt_require_f32(v, who, "value"));
    if (mask && mask->dtype != VT_BOOL && mask->dtype != VT_FLOAT32)
        return vt_fail(VT_ETYPE, "%s: attn_mask must be bool or float32, got %s", who, vt_dtype_name(mask->dtype));
    int causal = (int)c->args->i[IARG(scaled_dot_product_attention, is_causal)];
    if (causal && mask) return vt_fail(VT_EVALUE, "%s: attn_mask must not be given together with is_causal=True", who);
    double p = c->args->f[FARG(scaled_dot_product_attention, dropout_p)];
    VT_TRY(check_dropout(who, p));
    sdpa_geom g = {0};
    vt_tensor *qc = NULL, *kc = NULL, *vc = NULL, *out = NULL, *P = NULL, *rng = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    if (!(qc = unit_last(q)) || !(kc = unit_last(k)) || !(vc = unit_last(v))) goto fail;
    if ((st = sdpa_geometry(&g, qc, kc, vc, mask))) goto done; /* offsets of the views the kernels read */
    double scale = sdpa_scale(c->args, g.E);
    int64_t shape[VT_MAX_DIMS];
    memcpy(shape, g.bshape, sizeof(int64_t) * (size_t)g.nbd);
    shape[g.nbd] = g.L;
    shape[g.nbd + 1] = g.Ev;
    if (!(out = vt_empty(VT_FLOAT32, g.nbd + 2, shape))) goto fail;
    shape[g.nbd + 1] = g.S;
    if (c->save && !attn_recompute_maps(g.L, g.S, g.E) && !(P = vt_empty(VT_FLOAT32, g.nbd + 2, shape))) goto fail;
    uint64_t seed = 0, base = 0;
    if (p > 0.0) {
        seed = vt_rng_get_seed();
        base = vt_rng_reserve(((uint64_t)(g.nb * g.L * g.S) + 3) / 4);
    }
    if (c->save && !(rng = rng_state(seed, base))) goto fail;
    int nt = team_size(g.nb, g.nb * g.L * g.S * (g.E + g.Ev));
    if (g.nb && g.L && (st = scratch_alloc(&scr, vt_attn_scratch_floats(g.L, g.S, g.E, g.Ev, p > 0.0), nt))) goto done;
    float *op = vt_f32(out), *pp = P ? vt_f32(P) : NULL;
    int64_t chunk = chunk_size(g.nb, nt);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bi = 0; bi < g.nb; bi++) {
            if (!g.L) continue;
            vt_attn_head h = sdpa_head(&g, bi, qc, kc, vc, mask, causal, (float)scale, (float)p, seed, base);
            vt_attn_head_forward(&h, op + bi * g.L * g.Ev, g.Ev, pp ? pp + bi * g.L * g.S : NULL, g.S, mine);
        }
    }
    c->out[0] = out;
    c->nout = 1;
    out = NULL;
    if ((st = vt_save(c, qc)) || (st = vt_save(c, kc)) || (st = vt_save(c, vc)) || (rng && (st = vt_save(c, P ? P : rng))) ||
        (rng && (st = vt_save(c, rng))) || (mask && (st = vt_save(c, mask))))
        goto done;
    goto done;
fail:
    st = vt_last_code();
done:
    free(g.off);
    scratch_free(&scr);
    vt_tensor_decref(qc); vt_tensor_decref(kc); vt_tensor_decref(vc);
    vt_tensor_decref(out); vt_tensor_decref(P); vt_tensor_decref(rng);
    return st;
}

/* gradients land in full broadcast-shape buffers and are summed back to each input's shape */
int vt_sdpa_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *P = n->saved[3], *rng = n->saved[4];
    vt_tensor *mask = n->nsaved > 5 ? n->saved[5] : NULL;
    double p = n->args.f[FARG(scaled_dot_product_attention, dropout_p)];
    int causal = (int)n->args.i[IARG(scaled_dot_product_attention, is_causal)];
    sdpa_geom g = {0};
    vt_tensor *gc = NULL, *full[4] = {NULL, NULL, NULL, NULL};
    scratch_set scr = {0};
    int st = VT_OK;
    if ((st = sdpa_geometry(&g, q, k, v, mask))) goto done;
    double scale = sdpa_scale(&n->args, g.E);
    if (!(gc = vt_contiguous(gout[0]))) goto fail;
    int64_t widths[4][2] = {{g.L, g.E}, {g.S, g.E}, {g.S, g.Ev}, {g.L, g.S}};
    for (int t = 0; t < 4; t++) {
        if (!(n->needs_input_grad >> t & 1) || (t == 3 && (!mask || mask->dtype != VT_FLOAT32))) continue;
        int64_t shape[VT_MAX_DIMS];
        memcpy(shape, g.bshape, sizeof(int64_t) * (size_t)g.nbd);
        shape[g.nbd] = widths[t][0];
        shape[g.nbd + 1] = widths[t][1];
        if (!(full[t] = vt_empty(VT_FLOAT32, g.nbd + 2, shape))) goto fail;
    }
    uint64_t seed = (uint64_t)vt_i64(rng)[0], base = (uint64_t)vt_i64(rng)[1];
    int nt = team_size(g.nb, 2 * g.nb * g.L * g.S * (g.E + g.Ev));
    int recompute = P->dtype != VT_FLOAT32; /* P's slot holds the draws: recompute each map into pbuf */
    int64_t sp = pad8(g.S), head_floats = vt_attn_scratch_floats(g.L, g.S, g.E, g.Ev, p > 0.0);
    if (g.nb && g.L && (st = scratch_alloc(&scr, head_floats + (recompute ? g.L * sp : 0), nt))) goto done;
    const float *gp = vt_f32(gc), *pp = recompute ? NULL : vt_f32(P);
    float *fp[4];
    for (int t = 0; t < 4; t++) fp[t] = full[t] ? vt_f32(full[t]) : NULL;
    int64_t chunk = chunk_size(g.nb, nt);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bi = 0; bi < g.nb; bi++) {
            vt_attn_head h = sdpa_head(&g, bi, q, k, v, mask, causal, (float)scale, (float)p, seed, base);
            if (!g.L) { /* no queries: key and value get zero gradients */
                for (int t = 1; t < 3; t++)
                    if (fp[t]) memset(fp[t] + bi * widths[t][0] * widths[t][1], 0,
                                      sizeof(float) * (size_t)(widths[t][0] * widths[t][1]));
                continue;
            }
            float *pbuf = mine + head_floats;
            if (!pp) vt_attn_probs(&h, pbuf, sp, mine); /* mine: packing room, free until the backward */
            vt_attn_head_backward(&h, gp + bi * g.L * g.Ev, g.Ev, pp ? pp + bi * g.L * g.S : pbuf, pp ? g.S : sp, NULL, 0,
                                  fp[0] ? fp[0] + bi * g.L * g.E : NULL, g.E, fp[1] ? fp[1] + bi * g.S * g.E : NULL, g.E,
                                  fp[2] ? fp[2] + bi * g.S * g.Ev : NULL, g.Ev, fp[3] ? fp[3] + bi * g.L * g.S : NULL,
                                  g.S, NULL, 0, mine);
        }
    }
    for (int t = 0; t < 4; t++) {
        if (!full[t]) continue;
        const vt_meta *m = &n->in_meta[t];
        if (!(gin[t] = vt_k_sum_to(full[t], m->ndim, m->shape))) goto fail;
    }
    goto done;
fail:
    st = vt_last_code();
done:
    free(g.off);
    scratch_free(&scr);
    vt_tensor_decref(gc);
    for (int t = 0; t < 4; t++) vt_tensor_decref(full[t]);
    return st;
}
