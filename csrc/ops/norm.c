/* vitc ops: normalisation layers. Forward and backward of each op side by side.
 *
 * layer_norm  (torch.nn.functional.layer_norm): rows of D = prod(normalized_shape) values; per row μ, biased σ²,
 *             rstd = 1/√(σ²+ε); y = γ·(x−μ)·rstd + β. Rows run in parallel.
 * batch_norm  (torch.nn.functional.batch_norm): x seen as a contiguous (N, C, S) block (S = prod of dims after
 *             the channel); per channel statistics over the n = N·S values.
 * token_batch_norm: x (B, T, F) is the same block with N = B·T, C = F, S = 1, i.e. BatchNorm1d on
 *             x.transpose(1, 2) without materialising the transposes: the statistics are column
 *             reductions of a (B·T, F) matrix.
 *
 * Statistics never cancel: layer norm takes two passes over its (cached) row, Σx then Σ(x−c) and
 * Σ(x−c)² about that first mean c; batch norm takes one pass of Σ(x−k) and Σ(x−k)² shifted by an
 * estimate k of the channel mean (its first value, or the mean of its first plane). Contiguous runs
 * are summed in SIMD float blocks whose totals are added in double; column sums run in double.
 * Reductions over many rows use a fixed number of row chunks with private partial sums, reduced in
 * chunk order afterwards: no atomics, and results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops_util.h"
#include "../core/vec8.h"

#define NCHUNK 32          /* row chunks for partial sums */
#define PAR_WORK 32768     /* elements below which loops stay serial */

/* ---- shared helpers -------------------------------------------------------------------------- */

/* hot row kernels carry VT_SIMD_CLONES (core/simd.h): one build per ISA, picked at load time */
#define INLINE static inline __attribute__((always_inline))

/* Sums over contiguous floats: 8 float lanes (the remainder in one more float) over blocks of
 * BLOCK values, each block's lanes folded pairwise and its total added in double — float speed, the
 * error of a short float sum. The lanes are explicit: GCC 12 folded an `omp simd` reduction's lanes
 * one after another, a chain of dependent adds per sum that made a 64-wide LayerNorm row cost ~200
 * cycles (perf annotate on an LV-ViT step). Eight lanes, one AVX2 register: a 16-lane vector type
 * compiled for AVX2 went through the stack and ran its forward 2x slower than the omp form. */
#define BLOCK 256

INLINE float fold8(v8 v) { return allsum8(&v)[0]; } /* vec8.h's tree: lane i + lane i+4, then i+2, i+1 */

/* *s += Σ x */
INLINE void sum1(const float *x, int64_t n, double *s) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        v8 a = {0};
        float t = 0;
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8) a += ld8(x + i);
        for (; i < i1; i++) t += x[i];
        S += fold8(a) + t;
    }
    *s += S;
}

/* *s += Σ(x−c), *q += Σ(x−c)² */
INLINE void dev_sums(const float *x, int64_t n, float c, double *s, double *q) {
    double S = 0, Q = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        v8 a = {0}, b = {0};
        float ta = 0, tb = 0;
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8) { v8 d = ld8(x + i) - c; a += d; b += d * d; }
        for (; i < i1; i++) { float d = x[i] - c; ta += d; tb += d * d; }
        S += fold8(a) + ta;
        Q += fold8(b) + tb;
    }
    *s += S;
    *q += Q;
}

/* *s += Σ ĝ, *q += Σ ĝ·(x−c), ĝ = g·w (w NULL: ĝ = g) */
INLINE void grad_sums(const float *g, const float *w, const float *x, int64_t n, float c, double *s, double *q) {
    double S = 0, Q = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        v8 a = {0}, b = {0};
        float ta = 0, tb = 0;
        int64_t i = i0;
        if (w) {
            for (; i + 8 <= i1; i += 8) { v8 h = ld8(g + i) * ld8(w + i); a += h; b += h * (ld8(x + i) - c); }
            for (; i < i1; i++) { float h = g[i] * w[i]; ta += h; tb += h * (x[i] - c); }
        } else {
            for (; i + 8 <= i1; i += 8) { v8 h = ld8(g + i); a += h; b += h * (ld8(x + i) - c); }
            for (; i < i1; i++) { ta += g[i]; tb += g[i] * (x[i] - c); }
        }
        S += fold8(a) + ta;
        Q += fold8(b) + tb;
    }
    *s += S;
    *q += Q;
}

/* a float32 parameter of exactly `shape` (or NULL); returns a contiguous new ref in *out */
static int param_vector(vt_tensor *p, int nd, const int64_t *shape, const char *who, const char *what,
                        vt_tensor **out) {
    *out = NULL;
    if (!p) return VT_OK;
    VT_TRY(vt_require_f32(p, who, what));
    if (p->ndim != nd || memcmp(p->shape, shape, sizeof(int64_t) * (size_t)nd)) {
        char b1[128], b2[128];
        return vt_fail(VT_ESHAPE, "%s: %s has shape %s, expected %s", who, what,
                       vt_shape_str(p->ndim, p->shape, b1, sizeof b1), vt_shape_str(nd, shape, b2, sizeof b2));
    }
    *out = vt_contiguous(p);
    return *out ? VT_OK : vt_last_code();
}

/* ---- layer norm ------------------------------------------------------------------------------ */

/* y = (x − μ)·rstd·γ + β over one row (γ, β optional): the output step of every path, so a rebuild
 * from saved statistics gives the forward's bits */
INLINE void layer_norm_out(const float *xr, float *yr, const float *w, const float *b, int64_t D, float m, float v) {
    if (w && b) for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * v * w[j] + b[j];
    else if (w) for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * v * w[j];
    else if (b) for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * v + b[j];
    else for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * v;
}

