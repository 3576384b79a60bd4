/* vitc ops: losses. Forward and backward of each op side by side.
 *
 * cross_entropy (torch.nn.functional.cross_entropy, label smoothing included): fused log-softmax + NLL, one row at a time while it sits in cache
 * (max, Σe^{x−max}, loss), rows in parallel. Logits (N, K, *) are read in place: row r = (n, s)
 * holds class k at n·K·S + k·S + s (S = prod(*)); (N, K) rows are used directly, strided rows are
 * gathered into a per-thread buffer, and no transpose is materialised. With per-class weights w,
 * smoothing ε and the row's target distribution q (one-hot of a class index, or given
 * probabilities y), PyTorch's definition is, per row,
 *     loss_r = Σ_k c_k·(lse − x_k),   c_k = w_k·((1−ε)·q_k + ε/K),   lse = log Σ_k e^{x_k}
 * (torch: (1−ε)·nll + ε/K·Σ_k w_k·(−log p_k) for class indices; y ← (1−ε)y + ε/K for
 * probabilities). 'mean' divides by Σ w_{t_r} over non-ignored rows for class indices and by the
 * number of rows for probabilities (as torch). Backward: dx_k = s_r·(p_k·Σ_j c_j − c_k), s_r the
 * upstream gradient of the row (÷ the mean's denominator). Saved: the row max m and log Σ e^{x−m}
 * separately, so p_k = e^{(x_k−m) − log Σ} stays exact for logits of any magnitude. The row
 * kernels use the vectorisable vt_expf (kernels/fastmath.h) and SIMD float sums in short blocks totalled in double.
 *
 * nll_loss: loss_r = −w_t·x[r, t]. Pointwise losses (mse, kl_div, bce_with_logits) broadcast
 * their operands, compute in one loop, and reduce in fixed chunks (deterministic, double sums). */
/* no FP traps are ever enabled; without this the vt_*f math of kernels/fastmath.h does not vectorize */
#pragma GCC optimize ("no-trapping-math")
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops_util.h"
#include "../core/vec8.h"

enum { RED_NONE = 0, RED_MEAN = 1, RED_SUM = 2, RED_BATCHMEAN = 3 };
#define NCHUNK 32        /* row chunks for sums over rows */
#define CHUNK 8192       /* element chunks for pointwise sums */
#define PAR_WORK 32768

/* every loss keeps `reduction` in one slot, and cross_entropy and nll_loss `ignore_index` */
VT_SAME_IARG(cross_entropy, nll_loss, reduction);
VT_SAME_IARG(cross_entropy, binary_cross_entropy_with_logits, reduction);
VT_SAME_IARG(cross_entropy, kl_div, reduction);
VT_SAME_IARG(cross_entropy, mse_loss, reduction);
VT_SAME_IARG(cross_entropy, nll_loss, ignore_index);
#define REDUCTION(a) ((a)->i[IARG(cross_entropy, reduction)])
#define IGNORE_INDEX(a) ((a)->i[IARG(cross_entropy, ignore_index)])

static int get_reduction(const vt_args *a, int allow_batchmean, const char *who, int *red) {
    int64_t r = REDUCTION(a);
    *red = (int)r;
    int hi = allow_batchmean ? RED_BATCHMEAN : RED_SUM;
    if (r < 0 || r > hi) return vt_fail(VT_EVALUE, "%s: unknown reduction code %lld", who, (long long)r);
    return VT_OK;
}

/* ---- class losses: geometry and targets --------------------------------------------------------- */

typedef struct {
    int64_t N, K, S, R; /* R = N·S rows */
    int soft;           /* float targets of the input's shape (class probabilities) */
} cgeom;

