/* vitc ops: activations — tanh, sigmoid, relu, leaky_relu, silu, gelu (exact and tanh forms),
 * softmax and log_softmax over any dim, dropout and drop path. Forward and backward side by side;
 * each op is one node with a hand-written backward.
 *
 * Derivatives (PyTorch's tools/autograd/derivatives.yaml conventions):
 *   tanh' = 1 − y², sigmoid' = y(1 − y), relu' = [y > 0] (all from the saved output y);
 *   leaky_relu' = [x > 0] + slope·[x <= 0]; silu' = σ(1 + x(1 − σ));
 *   gelu (torch.nn.functional.gelu) exact x·Φ(x): Φ(x) + x·φ(x); tanh form ½x(1 + tanh u) = x·σ(2u),
 *     u = √(2/π)(x + 0.044715x³): σ(2u) + 2x·σ(2u)(1 − σ(2u))·√(2/π)(1 + 3·0.044715x²);
 *   softmax: dx = y ⊙ (g − Σ g⊙y); log_softmax: dx = g − exp(y)·Σ g (sums over the dim);
 *   dropout / drop path: the same mask and scale as the forward. */
/* no FP traps are ever enabled; without this the vt_*f math of kernels/fastmath.h does not vectorize */
#pragma GCC optimize ("no-trapping-math")
#include <math.h>
#include <string.h>
#include "ops_util.h"
#include "../core/rng.h"

static int check_float(const vt_ctx *c) {
    const vt_tensor *x = c->in[0];
    if (!x) return vt_fail(VT_ETYPE, "%s: input is missing", WHO(c));
    if (x->dtype != VT_FLOAT32)
        return vt_fail(VT_ETYPE, "%s: expected a float32 tensor, got %s (convert with .float())", WHO(c),
                       vt_dtype_name(x->dtype));
    return VT_OK;
}

/* ---- pointwise activations ------------------------------------------------------------------ */

/* y = f(x); saves the output (save_out) or the input */
static int act_forward(vt_ctx *c, int kind, float k, int save_out) {
    VT_TRY(check_float(c));
    VT_TRY(out1(c, vt_k_act(WHO(c), kind, k, c->in[0], NULL)));
    return vt_save(c, save_out ? c->out[0] : c->in[0]);
}

static int act_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int kind, float k) {
    vt_tensor *g = grad0(n, gout);
    if (!g) return vt_last_code();
    gin[0] = vt_k_act(vt_ops[n->op].name, kind, k, g, n->saved[0]);
    vt_tensor_decref(g);
    return gin[0] ? VT_OK : vt_last_code();
}

int vt_tanh_forward(vt_ctx *c) { return act_forward(c, A_TANH, 0, 1); }
int vt_tanh_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return act_backward(n, gout, gin, A_TANH_BW, 0); }
int vt_sigmoid_forward(vt_ctx *c) { return act_forward(c, A_SIGMOID, 0, 1); }
int vt_sigmoid_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return act_backward(n, gout, gin, A_SIGMOID_BW, 0); }
int vt_relu_forward(vt_ctx *c) { return act_forward(c, A_RELU, 0, 1); }
int vt_relu_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return act_backward(n, gout, gin, A_RELU_BW, 0); }
int vt_silu_forward(vt_ctx *c) { return act_forward(c, A_SILU, 0, 0); }
int vt_silu_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return act_backward(n, gout, gin, A_SILU_BW, 0); }

int vt_leaky_relu_forward(vt_ctx *c) {
    return act_forward(c, A_LEAKY, (float)c->args->f[FARG(leaky_relu, negative_slope)], 0);
}
int vt_leaky_relu_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    return act_backward(n, gout, gin, A_LEAKY_BW, (float)n->args.f[FARG(leaky_relu, negative_slope)]);
}

int vt_gelu_forward(vt_ctx *c) {
    int64_t a = c->args->i[IARG(gelu, approximate)];
    if (a != 0 && a != 1) return vt_fail(VT_EVALUE, "gelu: approximate must be 0 ('none') or 1 ('tanh'), got %lld", (long long)a);
    return act_forward(c, a ? A_GELU_TANH : A_GELU, 0, 0);
}
int vt_gelu_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    return act_backward(n, gout, gin, n->args.i[IARG(gelu, approximate)] ? A_GELU_TANH_BW : A_GELU_BW, 0);
}