/* Short rows (D a multiple of 8, at most 128: ViT widths of the seed and LV-ViT models) go eight
 * at a time with every per-row scalar step taken across the eight rows in one vector: the 8 × 8
 * lanes of the rows' partial sums reduced by one transpose-and-add tree (lane_sums: 14 shuffles,
 * 7 adds) instead of a fold per row, the mean, variance and 1/√ in float lanes instead of double
 * scalars (a row of at most 128 values is one float block of the general path's sums anyway), and
 * the backward's dγ/dβ partials summed in float over the eight rows before they join the double
 * ones. Measured on Zen 4, one thread, 6400 rows of 64 (LV-ViT-Tiny-MNIST's): forward 15 ns a row
 * against 27, backward 22-27 against 35-45; at 192 (DeiT-Tiny's, 6304 rows) the forward gained as
 * much but the backward not at all (it is bound by the three 4.8 MB streams), so wider rows keep the
 * general path. Results move by an ulp or so against the double tail (tests/ops/test_norm.py
 * compares both paths with PyTorch). */
#define SHORT_ROWS(D) ((D) % 8 == 0 && (D) <= 128)

/* lane r <- Σ of the 8 lanes of v[r] */
INLINE v8 lane_sums(const v8 *v) {
    v8 s[4], u[2];
    for (int k = 0; k < 4; k++)
        s[k] = __builtin_shuffle(v[2 * k], v[2 * k + 1], (v8i){0, 8, 1, 9, 4, 12, 5, 13}) +
               __builtin_shuffle(v[2 * k], v[2 * k + 1], (v8i){2, 10, 3, 11, 6, 14, 7, 15});
    for (int k = 0; k < 2; k++)
        u[k] = __builtin_shuffle(s[2 * k], s[2 * k + 1], (v8i){0, 1, 8, 9, 4, 5, 12, 13}) +
               __builtin_shuffle(s[2 * k], s[2 * k + 1], (v8i){2, 3, 10, 11, 6, 7, 14, 15});
    return __builtin_shuffle(u[0], u[1], (v8i){0, 1, 2, 3, 8, 9, 10, 11}) +
           __builtin_shuffle(u[0], u[1], (v8i){4, 5, 6, 7, 12, 13, 14, 15});
}

/* Rows in blocks of LN_ROWS: per row two passes for the statistics (Σx, then Σ(x−c) and Σ(x−c)²
 * about the first pass's mean c, so no cancellation) and one for the output; the scalar tail of
 * the statistics (divisions and a square root, a long dependency chain) is taken for the whole
 * block in one loop, where the rows' chains overlap. stats: use the given mean and rstd (a rebuild
 * of the output; the same floats as the forward's, so the same bits) instead of computing them. */
#define LN_ROWS 8

/* the statistics of R <= 8 short rows (the missing rows' lanes computed from row 0 and dropped) */
INLINE void short_row_stats(const float *x, int64_t R, int64_t D, double eps, float *mu, float *rs) {
    v8 s[LN_ROWS], q[LN_ROWS];
    for (int r = 0; r < LN_ROWS; r++) {
        const float *xr = x + (r < R ? r : 0) * D;
        v8 a0 = bc8(0.0f), a1 = a0;
        int64_t i = 0;
        for (; i + 16 <= D; i += 16) { a0 += ld8(xr + i); a1 += ld8(xr + i + 8); }
        if (i < D) a0 += ld8(xr + i);
        s[r] = a0 + a1;
    }
    v8 c = lane_sums(s) / bc8((float)D);
    for (int r = 0; r < LN_ROWS; r++) {
        const float *xr = x + (r < R ? r : 0) * D;
        v8 cr = bc8(c[r]), a0 = bc8(0.0f), a1 = a0, b0 = a0, b1 = a0;
        int64_t i = 0;
        for (; i + 16 <= D; i += 16) {
            v8 d0 = ld8(xr + i) - cr, d1 = ld8(xr + i + 8) - cr;
            a0 += d0; a1 += d1; b0 += d0 * d0; b1 += d1 * d1;
        }
        if (i < D) { v8 d0 = ld8(xr + i) - cr; a0 += d0; b0 += d0 * d0; }
        s[r] = a0 + a1;
        q[r] = b0 + b1;
    }
    v8 m = lane_sums(s) / bc8((float)D), var = lane_sums(q) / bc8((float)D) - m * m;
    var = (v8)((v8i)var & ~(var < bc8(0.0f))); /* rounding can leave it just below 0; a NaN stays */
    v8 mean = c + m;
    for (int r = 0; r < R; r++) { mu[r] = mean[r]; rs[r] = 1.0f / sqrtf(var[r] + (float)eps); }
}