static int class_geometry(const char *who, const vt_tensor *x, const vt_tensor *t, int allow_soft, cgeom *g) {
    char b1[128], b2[128];
    VT_TRY(vt_require_f32(x, who, "input"));
    if (!t) return vt_fail(VT_ETYPE, "%s: target is missing", who);
    if (x->ndim < 2)
        return vt_fail(VT_ESHAPE, "%s: expected input of shape (N, K) or (N, K, d1, ...), got %s", who,
                       vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    g->N = x->shape[0];
    g->K = x->shape[1];
    g->S = vt_shape_numel(x->ndim - 2, x->shape + 2);
    g->R = g->N * g->S;
    g->soft = 0;
    if (g->K < 1) return vt_fail(VT_ESHAPE, "%s: input has no classes (shape %s)", who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    /* expected class-index target shape: the input's shape without dim 1 */
    int64_t ts[VT_MAX_DIMS];
    ts[0] = g->N;
    for (int d = 2; d < x->ndim; d++) ts[d - 1] = x->shape[d];
    int idx_shape = t->ndim == x->ndim - 1 && !memcmp(t->shape, ts, sizeof(int64_t) * (size_t)t->ndim);
    if (t->dtype == VT_FLOAT32) {
        if (allow_soft && vt_same_shape(t, x)) { g->soft = 1; return VT_OK; }
        if (idx_shape || t->ndim == x->ndim - 1)
            return vt_fail(VT_ETYPE, "%s: class-index targets must be int64, got float32 of shape %s (float targets "
                           "are class probabilities and must have the input's shape %s)", who,
                           vt_shape_str(t->ndim, t->shape, b1, sizeof b1), vt_shape_str(x->ndim, x->shape, b2, sizeof b2));
        if (allow_soft)
            return vt_fail(VT_ESHAPE, "%s: float (probability) target has shape %s, expected the input's shape %s", who,
                           vt_shape_str(t->ndim, t->shape, b1, sizeof b1), vt_shape_str(x->ndim, x->shape, b2, sizeof b2));
        return vt_fail(VT_ETYPE, "%s: target must be int64 class indices, got float32", who);
    }
    if (t->dtype != VT_INT64)
        return vt_fail(VT_ETYPE, "%s: target must be int64 class indices%s, got %s", who,
                       allow_soft ? " or float32 class probabilities" : "", vt_dtype_name(t->dtype));
    if (!idx_shape)
        return vt_fail(VT_ESHAPE, "%s: class-index target has shape %s, expected %s for input of shape %s", who,
                       vt_shape_str(t->ndim, t->shape, b1, sizeof b1), vt_shape_str(x->ndim - 1, ts, b2, sizeof b2),
                       vt_shape_str(x->ndim, x->shape, (char[128]){0}, 128));
    return VT_OK;
}

/* a class-weight vector (K) or NULL; contiguous new ref in *out */
static int class_weight(const char *who, vt_tensor *w, int64_t K, vt_tensor **out) {
    *out = NULL;
    if (!w) return VT_OK;
    VT_TRY(vt_require_f32(w, who, "weight"));
    if (w->ndim != 1 || w->shape[0] != K) {
        char b1[128];
        return vt_fail(VT_ESHAPE, "%s: weight has shape %s, expected (%lld,) (one value per class)", who,
                       vt_shape_str(w->ndim, w->shape, b1, sizeof b1), (long long)K);
    }
    *out = vt_contiguous(w);
    return *out ? VT_OK : vt_last_code();
}

/* every target in [0, K) or == ignore; *denom = Σ w_t over non-ignored rows (count if no weight) */
static int check_targets(const char *who, const int64_t *T, int64_t R, int64_t K, int64_t ignore, const float *w,
                         double *denom) {
    double d = 0;
    for (int64_t r = 0; r < R; r++) {
        int64_t t = T[r];
        if (t == ignore) continue;
        if (t < 0 || t >= K)
            return vt_fail(VT_EINDEX, "%s: target %lld is out of bounds for %lld classes (at flat position %lld)", who,
                           (long long)t, (long long)K, (long long)r);
        d += w ? w[t] : 1.0;
    }
    *denom = d;
    return VT_OK;
}

/* out (the 'none' result shape for class losses): the input's shape without dim 1 */
static vt_tensor *class_none_out(const vt_tensor *x) {
    int64_t ts[VT_MAX_DIMS];
    ts[0] = x->shape[0];
    for (int d = 2; d < x->ndim; d++) ts[d - 1] = x->shape[d];
    return vt_empty(VT_FLOAT32, x->ndim - 1, ts);
}

/* ---- cross entropy ------------------------------------------------------------------------------ */


/* hot row kernels carry VT_SIMD_CLONES (core/simd.h): one build per ISA, picked at load time */

/* SIMD float reductions (`omp simd reduction` allows the lane-wise reassociation) over blocks of
 * at most BLOCK terms, block totals in double. */
#define BLOCK 512

/* row max and ls = log Σ e^{x−m} of a contiguous row (NaN anywhere gives NaN through the sum) */
static inline __attribute__((always_inline)) void row_lse(const float *x, int64_t K, float *m_out, double *ls_out) {
    float m = x[0];
    #pragma omp simd reduction(max : m)
    for (int64_t k = 0; k < K; k++) m = x[k] > m ? x[k] : m;
    double se = 0;
    for (int64_t k0 = 0; k0 < K; k0 += BLOCK) {
        const int64_t k1 = k0 + BLOCK < K ? k0 + BLOCK : K;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t k = k0; k < k1; k++) a += vt_expf(x[k] - m);
        se += a;
    }
    *m_out = m;
    *ls_out = log(se);
}

/* Loss of one contiguous row (see the top comment); tgt ≥ 0: class index, else y holds the
 * probabilities. Writes ml = [m, ls]. */
VT_SIMD_CLONES static double ce_row(const float *x, int64_t K, const float *w, int64_t tgt, const float *y, double eps, float *ml) {
    float m;
    double ls;
    row_lse(x, K, &m, &ls);
    ml[0] = m;
    ml[1] = (float)ls;
    const double keps = eps / (double)K, one = 1.0 - eps;
    /* terms (m − x_k) ≥ 0: summing them never cancels, whatever the logits' magnitude */
    int64_t k;
    if (!y) {
        const double wt = w ? w[tgt] : 1.0, nll = wt * (((double)m - x[tgt]) + ls);
        if (eps == 0) return nll;
        double sd = 0, ws = 0; /* Σ w_k·(m − x_k), Σ w_k */
        for (int64_t k0 = 0; k0 < K; k0 += BLOCK) {
            const int64_t k1 = k0 + BLOCK < K ? k0 + BLOCK : K;
            float a = 0, b = 0;
            if (w) {
                #pragma omp simd reduction(+ : a, b)
                for (k = k0; k < k1; k++) { a += w[k] * (m - x[k]); b += w[k]; }
            } else {
                #pragma omp simd reduction(+ : a)
                for (k = k0; k < k1; k++) a += m - x[k];
                b = (float)(k1 - k0);
            }
            sd += a;
            ws += b;
        }
        return one * nll + keps * (sd + ws * ls);
    }
    /* soft: Σ c_k·(m − x_k) + ls·Σ c_k, c_k = w_k·((1−ε)y_k + ε/K) (terms ≥ 0) */
    const float of = (float)one, kf = (float)keps, mf = m;
    double sd = 0, sc = 0;
    for (int64_t k0 = 0; k0 < K; k0 += BLOCK) {
        const int64_t k1 = k0 + BLOCK < K ? k0 + BLOCK : K;
        float ad = 0, ac = 0;
        if (w) {
            #pragma omp simd reduction(+ : ad, ac)
            for (k = k0; k < k1; k++) { float ck = (of * y[k] + kf) * w[k]; ad += ck * (mf - x[k]); ac += ck; }
        } else {
            #pragma omp simd reduction(+ : ad, ac)
            for (k = k0; k < k1; k++) { float ck = of * y[k] + kf; ad += ck * (mf - x[k]); ac += ck; }
        }
        sd += ad;
        sc += ac;
    }
    return sd + ls * sc;
}

/* Gradient of one contiguous row, upstream s: dx_k = s·(p_k·Σc − c_k); dy_k = s·w_k·(1−ε)·(lse − x_k). */
VT_SIMD_CLONES static void ce_grad_row(const float *x, int64_t K, const float *w, int64_t tgt, const float *y, double eps,
                        const float *ml, double s, double wsum, float *dx, float *dy) {
    const float m = ml[0], ls = ml[1];
    const double keps = eps / (double)K, one = 1.0 - eps;
    if (dx) {
        if (!y) {
            const double wt = w ? w[tgt] : 1.0;
            const float st = (float)(s * (one * wt + keps * wsum)), se = (float)(s * keps);
            if (w) for (int64_t k = 0; k < K; k++) dx[k] = st * vt_expf((x[k] - m) - ls) - se * w[k];
            else for (int64_t k = 0; k < K; k++) dx[k] = st * vt_expf((x[k] - m) - ls) - se;
            dx[tgt] -= (float)(s * one * wt);
        } else {
            double wy = 0; /* Σ w_k·y_k */
            for (int64_t k0 = 0; k0 < K; k0 += BLOCK) {
                const int64_t k1 = k0 + BLOCK < K ? k0 + BLOCK : K;
                float a = 0;
                if (w) {
                    #pragma omp simd reduction(+ : a)
                    for (int64_t k = k0; k < k1; k++) a += w[k] * y[k];
                } else {
                    #pragma omp simd reduction(+ : a)
                    for (int64_t k = k0; k < k1; k++) a += y[k];
                }
                wy += a;
            }
            const double tot = one * wy + keps * wsum; /* Σ_k c_k */
            const float st = (float)(s * tot), so = (float)(s * one), se = (float)(s * keps);
            if (w) for (int64_t k = 0; k < K; k++) dx[k] = st * vt_expf((x[k] - m) - ls) - w[k] * (so * y[k] + se);
            else for (int64_t k = 0; k < K; k++) dx[k] = st * vt_expf((x[k] - m) - ls) - (so * y[k] + se);
        }
    }
    if (dy) {
        const float so = (float)(s * one);
        for (int64_t k = 0; k < K; k++) dy[k] = so * (w ? w[k] : 1.0f) * ((m - x[k]) + ls);
    }
}

/* Rows of at most SHORT_K classes (LV-ViT's token loss: (B·N, 10) soft targets) padded to SHORT_K
 * lanes (logits with -inf, whose e^{x−m} is 0; the pad's weights c_k 0), so every loop has a fixed
 * count GCC vectorizes whole: the general loops' omp simd reductions over 10 classes compiled to
 * scalar code with stack traffic (perf annotate; that loss took 523 µs forward at 2 threads on
 * Zen 4, PyTorch's 663). The same quantities as ce_row / ce_grad_row's dx, summed in another order. */
#define SHORT_K 16

/* the row's logits (pad -inf) and c_k = w_k·((1−ε)·q_k + ε/K) (pad 0) */
static inline __attribute__((always_inline)) void short_row(const float *x, int64_t K, const float *w, int64_t tgt,
                                                            const float *y, double eps, float *xv, float *cv) {
    const float keps = (float)(eps / (double)K), one = (float)(1.0 - eps);
    for (int64_t k = 0; k < SHORT_K; k++) {
        int in = k < K;
        float q = y ? (in ? y[k] : 0.0f) : (k == tgt ? 1.0f : 0.0f), wk = in ? (w ? w[k] : 1.0f) : 0.0f;
        xv[k] = in ? x[k] : -INFINITY;
        cv[k] = wk * (one * q + keps);
    }
}

/* Σ of the SHORT_K (16) lanes: two vectors added, then vec8.h's fixed halving tree in registers (a
 * running sum must go lane by lane) */
static inline __attribute__((always_inline)) float sum_short(const float *a) {
    v8 v = ld8(a) + ld8(a + 8);
    return allsum8(&v)[0];
}

VT_SIMD_CLONES static double ce_row_short(const float *x, int64_t K, const float *w, int64_t tgt, const float *y,
                                          double eps, float *ml) {
    float xv[SHORT_K], cv[SHORT_K], e[SHORT_K], dv[SHORT_K], m = -INFINITY;
    short_row(x, K, w, tgt, y, eps, xv, cv);
    for (int k = 0; k < SHORT_K; k++) m = xv[k] > m ? xv[k] : m;
    for (int k = 0; k < SHORT_K; k++) {
        e[k] = vt_expf(xv[k] - m);
        dv[k] = k < K ? cv[k] * (m - xv[k]) : 0.0f; /* terms (m − x_k) >= 0, as ce_row */
    }
    double ls = log((double)sum_short(e));
    float sd = sum_short(dv), sc = sum_short(cv);
    ml[0] = m;
    ml[1] = (float)ls;
    return (double)sd + ls * (double)sc;
}

/* dx_k = s·(p_k·Σc − c_k) */
VT_SIMD_CLONES static void ce_grad_row_short(const float *x, int64_t K, const float *w, int64_t tgt, const float *y,
                                             double eps, const float *ml, double s, float *dx) {
    float xv[SHORT_K], cv[SHORT_K], d[SHORT_K];
    short_row(x, K, w, tgt, y, eps, xv, cv);
    const float m = ml[0], ls = ml[1], st = (float)(s * (double)sum_short(cv)), sf = (float)s;
    for (int k = 0; k < SHORT_K; k++) d[k] = st * vt_expf((xv[k] - m) - ls) - sf * cv[k];
    for (int64_t k = 0; k < K; k++) dx[k] = d[k];
}

/* a row of a (N, K, S) block: contiguous when S == 1, else gathered into buf (class stride S) */
static inline const float *row_in(const float *base, int64_t K, int64_t S, float *buf) {
    if (S == 1) return base;
    for (int64_t k = 0; k < K; k++) buf[k] = base[k * S];
    return buf;
}
static inline void row_out(float *base, int64_t K, int64_t S, const float *buf) {
    for (int64_t k = 0; k < K; k++) base[k * S] = buf[k];
}

/* Forward. Saves: logits (contiguous), target (contiguous), ml (R, 2) = [row max, log Σ e^{x−max}],
 * weight (if given), in that order. Rows in NCHUNK chunks (parallel), sums in chunk order. */
int vt_cross_entropy_forward(vt_ctx *c) {
    const char *who = "cross_entropy";
    vt_tensor *x = c->in[0], *t = c->nin > 1 ? c->in[1] : NULL, *w = c->nin > 2 ? c->in[2] : NULL;
    int red;
    VT_TRY(get_reduction(c->args, 0, who, &red));
    int64_t ignore = IGNORE_INDEX(c->args);
    double eps = c->args->f[FARG(cross_entropy, label_smoothing)];
    if (!(eps >= 0.0 && eps <= 1.0))
        return vt_fail(VT_EVALUE, "%s: label_smoothing must be between 0.0 and 1.0, got %g", who, eps);
    cgeom g;
    VT_TRY(class_geometry(who, x, t, 1, &g));
    if (g.soft && ignore != -100)
        return vt_fail(VT_EVALUE, "%s: ignore_index is not supported for class-probability (float) targets", who);
    vt_tensor *k[4] = {0}; /* xc, tc, ml, wc */
    VT_TRY(class_weight(who, w, g.K, &k[3]));
    vt_tensor *out = NULL;
    double *part = NULL;
    float *bufs = NULL;
    int st;
    if (!(k[0] = vt_contiguous(x)) || !(k[1] = vt_contiguous(t))) goto fail;
    int64_t ms[2] = {g.R, 2};
    if (!(k[2] = vt_empty(VT_FLOAT32, 2, ms))) goto fail;
    const float *W = k[3] ? vt_f32(k[3]) : NULL;
    const int64_t *T = g.soft ? NULL : vt_i64(k[1]);
    const float *Y = g.soft ? vt_f32(k[1]) : NULL;
    double denom = (double)g.R;
    if (T && (st = check_targets(who, T, g.R, g.K, ignore, W, &denom))) goto fail_st;
    out = red == RED_NONE ? class_none_out(x) : vt_empty(VT_FLOAT32, 0, NULL);
    if (!out) goto fail;
    const int64_t nch = g.R < NCHUNK ? g.R : NCHUNK, K = g.K, S = g.S;
    part = calloc((size_t)nch + 1, sizeof(double));
    if (S > 1) bufs = malloc(sizeof(float) * (size_t)(nch * 2 * K));
    if (!part || (S > 1 && !bufs)) { vt_fail(VT_ENOMEM, "%s: out of memory", who); goto fail; }
    const float *X = vt_f32(k[0]);
    float *ML = vt_f32(k[2]), *O = red == RED_NONE ? vt_f32(out) : NULL;
    #pragma omp parallel for if (g.R * K > PAR_WORK) schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        float *bx = bufs ? bufs + ch * 2 * K : NULL, *by = bx ? bx + K : NULL;
        double acc = 0;
        for (int64_t r = g.R * ch / nch; r < g.R * (ch + 1) / nch; r++) {
            const int64_t base = (r / S) * K * S + r % S;
            double l = 0;
            if (T && T[r] == ignore) ML[2 * r] = ML[2 * r + 1] = 0;
            else l = (K <= SHORT_K ? ce_row_short : ce_row)(row_in(X + base, K, S, bx), K, W, T ? T[r] : -1,
                                                             Y ? row_in(Y + base, K, S, by) : NULL, eps, ML + 2 * r);
            if (O) O[r] = (float)l;
            acc += l;
        }
        part[ch] = acc;
    }
    if (red != RED_NONE) {
        double total = 0;
        for (int64_t ch = 0; ch < nch; ch++) total += part[ch];
        vt_f32(out)[0] = (float)(red == RED_MEAN ? total / denom : total); /* 0/0 = NaN, like torch */
    }
    free(part);
    free(bufs);
    c->out[0] = out;
    c->nout = 1;
    for (int i = 0; i < 4 && c->save; i++)
        if (k[i] && (st = vt_save(c, k[i]))) { decref_all(k, 4); return st; }
    decref_all(k, 4);
    return VT_OK;
fail:
    st = vt_last_code();
fail_st:
    free(part);
    free(bufs);
    vt_tensor_decref(out);
    decref_all(k, 4);
    return st;
}