/* ---- softmax / log_softmax ------------------------------------------------------------------ */

/* A contiguous tensor seen as (O, R, I) around the softmax dim: element (o, r, i) at
 * (o·R + r)·I + i. I = 1 (the last dim) is the fast path: one row per iteration, max-subtracted,
 * exp written once and rescaled, sums in LANES float accumulators. I > 1 walks blocks of SB
 * columns with per-column max and sum. */
#define SB 64
#define LANES 16

static void geometry(int ndim, const int64_t *shape, int64_t dim, int64_t *O, int64_t *R, int64_t *I) {
    *O = 1, *R = ndim ? shape[dim] : 1, *I = 1;
    for (int d = 0; d < ndim; d++) { if (d < dim) *O *= shape[d]; else if (d > dim) *I *= shape[d]; }
}

/* max over a row in LANES independent lanes (NaN need not win: it reaches every output
 * through exp anyway) */
static inline float row_max(const float *x, int64_t n) {
    float m[LANES], b = -__builtin_inff();
    int64_t r = 0;
    for (int k = 0; k < LANES; k++) m[k] = b;
    for (; r + LANES <= n; r += LANES)
        for (int k = 0; k < LANES; k++) m[k] = x[r + k] > m[k] ? x[r + k] : m[k];
    for (int k = 0; k < LANES; k++) b = m[k] > b ? m[k] : b;
    for (; r < n; r++) b = x[r] > b ? x[r] : b;
    return b;
}

/* Σ f over a row in float lanes */
#define LANE_SUM(F)                                                                     \
    ({                                                                                  \
        float acc_[LANES] = {0}, t_ = 0;                                                \
        int64_t r = 0;                                                                  \
        for (; r + LANES <= n; r += LANES)                                              \
            _Pragma("GCC unroll 1") for (int k = 0; k < LANES; k++) { int64_t i = r + k; acc_[k] += (F); } \
        for (; r < n; r++) { int64_t i = r; t_ += (F); }                                \
        for (int k = 0; k < LANES; k++) t_ += acc_[k];                                  \
        t_;                                                                             \
    })

/* one row: y = exp(x − max)/Σ, or (x − max) − log Σ */
VT_SIMD_CLONES static void softmax_row(const float *x, float *y, int64_t n, int log) {
    float m = row_max(x, n);
    if (log) {
        float ls = logf(LANE_SUM(vt_expf(x[i] - m)));
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) - ls;
    } else {
        float s = LANE_SUM(y[i] = vt_expf(x[i] - m));
        float inv = 1.0f / s;
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    }
}

/* w ≤ SB columns of stride I over R rows: the same per column */
VT_SIMD_CLONES static void softmax_cols(const float *xb, float *yb, int64_t R, int64_t I, int64_t w, int log) {
    float m[SB], s[SB];
    for (int64_t k = 0; k < w; k++) { m[k] = -__builtin_inff(); s[k] = 0; }
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < w; k++) { float v = xb[r * I + k]; m[k] = v > m[k] ? v : m[k]; }
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < w; k++) {
            float e = vt_expf(xb[r * I + k] - m[k]);
            if (!log) yb[r * I + k] = e;
            s[k] += e;
        }
    if (log) {
        for (int64_t k = 0; k < w; k++) s[k] = logf(s[k]);
        for (int64_t r = 0; r < R; r++)
            for (int64_t k = 0; k < w; k++) yb[r * I + k] = (xb[r * I + k] - m[k]) - s[k];
    } else {
        for (int64_t k = 0; k < w; k++) s[k] = 1.0f / s[k];
        for (int64_t r = 0; r < R; r++)
            for (int64_t k = 0; k < w; k++) yb[r * I + k] *= s[k];
    }
}

static void softmax_fwd(const float *x, float *y, int64_t O, int64_t R, int64_t I, int log) {
    if (I == 1) {
        #pragma omp parallel for if (O * R > 32768) schedule(static)
        for (int64_t o = 0; o < O; o++) softmax_row(x + o * R, y + o * R, R, log);
        return;
    }
    int64_t nb = (I + SB - 1) / SB;
    #pragma omp parallel for if (O * R * I > 32768) schedule(static)
    for (int64_t u = 0; u < O * nb; u++) {
        int64_t o = u / nb, i0 = (u % nb) * SB, w = I - i0 < SB ? I - i0 : SB;
        softmax_cols(x + o * R * I + i0, y + o * R * I + i0, R, I, w, log);
    }
}