VT_SIMD_CLONES static void layer_norm_block(const float *x, float *y, const float *w, const float *b, int64_t R,
                                            int64_t D, double eps, float *mean, float *rstd, int stats) {
    float mu[LN_ROWS], rs[LN_ROWS];
    if (stats) {
        for (int64_t r = 0; r < R; r++) { mu[r] = mean[r]; rs[r] = rstd[r]; }
    } else if (SHORT_ROWS(D)) {
        short_row_stats(x, R, D, eps, mu, rs);
        if (mean) for (int64_t r = 0; r < R; r++) { mean[r] = mu[r]; rstd[r] = rs[r]; }
    } else {
        double s[LN_ROWS], s2[LN_ROWS], q[LN_ROWS];
        float c[LN_ROWS];
        for (int64_t r = 0; r < R; r++) { s[r] = 0; sum1(x + r * D, D, &s[r]); }
        for (int64_t r = 0; r < R; r++) c[r] = (float)(s[r] / (double)D);
        for (int64_t r = 0; r < R; r++) { s2[r] = q[r] = 0; dev_sums(x + r * D, D, c[r], &s2[r], &q[r]); }
        for (int64_t r = 0; r < R; r++) {
            double m = s2[r] / (double)D, var = q[r] / (double)D - m * m;
            if (var < 0) var = 0;
            mu[r] = (float)(c[r] + m);
            rs[r] = (float)(1.0 / sqrt(var + eps));
        }
        if (mean) for (int64_t r = 0; r < R; r++) { mean[r] = mu[r]; rstd[r] = rs[r]; }
    }
    for (int64_t r = 0; r < R; r++) layer_norm_out(x + r * D, y + r * D, w, b, D, mu[r], rs[r]);
}

/* x, y (M, D) contiguous; w, b (D) or NULL; mean, rstd (M) or NULL (not recording); stats: mean
 * and rstd are given, only the output is made */
static void layer_norm_rows(const float *x, float *y, const float *w, const float *b, int64_t M, int64_t D,
                            double eps, float *mean, float *rstd, int stats) {
    int64_t nblk = (M + LN_ROWS - 1) / LN_ROWS;
    #pragma omp parallel for if (M * D > PAR_WORK) schedule(static)
    for (int64_t k = 0; k < nblk; k++) {
        int64_t r = k * LN_ROWS, R = M - r < LN_ROWS ? M - r : LN_ROWS;
        layer_norm_block(x + r * D, y + r * D, w, b, R, D, eps, mean ? mean + r : NULL, rstd ? rstd + r : NULL, stats);
    }
}

/* Backward of one row: dγ/dβ partials (pw, pb, or NULL) += g⊙x̂, g; dx (or NULL) =
 * (ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂))·rstd. Row by row: a block of rows as the forward's made each row's
 * update of the partials wait on the previous row's store (DeiT-Tiny's backward 1.7x slower). */
VT_SIMD_CLONES static void layer_norm_row_backward(const float *x, const float *g, const float *w, int64_t D,
                                                   float mu, float rs, float *dx, double *pw, double *pb) {
    if (pw)
        for (int64_t j = 0; j < D; j++) {
            pw[j] += (double)(g[j] * ((x[j] - mu) * rs));
            pb[j] += g[j];
        }
    if (!dx) return;
    double a = 0, bq = 0; /* Σĝ, Σĝ(x−μ) */
    grad_sums(g, w, x, D, mu, &a, &bq);
    const float am = (float)(a / (double)D), bm = (float)(bq * rs / (double)D);
    if (w) for (int64_t j = 0; j < D; j++) dx[j] = (g[j] * w[j] - am - (x[j] - mu) * rs * bm) * rs;
    else for (int64_t j = 0; j < D; j++) dx[j] = (g[j] - am - (x[j] - mu) * rs * bm) * rs;
}

/* Backward of R <= 8 short rows (SHORT_ROWS): dγ/dβ partials (fw, fb: D floats, or NULL) += g⊙x̂, g
 * over the R rows in float (the caller adds them into its double partials once per group instead
 * of converting every row), and dx (or NULL) as layer_norm_row_backward gives it, the rows' two
 * sums reduced across the eight rows in one lane_sums each */
VT_SIMD_CLONES static void layer_norm_short_backward(const float *x, const float *g, const float *w, int64_t R,
                                                     int64_t D, const float *mu, const float *rs, float *dx,
                                                     float *fw, float *fb) {
    if (fw)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * D, *gr = g + r * D, m = mu[r], v = rs[r];
            for (int64_t j = 0; j < D; j++) {
                fw[j] += gr[j] * ((xr[j] - m) * v);
                fb[j] += gr[j];
            }
        }
    if (!dx) return;
    v8 sa[LN_ROWS], sq[LN_ROWS], vrs;
    for (int r = 0; r < LN_ROWS; r++) {
        int rr = r < R ? r : 0;
        const float *xr = x + rr * D, *gr = g + rr * D;
        v8 m = bc8(mu[rr]), a0 = bc8(0.0f), a1 = a0, b0 = a0, b1 = a0;
        vrs[r] = rs[rr];
        int64_t i = 0;
        for (; i + 16 <= D; i += 16) {
            v8 h0 = ld8(gr + i), h1 = ld8(gr + i + 8);
            if (w) { h0 *= ld8(w + i); h1 *= ld8(w + i + 8); }
            a0 += h0; a1 += h1;
            b0 += h0 * (ld8(xr + i) - m); b1 += h1 * (ld8(xr + i + 8) - m);
        }
        if (i < D) {
            v8 h0 = ld8(gr + i);
            if (w) h0 *= ld8(w + i);
            a0 += h0;
            b0 += h0 * (ld8(xr + i) - m);
        }
        sa[r] = a0 + a1;
        sq[r] = b0 + b1;
    }
    v8 am = lane_sums(sa) / bc8((float)D), bm = lane_sums(sq) * vrs / bc8((float)D);
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * D, *gr = g + r * D, m = mu[r], v = rs[r], a = am[r], c = bm[r];
        float *d = dx + r * D;
        if (w) for (int64_t j = 0; j < D; j++) d[j] = (gr[j] * w[j] - a - (xr[j] - m) * v * c) * v;
        else for (int64_t j = 0; j < D; j++) d[j] = (gr[j] - a - (xr[j] - m) * v * c) * v;
    }
}