int vt_cross_entropy_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const char *who = "cross_entropy";
    if (n->needs_input_grad >> 2 & 1)
        return vt_fail(VT_ERUNTIME, "%s: the derivative for 'weight' is not implemented", who);
    vt_tensor *xc = n->saved[0], *tc = n->saved[1], *mlt = n->saved[2], *wc = n->nsaved > 3 ? n->saved[3] : NULL;
    int red = (int)REDUCTION(&n->args);
    int64_t ignore = IGNORE_INDEX(&n->args);
    const double eps = n->args.f[FARG(cross_entropy, label_smoothing)];
    cgeom g;
    VT_TRY(class_geometry(who, xc, tc, 1, &g));
    int want_x = n->needs_input_grad & 1, want_y = g.soft && (n->needs_input_grad >> 1 & 1);
    const int64_t K = g.K, S = g.S, nch = g.R < NCHUNK ? g.R : NCHUNK;
    vt_tensor *gt = grad_out(n, gout), *dx = NULL, *dy = NULL;
    float *bufs = NULL;
    if (!gt) return vt_last_code();
    if (want_x && !(dx = vt_empty(VT_FLOAT32, xc->ndim, xc->shape))) goto fail;
    if (want_y && !(dy = vt_empty(VT_FLOAT32, xc->ndim, xc->shape))) goto fail;
    if (S > 1 && nch > 0 && !(bufs = malloc(sizeof(float) * (size_t)(nch * 4 * K)))) {
        vt_fail(VT_ENOMEM, "%s backward: out of memory", who);
        goto fail;
    }
    const float *X = vt_f32(xc), *ML = vt_f32(mlt), *W = wc ? vt_f32(wc) : NULL, *G = vt_f32(gt);
    const int64_t *T = g.soft ? NULL : vt_i64(tc);
    const float *Y = g.soft ? vt_f32(tc) : NULL;
    double denom = (double)g.R, wsum = (double)K;
    if (T) {
        denom = 0;
        for (int64_t r = 0; r < g.R; r++) if (T[r] != ignore) denom += W ? W[T[r]] : 1.0;
    }
    if (W) { wsum = 0; for (int64_t k = 0; k < K; k++) wsum += W[k]; }
    const double scale = red == RED_NONE ? 1.0 : red == RED_MEAN ? (double)G[0] / denom : (double)G[0];
    float *DX = dx ? vt_f32(dx) : NULL, *DY = dy ? vt_f32(dy) : NULL;
    #pragma omp parallel for if (g.R * K > PAR_WORK) schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        float *bx = bufs ? bufs + ch * 4 * K : NULL, *by = bx ? bx + K : NULL;
        float *bdx = bx ? bx + 2 * K : NULL, *bdy = bx ? bx + 3 * K : NULL;
        for (int64_t r = g.R * ch / nch; r < g.R * (ch + 1) / nch; r++) {
            const int64_t base = (r / S) * K * S + r % S;
            float *rdx = DX ? (S == 1 ? DX + base : bdx) : NULL, *rdy = DY ? (S == 1 ? DY + base : bdy) : NULL;
            if (T && T[r] == ignore) {
                if (rdx) memset(rdx, 0, sizeof(float) * (size_t)K);
            } else {
                const double s = red == RED_NONE ? (double)G[r] : scale;
                const float *xr = row_in(X + base, K, S, bx), *yr = Y ? row_in(Y + base, K, S, by) : NULL;
                if (K <= SHORT_K && rdx) {
                    ce_grad_row_short(xr, K, W, T ? T[r] : -1, yr, eps, ML + 2 * r, s, rdx);
                    if (rdy) ce_grad_row(xr, K, W, T ? T[r] : -1, yr, eps, ML + 2 * r, s, wsum, NULL, rdy);
                } else
                    ce_grad_row(xr, K, W, T ? T[r] : -1, yr, eps, ML + 2 * r, s, wsum, rdx, rdy);
            }
            if (S > 1 && rdx) row_out(DX + base, K, S, rdx);
            if (S > 1 && rdy) row_out(DY + base, K, S, rdy);
        }
    }
    free(bufs);
    vt_tensor_decref(gt);
    gin[0] = dx;
    gin[1] = dy;
    return VT_OK;
