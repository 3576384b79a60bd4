/* vitc ops, attention: DeepViT re-attention on the packed projection (Zhou et al., arXiv 2103.11886,
 * "Re-attention"; the official zhoudaquan/dvit_repo:models/layers.py `ReAttention`, and
 * lucidrains/vit-pytorch:vit_pytorch/deepvit.py for the layer-norm variant).
 * Per image b, with A[b,h] = softmax(q_h·k_hᵀ·scale) and A' = dropout(A):
 *   Ã[b,g] = Σ_h Θ[g,h]·A'[b,h] + θ_g                       head mixing (a 1×1 conv over heads)
 *   x̂      = norm(Ã):  batch: (Ã − μ_g)·rstd_g, statistics per head g over its B·T² values
 *                             (training; eval uses the running ones)
 *                      layer: per (b, i, j) over the H values of the head axis
 *                      none:  x̂ = Ã
 *   Â      = ts·(γ_g·x̂ + β_g)   (none: ts·x̂; ts = the optional transform scale, 1 by default)
 *   O_g    = Â[b,g]·v_g, heads concatenated head-major as in `attention`.
 * The kernels of attention.h do the softmax and the products with v (vt_attn_probs, then the
 * mixing and norm here, then vt_attn_apply). Work runs per image (the mixing needs all heads of
 * an image at once); per-image partial sums (norm statistics, dΘ, dθ, dγ, dβ) are reduced over
 * images in order afterwards, so results do not depend on the thread count. */
#include <stdlib.h>
#include <string.h>
#include "../../core/rng.h"
#include "drivers.h"

enum { REATTN_NONE = 0, REATTN_BATCH = 1, REATTN_LAYER = 2 };

/* Σ x and Σ x·y over n contiguous floats: float SIMD blocks, block totals in double (as norm.c) */
static double rsum(const float *x, int64_t n) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) a += x[i];
        S += a;
    }
    return S;
}

static double rdot(const float *x, const float *y, int64_t n) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) a += x[i] * y[i];
        S += a;
    }
    return S;
}

/* Σ (x − m)² and Σ g·(x − m)·r (g NULL: the first) */
static double rdev2(const float *x, int64_t n, float m) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) { float d = x[i] - m; a += d * d; }
        S += a;
    }
    return S;
}

static double rgdev(const float *g, const float *x, int64_t n, float m, float r) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) a += g[i] * ((x[i] - m) * r);
        S += a;
    }
    return S;
}

/* geometry and parameters of one re-attention call, shared by forward and backward */
typedef struct {
    int64_t B, T, H, Dh, HD, C, TT, tkp;
    int norm, training, drop;
    float scale, p, ts;
    double eps;
    uint64_t seed, base;
} reattn_geom;

static vt_attn_head reattn_head(const reattn_geom *g, const float *xp, int64_t sb, int64_t ldx, int64_t b,
                                int64_t h) {
    const float *row0 = xp + b * sb + h * g->Dh;
    vt_attn_head hd = {.tq = g->T, .tk = g->T, .dh = g->Dh, .dv = g->Dh, .q = row0, .k = row0 + g->HD,
                       .v = row0 + 2 * g->HD, .ldq = ldx, .ldk = ldx, .ldv = ldx, .scale = g->scale,
                       .dropout_p = g->p, .seed = g->seed, .base = g->base,
                       .elem0 = (uint64_t)((b * g->H + h) * g->TT)};
    return hd;
}

/* A'[b] (H × T²) into dst: A[b] times image b's dropout multipliers (mult: tkp floats of room) */
static void reattn_dropped(const reattn_geom *g, const float *xp, int64_t sb, int64_t ldx, int64_t b,
                           const float *Ab, float *dst, float *mult) {
    for (int64_t h = 0; h < g->H; h++) {
        vt_attn_head hd = reattn_head(g, xp, sb, ldx, b, h);
        for (int64_t i = 0; i < g->T; i++) {
            vt_attn_dropout_row(&hd, i, mult);
            const float *a = Ab + h * g->TT + i * g->T;
            float *d = dst + h * g->TT + i * g->T;
            for (int64_t j = 0; j < g->T; j++) d[j] = a[j] * mult[j];
        }
    }
}