/* Forward. Saves: x (contiguous), mean (M), rstd (M), weight (if given), bias (if weight and bias
 * are given), in that order: with them the node can make its output again (vt_layer_norm_recompute). */
int vt_layer_norm_forward(vt_ctx *c) {
    const char *who = "layer_norm";
    vt_tensor *x = c->in[0];
    vt_tensor *w = c->nin > 1 ? c->in[1] : NULL, *b = c->nin > 2 ? c->in[2] : NULL;
    VT_TRY(vt_require_f32(x, who, "input"));
    const vt_args *a = c->args;
    int64_t k = VT_LIST_LEN(a, layer_norm, normalized_shape);
    if (k < 1 || k > VT_MAX_DIMS)
        return vt_fail(VT_EVALUE, "%s: normalized_shape must have 1 to %d dims, got %lld", who, VT_MAX_DIMS, (long long)k);
    const int64_t *ns = a->i + IARG(layer_norm, normalized_shape);
    int ok = k <= x->ndim;
    for (int64_t d = 0; ok && d < k; d++) ok = ns[d] == x->shape[x->ndim - k + d];
    if (!ok) {
        char b1[128], b2[128];
        return vt_fail(VT_ESHAPE, "%s: given normalized_shape=%s, expected the input's last %lld dims to match, "
                       "but got input of shape %s", who, vt_shape_str((int)k, ns, b1, sizeof b1), (long long)k,
                       vt_shape_str(x->ndim, x->shape, b2, sizeof b2));
    }
    double eps = a->f[FARG(layer_norm, eps)];
    if (!(eps >= 0)) return vt_fail(VT_EVALUE, "%s: eps must be >= 0, got %g", who, eps);
    int64_t D = vt_shape_numel((int)k, ns), M = vt_shape_numel(x->ndim - (int)k, x->shape);
    vt_tensor *t[5] = {0}; /* xc, wc, bc, mean, rstd */
    int st = param_vector(w, (int)k, ns, who, "weight", &t[1]);
    if (!st) st = param_vector(b, (int)k, ns, who, "bias", &t[2]);
    if (st) { decref_all(t, 5); return st; }
    vt_tensor *y = NULL;
    if (!(t[0] = vt_contiguous(x)) || !(y = vt_empty(VT_FLOAT32, x->ndim, x->shape))) goto fail;
    if (c->save) {
        int64_t ms[1] = {M};
        if (!(t[3] = vt_empty(VT_FLOAT32, 1, ms)) || !(t[4] = vt_empty(VT_FLOAT32, 1, ms))) goto fail;
    }
    if (D > 0)
        layer_norm_rows(vt_f32(t[0]), vt_f32(y), t[1] ? vt_f32(t[1]) : NULL, t[2] ? vt_f32(t[2]) : NULL, M, D, eps,
                        t[3] ? vt_f32(t[3]) : NULL, t[4] ? vt_f32(t[4]) : NULL, 0);
    else if (t[3]) {
        for (int64_t r = 0; r < M; r++) { vt_f32(t[3])[r] = NAN; vt_f32(t[4])[r] = NAN; }
    }
    c->out[0] = y;
    c->nout = 1;
    if (c->save) {
        if ((st = vt_save(c, t[0])) || (st = vt_save(c, t[3])) || (st = vt_save(c, t[4])) ||
            (t[1] && (st = vt_save(c, t[1]))) || (t[1] && t[2] && (st = vt_save(c, t[2])))) {
            decref_all(t, 5);
            return st; /* the engine releases c->out */
        }
    }
    decref_all(t, 5);
    return VT_OK;
fail:
    st = vt_last_code();
    vt_tensor_decref(y);
    decref_all(t, 5);
    return st;
}

/* VITC_LN_RECOMPUTE (on unless "0"): a LayerNorm output that the next op saves (a ViT block's
 * attention and MLP inputs, 2 × rows × dim per block: 116 MB of a DeiT-Tiny step at batch 32) is not
 * kept; the engine rebuilds it from this node's saved input, weight and bias right before that op's
 * backward, with the forward's kernel, so the bits are the forward's (rows are independent).
 * This is its vt_recompute_fn: possible when the node saved everything the output depends on
 * (weight and bias, or neither: an optional input that was given has in_meta ndim >= 1) */
int vt_layer_norm_recompute(const vt_node *n, vt_tensor **out) {
    int has_w = n->nin > 1 && n->in_meta[1].ndim > 0, has_b = n->nin > 2 && n->in_meta[2].ndim > 0;
    int can = n->nsaved == 3 + has_w + has_b && (has_w || !has_b) && n->saved[0];
    if (!out) return can && env_switch("VITC_LN_RECOMPUTE", 1);
    if (!can) return vt_fail(VT_ERUNTIME, "internal: layer_norm cannot rebuild its output");
    const vt_tensor *x = n->saved[0];
    int64_t k = VT_LIST_LEN(&n->args, layer_norm, normalized_shape);
    int64_t D = vt_shape_numel((int)k, n->args.i + IARG(layer_norm, normalized_shape)), M = D ? vt_numel(x) / D : 0;
    vt_tensor *y = vt_empty(VT_FLOAT32, x->ndim, x->shape);
    if (!y) return vt_last_code();
    if (D > 0)
        layer_norm_rows(vt_f32(x), vt_f32(y), has_w ? vt_f32(n->saved[3]) : NULL, has_b ? vt_f32(n->saved[4]) : NULL,
                        M, D, n->args.f[FARG(layer_norm, eps)], vt_f32(n->saved[1]), vt_f32(n->saved[2]), 1);
    *out = y;
    return VT_OK;
}