fail:
    free(bufs);
    vt_tensor_decref(gt);
    vt_tensor_decref(dx);
    vt_tensor_decref(dy);
    return vt_last_code();
}

/* ---- nll loss ----------------------------------------------------------------------------------- */

/* Forward. Saves: target (contiguous), weight (if given). */
int vt_nll_loss_forward(vt_ctx *c) {
    const char *who = "nll_loss";
    vt_tensor *x = c->in[0], *t = c->nin > 1 ? c->in[1] : NULL, *w = c->nin > 2 ? c->in[2] : NULL;
    int red;
    VT_TRY(get_reduction(c->args, 0, who, &red));
    int64_t ignore = IGNORE_INDEX(c->args);
    cgeom g;
    VT_TRY(class_geometry(who, x, t, 0, &g));
    vt_tensor *k[3] = {0}; /* xc, tc, wc */
    VT_TRY(class_weight(who, w, g.K, &k[2]));
    vt_tensor *out = NULL;
    int st;
    if (!(k[0] = vt_contiguous(x)) || !(k[1] = vt_contiguous(t))) goto fail;
    const float *W = k[2] ? vt_f32(k[2]) : NULL, *X = vt_f32(k[0]);
    const int64_t *T = vt_i64(k[1]);
    double denom;
    if ((st = check_targets(who, T, g.R, g.K, ignore, W, &denom))) goto fail_st;
    out = red == RED_NONE ? class_none_out(x) : vt_empty(VT_FLOAT32, 0, NULL);
    if (!out) goto fail;
    double total = 0;
    float *O = vt_f32(out);
    for (int64_t r = 0; r < g.R; r++) {
        int64_t tg = T[r];
        double l = tg == ignore ? 0.0 : -(W ? W[tg] : 1.0) * X[(r / g.S) * g.K * g.S + tg * g.S + r % g.S];
        if (red == RED_NONE) O[r] = (float)l;
        total += l;
    }
    if (red != RED_NONE) O[0] = (float)(red == RED_MEAN ? total / denom : total);
    c->out[0] = out;
    c->nout = 1;
    if (c->save && ((st = vt_save(c, k[1])) || (k[2] && (st = vt_save(c, k[2]))))) { decref_all(k, 3); return st; }
    decref_all(k, 3);
    return VT_OK;
fail:
    st = vt_last_code();
fail_st:
    vt_tensor_decref(out);
    decref_all(k, 3);
    return st;
}

