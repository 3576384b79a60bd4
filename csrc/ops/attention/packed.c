/* vitc ops, attention: the packed multi-head attention driver, forward and backward, that attention
 * and qkv_attention (mha.c) run on the (B, T, 3·H·Dh) projection: heads (or whole images, staged
 * into the thread's scratch where that fits L2) in parallel over OpenMP threads. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../../core/rng.h"
#include "drivers.h"

/* ---- staging whole images ------------------------------------------------------------------- */

static int64_t stage_limit_bytes(void) {
    static int64_t lim = 0; /* one core's L2 (sysconf; 512 KB when unknown), read once */
    int64_t v = __atomic_load_n(&lim, __ATOMIC_RELAXED);
    if (!v) {
        long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        v = l2 > 0 ? (int64_t)l2 : (int64_t)512 << 10;
        __atomic_store_n(&lim, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* Whole images at a time, from a staged copy: one image's rows of the packed projection (T × C
 * floats, contiguous when the tensor is) are copied into the thread's scratch first, a sequential
 * read the hardware prefetchers follow at full speed, where the heads' own reads are T short
 * pieces C floats apart for each of q, k and v. Used when the copy fits in one core's L2 and
 * there are enough images to share among the threads. The limit was 256 KB, half of this
 * machine's 512 KB L2; the whole L2 admits DeiT-Tiny's forward staging (197 × 576 floats,
 * 454 KB), and its step ran 4.2-4.5 % faster (bench/ab.py with limits 256 / 600 KB, both side
 * orders); a 1.1 MB limit, which also stages its backward (1.06 MB), changed nothing measurable
 * against 600 KB. */
static int by_image(int64_t B, int64_t staged_floats, int nt) {
    return staged_floats > 0 && B >= 4 * (int64_t)nt && staged_floats * (int64_t)sizeof(float) <= stage_limit_bytes();
}

static int64_t stage_floats(int64_t T, int64_t C) { return (T * C + 15) & ~(int64_t)15; }

static void stage_rows(float *dst, const float *src, int64_t T, int64_t C, int64_t ld) {
    if (ld == C) memcpy(dst, src, sizeof(float) * (size_t)(T * C));
    else
        for (int64_t t = 0; t < T; t++) memcpy(dst + t * C, src + t * ld, sizeof(float) * (size_t)C);
}

/* one head (number bh = b·H + h) of the packed projection: its q block starts at row0, k and v
 * follow HD = H·Dh floats apart, rows are ld floats apart (the tensor's, or C in a staged copy) */
typedef struct { int64_t T, Dh, HD, H; float scale, p; uint64_t seed, base; } packed_geom;

static vt_attn_head packed_head(const packed_geom *g, const float *row0, int64_t ld, int64_t bh) {
    return (vt_attn_head){.tq = g->T, .tk = g->T, .dh = g->Dh, .dv = g->Dh, .q = row0, .k = row0 + g->HD,
                          .v = row0 + 2 * g->HD, .ldq = ld, .ldk = ld, .ldv = ld, .scale = g->scale,
                          .dropout_p = g->p, .seed = g->seed, .base = g->base,
                          .elem0 = (uint64_t)(bh * g->T * g->T)};
}

/* ---- forward --------------------------------------------------------------------------------- */

fwd_plan vt_attn_forward_plan(int64_t B, int64_t T, int64_t H, int64_t Dh, double p) {
    int64_t pairs = B * H;
    fwd_plan pl = {.nt = team_size(pairs, pairs * T * T * Dh), .sq = stage_floats(T, 3 * H * Dh)};
    pl.staged = by_image(B, pl.sq, pl.nt);
    pl.per = vt_attn_scratch_floats(T, T, Dh, Dh, p > 0.0) + (pl.staged ? pl.sq : 0);
    return pl;
}

int vt_attn_packed_forward(vt_ctx *c, vt_tensor *qkv, qkv_proj *pj, out_proj *po, const fwd_plan *pl,
                           const attn_geom *ag, vt_tensor **ao) {
    int64_t B = ag->B, T = ag->T, H = ag->H, Dh = ag->Dh, HD = H * Dh, C = 3 * HD;
    double p = ag->p;
    vt_tensor *out = NULL, *A = NULL, *rng = NULL, *aot = NULL, *stats = NULL;
    scratch_set scr = {0};
    int st = VT_OK, nt = pl->nt;
    if (!(out = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, po ? po->Do : HD}))) goto fail;
    if (po && c->save && !ag->drop_out && !(aot = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD}))) goto fail;
    int keep_maps = ag->need_weights || (c->save && !attn_recompute_maps(T, T, Dh));
    if (keep_maps && !(A = vt_empty(VT_FLOAT32, 4, (int64_t[]){B, H, T, T}))) goto fail;
    if (!keep_maps && c->save && !(stats = vt_empty(VT_FLOAT32, 2, (int64_t[]){B * H * T, 2}))) goto fail;
    uint64_t seed = 0, base = 0;
    if (p > 0.0) {
        seed = vt_rng_get_seed();
        base = vt_rng_reserve(((uint64_t)(B * H * T * T) + 3) / 4);
        if (c->save && !(rng = rng_state(seed, base))) goto fail;
    }
    /* so: the heads' output staged per image, unless they write it straight into the kept copy */
    int64_t pairs = B * H, so = po && !aot ? stage_floats(T, HD) : 0, per = pl->per + so, sq = pl->sq;
    if (pairs && T && (st = scratch_alloc(&scr, per, nt))) goto fail;
    float *xp = qkv ? vt_f32(qkv) : NULL, *op = vt_f32(out), *ap = A ? vt_f32(A) : NULL;
    float *aop = aot ? vt_f32(aot) : NULL, *stp = stats ? vt_f32(stats) : NULL;
    int64_t sb = qkv ? qkv->strides[0] : 0, ldx = qkv ? qkv->strides[1] : 0;
    int64_t chunk = chunk_size(pairs, nt);
    packed_geom pg = {T, Dh, HD, H, (float)ag->scale, (float)p, seed, base};
    if (pl->staged) {
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *mine = scratch_mine(&scr), *img = mine + per - sq - so, *obuf = img + sq;
            if (pj || po) {
                int64_t n1 = pj ? pj->wt.nstrips : 0, n2 = po ? po->wt.nstrips : 0;
                #pragma omp for schedule(static)
                for (int64_t s = 0; s < n1 + n2; s++) vt_gemm_panel_pack(s < n1 ? &pj->wt : &po->wt, s < n1 ? s : s - n1);
            }
            #pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < B; b++) {
                if (pj) {
                    vt_gemm_panel_linear(&pj->wt, T, pj->x + b * pj->sbx, pj->ldx, pj->bias, img);
                    if (xp) vt_stream_copy(xp + b * T * C, img, T * C);
                } else
                    stage_rows(img, xp + b * sb, T, C, ldx);
                /* the heads' output: straight into the saved copy when there is one (the projection
                 * then reads it from cache), else the scratch */
                float *ob = po ? (aop ? aop + b * T * HD : obuf) : op + b * T * HD;
                for (int64_t hh = 0; hh < H; hh++) {
                    int64_t bh = b * H + hh;
                    const float *row0 = img + hh * Dh;
                    vt_attn_head hd = packed_head(&pg, row0, C, bh);
                    hd.stats_out = stp ? stp + 2 * bh * T : NULL;
                    vt_attn_head_forward(&hd, ob + hh * Dh, HD, ap ? ap + bh * T * T : NULL, T, mine);
                }
                if (po) {
                    vt_gemm_panel_linear(&po->wt, T, ob, HD, po->bias, op + b * T * po->Do);
                }
            }
        }
    } else
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bh = 0; bh < pairs; bh++) {
            if (!T) continue;
            int64_t b = bh / H, hh = bh % H;
            const float *row0 = xp + b * sb + hh * Dh;
            vt_attn_head hd = packed_head(&pg, row0, ldx, bh);
            hd.stats_out = stp ? stp + 2 * bh * T : NULL;
            if (bh + 1 < pairs) {
                const float *nx = xp + (bh + 1) / H * sb + (bh + 1) % H * Dh;
                for (int part = 0; part < 3; part++) prefetch_rows(nx + part * HD, T, Dh, ldx);
            }
            vt_attn_head_forward(&hd, op + b * T * HD + hh * Dh, HD, ap ? ap + bh * T * T : NULL, T, mine);
        }
    }
    scratch_free(&scr);
    c->out[0] = out;
    c->nout = 1;
    if (ag->need_weights) {
        vt_tensor_incref(A);
        c->out[c->nout++] = A;
    }
    if (ao) *ao = aot;
    else vt_tensor_decref(aot);
    /* outputs already belong to c: on failure the dispatcher releases them */
    vt_tensor *slot0 = ag->recompute_from ? ag->recompute_from : qkv;
    if (!(st = vt_save(c, slot0)) && !(st = vt_save(c, A ? A : stats)) && rng) st = vt_save(c, rng);
    vt_tensor_decref(A);
    vt_tensor_decref(stats);
    vt_tensor_decref(rng);
    return st;