/* Backward: ĝ = g⊙γ; dx = (ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂))·rstd; dγ = Σ g⊙x̂; dβ = Σ g.
 * Rows in NCHUNK chunks; each chunk keeps private dγ/dβ partials, summed in chunk order. */
int vt_layer_norm_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *mean = n->saved[1], *rstd = n->saved[2];
    vt_tensor *w = n->nsaved > 3 ? n->saved[3] : NULL;
    int want_x = n->needs_input_grad & 1, want_w = n->needs_input_grad >> 1 & 1, want_b = n->needs_input_grad >> 2 & 1;
    int64_t k = VT_LIST_LEN(&n->args, layer_norm, normalized_shape);
    const int64_t *ns = n->args.i + IARG(layer_norm, normalized_shape);
    int64_t D = vt_shape_numel((int)k, ns), M = vt_numel(mean);
    vt_tensor *g = grad_out(n, gout), *dx = NULL, *dw = NULL, *db = NULL;
    double *part = NULL;
    if (!g) return vt_last_code();
    if (want_x && !(dx = vt_empty(VT_FLOAT32, x->ndim, x->shape))) goto fail;
    if (want_w && !(dw = vt_empty(VT_FLOAT32, (int)k, ns))) goto fail;
    if (want_b && !(db = vt_empty(VT_FLOAT32, (int)k, ns))) goto fail;
    int64_t nch = M < NCHUNK ? M : NCHUNK;
    int want_p = (want_w || want_b) && D > 0;
    if (want_p && nch > 0) {
        part = calloc((size_t)(nch * 2 * D), sizeof(double));
        if (!part) { vt_fail(VT_ENOMEM, "layer_norm backward: out of memory"); goto fail; }
    }
    if (D > 0 && nch > 0) {
        const float *X = vt_f32(x), *G = vt_f32(g), *W = w ? vt_f32(w) : NULL;
        const float *MU = vt_f32(mean), *RS = vt_f32(rstd);
        float *DX = dx ? vt_f32(dx) : NULL;
        #pragma omp parallel for if (M * D > PAR_WORK) schedule(static)
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t r0 = M * ch / nch, r1 = M * (ch + 1) / nch;
            double *pw = part ? part + ch * 2 * D : NULL, *pb = pw ? pw + D : NULL;
            if (SHORT_ROWS(D)) {
                float fw[128], fb[128];
                for (int64_t r = r0; r < r1; r += LN_ROWS) {
                    int64_t R = r1 - r < LN_ROWS ? r1 - r : LN_ROWS;
                    if (pw) { memset(fw, 0, sizeof(float) * (size_t)D); memset(fb, 0, sizeof(float) * (size_t)D); }
                    layer_norm_short_backward(X + r * D, G + r * D, W, R, D, MU + r, RS + r, DX ? DX + r * D : NULL,
                                              pw ? fw : NULL, pw ? fb : NULL);
                    for (int64_t j = 0; pw && j < D; j++) { pw[j] += fw[j]; pb[j] += fb[j]; }
                }
            } else
                for (int64_t r = r0; r < r1; r++)
                    layer_norm_row_backward(X + r * D, G + r * D, W, D, MU[r], RS[r], DX ? DX + r * D : NULL, pw, pb);
        }
    } else if (dx) {
        memset(vt_f32(dx), 0, sizeof(float) * (size_t)vt_numel(dx));
    }
    /* reduce the chunk partials in order */
    for (int64_t j = 0; j < D; j++) {
        double sw = 0, sb = 0;
        for (int64_t ch = 0; part && ch < nch; ch++) { sw += part[ch * 2 * D + j]; sb += part[ch * 2 * D + D + j]; }
        if (dw) vt_f32(dw)[j] = (float)sw;
        if (db) vt_f32(db)[j] = (float)sb;
    }
    free(part);
    vt_tensor_decref(g);
    gin[0] = dx;
    gin[1] = dw;
    gin[2] = db;
    return VT_OK;
fail:
    free(part);
    vt_tensor_decref(g);
    vt_tensor_decref(dx);
    vt_tensor_decref(dw);
    vt_tensor_decref(db);
    return vt_last_code();
}

/* ---- batch norm (over dim 1) and token batch norm (over the last dim of (B, T, F)) ----------- */

/* column partials of rows [r0, r1) of a contiguous (N, C) block, in double (vectorised across
 * columns): ps += x − k or g, pq += (x − k)² or g·(x − k) */
VT_SIMD_CLONES static void col_sums(const float *x, const float *g, const float *kc, int64_t r0, int64_t r1,
                                    int64_t C, double *ps, double *pq) {
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        if (g) {
            const float *gr = g + r * C;
            for (int64_t j = 0; j < C; j++) { ps[j] += gr[j]; pq[j] += (double)gr[j] * ((double)xr[j] - kc[j]); }
        } else {
            for (int64_t j = 0; j < C; j++) { double d = (double)xr[j] - kc[j]; ps[j] += d; pq[j] += d * d; }
        }
    }
}

/* one plane of S contiguous values of a channel */
VT_SIMD_CLONES static void plane_sums(const float *x, const float *g, int64_t S, float c, double *s, double *q) {
    if (g) grad_sums(g, NULL, x, S, c, s, q);
    else dev_sums(x, S, c, s, q);
}

/* Per-channel sums over a contiguous (N, C, S) block:
 *   g == NULL: s[c] = Σ(x − k_c), q[c] = Σ(x − k_c)²      (statistics, k_c ≈ the channel mean)
 *   g != NULL: s[c] = Σ g,        q[c] = Σ g·(x − k_c)     (backward, k = mean)
 * S == 1 (token BN, BatchNorm1d on (N, C)): column sums, row chunks with private partials.
 * S > 1: one task per (channel, row chunk), planes of S contiguous values. */