/* layer norm over the head axis of one image: x (H × T², rows TT apart) -> mean, rstd (T²) */
static void reattn_ln_stats(const float *x, int64_t H, int64_t TT, double eps, float *mean, float *rstd) {
    for (int64_t k = 0; k < TT; k++) mean[k] = 0.0f;
    for (int64_t h = 0; h < H; h++)
        for (int64_t k = 0; k < TT; k++) mean[k] += x[h * TT + k];
    for (int64_t k = 0; k < TT; k++) { mean[k] /= (float)H; rstd[k] = 0.0f; }
    for (int64_t h = 0; h < H; h++)
        for (int64_t k = 0; k < TT; k++) { float d = x[h * TT + k] - mean[k]; rstd[k] += d * d; }
    for (int64_t k = 0; k < TT; k++) rstd[k] = (float)(1.0 / sqrt((double)rstd[k] / (double)H + eps));
}

/* a float32 (n,) or (n, n) parameter, made contiguous (new ref in *out; NULL when p is NULL) */
static int reattn_param(vt_tensor *p, int nd, int64_t n, const char *what, vt_tensor **out) {
    *out = NULL;
    if (!p) return VT_OK;
    VT_TRY(vt_require_f32(p, "reattention", what));
    int64_t want[2] = {n, n};
    if (p->ndim != nd || p->shape[0] != n || (nd == 2 && p->shape[1] != n)) {
        char b1[128], b2[128];
        return vt_fail(VT_ESHAPE, "reattention: %s has shape %s, expected %s (heads = %lld)", what,
                       vt_shape_str(p->ndim, p->shape, b1, sizeof b1), vt_shape_str(nd, want, b2, sizeof b2),
                       (long long)n);
    }
    *out = vt_contiguous(p);
    return *out ? VT_OK : vt_last_code();
}

/* running_mean / running_var: float32 contiguous (H,), no grad, sharing no memory with the inputs */
static int reattn_running(const vt_ctx *c, int idx, int64_t H, const char *what) {
    const vt_tensor *r = c->in[idx];
    VT_TRY(vt_require_f32(r, "reattention", what));
    char b1[128];
    if (r->ndim != 1 || r->shape[0] != H)
        return vt_fail(VT_ESHAPE, "reattention: %s has shape %s, expected (%lld,) (one value per head)", what,
                       vt_shape_str(r->ndim, r->shape, b1, sizeof b1), (long long)H);
    if (!vt_is_contiguous(r)) return vt_fail(VT_EVALUE, "reattention: %s must be contiguous (updated in place)", what);
    if (r->requires_grad) return vt_fail(VT_ERUNTIME, "reattention: %s must not require grad (it is a buffer)", what);
    for (int i = 0; i < c->nin; i++) {
        const vt_tensor *o = c->in[i];
        if (i == idx || !o || o->storage != r->storage || !vt_numel(o)) continue;
        int64_t a0 = r->offset, a1 = r->offset + H - 1, b0 = o->offset, b1v = o->offset;
        for (int d = 0; d < o->ndim; d++) b1v += (o->shape[d] - 1) * o->strides[d];
        if (a0 <= b1v && b0 <= a1) return vt_fail(VT_EVALUE, "reattention: %s shares memory with argument %d", what, i);
    }
    return VT_OK;
}

/* a call's arguments as the geometry, for the forward (after reattn_parse checked heads) and the
 * backward alike */
static reattn_geom reattn_geometry(const vt_args *a, const vt_tensor *x) {
#define RA_I(name) a->i[IARG(reattention, name)]
#define RA_F(name) a->f[FARG(reattention, name)]
    reattn_geom g = {.B = x->shape[0], .T = x->shape[1], .H = RA_I(heads), .C = x->shape[2]};
    g.Dh = g.C / (3 * g.H);
    g.HD = g.H * g.Dh;
    g.TT = g.T * g.T;
    g.tkp = pad8(g.T);
    g.norm = (int)RA_I(norm);
    g.training = RA_I(training) != 0;
    g.scale = (float)(RA_I(default_scale) ? 1.0 / sqrt((double)g.Dh) : RA_F(scale));
    g.p = (float)RA_F(dropout_p);
    g.drop = RA_F(dropout_p) > 0.0;
    g.ts = (float)RA_F(transform_scale);
    g.eps = RA_F(eps);
    return g;
#undef RA_I
#undef RA_F
}