fail:
    st = vt_last_code();
    scratch_free(&scr);
    vt_tensor_decref(out);
    vt_tensor_decref(aot);
    vt_tensor_decref(A);
    vt_tensor_decref(stats);
    vt_tensor_decref(rng);
    return st;
}

/* ---- backward -------------------------------------------------------------------------------- */

/* The attention backward per head (dv = A'ᵀ·dO, dA = dO·vᵀ through the dropout mask, the softmax
 * backward, dq = dS·k·scale, dk = dSᵀ·q·scale), all three gradients written into one packed dqkv (B, T, 3·H·Dh).
 * With wo (qkv_attention's output projection) gout[0] is the gradient of y = out·W_oᵀ + b_o and
 * the attention output's gradient is gy·W_o: per image into the staging buffer in staged plans
 * (W_o packed once), else as one product first. */
int vt_attn_packed_backward(vt_node *n, vt_tensor *x, vt_tensor *A, vt_tensor *rng, vt_tensor **gout,
                            const vt_tensor *wo, in_grad *ig, vt_tensor *ao, vt_tensor **dx_out) {
    int64_t H = ATTN_I(&n->args, heads), B = x->shape[0], T = x->shape[1], C = x->shape[2], Dh = C / (3 * H), HD = H * Dh;
    double scale = ATTN_SCALE(&n->args, Dh), p = ATTN_F(&n->args, dropout_p);
    vt_tensor *gy = wo && gout[0] ? vt_contiguous(gout[0]) : NULL, *woc = gy ? vt_contiguous((vt_tensor *)wo) : NULL;
    vt_tensor *g = !wo && gout[0] ? vt_contiguous(gout[0]) : NULL;
    vt_tensor *ga = n->nout > 1 && gout[1] ? vt_contiguous(gout[1]) : NULL, *dx = NULL;
    vt_gemm_panel pw = {0}, pdx = {0};
    scratch_set scr = {0};
    int st = VT_OK;
    if (ig) ig->dx = NULL;
    if ((gout[0] && !g && !(gy && woc)) || (n->nout > 1 && gout[1] && !ga)) goto fail;
    if (!(dx = vt_empty(VT_FLOAT32, 3, x->shape))) goto fail;
    int64_t pairs = B * H, Do = wo ? wo->shape[0] : 0;
    int nt = team_size(pairs, 2 * pairs * T * T * Dh);
    /* staged: the image's qkv rows and dout rows in, its dqkv rows out (written whole, then copied) */
    int64_t sq = stage_floats(T, C), sg = gout[0] ? stage_floats(T, HD) : 0;
    int staged = by_image(B, 2 * sq + sg, nt);
    if (gy && !staged) { /* the attention output's gradient in one product, as vt_k_linear_grads' dx */
        if (!(g = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD}))) goto fail;
        if ((st = vt_k_gemm(0, 0, B * T, HD, Do, 1.0f, vt_f32(gy), Do, vt_f32(woc), HD, 0.0f, vt_f32(g), HD)))
            goto fail;
    } else if (gy && (st = vt_gemm_panel_init(&pw, 0, Do, HD, vt_f32(woc), HD)))
        goto fail;
    const float *gyp = gy && staged ? vt_f32(gy) : NULL;
    float *dinp = NULL;
    if (ig && staged && ig->D > 0 && vt_gemm_path_now(0, B * T, ig->D, C) == 1) {
        if (!(ig->dx = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, ig->D}))) goto fail;
        if ((st = vt_gemm_panel_init(&pdx, 0, C, ig->D, ig->w, ig->D))) goto fail;
        dinp = vt_f32(ig->dx);
    }
    /* A 2-d "map" is the softmax row statistics (B·H·T, 2): the maps were not kept
     * (attn_recompute_maps) and each head's is rebuilt from q, k and its statistics into the
     * thread's pbuf (T × pad8(T), after the head scratch) */
    int recompute = A->ndim != 4;
    const float *stats = recompute ? vt_f32(A) : NULL;
    int64_t tkp = pad8(T), head_floats = vt_attn_scratch_floats(T, T, Dh, Dh, p > 0.0);
    int64_t per = head_floats + (recompute ? T * tkp : 0) + (staged ? 2 * sq + sg : 0);
    if (pairs && T && (st = scratch_alloc(&scr, per, nt))) goto fail;
    uint64_t seed = rng ? (uint64_t)vt_i64(rng)[0] : 0, base = rng ? (uint64_t)vt_i64(rng)[1] : 0;
    const float *xp = vt_f32(x), *gp = g ? vt_f32(g) : NULL, *gap = ga ? vt_f32(ga) : NULL;
    const float *ap = recompute ? NULL : vt_f32(A);
    float *dp = vt_f32(dx), *aop = ao ? vt_f32(ao) : NULL;
    int64_t sb = x->strides[0], ldx = x->strides[1];
    int64_t chunk = chunk_size(pairs, nt);
    packed_geom pg = {T, Dh, HD, H, (float)scale, (float)p, seed, base};
    if (staged) {
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *mine = scratch_mine(&scr), *img = mine + per - 2 * sq - sg, *dimg = img + sq, *gimg = dimg + sq;
            float *pbuf = mine + head_floats;
            if (gyp || dinp) {
                int64_t n1 = gyp ? pw.nstrips : 0, n2 = dinp ? pdx.nstrips : 0;
                #pragma omp for schedule(static)
                for (int64_t s = 0; s < n1 + n2; s++) vt_gemm_panel_pack(s < n1 ? &pw : &pdx, s < n1 ? s : s - n1);
            }
            #pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < B; b++) {
                stage_rows(img, xp + b * sb, T, C, ldx);
                if (gyp) vt_gemm_panel_rows(&pw, T, gyp + b * T * Do, Do, 0.0f, gimg, HD);
                else if (gp) stage_rows(gimg, gp + b * T * HD, T, HD, HD);
                for (int64_t hh = 0; hh < H; hh++) {
                    int64_t bh = b * H + hh;
                    const float *row0 = img + hh * Dh;
                    float *drow0 = dimg + hh * Dh;
                    vt_attn_head hd = packed_head(&pg, row0, C, bh);
                    const float *pm = ap ? ap + bh * T * T : pbuf;
                    hd.stats_in = stats ? stats + 2 * bh * T : NULL;
                    if (!ap) vt_attn_probs(&hd, pbuf, tkp, mine); /* mine: packing room, free until the backward */
                    vt_attn_head_backward(&hd, gp || gyp ? gimg + hh * Dh : NULL, HD, pm, ap ? T : tkp,
                                          gap ? gap + bh * T * T : NULL, T, drow0, C, drow0 + HD, C, drow0 + 2 * HD,
                                          C, NULL, 0, aop ? aop + b * T * HD + hh * Dh : NULL, HD, mine);
                }
                vt_stream_copy(dp + b * T * C, dimg, T * C); /* read back from memory after the loop anyway */
                if (dinp) vt_gemm_panel_rows(&pdx, T, dimg, C, 0.0f, dinp + b * T * ig->D, ig->D);
            }
        }
    } else
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL, *pbuf = mine ? mine + head_floats : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bh = 0; bh < pairs; bh++) {
            if (!T) continue;
            int64_t b = bh / H, hh = bh % H;
            const float *row0 = xp + b * sb + hh * Dh;
            float *drow0 = dp + b * T * C + hh * Dh;
            vt_attn_head hd = packed_head(&pg, row0, ldx, bh);
            if (bh + 1 < pairs) {
                int64_t nb = (bh + 1) / H, nh = (bh + 1) % H;
                for (int part = 0; part < 3; part++) prefetch_rows(xp + nb * sb + nh * Dh + part * HD, T, Dh, ldx);
                if (gp) prefetch_rows(gp + nb * T * HD + nh * Dh, T, Dh, HD);
                if (ap) prefetch_rows(ap + (bh + 1) * T * T, 1, T * T, 0);
            }
            const float *pm = ap ? ap + bh * T * T : pbuf;
            hd.stats_in = stats ? stats + 2 * bh * T : NULL;
            if (!ap) vt_attn_probs(&hd, pbuf, tkp, mine);
            vt_attn_head_backward(&hd, gp ? gp + b * T * HD + hh * Dh : NULL, HD, pm, ap ? T : tkp,
                                  gap ? gap + bh * T * T : NULL, T, drow0, C, drow0 + HD, C, drow0 + 2 * HD, C,
                                  NULL, 0, aop ? aop + b * T * HD + hh * Dh : NULL, HD, mine);
        }
    }
    scratch_free(&scr);
    vt_gemm_panel_free(&pw);
    vt_gemm_panel_free(&pdx);
    vt_tensor_decref(g);
    vt_tensor_decref(gy);
    vt_tensor_decref(woc);
    vt_tensor_decref(ga);
    *dx_out = dx;
    return VT_OK;
fail:
    st = vt_last_code();
    scratch_free(&scr);
    vt_gemm_panel_free(&pw);
    vt_gemm_panel_free(&pdx);
    if (ig) { vt_tensor_decref(ig->dx); ig->dx = NULL; }
    vt_tensor_decref(g);
    vt_tensor_decref(gy);
    vt_tensor_decref(woc);
    vt_tensor_decref(ga);
    vt_tensor_decref(dx);
    return st;
}