static int channel_sums(const float *x, const float *g, const float *kc, int64_t N, int64_t C, int64_t S,
                        double *s, double *q) {
    memset(s, 0, sizeof(double) * (size_t)C);
    memset(q, 0, sizeof(double) * (size_t)C);
    if (N == 0 || C == 0 || S == 0) return VT_OK;
    int64_t work = N * C * S;
    /* S == 1: chunks of rows; S > 1: enough (channel, chunk) tasks for the cores when C is small */
    int64_t nch = S == 1 ? (N < NCHUNK ? N : NCHUNK) : C >= 16 ? 1 : (N < 16 ? N : 16);
    double *part = calloc((size_t)(nch * 2 * C), sizeof(double));
    if (!part) return vt_fail(VT_ENOMEM, "batch_norm: out of memory");
    if (S == 1) {
        #pragma omp parallel for if (work > PAR_WORK) schedule(static)
        for (int64_t ch = 0; ch < nch; ch++)
            col_sums(x, g, kc, N * ch / nch, N * (ch + 1) / nch, C, part + ch * 2 * C, part + ch * 2 * C + C);
    } else {
        #pragma omp parallel for if (work > PAR_WORK) schedule(static)
        for (int64_t t = 0; t < nch * C; t++) {
            int64_t c = t % C, ch = t / C;
            double ps = 0, pq = 0;
            for (int64_t r = N * ch / nch; r < N * (ch + 1) / nch; r++)
                plane_sums(x + (r * C + c) * S, g ? g + (r * C + c) * S : NULL, S, kc[c], &ps, &pq);
            part[ch * 2 * C + c] = ps;
            part[ch * 2 * C + C + c] = pq;
        }
    }
    for (int64_t ch = 0; ch < nch; ch++)
        for (int64_t j = 0; j < C; j++) { s[j] += part[ch * 2 * C + j]; q[j] += part[ch * 2 * C + C + j]; }
    free(part);
    return VT_OK;
}

/* Centred affine maps (x − μ is formed first, so a large mean cannot cancel):
 *   forward  (g NULL): o = (x − μ)·A + B
 *   backward (g):      o = g·A + (x − μ)·B + D
 * with per-element coefficient rows (S == 1) ... */
VT_SIMD_CLONES static void affine_row(float *o, const float *x, const float *g, const float *M, const float *A,
                                      const float *B, const float *D, int64_t n) {
    if (g) for (int64_t j = 0; j < n; j++) o[j] = g[j] * A[j] + (x[j] - M[j]) * B[j] + D[j];
    else for (int64_t j = 0; j < n; j++) o[j] = (x[j] - M[j]) * A[j] + B[j];
}

/* ... or scalar coefficients (one plane of a channel) */
VT_SIMD_CLONES static void affine_plane(float *o, const float *x, const float *g, float m, float a, float b, float d,
                                        int64_t n) {
    if (g) for (int64_t i = 0; i < n; i++) o[i] = g[i] * a + (x[i] - m) * b + d;
    else for (int64_t i = 0; i < n; i++) o[i] = (x[i] - m) * a + b;
}

/* the centred affine map over a contiguous (N, C, S) block, per-channel μ, A, B, D (D only with g) */
static void channel_affine(float *out, const float *x, const float *g, const float *M, const float *A,
                           const float *B, const float *Dc, int64_t N, int64_t C, int64_t S) {
    int64_t work = N * C * S;
    if (S == 1) {
        #pragma omp parallel for if (work > PAR_WORK) schedule(static)
        for (int64_t r = 0; r < N; r++)
            affine_row(out + r * C, x + r * C, g ? g + r * C : NULL, M, A, B, Dc, C);
        return;
    }
    #pragma omp parallel for if (work > PAR_WORK) schedule(static)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        affine_plane(out + p * S, x + p * S, g ? g + p * S : NULL, M[c], A[c], B[c], g ? Dc[c] : 0.0f, S);
    }
}

/* (N, C, S) of x seen with its channel on `axis` */
static void ncs(int ndim, const int64_t *shape, int axis, int64_t *N, int64_t *C, int64_t *S) {
    *N = vt_shape_numel(axis, shape);
    *C = shape[axis];
    *S = vt_shape_numel(ndim - axis - 1, shape + axis + 1);
}

/* do the element ranges of two float tensors' storages intersect? */
static int overlaps(const vt_tensor *a, const vt_tensor *b) {
    if (!a || !b || a->storage != b->storage || !vt_numel(a) || !vt_numel(b)) return 0;
    int64_t a0 = a->offset, a1 = a->offset, b0 = b->offset, b1 = b->offset;
    for (int d = 0; d < a->ndim; d++) a1 += (a->shape[d] - 1) * a->strides[d];
    for (int d = 0; d < b->ndim; d++) b1 += (b->shape[d] - 1) * b->strides[d];
    return a0 <= b1 && b0 <= a1;
}

/* running_mean / running_var: float32 contiguous (C,), no grad, not sharing memory with anything
 * else of the call (they are written in place during training) */