/* a re-attention call's tensor inputs, NULL where absent */
typedef struct { vt_tensor *x, *theta, *theta_bias, *weight, *bias, *running_mean, *running_var; } reattn_inputs;

/* every check of a re-attention call's inputs and arguments: fills the inputs, the geometry and
 * the running statistics' momentum */
static int reattn_parse(const vt_ctx *c, reattn_inputs *in, reattn_geom *g, double *momentum) {
    const char *who = "reattention";
    vt_tensor *const *t = c->in;
    int k = c->nin;
    *in = (reattn_inputs){k > 0 ? t[0] : NULL, k > 1 ? t[1] : NULL, k > 2 ? t[2] : NULL, k > 3 ? t[3] : NULL,
                          k > 4 ? t[4] : NULL, k > 5 ? t[5] : NULL, k > 6 ? t[6] : NULL};
    const vt_tensor *x = in->x, *rm = in->running_mean, *rv = in->running_var;
    VT_TRY(vt_require_f32(x, who, "qkv"));
    char buf[128];
    if (x->ndim != 3)
        return vt_fail(VT_ESHAPE, "reattention: qkv must be 3-d (B, T, 3*heads*head_dim), got shape %s",
                       vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    int64_t H = c->args->i[IARG(reattention, heads)], C = x->shape[2];
    if (H <= 0) return vt_fail(VT_EVALUE, "reattention: heads must be positive, got %lld", (long long)H);
    if (C == 0 || H > C / 3 || C % (3 * H))
        return vt_fail(VT_ESHAPE, "reattention: qkv's last dim %lld is not a positive multiple of 3*heads (heads = %lld, "
                       "shape %s)", (long long)C, (long long)H, vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    if (!in->theta) return vt_fail(VT_EVALUE, "reattention: theta (the heads x heads mixing matrix) is required");
    int64_t norm = c->args->i[IARG(reattention, norm)];
    if (norm < REATTN_NONE || norm > REATTN_LAYER)
        return vt_fail(VT_EVALUE, "reattention: norm must be 0 (none), 1 (batch) or 2 (layer), got %lld", (long long)norm);
    *g = reattn_geometry(c->args, x);
    const double *f = c->args->f;
    double scale = c->args->i[IARG(reattention, default_scale)] ? 1.0 / sqrt((double)g->Dh) : f[FARG(reattention, scale)];
    double p = f[FARG(reattention, dropout_p)], eps = g->eps, ts = f[FARG(reattention, transform_scale)];
    *momentum = f[FARG(reattention, momentum)];
    VT_TRY(check_dropout(who, p));
    if (!isfinite(scale)) return vt_fail(VT_EVALUE, "reattention: scale must be finite, got %g", scale);
    if (!isfinite(ts)) return vt_fail(VT_EVALUE, "reattention: transform scale must be finite, got %g", ts);
    if (!(eps >= 0) || !isfinite(eps)) return vt_fail(VT_EVALUE, "reattention: eps must be finite and >= 0, got %g", eps);
    if (!isfinite(*momentum)) return vt_fail(VT_EVALUE, "reattention: momentum must be finite, got %g", *momentum);
    if (g->norm == REATTN_NONE && (in->weight || in->bias))
        return vt_fail(VT_EVALUE, "reattention: norm_weight/norm_bias given but norm is none");
    if (g->norm != REATTN_BATCH && (rm || rv))
        return vt_fail(VT_EVALUE, "reattention: running statistics are only used by the batch norm");
    if ((rm == NULL) != (rv == NULL))
        return vt_fail(VT_EVALUE, "reattention: running_mean and running_var must both be given or both be None");
    if (g->norm == REATTN_BATCH && !g->training && !rm)
        return vt_fail(VT_EVALUE, "reattention: the batch norm needs running_mean and running_var when training is False");
    if (rm) {
        VT_TRY(reattn_running(c, 5, H, "running_mean"));
        VT_TRY(reattn_running(c, 6, H, "running_var"));
    }
    int64_t n = g->B * g->TT; /* values per head for the batch statistics */
    if (g->norm == REATTN_BATCH && g->training && n <= 1)
        return vt_fail(VT_EVALUE, "reattention: batch norm over the heads needs more than 1 value per head when "
                       "training, got B*T*T = %lld", (long long)n);
    return VT_OK;
}

/* inputs: qkv (B, T, 3·H·Dh), theta (H, H), theta_bias (H)?, norm_weight (H)?, norm_bias (H)?,
 * running_mean (H)?, running_var (H)?. Saves: qkv, A (pre-dropout softmax), Ã, Â, stats (2, H) for
 * batch or (2, B, T, T) for layer (mean, rstd; (2, 1) unused for none), Θ, γ (ones when absent),
 * the dropout draws. */
int vt_reattention_forward(vt_ctx *c) {
    reattn_inputs in;
    reattn_geom g;
    double momentum = 0.0;
    VT_TRY(reattn_parse(c, &in, &g, &momentum));
    vt_tensor *x = in.x, *rm = in.running_mean, *rv = in.running_var;
    int64_t H = g.H, n = g.B * g.TT; /* n: values per head for the batch statistics */
    double eps = g.eps;
    vt_tensor *t[4] = {0}; /* theta, theta_bias, weight, bias (contiguous) */
    int st = reattn_param(in.theta, 2, H, "theta", &t[0]);
    if (!st) st = reattn_param(in.theta_bias, 1, H, "theta_bias", &t[1]);
    if (!st) st = reattn_param(in.weight, 1, H, "norm_weight", &t[2]);
    if (!st) st = reattn_param(in.bias, 1, H, "norm_bias", &t[3]);
    vt_tensor *xc = NULL, *out = NULL, *A = NULL, *At = NULL, *Ah = NULL, *stats = NULL, *gam = NULL, *rng = NULL;
    double *part = NULL;
    scratch_set scr = {0};
    if (st) goto done;
    if (!(xc = unit_last(x))) goto fail;
    int64_t B = g.B, T = g.T, TT = g.TT, HD = g.HD;
    int64_t s4[4] = {B, H, T, T};
    if (!(out = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD})) || !(A = vt_empty(VT_FLOAT32, 4, s4)) ||
        !(At = vt_empty(VT_FLOAT32, 4, s4)) || !(Ah = vt_empty(VT_FLOAT32, 4, s4)))
        goto fail;
    if (g.norm == REATTN_LAYER) stats = vt_empty(VT_FLOAT32, 4, (int64_t[]){2, B, T, T});
    else stats = vt_empty(VT_FLOAT32, 2, (int64_t[]){2, g.norm == REATTN_BATCH ? H : 1});
    if (!stats || !(gam = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    for (int64_t k = 0; k < H; k++) vt_f32(gam)[k] = t[2] ? vt_f32(t[2])[k] : 1.0f;
    if (g.drop) {
        g.seed = vt_rng_get_seed();
        g.base = vt_rng_reserve(((uint64_t)(B * H * TT) + 3) / 4);
    }
    if (!(rng = rng_state(g.seed, g.base))) goto fail;
    if (!(part = malloc(sizeof(double) * (size_t)(2 * B * H + 1)))) { vt_fail(VT_ENOMEM, "reattention: out of memory"); goto fail; }
    int nt = team_size(B, B * H * TT * (2 * g.Dh + H));
    /* thread scratch: the padded map (T × tkp), packing room, a row of multipliers, A' (H × T²) */
    int64_t per = T * g.tkp + pack_floats(T, T, g.Dh, g.Dh) + g.tkp + 8 + (g.drop ? H * TT : 0);
    per = (per + 15) & ~(int64_t)15;
    if (B && T && (st = scratch_alloc(&scr, per, nt))) goto done;
    const float *xp = vt_f32(xc), *TH = vt_f32(t[0]), *TB = t[1] ? vt_f32(t[1]) : NULL;
    const float *GA = vt_f32(gam), *BE = t[3] ? vt_f32(t[3]) : NULL;
    float *ap = vt_f32(A), *atp = vt_f32(At), *ahp = vt_f32(Ah), *op = vt_f32(out), *sp = vt_f32(stats);
    int64_t sb = xc->strides[0], ldx = xc->strides[1];
    const attn_kernels *K = vt_attn_kernels();
    /* 1. maps, dropout, head mixing; per-image Σ Ã of each head */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        if (!T) continue;
        float *s = scratch_mine(&scr), *aux = s + T * g.tkp, *mult = aux + pack_floats(T, T, g.Dh, g.Dh);
        float *ad = mult + g.tkp + 8;
        float *Ab = ap + b * H * TT, *Atb = atp + b * H * TT;
        for (int64_t h = 0; h < H; h++) {
            vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
            vt_attn_probs(&hd, s, g.tkp, aux);
            for (int64_t i = 0; i < T; i++) memcpy(Ab + h * TT + i * T, s + i * g.tkp, sizeof(float) * (size_t)T);
        }
        const float *src = Ab;
        if (g.drop) { reattn_dropped(&g, xp, sb, ldx, b, Ab, ad, mult); src = ad; }
        K->gemm(H, TT, H, 1.0f, TH, H, 1, src, TT, 0, NULL, Atb, TT); /* Ã[b] = Θ·A'[b] */
        for (int64_t h = 0; h < H; h++) {
            float *row = Atb + h * TT, bias = TB ? TB[h] : 0.0f;
            if (TB) for (int64_t k = 0; k < TT; k++) row[k] += bias;
            part[b * H + h] = rsum(row, TT);
        }
    }
    /* 2. batch statistics per head (two passes: mean, then Σ(Ã − μ)²), or the running ones */
    float *mu = sp, *rs = sp + (g.norm == REATTN_BATCH ? H : 0);
    if (g.norm == REATTN_BATCH && g.training) {
        for (int64_t h = 0; h < H; h++) {
            double s = 0;
            for (int64_t b = 0; b < B; b++) s += part[b * H + h];
            mu[h] = (float)(s / (double)n);
        }
        #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) part[B * H + b * H + h] = rdev2(atp + (b * H + h) * TT, TT, mu[h]);
        for (int64_t h = 0; h < H; h++) {
            double q = 0;
            for (int64_t b = 0; b < B; b++) q += part[B * H + b * H + h];
            double var = q / (double)n;
            rs[h] = (float)(1.0 / sqrt(var + eps));
            if (rm) {
                float *RM = vt_f32(rm), *RV = vt_f32(rv);
                RM[h] = (float)((1.0 - momentum) * RM[h] + momentum * (double)mu[h]);
                RV[h] = (float)((1.0 - momentum) * RV[h] + momentum * var * (double)n / (double)(n - 1));
            }
        }
    } else if (g.norm == REATTN_BATCH) {
        const float *RM = vt_f32(rm), *RV = vt_f32(rv);
        for (int64_t h = 0; h < H; h++) { mu[h] = RM[h]; rs[h] = (float)(1.0 / sqrt((double)RV[h] + eps)); }
    }
    /* 3. Â = ts·(γ·x̂ + β), O = Â·v per head */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        if (!T) continue;
        float *aux = scratch_mine(&scr) + T * g.tkp;
        const float *Atb = atp + b * H * TT;
        float *Ahb = ahp + b * H * TT;
        float *lm = sp + b * TT, *lr = sp + B * TT + b * TT;
        if (g.norm == REATTN_LAYER) reattn_ln_stats(Atb, H, TT, eps, lm, lr);
        for (int64_t h = 0; h < H; h++) {
            const float *xr = Atb + h * TT;
            float *yr = Ahb + h * TT, be = BE ? BE[h] : 0.0f;
            if (g.norm == REATTN_BATCH) {
                float a = g.ts * GA[h] * rs[h], m = mu[h], c0 = g.ts * be;
                for (int64_t k = 0; k < TT; k++) yr[k] = (xr[k] - m) * a + c0;
            } else if (g.norm == REATTN_LAYER) {
                float a = g.ts * GA[h], c0 = g.ts * be;
                for (int64_t k = 0; k < TT; k++) yr[k] = (xr[k] - lm[k]) * lr[k] * a + c0;
            } else {
                for (int64_t k = 0; k < TT; k++) yr[k] = xr[k] * g.ts;
            }
            vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
            vt_attn_apply(&hd, yr, T, op + b * T * HD + h * g.Dh, HD, aux);
        }
    }
    c->out[0] = out;
    c->nout = 1;
    out = NULL;
    if (c->args->i[IARG(reattention, need_weights)]) {
        vt_tensor_incref(Ah);
        c->out[c->nout++] = Ah;
    }
    if (c->args->i[IARG(reattention, return_softmax)]) { /* the softmax maps too (diagnostics) */
        vt_tensor_incref(A);
        c->out[c->nout++] = A;
    }
    if ((st = vt_save(c, xc)) || (st = vt_save(c, A)) || (st = vt_save(c, At)) || (st = vt_save(c, Ah)) ||
        (st = vt_save(c, stats)) || (st = vt_save(c, t[0])) || (st = vt_save(c, gam)) || (st = vt_save(c, rng)))
        goto done; /* outputs already belong to c: the dispatcher releases them */
    goto done;
fail:
    st = vt_last_code();
done:
    free(part);
    scratch_free(&scr);
    for (int k = 0; k < 4; k++) vt_tensor_decref(t[k]);
    vt_tensor_decref(xc); vt_tensor_decref(out); vt_tensor_decref(A); vt_tensor_decref(At);
    vt_tensor_decref(Ah); vt_tensor_decref(stats); vt_tensor_decref(gam); vt_tensor_decref(rng);
    return st;
}