int vt_nll_loss_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    if (n->needs_input_grad >> 2 & 1)
        return vt_fail(VT_ERUNTIME, "nll_loss: the derivative for 'weight' is not implemented");
    if (!(n->needs_input_grad & 1)) return VT_OK;
    vt_tensor *tc = n->saved[0], *wc = n->nsaved > 1 ? n->saved[1] : NULL;
    const vt_meta *im = &n->in_meta[0];
    int red = (int)REDUCTION(&n->args);
    int64_t ignore = IGNORE_INDEX(&n->args);
    int64_t K = im->shape[1], S = vt_shape_numel(im->ndim - 2, im->shape + 2), R = im->shape[0] * S;
    vt_tensor *gt = grad_out(n, gout);
    if (!gt) return vt_last_code();
    vt_tensor *dx = vt_zeros(VT_FLOAT32, im->ndim, im->shape);
    if (!dx) { vt_tensor_decref(gt); return vt_last_code(); }
    const int64_t *T = vt_i64(tc);
    const float *W = wc ? vt_f32(wc) : NULL, *G = vt_f32(gt);
    double denom = 0;
    for (int64_t r = 0; r < R; r++) if (T[r] != ignore) denom += W ? W[T[r]] : 1.0;
    const double scale = red == RED_NONE ? 1.0 : red == RED_MEAN ? (double)G[0] / denom : (double)G[0];
    float *DX = vt_f32(dx);
    for (int64_t r = 0; r < R; r++) {
        int64_t tg = T[r];
        if (tg == ignore) continue;
        double s = red == RED_NONE ? (double)G[r] : scale;
        DX[(r / S) * K * S + tg * S + r % S] = (float)(-s * (W ? W[tg] : 1.0));
    }
    vt_tensor_decref(gt);
    gin[0] = dx;
    return VT_OK;
}

/* ---- pointwise losses: mse, kl_div, binary cross entropy with logits ---------------------------- */

enum { PW_MSE, PW_KL, PW_KL_LOG, PW_BCE };

/* log(1 + e^{−|z|}) */
static inline float log1p_exp_neg_abs(float z) { return log1pf(expf(-fabsf(z))); }