static int check_running(const vt_ctx *c, int idx, int64_t C, const char *who, const char *what) {
    const vt_tensor *r = c->in[idx];
    VT_TRY(vt_require_f32(r, who, what));
    if (r->ndim != 1 || r->shape[0] != C) {
        char b1[128];
        return vt_fail(VT_ESHAPE, "%s: %s has shape %s, expected (%lld,) (one value per channel)", who, what,
                       vt_shape_str(r->ndim, r->shape, b1, sizeof b1), (long long)C);
    }
    if (!vt_is_contiguous(r)) return vt_fail(VT_EVALUE, "%s: %s must be contiguous (it is updated in place)", who, what);
    if (r->requires_grad)
        return vt_fail(VT_ERUNTIME, "%s: %s requires grad; running statistics are buffers updated in place and "
                       "must not require grad", who, what);
    for (int i = 0; i < c->nin; i++)
        if (i != idx && overlaps(c->in[i], r))
            return vt_fail(VT_EVALUE, "%s: %s shares memory with argument %d", who, what, i);
    return VT_OK;
}

/* Forward of both batch norms; `axis` is the channel axis (1, or 2 for token BN).
 * Training: batch mean and biased variance normalise; running stats (if given) are updated in place:
 *   r_μ ← (1−m)·r_μ + m·μ,  r_σ² ← (1−m)·r_σ² + m·σ²·n/(n−1).
 * Eval: running stats normalise. y = (x − μ)·(γ·rstd) + β.
 * Saves: x (contiguous), mean (C), rstd (C), weight (if given), in that order. */