/* dx for one row from g and the saved output y */
VT_SIMD_CLONES static void softmax_bwd_row(const float *g, const float *y, float *dx, int64_t n, int log) {
    if (log) {
        float s = LANE_SUM(g[i]);
        for (int64_t i = 0; i < n; i++) dx[i] = g[i] - vt_expf(y[i]) * s;
    } else {
        float s = LANE_SUM(g[i] * y[i]);
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] * (g[i] - s);
    }
}

VT_SIMD_CLONES static void softmax_bwd_cols(const float *gb, const float *yb, float *db, int64_t R, int64_t I,
                                            int64_t w, int log) {
    float s[SB];
    for (int64_t k = 0; k < w; k++) s[k] = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < w; k++) s[k] += log ? gb[r * I + k] : gb[r * I + k] * yb[r * I + k];
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < w; k++) {
            int64_t e = r * I + k;
            db[e] = log ? gb[e] - vt_expf(yb[e]) * s[k] : yb[e] * (gb[e] - s[k]);
        }
}

/* dx from g and the saved output y (all contiguous, same geometry) */
static void softmax_bwd(const float *g, const float *y, float *dx, int64_t O, int64_t R, int64_t I, int log) {
    if (I == 1) {
        #pragma omp parallel for if (O * R > 32768) schedule(static)
        for (int64_t o = 0; o < O; o++) softmax_bwd_row(g + o * R, y + o * R, dx + o * R, R, log);
        return;
    }
    int64_t nb = (I + SB - 1) / SB;
    #pragma omp parallel for if (O * R * I > 32768) schedule(static)
    for (int64_t u = 0; u < O * nb; u++) {
        int64_t o = u / nb, i0 = (u % nb) * SB, w = I - i0 < SB ? I - i0 : SB, base = o * R * I + i0;
        softmax_bwd_cols(g + base, y + base, dx + base, R, I, w, log);
    }
}

static vt_tensor *vt_k_softmax(const vt_tensor *x, int64_t dim, int log) {
    if (vt_require_f32(x, log ? "log_softmax" : "softmax", "input")) return NULL;
    if (vt_normalize_dim(&dim, x->ndim, log ? "log_softmax" : "softmax")) return NULL;
    vt_tensor *xc = vt_contiguous((vt_tensor *)x);
    if (!xc) return NULL;
    vt_tensor *y = vt_empty(VT_FLOAT32, x->ndim, x->shape);
    if (y && vt_numel(y)) {
        int64_t O, R, I;
        geometry(x->ndim, x->shape, dim, &O, &R, &I);
        softmax_fwd(vt_f32(xc), vt_f32(y), O, R, I, log);
    }
    vt_tensor_decref(xc);
    return y;
}

/* softmax and log_softmax: the output over `dim`; saves the output */
VT_SAME_IARG(softmax, log_softmax, dim);
static int softmax_forward(vt_ctx *c, int log) {
    VT_TRY(check_float(c));
    VT_TRY(out1(c, vt_k_softmax(c->in[0], c->args->i[IARG(softmax, dim)], log)));
    return vt_save(c, c->out[0]);
}

static int softmax_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int log) {
    const vt_meta *m = &n->in_meta[0];
    if (!gout[0]) return (gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape)) ? VT_OK : vt_last_code();
    int64_t dim = n->args.i[IARG(softmax, dim)];
    VT_TRY(vt_normalize_dim(&dim, m->ndim, vt_ops[n->op].name));
    vt_tensor *g = vt_contiguous(gout[0]), *y = vt_contiguous(n->saved[0]);
    vt_tensor *dx = g && y ? vt_empty(VT_FLOAT32, m->ndim, m->shape) : NULL;
    if (dx && vt_numel(dx)) {
        int64_t O, R, I;
        geometry(m->ndim, m->shape, dim, &O, &R, &I);
        softmax_bwd(vt_f32(g), vt_f32(y), vt_f32(dx), O, R, I, log);
    }
    if (g) vt_tensor_decref(g);
    if (y) vt_tensor_decref(y);
    gin[0] = dx;
    return dx ? VT_OK : vt_last_code();
}