/* per-element loss; w, pw default to 1 (BCE only):
 *   mse   (a−b)²
 *   kl    xlogy(b, b) − b·a            (torch: 0·log 0 = 0)
 *   kl_l  e^b·(b − a)                  (log_target)
 *   bce   w·[(1−y)z + L·log(1+e^{−z})], L = 1 + (pw−1)y, computed without cancellation as
 *         w·[(z ≥ 0 ? (1−y)z : −pw·y·z) + L·log(1+e^{−|z|})] */
static inline float pw_loss(int kind, float a, float b, float w, float pw) {
    switch (kind) {
    case PW_MSE: { float d = a - b; return d * d; }
    case PW_KL: return (b == 0.0f ? 0.0f : b * logf(b)) - b * a;
    case PW_KL_LOG: return expf(b) * (b - a);
    default: {
        float L = 1.0f + (pw - 1.0f) * b;
        return w * ((a >= 0.0f ? (1.0f - b) * a : -pw * b * a) + L * log1p_exp_neg_abs(a));
    }
    }
}

typedef struct {
    int kind;
    const float *a, *b, *w, *pw; /* contiguous, n elements each (w, pw may be NULL) */
} pwops;

/* out[i] = loss (if out); *total = the sum of the losses: double per chunk, chunks summed in order */
static int pw_forward(const pwops *o, int64_t n, float *out, double *total) {
    int64_t nch = (n + CHUNK - 1) / CHUNK;
    double *part = malloc(sizeof(double) * (size_t)(nch + 1));
    if (!part) return vt_fail(VT_ENOMEM, "loss: out of memory");
    #pragma omp parallel for if (n > PAR_WORK) schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t i1 = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        double acc = 0;
        for (int64_t i = ch * CHUNK; i < i1; i++) {
            float l = pw_loss(o->kind, o->a[i], o->b[i], o->w ? o->w[i] : 1.0f, o->pw ? o->pw[i] : 1.0f);
            if (out) out[i] = l;
            acc += l;
        }
        part[ch] = acc;
    }
    *total = 0;
    for (int64_t ch = 0; ch < nch; ch++) *total += part[ch];
    free(part);
    return VT_OK;
}

/* contiguous copy of t broadcast to (nd, shape) (t itself, new ref, when already so) */
static vt_tensor *expand_contig(vt_tensor *t, int nd, const int64_t *shape) {
    if (t->ndim == nd && !memcmp(t->shape, shape, sizeof(int64_t) * (size_t)nd)) return vt_contiguous(t);
    int64_t st[VT_MAX_DIMS];
    vt_broadcast_strides(t, nd, shape, st);
    vt_tensor *v = vt_view_of(t, nd, shape, st, t->offset);
    if (!v) return NULL;
    vt_tensor *cp = vt_clone(v);
    vt_tensor_decref(v);
    return cp;
}

/* shared forward: k[] = expanded a, b, w, pw (w/pw NULL when absent); the output and saves.
 * Saves the expanded operands that are present, in order a, b, w, pw. */
static int pw_finish(vt_ctx *c, int kind, int red, vt_tensor **k, int nd, const int64_t *shape, int64_t bm_div) {
    int64_t n = vt_shape_numel(nd, shape);
    vt_tensor *out = red == RED_NONE ? vt_empty(VT_FLOAT32, nd, shape) : vt_empty(VT_FLOAT32, 0, NULL);
    if (!out) return vt_last_code();
    pwops o = {kind, vt_f32(k[0]), vt_f32(k[1]), k[2] ? vt_f32(k[2]) : NULL, k[3] ? vt_f32(k[3]) : NULL};
    double total = 0;
    if (pw_forward(&o, n, red == RED_NONE ? vt_f32(out) : NULL, &total)) { vt_tensor_decref(out); return vt_last_code(); }
    if (red == RED_MEAN) vt_f32(out)[0] = (float)(total / (double)n);
    else if (red == RED_SUM) vt_f32(out)[0] = (float)total;
    else if (red == RED_BATCHMEAN) vt_f32(out)[0] = (float)(total / (double)bm_div);
    c->out[0] = out;
    c->nout = 1;
    for (int i = 0; i < 4 && c->save; i++) if (k[i]) VT_TRY(vt_save(c, k[i]));
    return VT_OK;
}

/* the upstream scale of a reduced loss (s = g/denominator), or per element for 'none' */
static double pw_scale(const vt_node *n, int red, const float *G, int64_t numel) {
    if (red == RED_NONE) return 1.0;
    double g = G[0];
    if (red == RED_MEAN) return g / (double)numel;
    if (red == RED_BATCHMEAN) {
        const vt_meta *im = &n->in_meta[0];
        return g / (double)(im->ndim ? im->shape[0] : 1);
    }
    return g;
}

/* grads in the broadcast shape -> each input's shape; steals g */
static int pw_give(vt_node *n, vt_tensor **gin, int i, vt_tensor *g) {
    if (!g) return VT_OK;
    gin[i] = vt_k_sum_to(g, n->in_meta[i].ndim, n->in_meta[i].shape);
    vt_tensor_decref(g);
    return gin[i] ? VT_OK : vt_last_code();
}

/* the two-operand (input, target) broadcast losses */
static int pw2_forward(vt_ctx *c, int kind, int allow_batchmean, const char *who) {
    vt_tensor *a = c->in[0], *b = c->nin > 1 ? c->in[1] : NULL;
    int red;
    VT_TRY(get_reduction(c->args, allow_batchmean, who, &red));
    VT_TRY(vt_require_f32(a, who, "input"));
    VT_TRY(vt_require_f32(b, who, "target"));
    int nd;
    int64_t shape[VT_MAX_DIMS];
    VT_TRY(vt_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, &nd, shape, who));
    if (kind == PW_KL && c->args->i[IARG(kl_div, log_target)]) kind = PW_KL_LOG;
    vt_tensor *k[4] = {0};
    int st;
    if (!(k[0] = expand_contig(a, nd, shape)) || !(k[1] = expand_contig(b, nd, shape))) st = vt_last_code();
    else st = pw_finish(c, kind, red, k, nd, shape, a->ndim ? a->shape[0] : 1);
    decref_all(k, 4);
    return st;
}