VT_SAME_IARG(batch_norm, token_batch_norm, training);
VT_SAME_FARG(batch_norm, token_batch_norm, momentum);
VT_SAME_FARG(batch_norm, token_batch_norm, eps);
static int bn_forward(vt_ctx *c, int axis, const char *who) {
    vt_tensor *x = c->in[0];
    vt_tensor *rm = c->nin > 1 ? c->in[1] : NULL, *rv = c->nin > 2 ? c->in[2] : NULL;
    vt_tensor *w = c->nin > 3 ? c->in[3] : NULL, *b = c->nin > 4 ? c->in[4] : NULL;
    VT_TRY(vt_require_f32(x, who, "input"));
    char b1[128];
    if (axis == 1 && x->ndim < 2)
        return vt_fail(VT_ESHAPE, "%s: expected an input of shape (N, C, *), got %s", who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    if (axis == 2 && x->ndim != 3)
        return vt_fail(VT_ESHAPE, "%s: expected an input of shape (B, T, F), got %s", who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int training = c->args->i[IARG(batch_norm, training)] != 0;
    double momentum = c->args->f[FARG(batch_norm, momentum)], eps = c->args->f[FARG(batch_norm, eps)];
    if (!(eps >= 0)) return vt_fail(VT_EVALUE, "%s: eps must be >= 0, got %g", who, eps);
    if (!isfinite(momentum)) return vt_fail(VT_EVALUE, "%s: momentum must be finite, got %g", who, momentum);
    int64_t N, C, S;
    ncs(x->ndim, x->shape, axis, &N, &C, &S);
    int64_t n = N * S;
    if ((rm == NULL) != (rv == NULL))
        return vt_fail(VT_EVALUE, "%s: running_mean and running_var must both be given or both be None", who);
    if (!training && !rm)
        return vt_fail(VT_EVALUE, "%s: running_mean and running_var are required when training is False", who);
    if (rm) {
        VT_TRY(check_running(c, 1, C, who, "running_mean"));
        VT_TRY(check_running(c, 2, C, who, "running_var"));
    }
    if (training && n == 1)
        return vt_fail(VT_EVALUE, "%s: Expected more than 1 value per channel when training, got input size %s", who,
                       vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int64_t cs[1] = {C};
    vt_tensor *t[5] = {0}; /* xc, wc, bc, mean, rstd */
    int st = param_vector(w, 1, cs, who, "weight", &t[1]);
    if (!st) st = param_vector(b, 1, cs, who, "bias", &t[2]);
    if (st) { decref_all(t, 5); return st; }
    vt_tensor *y = NULL;
    double *s = NULL, *q = NULL;
    float *A = NULL, *B = NULL;
    if (!(t[0] = vt_contiguous(x)) || !(y = vt_empty(VT_FLOAT32, x->ndim, x->shape)) ||
        !(t[3] = vt_empty(VT_FLOAT32, 1, cs)) || !(t[4] = vt_empty(VT_FLOAT32, 1, cs)))
        goto fail;
    s = malloc(sizeof(double) * (size_t)(2 * C + 1));
    A = malloc(sizeof(float) * (size_t)(2 * C + 1));
    if (!s || !A) { vt_fail(VT_ENOMEM, "%s: out of memory", who); goto fail; }
    q = s + C;
    B = A + C;
    const float *X = vt_f32(t[0]);
    float *mu = vt_f32(t[3]), *rs = vt_f32(t[4]);
    if (training) {
        /* shift each channel by an estimate of its mean (its first value, or the mean of its first
         * plane) so the single-pass variance does not cancel */
        float *kc = A; /* scratch until A is filled */
        for (int64_t j = 0; j < C; j++) {
            double k0 = 0;
            if (n) { for (int64_t i = 0; i < S; i++) k0 += X[j * S + i]; k0 /= (double)S; }
            kc[j] = (float)k0;
        }
        if ((st = channel_sums(X, NULL, kc, N, C, S, s, q))) goto fail_st;
        for (int64_t j = 0; j < C; j++) {
            double m = n ? s[j] / (double)n : NAN, var = n ? q[j] / (double)n - m * m : NAN;
            if (var < 0) var = 0;
            mu[j] = (float)(kc[j] + m);
            rs[j] = (float)(1.0 / sqrt(var + eps));
            if (rm && n > 0) {
                float *RM = vt_f32(rm), *RV = vt_f32(rv);
                RM[j] = (float)((1.0 - momentum) * RM[j] + momentum * ((double)kc[j] + m));
                RV[j] = (float)((1.0 - momentum) * RV[j] + momentum * var * (double)n / (double)(n - 1));
            }
        }
    } else {
        const float *RM = vt_f32(rm), *RV = vt_f32(rv);
        for (int64_t j = 0; j < C; j++) { mu[j] = RM[j]; rs[j] = (float)(1.0 / sqrt((double)RV[j] + eps)); }
    }
    const float *W = t[1] ? vt_f32(t[1]) : NULL, *Bi = t[2] ? vt_f32(t[2]) : NULL;
    for (int64_t j = 0; j < C; j++) {
        A[j] = W ? W[j] * rs[j] : rs[j];
        B[j] = Bi ? Bi[j] : 0.0f;
    }
    channel_affine(vt_f32(y), X, NULL, mu, A, B, NULL, N, C, S);
    free(s);
    free(A);
    c->out[0] = y;
    c->nout = 1;
    if (c->save) {
        if ((st = vt_save(c, t[0])) || (st = vt_save(c, t[3])) || (st = vt_save(c, t[4])) ||
            (t[1] && (st = vt_save(c, t[1])))) {
            decref_all(t, 5);
            return st;
        }
    }
    decref_all(t, 5);
    return VT_OK;
fail:
    st = vt_last_code();
fail_st:
    free(s);
    free(A);
    vt_tensor_decref(y);
    decref_all(t, 5);
    return st;
}

/* Backward (BatchNorm, Ioffe & Szegedy arXiv 1502.03167 §3), per channel over its n values, x̂ = (x−μ)·rstd:
 *   train: dx = γ·rstd/n·(n·g − Σg − x̂·Σ(g⊙x̂)),  eval: dx = γ·rstd·g;  dγ = Σ g⊙x̂; dβ = Σ g.
 * dx is applied as g·A + (x−μ)·B + D with per-channel A, B, D. */
static int bn_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int axis) {
    vt_tensor *x = n->saved[0], *mean = n->saved[1], *rstd = n->saved[2];
    vt_tensor *w = n->nsaved > 3 ? n->saved[3] : NULL;
    int training = n->args.i[IARG(batch_norm, training)] != 0;
    int want_x = n->needs_input_grad & 1, want_w = n->needs_input_grad >> 3 & 1, want_b = n->needs_input_grad >> 4 & 1;
    int64_t N, C, S;
    ncs(x->ndim, x->shape, axis, &N, &C, &S);
    const double cnt = (double)(N * S);
    int64_t cs[1] = {C};
    vt_tensor *g = grad_out(n, gout), *dx = NULL, *dw = NULL, *db = NULL;
    double *s = NULL;
    float *A = NULL;
    if (!g) return vt_last_code();
    if (want_x && !(dx = vt_empty(VT_FLOAT32, x->ndim, x->shape))) goto fail;
    if (want_w && !(dw = vt_empty(VT_FLOAT32, 1, cs))) goto fail;
    if (want_b && !(db = vt_empty(VT_FLOAT32, 1, cs))) goto fail;
    s = malloc(sizeof(double) * (size_t)(2 * C + 1));
    A = malloc(sizeof(float) * (size_t)(3 * C + 1));
    if (!s || !A) { vt_fail(VT_ENOMEM, "batch_norm backward: out of memory"); goto fail; }
    double *q = s + C;
    float *B = A + C, *Dc = A + 2 * C;
    const float *X = vt_f32(x), *G = vt_f32(g), *MU = vt_f32(mean), *RS = vt_f32(rstd), *W = w ? vt_f32(w) : NULL;
    int need_sums = want_w || want_b || (want_x && training);
    if (need_sums && channel_sums(X, G, MU, N, C, S, s, q)) goto fail;
    for (int64_t j = 0; j < C; j++) {
        double gam = W ? W[j] : 1.0, r = RS[j];
        if (need_sums) {
            /* Σ g·x̂; an empty batch has no x̂ (its rstd is NaN) and a zero sum, as in PyTorch */
            if (dw) vt_f32(dw)[j] = (float)(cnt > 0 ? q[j] * r : 0.0);
            if (db) vt_f32(db)[j] = (float)s[j];
        }
        if (training) {
            /* dx = γr·g − (x−μ)·γr³/n·Σg(x−μ) − γr/n·Σg */
            A[j] = (float)(gam * r);
            B[j] = (float)(cnt > 0 ? -gam * r * r * r * q[j] / cnt : 0.0);
            Dc[j] = (float)(cnt > 0 ? -gam * r * s[j] / cnt : 0.0);
        } else {
            A[j] = (float)(gam * r);
            B[j] = 0.0f;
            Dc[j] = 0.0f;
        }
    }
    if (dx) channel_affine(vt_f32(dx), X, G, MU, A, B, Dc, N, C, S);
    free(s);
    free(A);
    vt_tensor_decref(g);
    gin[0] = dx;
    gin[3] = dw;
    gin[4] = db;
    return VT_OK;
fail:
    free(s);
    free(A);
    vt_tensor_decref(g);
    vt_tensor_decref(dx);
    vt_tensor_decref(dw);
    vt_tensor_decref(db);
    return vt_last_code();
}

int vt_batch_norm_forward(vt_ctx *c) { return bn_forward(c, 1, "batch_norm"); }
int vt_batch_norm_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return bn_backward(n, gout, gin, 1); }
int vt_token_batch_norm_forward(vt_ctx *c) { return bn_forward(c, 2, "token_batch_norm"); }
int vt_token_batch_norm_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return bn_backward(n, gout, gin, 2); }