int vt_softmax_forward(vt_ctx *c) { return softmax_forward(c, 0); }
int vt_softmax_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return softmax_backward(n, gout, gin, 0); }
int vt_log_softmax_forward(vt_ctx *c) { return softmax_forward(c, 1); }
int vt_log_softmax_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return softmax_backward(n, gout, gin, 1); }

/* ---- dropout and drop path ------------------------------------------------------------------- */

/* Keep decisions come from the counter RNG: decision j uses 32-bit word j % 4 of Philox counter
 * base + j / 4 (one Philox call per 4 decisions), keep iff its top 24 bits / 2^24 >= p, so
 * P(keep) = 1 − p up to 2^-24. The node saves (seed, base) in a 2-element int64 tensor and the
 * backward regenerates the mask instead of storing it. */

static uint32_t keep_threshold(double p) { return (uint32_t)ceil(p * 16777216.0); } /* 2^24 at p = 1 */

/* the saved (seed, base) pair */
static int save_rng(vt_ctx *c, uint64_t seed, uint64_t base) {
    if (!c->save) return VT_OK;
    int64_t two = 2;
    vt_tensor *t = vt_empty(VT_INT64, 1, &two);
    if (!t) return vt_last_code();
    vt_i64(t)[0] = (int64_t)seed;
    vt_i64(t)[1] = (int64_t)base;
    int st = vt_save(c, t);
    vt_tensor_decref(t);
    return st;
}

/* Philox4x32-10 exactly as vt_philox (core/rng.c; Salmon et al. SC'11), for PB consecutive
 * counters at once in structure-of-arrays form so the rounds vectorize; w[4k + i] = word i of
 * counter c0 + k. Checked against vt_philox by the tests (dropout vs drop_path masks). */
#define PB 16
static inline void philox_batch(uint64_t seed, uint64_t c0, uint32_t *w) {
    uint32_t a0[PB], a1[PB], a2[PB], a3[PB];
    for (int k = 0; k < PB; k++) { uint64_t c = c0 + (uint64_t)k; a0[k] = (uint32_t)c; a1[k] = (uint32_t)(c >> 32); a2[k] = a3[k] = 0; }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        _Pragma("GCC unroll 1") /* keep the counter loop for the loop vectorizer */
        for (int k = 0; k < PB; k++) {
            uint64_t p0 = (uint64_t)a0[k] * 0xD2511F53u, p1 = (uint64_t)a2[k] * 0xCD9E8D57u;
            uint32_t y0 = (uint32_t)(p1 >> 32) ^ a1[k] ^ k0, y1 = (uint32_t)p1;
            uint32_t y2 = (uint32_t)(p0 >> 32) ^ a3[k] ^ k1, y3 = (uint32_t)p0;
            a0[k] = y0; a1[k] = y1; a2[k] = y2; a3[k] = y3;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int k = 0; k < PB; k++) { w[4 * k] = a0[k]; w[4 * k + 1] = a1[k]; w[4 * k + 2] = a2[k]; w[4 * k + 3] = a3[k]; }
}

/* y[j] = keep(j) ? x[j]·scale : 0 for j in [j0, j1), j0 a multiple of 4·PB */
VT_SIMD_CLONES static void dropout_span(const float *x, float *y, int64_t j0, int64_t j1, uint64_t seed, uint64_t base,
                                        uint32_t thr, float scale) {
    uint32_t w[4 * PB];
    for (int64_t b = j0; b < j1; b += 4 * PB) {
        philox_batch(seed, base + (uint64_t)(b / 4), w);
        int64_t m = j1 - b < 4 * PB ? j1 - b : 4 * PB;
        for (int64_t i = 0; i < m; i++) y[b + i] = (w[i] >> 8) >= thr ? x[b + i] * scale : 0.0f;
    }
}

/* y[j] = keep(j) ? x[j]·scale : 0 over n contiguous elements, in spans of 4096 */
static void dropout_apply(const float *x, float *y, int64_t n, uint64_t seed, uint64_t base, uint32_t thr, float scale) {
    int64_t nspan = (n + 4095) / 4096;
    #pragma omp parallel for if (n > 32768) schedule(static)
    for (int64_t s = 0; s < nspan; s++) {
        int64_t j0 = s * 4096, j1 = j0 + 4096 < n ? j0 + 4096 : n;
        dropout_span(x, y, j0, j1, seed, base, thr, scale);
    }
}