static int pw2_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int kind) {
    vt_tensor *A = n->saved[0], *B = n->saved[1];
    int red = (int)REDUCTION(&n->args);
    if (kind == PW_KL && n->args.i[IARG(kl_div, log_target)]) kind = PW_KL_LOG;
    int want_a = n->needs_input_grad & 1, want_b = n->needs_input_grad >> 1 & 1;
    int64_t numel = vt_numel(A);
    vt_tensor *gt = grad_out(n, gout), *da = NULL, *db = NULL;
    if (!gt) return vt_last_code();
    if (want_a && !(da = vt_empty_like(A))) goto fail;
    if (want_b && !(db = vt_empty_like(B))) goto fail;
    const float *a = vt_f32(A), *b = vt_f32(B), *G = vt_f32(gt);
    const double scale = pw_scale(n, red, G, numel);
    float *DA = da ? vt_f32(da) : NULL, *DB = db ? vt_f32(db) : NULL;
    #pragma omp parallel for if (numel > PAR_WORK) schedule(static)
    for (int64_t i = 0; i < numel; i++) {
        const float s = (float)(red == RED_NONE ? G[i] : scale);
        float ga, gb;
        switch (kind) {
        case PW_MSE: ga = 2.0f * (a[i] - b[i]); gb = -ga; break;
        /* torch's xlogy derivative: ∂/∂b = log b + b/b − a, NaN at b = 0 */
        case PW_KL: ga = -b[i]; gb = (b[i] == 0.0f ? NAN : logf(b[i]) + 1.0f) - a[i]; break;
        default: { float e = expf(b[i]); ga = -e; gb = e * (b[i] - a[i] + 1.0f); break; }
        }
        if (DA) DA[i] = s * ga;
        if (DB) DB[i] = s * gb;
    }
    vt_tensor_decref(gt);
    if (pw_give(n, gin, 0, da)) { vt_tensor_decref(db); return vt_last_code(); }
    return pw_give(n, gin, 1, db);
fail:
    vt_tensor_decref(gt);
    vt_tensor_decref(da);
    vt_tensor_decref(db);
    return vt_last_code();
}

int vt_mse_loss_forward(vt_ctx *c) { return pw2_forward(c, PW_MSE, 0, "mse_loss"); }
int vt_mse_loss_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return pw2_backward(n, gout, gin, PW_MSE); }
int vt_kl_div_forward(vt_ctx *c) { return pw2_forward(c, PW_KL, 1, "kl_div"); }
int vt_kl_div_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return pw2_backward(n, gout, gin, PW_KL); }

/* binary_cross_entropy_with_logits: z and y of one shape; weight and pos_weight broadcast to it.
 * has_weight / has_pos_weight say whether weight / pos_weight are given (so backward knows the saved layout). */
int vt_bce_with_logits_forward(vt_ctx *c) {
    const char *who = "binary_cross_entropy_with_logits";
    vt_tensor *z = c->in[0], *y = c->nin > 1 ? c->in[1] : NULL;
    vt_tensor *w = c->nin > 2 ? c->in[2] : NULL, *pw = c->nin > 3 ? c->in[3] : NULL;
    int red;
    VT_TRY(get_reduction(c->args, 0, who, &red));
    if ((w != NULL) != (c->args->i[IARG(binary_cross_entropy_with_logits, has_weight)] != 0) ||
        (pw != NULL) != (c->args->i[IARG(binary_cross_entropy_with_logits, has_pos_weight)] != 0))
        return vt_fail(VT_EVALUE, "%s: weight/pos_weight presence flags do not match the inputs", who);
    VT_TRY(vt_require_f32(z, who, "input"));
    VT_TRY(vt_require_f32(y, who, "target"));
    char b1[128], b2[128];
    if (!vt_same_shape(z, y))
        return vt_fail(VT_ESHAPE, "%s: target size %s must be the same as input size %s", who,
                       vt_shape_str(y->ndim, y->shape, b1, sizeof b1), vt_shape_str(z->ndim, z->shape, b2, sizeof b2));
    vt_tensor *opt[2] = {w, pw};
    const char *names[2] = {"weight", "pos_weight"};
    for (int i = 0; i < 2; i++) {
        if (!opt[i]) continue;
        VT_TRY(vt_require_f32(opt[i], who, names[i]));
        int nd;
        int64_t sh[VT_MAX_DIMS];
        int bad = vt_broadcast_shapes(z->ndim, z->shape, opt[i]->ndim, opt[i]->shape, &nd, sh, who);
        if (!bad) bad = nd != z->ndim || memcmp(sh, z->shape, sizeof(int64_t) * (size_t)nd);
        if (bad)
            return vt_fail(VT_ESHAPE, "%s: %s of shape %s does not broadcast to the input's shape %s", who, names[i],
                           vt_shape_str(opt[i]->ndim, opt[i]->shape, b1, sizeof b1), vt_shape_str(z->ndim, z->shape, b2, sizeof b2));
    }
    vt_tensor *k[4] = {0};
    int st = VT_OK;
    if (!(k[0] = vt_contiguous(z)) || !(k[1] = vt_contiguous(y)) ||
        (w && !(k[2] = expand_contig(w, z->ndim, z->shape))) || (pw && !(k[3] = expand_contig(pw, z->ndim, z->shape))))
        st = vt_last_code();
    else st = pw_finish(c, PW_BCE, red, k, z->ndim, z->shape, 1);
    decref_all(k, 4);
    return st;
}

/* ∂/∂z = w·[(1−y) − L·σ(−z)], ∂/∂y = w·[−z + (pw−1)·softplus(−z)], ∂/∂w = loss/w,
 * ∂/∂pw = w·y·softplus(−z), softplus(−z) = max(−z, 0) + log(1+e^{−|z|}) */