/* Backward, in reverse order of the forward:
 *   dÂ = dO_g·v_gᵀ (+ the gradient on the returned maps), dv_g = Â[b,g]ᵀ·dO_g; dy = ts·dÂ
 *   dβ_g = Σ dy, dγ_g = Σ dy·x̂; batch train: dÃ = γ·rstd/n·(n·dy − Σdy − x̂·Σ dy·x̂), eval: γ·rstd·dy;
 *   layer: dx̂ = γ·dy, dÃ = rstd·(dx̂ − mean_h dx̂ − x̂·mean_h(dx̂·x̂)); none: dÃ = dy
 *   dΘ[g,h] = Σ dÃ[b,g]·A'[b,h], dθ_g = Σ dÃ[b,g], dA'[b] = Θᵀ·dÃ[b], dA = dA'⊙mask/(1−p)
 *   then the softmax backward and dq, dk per head (vt_attn_probs_backward). */
int vt_reattention_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *A = n->saved[1], *At = n->saved[2], *Ah = n->saved[3], *stats = n->saved[4];
    vt_tensor *th = n->saved[5], *gam = n->saved[6], *rng = n->saved[7];
    unsigned want = n->needs_input_grad;
    int want_x = want & 1, want_th = want >> 1 & 1, want_tb = want >> 2 & 1, want_w = want >> 3 & 1, want_b = want >> 4 & 1;
    reattn_geom g = reattn_geometry(&n->args, x);
    g.seed = (uint64_t)vt_i64(rng)[0];
    g.base = (uint64_t)vt_i64(rng)[1];
    int64_t B = g.B, T = g.T, H = g.H, TT = g.TT, HD = g.HD, C = g.C;
    vt_tensor *go = NULL, *ga = NULL, *D = NULL, *dx = NULL, *dth = NULL, *dtb = NULL, *dw = NULL, *db = NULL;
    double *part = NULL;
    float *coef = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    /* outputs: out [, Â if need_weights] [, A if return_softmax]; gp: the gradient on the returned
     * softmax maps A */
    int weights = n->args.i[IARG(reattention, need_weights)] != 0;
    int ia = weights ? 1 : -1, ip = n->args.i[IARG(reattention, return_softmax)] ? (weights ? 2 : 1) : -1;
    vt_tensor *gpr = NULL;
    if ((gout[0] && !(go = vt_contiguous(gout[0]))) || (ia > 0 && gout[ia] && !(ga = vt_contiguous(gout[ia]))) ||
        (ip > 0 && gout[ip] && !(gpr = vt_contiguous(gout[ip]))))
        goto fail;
    int64_t s4[4] = {B, H, T, T};
    if (!(D = vt_empty(VT_FLOAT32, 4, s4))) goto fail;
    if (want_x && !(dx = vt_zeros(VT_FLOAT32, 3, x->shape))) goto fail;
    if (want_th && !(dth = vt_empty(VT_FLOAT32, 2, (int64_t[]){H, H}))) goto fail;
    if (want_tb && !(dtb = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    if (want_w && !(dw = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    if (want_b && !(db = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    /* per image: Σdy, Σdy·x̂ (2·H), Σ dÃ (H), dΘ (H·H) */
    int64_t pw = 3 * H + H * H;
    part = calloc((size_t)(B * pw + 1), sizeof(double));
    coef = malloc(sizeof(float) * (size_t)(3 * H + 1));
    if (!part || !coef) { vt_fail(VT_ENOMEM, "reattention backward: out of memory"); goto fail; }
    int nt = team_size(B, 2 * B * H * TT * (2 * g.Dh + H));
    int64_t per = T * g.tkp + pack_floats(T, T, g.Dh, g.Dh) + g.tkp + 8 + (g.drop ? H * TT : 0) + H * TT + 2 * TT;
    per = (per + 15) & ~(int64_t)15;
    if (B && T && (st = scratch_alloc(&scr, per, nt))) goto done;
    const float *xp = vt_f32(x), *ap = vt_f32(A), *atp = vt_f32(At), *ahp = vt_f32(Ah), *sp = vt_f32(stats);
    const float *TH = vt_f32(th), *GA = vt_f32(gam), *gop = go ? vt_f32(go) : NULL, *gap = ga ? vt_f32(ga) : NULL;
    float *Dp = vt_f32(D), *dxp = dx ? vt_f32(dx) : NULL;
    int64_t sb = x->strides[0], ldx = x->strides[1];
    const float *mu = sp, *rs = sp + (g.norm == REATTN_BATCH ? H : 0);
    const attn_kernels *K = vt_attn_kernels();
    /* 1. dy (in D), dv; per-image Σdy, Σdy·x̂; the layer norm's dÃ (in place) */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        if (!T) continue;
        float *dm = scratch_mine(&scr), *aux = dm + T * g.tkp;
        float *e = aux + pack_floats(T, T, g.Dh, g.Dh) + g.tkp + 8 + (g.drop ? H * TT : 0), *t1 = e + H * TT, *t2 = t1 + TT;
        float *Db = Dp + b * H * TT;
        const float *Atb = atp + b * H * TT, *lm = sp + b * TT, *lr = sp + B * TT + b * TT;
        double *pb = part + b * pw;
        for (int64_t h = 0; h < H; h++) {
            vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
            float *dr = Db + h * TT;
            const float *gar = gap ? gap + (b * H + h) * TT : NULL;
            if (gop) {
                vt_attn_apply_backward(&hd, ahp + (b * H + h) * TT, T, gop + b * T * HD + h * g.Dh, HD, dm, g.tkp,
                                       dxp ? dxp + b * T * C + 2 * HD + h * g.Dh : NULL, C, aux);
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = 0; j < T; j++)
                        dr[i * T + j] = g.ts * (dm[i * g.tkp + j] + (gar ? gar[i * T + j] : 0.0f));
            } else {
                for (int64_t k = 0; k < TT; k++) dr[k] = gar ? g.ts * gar[k] : 0.0f;
            }
            if (g.norm == REATTN_BATCH) {
                pb[h] = rsum(dr, TT);
                pb[H + h] = rgdev(dr, Atb + h * TT, TT, mu[h], rs[h]);
            } else if (g.norm == REATTN_LAYER) {
                pb[h] = rsum(dr, TT);
                double s2 = 0;
                const float *xr = Atb + h * TT;
                for (int64_t k = 0; k < TT; k++) s2 += (double)(dr[k] * ((xr[k] - lm[k]) * lr[k]));
                pb[H + h] = s2;
            }
        }
        if (g.norm == REATTN_LAYER && (want_x | want_th | want_tb)) {
            /* t1 = mean_h dx̂, t2 = mean_h dx̂·x̂ at each position; e holds dx̂ = γ·dy */
            for (int64_t k = 0; k < TT; k++) t1[k] = t2[k] = 0.0f;
            for (int64_t h = 0; h < H; h++) {
                const float *dr = Db + h * TT, *xr = Atb + h * TT;
                float *er = e + h * TT;
                for (int64_t k = 0; k < TT; k++) {
                    er[k] = GA[h] * dr[k];
                    t1[k] += er[k];
                    t2[k] += er[k] * ((xr[k] - lm[k]) * lr[k]);
                }
            }
            for (int64_t h = 0; h < H; h++) {
                const float *xr = Atb + h * TT, *er = e + h * TT;
                float *dr = Db + h * TT;
                for (int64_t k = 0; k < TT; k++) {
                    float xh = (xr[k] - lm[k]) * lr[k];
                    dr[k] = lr[k] * (er[k] - t1[k] / (float)H - xh * t2[k] / (float)H);
                }
            }
        }
    }
    /* dγ, dβ; the batch norm's coefficients dÃ = A·dy + B·(Ã − μ) + D */
    double cnt = (double)(B * TT);
    for (int64_t h = 0; h < H; h++) {
        double sdy = 0, sdx = 0;
        for (int64_t b = 0; b < B; b++) { sdy += part[b * pw + h]; sdx += part[b * pw + H + h]; }
        if (dw) vt_f32(dw)[h] = (float)sdx;
        if (db) vt_f32(db)[h] = (float)sdy;
        if (g.norm == REATTN_BATCH) {
            double gr = (double)GA[h] * rs[h];
            coef[h] = (float)gr;
            coef[H + h] = g.training && cnt > 0 ? (float)(-gr * rs[h] * sdx / cnt) : 0.0f;
            coef[2 * H + h] = g.training && cnt > 0 ? (float)(-gr * sdy / cnt) : 0.0f;
        }
    }
    /* 2. dÃ (batch), dθ, dΘ, dA' = Θᵀ·dÃ, dropout, softmax backward, dq and dk */
    if (want_x | want_th | want_tb) {
        #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            if (!T) continue;
            float *aux = scratch_mine(&scr) + T * g.tkp, *mult = aux + pack_floats(T, T, g.Dh, g.Dh);
            float *ad = mult + g.tkp + 8, *e = ad + (g.drop ? H * TT : 0);
            float *Db = Dp + b * H * TT;
            const float *Ab = ap + b * H * TT, *Atb = atp + b * H * TT;
            double *pb = part + b * pw;
            if (g.norm == REATTN_BATCH)
                for (int64_t h = 0; h < H; h++) {
                    float *dr = Db + h * TT, a = coef[h], bb = coef[H + h], d = coef[2 * H + h], m = mu[h];
                    const float *xr = Atb + h * TT;
                    for (int64_t k = 0; k < TT; k++) dr[k] = dr[k] * a + (xr[k] - m) * bb + d;
                }
            const float *src = Ab;
            if (g.drop && want_th) { reattn_dropped(&g, xp, sb, ldx, b, Ab, ad, mult); src = ad; }
            for (int64_t h = 0; h < H; h++) {
                if (want_tb) pb[2 * H + h] = rsum(Db + h * TT, TT);
                if (want_th)
                    for (int64_t k = 0; k < H; k++) pb[3 * H + h * H + k] = rdot(Db + h * TT, src + k * TT, TT);
            }
            if (!want_x) continue;
            K->gemm(H, TT, H, 1.0f, TH, 1, H, Db, TT, 0, NULL, e, TT); /* dA'[b] = Θᵀ·dÃ[b] */
            for (int64_t h = 0; h < H; h++) {
                vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
                float *er = e + h * TT;
                if (g.drop)
                    for (int64_t i = 0; i < T; i++) {
                        vt_attn_dropout_row(&hd, i, mult);
                        for (int64_t j = 0; j < T; j++) er[i * T + j] *= mult[j];
                    }
                if (gpr) {
                    const float *gr = vt_f32(gpr) + (b * H + h) * TT;
                    for (int64_t k = 0; k < TT; k++) er[k] += gr[k];
                }
                float *drow = dxp + b * T * C + h * g.Dh;
                vt_attn_probs_backward(&hd, Ab + h * TT, T, er, T, drow, C, drow + HD, C, aux);
            }
        }
        for (int64_t h = 0; h < H; h++) {
            double s = 0;
            for (int64_t b = 0; b < B; b++) s += part[b * pw + 2 * H + h];
            if (dtb) vt_f32(dtb)[h] = (float)s;
            for (int64_t k = 0; k < H && dth; k++) {
                double q = 0;
                for (int64_t b = 0; b < B; b++) q += part[b * pw + 3 * H + h * H + k];
                vt_f32(dth)[h * H + k] = (float)q;
            }
        }
    }
    gin[0] = dx;
    gin[1] = dth;
    gin[2] = dtb;
    gin[3] = dw;
    gin[4] = db;
    dx = dth = dtb = dw = db = NULL;
    goto done;
fail:
    st = vt_last_code();
done:
    free(part);
    free(coef);
    scratch_free(&scr);
    vt_tensor_decref(go); vt_tensor_decref(ga); vt_tensor_decref(gpr); vt_tensor_decref(D); vt_tensor_decref(dx);
    vt_tensor_decref(dth); vt_tensor_decref(dtb); vt_tensor_decref(dw); vt_tensor_decref(db);
    return st;
}