static int check_p(const vt_ctx *c, double p) {
    if (!(p >= 0.0 && p <= 1.0))
        return vt_fail(VT_EVALUE, "%s probability has to be between 0 and 1, but got %g", WHO(c), p);
    return VT_OK;
}

/* inverted dropout as torch.nn.functional.dropout: mask per element, kept values scaled by 1/(1−p);
 * p = 1 gives zeros. Saves (seed, base). */
int vt_dropout_forward(vt_ctx *c) {
    VT_TRY(check_float(c));
    double p = c->args->f[FARG(dropout, p)];
    VT_TRY(check_p(c, p));
    vt_tensor *x = vt_contiguous(c->in[0]);
    if (!x) return vt_last_code();
    vt_tensor *y = vt_empty(VT_FLOAT32, x->ndim, x->shape);
    int64_t n = vt_numel(x);
    uint64_t seed, base = vt_rng_reserve_seeded((uint64_t)(n + 3) / 4, &seed);
    if (y) dropout_apply(vt_f32(x), vt_f32(y), n, seed, base, keep_threshold(p), p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f);
    vt_tensor_decref(x);
    VT_TRY(out1(c, y));
    return save_rng(c, seed, base);
}

int vt_dropout_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    if (!gout[0]) return (gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape)) ? VT_OK : vt_last_code();
    double p = n->args.f[FARG(dropout, p)];
    const int64_t *sb = vt_i64(n->saved[0]);
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    vt_tensor *dx = vt_empty(VT_FLOAT32, m->ndim, m->shape);
    if (dx) dropout_apply(vt_f32(g), vt_f32(dx), vt_numel(dx), (uint64_t)sb[0], (uint64_t)sb[1], keep_threshold(p),
                          p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f);
    vt_tensor_decref(g);
    gin[0] = dx;
    return dx ? VT_OK : vt_last_code();
}

/* stochastic depth (timm's drop_path, huggingface/pytorch-image-models:timm/layers/drop.py): one keep
 * decision per sample along dim 0, kept samples scaled by 1/(1−p) when scale_by_keep. Saves the
 * per-sample factor (B,). */
int vt_drop_path_forward(vt_ctx *c) {
    VT_TRY(check_float(c));
    double p = c->args->f[FARG(drop_path, p)];
    VT_TRY(check_p(c, p));
    vt_tensor *x = c->in[0];
    if (x->ndim < 1) return vt_fail(VT_ESHAPE, "drop_path: input must have a batch dim, got a 0-d tensor");
    int64_t B = x->shape[0], fshape[VT_MAX_DIMS];
    uint64_t seed, base = vt_rng_reserve_seeded((uint64_t)(B + 3) / 4, &seed);
    uint32_t thr = keep_threshold(p);
    float scale = c->args->i[IARG(drop_path, scale_by_keep)] && p < 1.0 ? (float)(1.0 / (1.0 - p)) : 1.0f;
    /* factor shaped (B, 1, ..., 1) so the multiply broadcasts it over each sample */
    fshape[0] = B;
    for (int d = 1; d < x->ndim; d++) fshape[d] = 1;
    vt_tensor *f = vt_empty(VT_FLOAT32, x->ndim, fshape);
    if (!f) return vt_last_code();
    float *fp = vt_f32(f);
    for (int64_t b = 0; b < B; b += 4) {
        uint32_t w[4];
        vt_philox(seed, base + (uint64_t)(b / 4), w);
        for (int64_t k = 0; k < 4 && b + k < B; k++) fp[b + k] = (w[k] >> 8) >= thr ? scale : 0.0f;
    }
    int st = out1(c, vt_k_mul(x, f));
    if (!st) st = vt_save(c, f);
    vt_tensor_decref(f);
    return st;
}

int vt_drop_path_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    if (!gout[0]) return (gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape)) ? VT_OK : vt_last_code();
    gin[0] = vt_k_mul(gout[0], n->saved[0]);
    return gin[0] ? VT_OK : vt_last_code();
}