int vt_bce_with_logits_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    int has_w = n->args.i[IARG(binary_cross_entropy_with_logits, has_weight)] != 0;
    int has_pw = n->args.i[IARG(binary_cross_entropy_with_logits, has_pos_weight)] != 0;
    vt_tensor *Z = n->saved[0], *Y = n->saved[1];
    vt_tensor *Wt = has_w ? n->saved[2] : NULL, *Pt = has_pw ? n->saved[2 + has_w] : NULL;
    int red = (int)REDUCTION(&n->args);
    int64_t numel = vt_numel(Z);
    vt_tensor *gt = grad_out(n, gout), *d[4] = {0};
    if (!gt) return vt_last_code();
    for (int i = 0; i < 4; i++)
        if ((n->needs_input_grad >> i & 1) && !(d[i] = vt_empty_like(Z))) { vt_tensor_decref(gt); decref_all(d, 4); return vt_last_code(); }
    const float *z = vt_f32(Z), *y = vt_f32(Y), *wv = Wt ? vt_f32(Wt) : NULL, *pv = Pt ? vt_f32(Pt) : NULL, *G = vt_f32(gt);
    const double scale = pw_scale(n, red, G, numel);
    float *DZ = d[0] ? vt_f32(d[0]) : NULL, *DY = d[1] ? vt_f32(d[1]) : NULL;
    float *DW = d[2] ? vt_f32(d[2]) : NULL, *DP = d[3] ? vt_f32(d[3]) : NULL;
    #pragma omp parallel for if (numel > PAR_WORK) schedule(static)
    for (int64_t i = 0; i < numel; i++) {
        const float s = (float)(red == RED_NONE ? G[i] : scale);
        const float zi = z[i], yi = y[i], w = wv ? wv[i] : 1.0f, p = pv ? pv[i] : 1.0f;
        const float L = 1.0f + (p - 1.0f) * yi;
        const float e = expf(-fabsf(zi));
        const float sig_neg = zi >= 0 ? e / (1.0f + e) : 1.0f / (1.0f + e); /* σ(−z) */
        const float spn = fmaxf(-zi, 0.0f) + log1pf(e);                   /* softplus(−z) */
        if (DZ) DZ[i] = s * w * ((1.0f - yi) - L * sig_neg);
        if (DY) DY[i] = s * w * (-zi + (p - 1.0f) * spn);
        if (DW) DW[i] = s * pw_loss(PW_BCE, zi, yi, 1.0f, p);
        if (DP) DP[i] = s * w * yi * spn;
    }
    vt_tensor_decref(gt);
    int st = VT_OK;
    for (int i = 0; i < 4; i++) {
        if (!d[i]) continue;
        if (st) { vt_tensor_decref(d[i]); continue; }
        st = pw_give(n, gin, i, d[i]);
    }
    return st;
}

/* ---- sigmoid cross-entropy (big_vision utils.py sigmoid_xent; Scaling ViT, arXiv 2106.04560 §3.4) ----
 * L = (1/N)·Σ_{n,k} −[y log σ(z) + (1−y) log σ(−z)]: summed over the classes, averaged over the batch.
 * Each term is binary_cross_entropy_with_logits' element loss, so the forward runs the same kernel
 * (pw_forward, PW_BCE) and its sum matches reduction='sum' of that op bit for bit before the ÷N.
 * Class-index targets are expanded to one-hot here; backward needs only the saved z and y. */

/* the (N, K, *) one-hot float copy of class indices t (N, *) */
static vt_tensor *one_hot_targets(const char *who, const vt_tensor *t, const vt_tensor *z, const cgeom *g) {
    vt_tensor *tc = vt_contiguous((vt_tensor *)t);
    if (!tc) return NULL;
    vt_tensor *y = vt_zeros(VT_FLOAT32, z->ndim, z->shape);
    if (!y) { vt_tensor_decref(tc); return NULL; }
    const int64_t *T = vt_i64(tc);
    float *Y = vt_f32(y);
    for (int64_t r = 0; r < g->R; r++) {
        if (T[r] < 0 || T[r] >= g->K) {
            vt_fail(VT_EINDEX, "%s: target %lld is out of bounds for %lld classes (at flat position %lld)", who,
                    (long long)T[r], (long long)g->K, (long long)r);
            vt_tensor_decref(tc);
            vt_tensor_decref(y);
            return NULL;
        }
        Y[(r / g->S) * g->K * g->S + T[r] * g->S + r % g->S] = 1.0f;
    }
    vt_tensor_decref(tc);
    return y;
}

int vt_sigmoid_xent_forward(vt_ctx *c) {
    const char *who = "sigmoid_cross_entropy";
    vt_tensor *z = c->in[0], *t = c->nin > 1 ? c->in[1] : NULL;
    cgeom g;
    VT_TRY(class_geometry(who, z, t, 1, &g));
    vt_tensor *k[4] = {0};
    int st;
    if (!(k[0] = vt_contiguous(z)) || !(k[1] = g.soft ? vt_contiguous(t) : one_hot_targets(who, t, z, &g)))
        st = vt_last_code();
    else st = pw_finish(c, PW_BCE, RED_BATCHMEAN, k, z->ndim, z->shape, g.N); /* an empty batch gives 0/0 = NaN */
    decref_all(k, 4);
    return st;
}

/* ∂L/∂z = (σ(z) − y)/N, ∂L/∂y = −z/N (soft targets may carry a gradient), times the upstream gradient */
int vt_sigmoid_xent_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *Z = n->saved[0], *Y = n->saved[1];
    int64_t numel = vt_numel(Z);
    vt_tensor *gt = grad_out(n, gout), *d[2] = {0};
    if (!gt) return vt_last_code();
    for (int i = 0; i < 2; i++)
        if (wants(n, i) && !(d[i] = vt_empty_like(Z))) { vt_tensor_decref(gt); decref_all(d, 2); return vt_last_code(); }
    const float *z = vt_f32(Z), *y = vt_f32(Y);
    const float s = (float)pw_scale(n, RED_BATCHMEAN, vt_f32(gt), numel);
    float *DZ = d[0] ? vt_f32(d[0]) : NULL, *DY = d[1] ? vt_f32(d[1]) : NULL;
    #pragma omp parallel for if (numel > PAR_WORK) schedule(static)
    for (int64_t i = 0; i < numel; i++) {
        const float zi = z[i], e = expf(-fabsf(zi));
        const float sig = zi >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e); /* σ(z), no overflow for any z */
        if (DZ) DZ[i] = s * (sig - y[i]);
        if (DY) DY[i] = -s * zi;
    }
    vt_tensor_decref(gt);
    gin[0] = d[0];
    gin[1] = d[1];
    return VT_OK;
}
