/* vitc ops: batch data augmentations on image batches x (B,C,H,W), one sample per OpenMP task.
 *   mixup         Mixup / CutMix with smoothed soft targets (huggingface/pytorch-image-models:timm/data/mixup.py `Mixup`)
 *   random_erase  Random Erasing, one or more boxes per sample (huggingface/pytorch-image-models:timm/data/random_erasing.py)
 *   rand_augment  RandAugment's ops on uint8-valued images (huggingface/pytorch-image-models:timm/data/auto_augment.py).
 *                 Point ops follow Pillow's arithmetic (ImageOps.autocontrast/equalize/posterize/
 *                 solarize, ImageEnhance + libImaging/Blend.c, the SMOOTH kernel of Filter.c, the
 *                 ITU-R 601 L of Convert.c); geometric ops Pillow's affine transform with its
 *                 bilinear and bicubic filters (libImaging/Geometry.c), fill outside the image.
 *
 * Randomness. Every draw is Philox4x32-10 (core/rng.h) at counters offset + j under key seed, both
 * passed in by the caller (the seed and offset arguments): the op never touches the global offset, so an
 * augmentation running in a DataLoader thread cannot shift the training stream, and a sample's
 * draws do not depend on which thread handles it. The counter layout of each op is written above
 * it; the Python wrapper (vitc/_ops/augment.py) reserves exactly that many counters per call.
 * Each op also returns the draws it used, so a test can inject them into the reference.
 *
 * None of these ops is differentiable: they act on data before the graph (rows name vt_nograd). */
#pragma GCC optimize ("fp-contract=off") /* round every product as the float32/double references do */
#include <math.h>
#include <string.h>
#include "ops_util.h"
#include "../core/rng.h"

/* ---- draws ---------------------------------------------------------------------------------- */

static inline double u32d(uint32_t w) { return w * (1.0 / 4294967296.0); } /* [0, 1) */
/* 53-bit uniform in [0, 1) from two words (the genrand_res53 construction of CPython's random) */
static inline double u53(uint32_t a, uint32_t b) {
    return ((double)(a >> 5) * 67108864.0 + (double)(b >> 6)) * (1.0 / 9007199254740992.0);
}
/* standard normal by Box–Muller from two words */
static inline double normal2(uint32_t a, uint32_t b) {
    double u1 = ((double)a + 1.0) / 4294967297.0; /* (0, 1]: log finite */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u32d(b));
}

#define GAMMA_TRIES 63
/* Gamma(a, 1) by Marsaglia & Tsang ("A simple method for generating gamma variables", ACM TOMS
 * 2000); a < 1 draws Gamma(a + 1)·U^(1/a). Try t uses counter ctr + t: words 0, 1 give the normal,
 * word 2 the acceptance uniform, word 3 the boost uniform. Acceptance is >= 0.95 per try, so 63
 * rejections in a row (probability < 1e-80) fall back to the mode d instead of looping on. */
static double gamma_draw(uint64_t seed, uint64_t ctr, double a) {
    double aa = a < 1.0 ? a + 1.0 : a, d = aa - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (int t = 0; t < GAMMA_TRIES; t++) {
        uint32_t w[4];
        vt_philox(seed, ctr + (uint64_t)t, w);
        double x = normal2(w[0], w[1]), v = 1.0 + c * x;
        if (v <= 0.0) continue;
        v = v * v * v;
        double u = ((double)w[2] + 0.5) / 4294967296.0;
        if (u < 1.0 - 0.0331 * (x * x) * (x * x) || log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) {
            double g = d * v;
            if (a < 1.0) g *= pow(((double)w[3] + 0.5) / 4294967296.0, 1.0 / a);
            return g;
        }
    }
    return d;
}

/* Beta(a, a) = G1/(G1 + G2), G1 from counters ctr.., G2 from ctr + 64.. */
static double beta_draw(uint64_t seed, uint64_t ctr, double a) {
    double g1 = gamma_draw(seed, ctr, a), g2 = gamma_draw(seed, ctr + 64, a);
    return g1 + g2 > 0.0 ? g1 / (g1 + g2) : 0.5;
}

static int64_t clip64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int check_image_batch(const vt_tensor *x, const char *who) {
    if (x->dtype != VT_FLOAT32)
        return vt_fail(VT_ETYPE, "%s: images must be float32, got %s", who, vt_dtype_name(x->dtype));
    if (x->ndim != 4) {
        char buf[96];
        return vt_fail(VT_ESHAPE, "%s: images must have shape (B, C, H, W), got %s", who,
                       vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    if (x->shape[1] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return vt_fail(VT_ESHAPE, "%s: images must have at least one channel, row and column, got C=%lld H=%lld W=%lld", who,
                       (long long)x->shape[1], (long long)x->shape[2], (long long)x->shape[3]);
    return VT_OK;
}

static int check_prob(double p, const char *who, const char *what) {
    if (!(p >= 0.0 && p <= 1.0)) return vt_fail(VT_EVALUE, "%s: %s must be in [0, 1], got %g", who, what, p);
    return VT_OK;
}

/* ---- Mixup / CutMix ------------------------------------------------------------------------- */

/* Draws: one stream of 128 counters per batch (mode batch) or per sample (mode elem), at
 * offset + 128·s. Counter +0: word 0 decides mixing (u < prob), word 1 CutMix (u < switch_prob),
 * words 2, 3 the box centre cy = ⌊u·H⌋, cx = ⌊u·W⌋; counters +1..+127 the Beta draw.
 * λ is rounded to float32 once drawn, so the value reported in params is exactly the one used. */
typedef struct {
    double mix_a, cut_a, prob, switch_prob;
    int elem, correct_lam;
} mix_cfg;

/* params row (10 floats): applied, cutmix, λ drawn, λ used (area-corrected), cy, cx, y0, y1, x0, x1 */
#define MIX_NP 10

/* *lam gets λ used in double: timm's batch mode weighs with that Python float, not its float32 copy */
static void mix_draw(uint64_t seed, uint64_t ctr, const mix_cfg *k, int64_t H, int64_t W, float *p, double *lam_used) {
    uint32_t w[4];
    vt_philox(seed, ctr, w);
    for (int i = 0; i < MIX_NP; i++) p[i] = 0.0f;
    p[2] = p[3] = 1.0f;
    *lam_used = 1.0;
    if (!(u32d(w[0]) < k->prob)) return;
    int cut = k->mix_a > 0.0 && k->cut_a > 0.0 ? u32d(w[1]) < k->switch_prob : k->cut_a > 0.0;
    float lam = (float)beta_draw(seed, ctr + 1, cut ? k->cut_a : k->mix_a);
    p[0] = 1.0f;
    p[1] = (float)cut;
    p[2] = p[3] = lam;
    *lam_used = lam;
    if (!cut || lam == 1.0f) return; /* timm: λ = 1 mixes nothing */
    /* timm rand_bbox: the batch mode works in double, the elem mode in float32 (λ is np.float32) */
    int64_t ch, cw;
    if (k->elem) {
        float r = sqrtf(1.0f - lam);
        ch = (int64_t)((float)H * r);
        cw = (int64_t)((float)W * r);
    } else {
        double r = sqrt(1.0 - (double)lam);
        ch = (int64_t)((double)H * r);
        cw = (int64_t)((double)W * r);
    }
    int64_t cy = (int64_t)(u32d(w[2]) * (double)H), cx = (int64_t)(u32d(w[3]) * (double)W);
    /* far edge at cy + ⌈h_c/2⌉ as timm 1.0 (rand_bbox), so an odd h_c gives a box of h_c rows;
     * the older timm rule cy + ⌊h_c/2⌋ gives one row fewer */
    int64_t y0 = clip64(cy - ch / 2, 0, H), y1 = clip64(cy + (ch + 1) / 2, 0, H);
    int64_t x0 = clip64(cx - cw / 2, 0, W), x1 = clip64(cx + (cw + 1) / 2, 0, W);
    if (k->correct_lam) {
        *lam_used = 1.0 - (double)((y1 - y0) * (x1 - x0)) / (double)(H * W);
        p[3] = (float)*lam_used;
    }
    p[4] = (float)cy; p[5] = (float)cx;
    p[6] = (float)y0; p[7] = (float)y1; p[8] = (float)x0; p[9] = (float)x1;
}

/* the weights of the sample and of its partner, rounded as timm's float32 arithmetic rounds them:
 * batch mode scales by the Python floats λ and 1 − λ, elem mode by np.float32 λ and 1 − λ */
static void mix_weights(const float *p, double lam, int elem, float *a, float *b) {
    *a = elem ? p[3] : (float)lam;
    *b = elem ? 1.0f - p[3] : (float)(1.0 - lam);
}

/* (x (B,C,H,W) float32, y (B,) int64), arguments as mixup's row in augment.def (num_classes K,
 * label_smoothing ε)
 * -> x̃ (B,C,H,W), ỹ (B,K) = λ·s(y) + (1−λ)·s(y_flip), params (B,10) as above. Partner of b is B−1−b. */
int vt_mixup_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    const char *who = WHO(c);
    vt_tensor *xin = c->in[0], *yin = c->in[1];
    VT_TRY(check_image_batch(xin, who));
    VT_TRY(vt_require_dtype(yin, VT_INT64, who, "labels"));
    int64_t B = xin->shape[0], C = xin->shape[1], H = xin->shape[2], W = xin->shape[3];
#define IA(name) c->args->i[IARG(mixup, name)]
#define FA(name) c->args->f[FARG(mixup, name)]
    int64_t K = IA(num_classes), mode = IA(mode);
    mix_cfg k = {FA(mixup_alpha), FA(cutmix_alpha), FA(prob), FA(switch_prob), (int)mode, IA(correct_lam) != 0};
    double eps = FA(label_smoothing);
    uint64_t seed = (uint64_t)IA(seed), off = (uint64_t)IA(offset);
#undef IA
#undef FA
    if (yin->ndim != 1 || yin->shape[0] != B)
        return vt_fail(VT_ESHAPE, "%s: labels must have shape (%lld,) to match the batch, got %d-d", who, (long long)B,
                       yin->ndim);
    if (B < 2 || B % 2)
        return vt_fail(VT_ESHAPE, "%s: the batch size must be even and >= 2 (sample b mixes with B-1-b), got %lld", who,
                       (long long)B);
    if (mode != 0 && mode != 1) return vt_fail(VT_EVALUE, "%s: mode must be 0 (batch) or 1 (elem), got %lld", who, (long long)mode);
    if (K < 1 || K > (1 << 24)) return vt_fail(VT_EVALUE, "%s: num_classes must be in 1..2^24, got %lld", who, (long long)K);
    if (!(k.mix_a >= 0.0 && k.cut_a >= 0.0 && isfinite(k.mix_a) && isfinite(k.cut_a)) || (k.mix_a == 0.0 && k.cut_a == 0.0))
        return vt_fail(VT_EVALUE, "%s: mixup_alpha and cutmix_alpha must be finite and >= 0, one of them > 0; got %g and %g",
                       who, k.mix_a, k.cut_a);
    VT_TRY(check_prob(k.prob, who, "prob"));
    VT_TRY(check_prob(k.switch_prob, who, "switch_prob"));
    VT_TRY(check_prob(eps, who, "label_smoothing"));
    vt_tensor *x = vt_contiguous(xin);
    if (!x) return vt_last_code();
    vt_tensor *y = vt_contiguous(yin);
    if (!y) { vt_tensor_decref(x); return vt_last_code(); }
    const int64_t *lab = vt_i64(y);
    int64_t bad = -1;
    for (int64_t b = 0; b < B && bad < 0; b++)
        if (lab[b] < 0 || lab[b] >= K) bad = b;
    int st = VT_OK;
    vt_tensor *xo = NULL, *yo = NULL, *po = NULL;
    if (bad >= 0) {
        st = vt_fail(VT_EINDEX, "%s: label %lld of sample %lld is out of range for num_classes %lld", who,
                     (long long)lab[bad], (long long)bad, (long long)K);
        goto done;
    }
    int64_t ysh[2] = {B, K}, psh[2] = {B, MIX_NP};
    xo = vt_empty(VT_FLOAT32, 4, x->shape);
    yo = vt_empty(VT_FLOAT32, 2, ysh);
    po = vt_empty(VT_FLOAT32, 2, psh);
    if (!xo || !yo || !po) { st = vt_last_code(); goto done; }
    float *P = vt_f32(po);
    double lam_batch = 1.0, lam_unused;
    if (k.elem) {
        for (int64_t b = 0; b < B; b++) mix_draw(seed, off + 128 * (uint64_t)b, &k, H, W, P + b * MIX_NP, &lam_unused);
    } else {
        mix_draw(seed, off, &k, H, W, P, &lam_batch);
        for (int64_t b = 1; b < B; b++) memcpy(P + b * MIX_NP, P, MIX_NP * sizeof(float));
    }
    const float *X = vt_f32(x);
    float *O = vt_f32(xo), *Y = vt_f32(yo);
    int64_t plane = H * W, img = C * plane;
    /* smoothed one-hot s(y): on = 1 − ε + ε/K, off = ε/K, computed in double and stored as float32 */
    float offv = (float)(eps / (double)K), onv = (float)(1.0 - eps + eps / (double)K);
    #pragma omp parallel for if (B * img > 65536) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *p = P + b * MIX_NP;
        int64_t j = B - 1 - b;
        const float *xs = X + b * img, *xp = X + j * img;
        float *o = O + b * img;
        float wa, wb;
        mix_weights(p, lam_batch, k.elem, &wa, &wb);
        if (p[0] == 0.0f || p[2] == 1.0f) {
            memcpy(o, xs, (size_t)img * sizeof(float));
        } else if (p[1] != 0.0f) {
            int64_t y0 = (int64_t)p[6], y1 = (int64_t)p[7], x0 = (int64_t)p[8], x1 = (int64_t)p[9];
            memcpy(o, xs, (size_t)img * sizeof(float));
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t r = y0; r < y1; r++)
                    memcpy(o + ch * plane + r * W + x0, xp + ch * plane + r * W + x0, (size_t)(x1 - x0) * sizeof(float));
        } else {
            for (int64_t i = 0; i < img; i++) {
                float u = xs[i] * wa, v = xp[i] * wb;
                o[i] = u + v;
            }
        }
        float *yr = Y + b * K;
        for (int64_t q = 0; q < K; q++) {
            float s1 = q == lab[b] ? onv : offv, s2 = q == lab[j] ? onv : offv;
            float u = s1 * wa, v = s2 * wb;
            yr[q] = u + v;
        }
    }
    c->out[0] = xo; c->out[1] = yo; c->out[2] = po;
    c->nout = 3;
    xo = yo = po = NULL;
done:
    if (xo) vt_tensor_decref(xo);
    if (yo) vt_tensor_decref(yo);
    if (po) vt_tensor_decref(po);
    vt_tensor_decref(x);
    vt_tensor_decref(y);
    return st;
}

/* ---- Random Erasing ------------------------------------------------------------------------- */

/* Draws, for sample b at counters offset + b·S, S = 1 + 11·max_count: counter +0 words 0, 1 give
 * the erase decision (u <= p), words 2, 3 the count randint(min_count, max_count); box k attempt
 * a uses +1 + 11k + a (area uniform from words 0, 1, log-aspect uniform from 2, 3), its placement
 * +1 + 11k + 10 (top from words 0, 1, left from 2, 3). The fill of box k of sample b is N(0,1) at
 * counters offset + B·S + (b·max_count + k)·C·H·W + e, e the element's index in the (C,h,w) patch
 * (mode pixel) or the channel (mode rand). Uniforms are 53-bit, as CPython's random.random(). */
enum { ERASE_CONST = 0, ERASE_RAND = 1, ERASE_PIXEL = 2 };

/* (x (B,C,H,W) float32), arguments as random_erase's row in augment.def (min_area and max_area
 * fractions of H·W).
 * -> erased x (B,C,H,W), boxes (B,max_count,4) int64 (top, left, h, w), −1 where no box was placed. */
int vt_random_erase_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 1));
    const char *who = WHO(c);
    VT_TRY(check_image_batch(c->in[0], who));
#define IA(name) c->args->i[IARG(random_erase, name)]
#define FA(name) c->args->f[FARG(random_erase, name)]
    int64_t mode64 = IA(mode), cmin = IA(min_count), cmax = IA(max_count);
    double p = FA(probability), amin = FA(min_area), amax = FA(max_area), lrmin = FA(log_min_aspect),
           lrmax = FA(log_max_aspect);
    uint64_t seed = (uint64_t)IA(seed), off = (uint64_t)IA(offset);
#undef IA
#undef FA
    int mode = (int)mode64;
    if (mode64 < 0 || mode64 > 2) return vt_fail(VT_EVALUE, "%s: mode must be 0 (const), 1 (rand) or 2 (pixel), got %lld", who, (long long)mode64);
    if (cmin < 1 || cmax < cmin || cmax > 64)
        return vt_fail(VT_EVALUE, "%s: need 1 <= min_count <= max_count <= 64, got %lld and %lld", who, (long long)cmin, (long long)cmax);
    VT_TRY(check_prob(p, who, "probability"));
    if (!(amin > 0.0 && amin <= amax && amax <= 1.0))
        return vt_fail(VT_EVALUE, "%s: need 0 < min_area <= max_area <= 1, got %g and %g", who, amin, amax);
    if (!(isfinite(lrmin) && isfinite(lrmax) && lrmin <= lrmax))
        return vt_fail(VT_EVALUE, "%s: need 0 < min_aspect <= max_aspect, got %g and %g", who, exp(lrmin), exp(lrmax));
    vt_tensor *x = vt_contiguous(c->in[0]);
    if (!x) return vt_last_code();
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t bsh[3] = {B, cmax, 4};
    vt_tensor *xo = vt_clone(x), *bo = xo ? vt_full(VT_INT64, 3, bsh, -1.0) : NULL;
    vt_tensor_decref(x);
    if (!xo || !bo) {
        if (xo) vt_tensor_decref(xo);
        return vt_last_code();
    }
    uint64_t S = 1 + 11 * (uint64_t)cmax;
    uint64_t nbase = off + (uint64_t)B * S, chw = (uint64_t)(C * H * W);
    float *O = vt_f32(xo);
    int64_t *BX = vt_i64(bo);
    double area = (double)(H * W);
    #pragma omp parallel for if (B * C * H * W > 65536) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        uint64_t sb = off + (uint64_t)b * S;
        uint32_t w[4];
        vt_philox(seed, sb, w);
        if (u53(w[0], w[1]) > p) continue;
        int64_t count = cmin == cmax ? cmin : cmin + (int64_t)(u53(w[2], w[3]) * (double)(cmax - cmin + 1));
        for (int64_t kx = 0; kx < count; kx++) {
            for (int a = 0; a < 10; a++) {
                vt_philox(seed, sb + 1 + 11 * (uint64_t)kx + (uint64_t)a, w);
                double target = (amin + (amax - amin) * u53(w[0], w[1])) * area / (double)count;
                double ar = exp(lrmin + (lrmax - lrmin) * u53(w[2], w[3]));
                /* Python's int(round(v)): round half to even, as nearbyint in the default mode */
                int64_t h = (int64_t)nearbyint(sqrt(target * ar)), wd = (int64_t)nearbyint(sqrt(target / ar));
                if (!(wd < W && h < H)) continue;
                vt_philox(seed, sb + 1 + 11 * (uint64_t)kx + 10, w);
                int64_t top = (int64_t)(u53(w[0], w[1]) * (double)(H - h + 1));
                int64_t left = (int64_t)(u53(w[2], w[3]) * (double)(W - wd + 1));
                uint64_t fb = nbase + ((uint64_t)b * (uint64_t)cmax + (uint64_t)kx) * chw;
                float *o = O + b * C * H * W;
                for (int64_t ch = 0; ch < C; ch++) {
                    float cv = mode == ERASE_RAND ? vt_rng_normal(seed, fb, (uint64_t)ch) : 0.0f;
                    for (int64_t r = 0; r < h; r++) {
                        float *row = o + ch * H * W + (top + r) * W + left;
                        if (mode == ERASE_PIXEL)
                            for (int64_t q = 0; q < wd; q++) row[q] = vt_rng_normal(seed, fb, (uint64_t)((ch * h + r) * wd + q));
                        else
                            for (int64_t q = 0; q < wd; q++) row[q] = cv;
                    }
                }
                int64_t *bx = BX + (b * cmax + kx) * 4;
                bx[0] = top; bx[1] = left; bx[2] = h; bx[3] = wd;
                break;
            }
        }
    }
    c->out[0] = xo; c->out[1] = bo;
    c->nout = 2;
    return VT_OK;
}

/* ---- RandAugment ---------------------------------------------------------------------------- */

/* The ops, in timm's order: the "increasing" set _RAND_INCREASING_TRANSFORMS (ids 0..14) and the
 * original set's six differing ops (15..20); _RAND_TRANSFORMS is 0..3, 15, 16, 6, 17..20, 11..14. */
enum {
    RA_AUTOCONTRAST, RA_EQUALIZE, RA_INVERT, RA_ROTATE, RA_POSTERIZE_INC, RA_SOLARIZE_INC, RA_SOLARIZE_ADD,
    RA_COLOR_INC, RA_CONTRAST_INC, RA_BRIGHTNESS_INC, RA_SHARPNESS_INC, RA_SHEAR_X, RA_SHEAR_Y, RA_TRANSLATE_X_REL,
    RA_TRANSLATE_Y_REL, RA_POSTERIZE, RA_SOLARIZE, RA_COLOR, RA_CONTRAST, RA_BRIGHTNESS, RA_SHARPNESS, RA_NOPS
};
static const int ra_set_original[15] = {0, 1, 2, 3, 15, 16, 6, 17, 18, 19, 20, 11, 12, 13, 14};

typedef struct {
    int64_t C, H, W;
    const uint8_t *fill; /* (C,) */
    double translate_pct;
} ra_img;

/* one image (C,H,W) uint8 through a 256-entry lookup table per channel */
static void ra_lut(const ra_img *g, const uint8_t *in, uint8_t *out, const uint8_t *lut, int per_channel) {
    int64_t n = g->H * g->W;
    for (int64_t ch = 0; ch < g->C; ch++) {
        const uint8_t *l = lut + (per_channel ? 256 * ch : 0);
        for (int64_t i = 0; i < n; i++) out[ch * n + i] = l[in[ch * n + i]];
    }
}

/* ImageOps.autocontrast (cutoff 0): per channel map [lo, hi] to [0, 255], lut int(i·s + o) */
static void ra_autocontrast(const ra_img *g, const uint8_t *in, uint8_t *out) {
    int64_t n = g->H * g->W;
    uint8_t lut[256];
    for (int64_t ch = 0; ch < g->C; ch++) {
        const uint8_t *p = in + ch * n;
        int lo = 255, hi = 0;
        for (int64_t i = 0; i < n; i++) { if (p[i] < lo) lo = p[i]; if (p[i] > hi) hi = p[i]; }
        if (hi <= lo) {
            for (int i = 0; i < 256; i++) lut[i] = (uint8_t)i;
        } else {
            double scale = 255.0 / (double)(hi - lo), offset = -(double)lo * scale;
            for (int i = 0; i < 256; i++) {
                int v = (int)((double)i * scale + offset);
                lut[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
        for (int64_t i = 0; i < n; i++) out[ch * n + i] = lut[p[i]];
    }
}

/* ImageOps.equalize: per channel, step = (Σ non-zero bins − the last one) // 255; lut i =
 * (step//2 + Σ_{j<i} h[j]) // step, identity when fewer than two levels are used or step = 0 */
static void ra_equalize(const ra_img *g, const uint8_t *in, uint8_t *out) {
    int64_t n = g->H * g->W;
    uint8_t lut[256];
    for (int64_t ch = 0; ch < g->C; ch++) {
        const uint8_t *p = in + ch * n;
        int64_t h[256] = {0}, total = 0, last = 0;
        int used = 0;
        for (int64_t i = 0; i < n; i++) h[p[i]]++;
        for (int i = 0; i < 256; i++)
            if (h[i]) { used++; total += h[i]; last = h[i]; }
        int64_t step = used <= 1 ? 0 : (total - last) / 255;
        if (!step) {
            for (int i = 0; i < 256; i++) lut[i] = (uint8_t)i;
        } else {
            int64_t acc = step / 2;
            for (int i = 0; i < 256; i++) {
                int64_t v = acc / step;
                lut[i] = (uint8_t)(v > 255 ? 255 : v);
                acc += h[i];
            }
        }
        for (int64_t i = 0; i < n; i++) out[ch * n + i] = lut[p[i]];
    }
}

/* Image.blend(degenerate, image, α) as libImaging/Blend.c: α is a float; α = 0 or 1 copies; inside
 * [0, 1] truncates d + α(v − d), outside clips it to [0, 255] first. deg == NULL: a constant per
 * channel, dconst[ch]. */
static inline uint8_t ra_blend1(int d, int v, float a, int inside) {
    float t = (float)d + a * (float)(v - d);
    return inside ? (uint8_t)t : t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
}

static void ra_blend(const ra_img *g, const uint8_t *deg, const int *dconst, const uint8_t *in, uint8_t *out, float a) {
    int64_t n = g->H * g->W;
    int inside = a >= 0.0f && a <= 1.0f;
    for (int64_t ch = 0; ch < g->C; ch++) {
        const uint8_t *v = in + ch * n, *d = deg ? deg + ch * n : NULL;
        uint8_t *o = out + ch * n;
        int dc = deg ? 0 : dconst[ch];
        if (a == 0.0f) {
            if (d) memcpy(o, d, (size_t)n);
            else memset(o, dc, (size_t)n);
        } else if (a == 1.0f) {
            memcpy(o, v, (size_t)n);
        } else if (d) {
            for (int64_t i = 0; i < n; i++) o[i] = ra_blend1(d[i], v[i], a, inside);
        } else {
            for (int64_t i = 0; i < n; i++) o[i] = ra_blend1(dc, v[i], a, inside);
        }
    }
}

/* the L channel of an RGB image (Convert.c, ITU-R 601-2 in 16-bit fixed point) */
static inline int ra_luma(int r, int gr, int b) { return (r * 19595 + gr * 38470 + b * 7471 + 0x8000) >> 16; }

/* Color: blend with the grey image (L replicated); for one channel the grey image is the image */
static void ra_color(const ra_img *g, const uint8_t *in, uint8_t *out, uint8_t *tmp, float a) {
    int64_t n = g->H * g->W;
    if (g->C == 1) { memcpy(tmp, in, (size_t)n); }
    else
        for (int64_t i = 0; i < n; i++) tmp[i] = tmp[n + i] = tmp[2 * n + i] = (uint8_t)ra_luma(in[i], in[n + i], in[2 * n + i]);
    ra_blend(g, tmp, NULL, in, out, a);
}

/* Contrast: blend with the constant int(mean(L) + 0.5) */
static void ra_contrast(const ra_img *g, const uint8_t *in, uint8_t *out, float a) {
    int64_t n = g->H * g->W, h[256] = {0};
    for (int64_t i = 0; i < n; i++) h[g->C == 1 ? in[i] : ra_luma(in[i], in[n + i], in[2 * n + i])]++;
    int64_t s = 0;
    for (int i = 0; i < 256; i++) s += (int64_t)i * h[i];
    int m = n ? (int)((double)s / (double)n + 0.5) : 0, mc[3] = {m, m, m};
    ra_blend(g, NULL, mc, in, out, a);
}

/* Sharpness: blend with ImageFilter.SMOOTH, the 3×3 kernel (1 1 1; 1 5 1; 1 1 1)/13 in float32
 * summed row by row (bottom row first, as Filter.c), +0.5, clipped and truncated; border pixels
 * keep their value. */
static void ra_sharpness(const ra_img *g, const uint8_t *in, uint8_t *out, uint8_t *tmp, float a) {
    int64_t H = g->H, W = g->W, n = H * W;
    float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    memcpy(tmp, in, (size_t)(g->C * n));
    if (H >= 3 && W >= 3)
        for (int64_t ch = 0; ch < g->C; ch++) {
            const uint8_t *p = in + ch * n;
            uint8_t *t = tmp + ch * n;
            for (int64_t y = 1; y < H - 1; y++) {
                const uint8_t *r0 = p + (y - 1) * W, *r1 = p + y * W, *r2 = p + (y + 1) * W;
                for (int64_t x = 1; x < W - 1; x++) {
                    float ss = 0.5f;
                    ss += (float)r2[x - 1] * k1 + (float)r2[x] * k1 + (float)r2[x + 1] * k1;
                    ss += (float)r1[x - 1] * k1 + (float)r1[x] * k5 + (float)r1[x + 1] * k1;
                    ss += (float)r0[x - 1] * k1 + (float)r0[x] * k1 + (float)r0[x + 1] * k1;
                    ss = ss < 0.0f ? 0.0f : ss > 255.0f ? 255.0f : ss;
                    t[y * W + x] = (uint8_t)ss;
                }
            }
        }
    ra_blend(g, tmp, NULL, in, out, a);
}

/* Pillow's filters at source point (x, y) of one channel plane; 0 when the point is outside */
static inline int ra_xclip(int64_t v, int64_t n) { return (int)(v < 0 ? 0 : v < n ? v : n - 1); }
static inline int64_t ra_floor(double v) { return v < 0.0 ? (int64_t)floor(v) : (int64_t)v; }

static int ra_bilinear(const uint8_t *p, int64_t H, int64_t W, double x, double y, uint8_t *o) {
    if (x < 0.0 || x >= (double)W || y < 0.0 || y >= (double)H) return 0;
    x -= 0.5;
    y -= 0.5;
    int64_t xi = ra_floor(x), yi = ra_floor(y);
    double dx = x - (double)xi, dy = y - (double)yi;
    int x0 = ra_xclip(xi, W), x1 = ra_xclip(xi + 1, W);
    const uint8_t *r = p + ra_xclip(yi, H) * W;
    double v1 = r[x0] + (r[x1] - r[x0]) * dx, v2 = v1;
    if (yi + 1 >= 0 && yi + 1 < H) {
        r = p + (yi + 1) * W;
        v2 = r[x0] + (r[x1] - r[x0]) * dx;
    }
    v1 = v1 + (v2 - v1) * dy;
    *o = (uint8_t)v1;
    return 1;
}

/* Pillow's cubic through four samples (libImaging/Geometry.c BICUBIC) */
static inline double ra_cubic(double v1, double v2, double v3, double v4, double d) {
    double p1 = v2, p2 = -v1 + v3, p3 = 2 * (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4;
    return p1 + d * (p2 + d * (p3 + d * p4));
}

static int ra_bicubic(const uint8_t *p, int64_t H, int64_t W, double x, double y, uint8_t *o) {
    if (x < 0.0 || x >= (double)W || y < 0.0 || y >= (double)H) return 0;
    x -= 0.5;
    y -= 0.5;
    int64_t xi = ra_floor(x), yi = ra_floor(y);
    double dx = x - (double)xi, dy = y - (double)yi;
    xi--;
    yi--;
    int xs[4];
    for (int k = 0; k < 4; k++) xs[k] = ra_xclip(xi + k, W);
    double v[4];
    const uint8_t *r = p + ra_xclip(yi, H) * W;
    v[0] = ra_cubic(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx);
    for (int k = 1; k < 4; k++) {
        if (yi + k >= 0 && yi + k < H) {
            r = p + (yi + k) * W;
            v[k] = ra_cubic(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx);
        } else {
            v[k] = v[k - 1];
        }
    }
    double s = ra_cubic(v[0], v[1], v[2], v[3], dy);
    *o = s <= 0.0 ? 0 : s >= 255.0 ? 255 : (uint8_t)s;
    return 1;
}

/* Image.transform(AFFINE, m): output pixel (x, y) samples the input at m·(x + ½, y + ½, 1) */
static void ra_affine(const ra_img *g, const uint8_t *in, uint8_t *out, const double m[6], int bicubic) {
    int64_t H = g->H, W = g->W, n = H * W;
    for (int64_t ch = 0; ch < g->C; ch++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                double xi = (double)x + 0.5, yi = (double)y + 0.5;
                double sx = m[0] * xi + m[1] * yi + m[2], sy = m[3] * xi + m[4] * yi + m[5];
                uint8_t *o = out + ch * n + y * W + x;
                int ok = bicubic ? ra_bicubic(in + ch * n, H, W, sx, sy, o) : ra_bilinear(in + ch * n, H, W, sx, sy, o);
                if (!ok) *o = g->fill[ch];
            }
}

/* Image.rotate(deg) about the centre (w/2, h/2): the inverse matrix of Pillow's Image.rotate */
static void ra_rotate(const ra_img *g, const uint8_t *in, uint8_t *out, double deg, int bicubic) {
    deg = fmod(deg, 360.0);
    if (deg < 0.0) deg += 360.0;
    if (deg == 0.0) { memcpy(out, in, (size_t)(g->C * g->H * g->W)); return; }
    double a = -deg * 3.14159265358979323846 / 180.0, cs = cos(a), sn = sin(a);
    double cx = (double)g->W / 2.0, cy = (double)g->H / 2.0;
    double m[6] = {cs, sn, 0.0, -sn, cs, 0.0};
    m[2] = cs * -cx + sn * -cy + cx;
    m[5] = -sn * -cx + cs * -cy + cy;
    ra_affine(g, in, out, m, bicubic);
}

/* timm's level → argument, for magnitude mag in [0, 10] (ℓ = mag/10) and sign ±1; the apply step */
static void ra_apply(const ra_img *g, int op, double mag, double sign, int bicubic, const uint8_t *in, uint8_t *out,
                     uint8_t *tmp) {
    double l = mag / 10.0;
    uint8_t lut[256];
    switch (op) {
    case RA_AUTOCONTRAST: ra_autocontrast(g, in, out); return;
    case RA_EQUALIZE: ra_equalize(g, in, out); return;
    case RA_INVERT:
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(255 - i);
        ra_lut(g, in, out, lut, 0);
        return;
    case RA_ROTATE: ra_rotate(g, in, out, sign * l * 30.0, bicubic); return;
    case RA_POSTERIZE_INC: case RA_POSTERIZE: {
        int bits = (int)(l * 4.0);
        if (op == RA_POSTERIZE_INC) bits = 4 - bits;
        if (bits >= 8) { memcpy(out, in, (size_t)(g->C * g->H * g->W)); return; }
        int mask = ~((1 << (8 - bits)) - 1);
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i & mask);
        ra_lut(g, in, out, lut, 0);
        return;
    }
    case RA_SOLARIZE_INC: case RA_SOLARIZE: {
        int t = (int)(l * 256.0);
        if (t > 256) t = 256;
        if (op == RA_SOLARIZE_INC) t = 256 - t;
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i < t ? i : 255 - i);
        ra_lut(g, in, out, lut, 0);
        return;
    }
    case RA_SOLARIZE_ADD: {
        int add = (int)(l * 110.0);
        if (add > 128) add = 128;
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i < 128 ? (i + add > 255 ? 255 : i + add) : i);
        ra_lut(g, in, out, lut, 0);
        return;
    }
    case RA_COLOR_INC: case RA_CONTRAST_INC: case RA_BRIGHTNESS_INC: case RA_SHARPNESS_INC:
    case RA_COLOR: case RA_CONTRAST: case RA_BRIGHTNESS: case RA_SHARPNESS: {
        double f = op >= RA_POSTERIZE ? l * 1.8 + 0.1 : fmax(0.1, 1.0 + sign * (l * 0.9));
        float a = (float)f;
        int zero[3] = {0, 0, 0};
        if (op == RA_COLOR_INC || op == RA_COLOR) ra_color(g, in, out, tmp, a);
        else if (op == RA_CONTRAST_INC || op == RA_CONTRAST) ra_contrast(g, in, out, a);
        else if (op == RA_BRIGHTNESS_INC || op == RA_BRIGHTNESS) ra_blend(g, NULL, zero, in, out, a);
        else ra_sharpness(g, in, out, tmp, a);
        return;
    }
    case RA_SHEAR_X: case RA_SHEAR_Y: {
        double s = sign * l * 0.3;
        double mx[6] = {1.0, s, 0.0, 0.0, 1.0, 0.0}, my[6] = {1.0, 0.0, 0.0, s, 1.0, 0.0};
        ra_affine(g, in, out, op == RA_SHEAR_X ? mx : my, bicubic);
        return;
    }
    case RA_TRANSLATE_X_REL: case RA_TRANSLATE_Y_REL: {
        double pct = sign * l * g->translate_pct;
        double mx[6] = {1.0, 0.0, pct * (double)g->W, 0.0, 1.0, 0.0}, my[6] = {1.0, 0.0, 0.0, 0.0, 1.0, pct * (double)g->H};
        ra_affine(g, in, out, op == RA_TRANSLATE_X_REL ? mx : my, bicubic);
        return;
    }
    default: memcpy(out, in, (size_t)(g->C * g->H * g->W)); return;
    }
}

/* Draws, for op slot t of sample b at counters offset + 2(b·n + t): counter +0 word 0 picks the op
 * (⌊u·15⌋, with replacement), word 1 applies it (skip when prob < 1 and u > prob), word 2 the sign
 * (negative when u > ½), word 3 the filter when random (bicubic when u >= ½); counter +1 words 0, 1
 * give the magnitude noise N(0,1) (or the uniform when magnitude_std is infinite).
 * Plan row (4 floats) per slot: op id (−1 skipped), magnitude (noised, clipped to [0, mmax]),
 * sign (±1), filter (0 bilinear, 1 bicubic). */
#define RA_NP 4

/* (x (B,C,H,W) float32 of integers 0..255, fill (C,) float32 of integers 0..255, plan (B,n,4) or
 * None), arguments as rand_augment's row in augment.def: num_ops n, increasing (1: timm inc1 set,
 * 0: original), interpolation (0 bilinear, 1 bicubic, 2 random), magnitude_std (inf: uniform in
 * [0, magnitude]).
 * -> augmented x (B,C,H,W) (same integer values), plan (B,n,4) (the given plan or the drawn one).
 * Images of 1 (L) or 3 (RGB) channels. */
int vt_rand_augment_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    const char *who = WHO(c);
    vt_tensor *xin = c->in[0], *fin = c->in[1], *plin = c->nin > 2 ? c->in[2] : NULL;
    VT_TRY(check_image_batch(xin, who));
    VT_TRY(vt_require_f32(fin, who, "fill"));
#define IA(name) c->args->i[IARG(rand_augment, name)]
#define FA(name) c->args->f[FARG(rand_augment, name)]
    int64_t B = xin->shape[0], C = xin->shape[1], H = xin->shape[2], W = xin->shape[3], nops = IA(num_ops);
    double mag = FA(magnitude), mstd = FA(magnitude_std), prob = FA(prob), mmax = FA(magnitude_max),
           tpct = FA(translate_pct);
    int interp = (int)IA(interpolation);
    int64_t increasing = IA(increasing);
    uint64_t seed = (uint64_t)IA(seed), off = (uint64_t)IA(offset);
#undef IA
#undef FA
    if (C != 1 && C != 3) return vt_fail(VT_ESHAPE, "%s: images must have 1 (grey) or 3 (RGB) channels, got %lld", who, (long long)C);
    if (fin->ndim != 1 || fin->shape[0] != C)
        return vt_fail(VT_ESHAPE, "%s: fill must have one value per channel (%lld)", who, (long long)C);
    if (nops < 0 || nops > 16) return vt_fail(VT_EVALUE, "%s: num_ops must be in 0..16, got %lld", who, (long long)nops);
    if (!(mmax > 0.0 && mmax <= 10.0)) return vt_fail(VT_EVALUE, "%s: magnitude_max must be in (0, 10], got %g", who, mmax);
    if (!(mag >= 0.0 && mag <= mmax)) return vt_fail(VT_EVALUE, "%s: magnitude must be in [0, %g], got %g", who, mmax, mag);
    if (!(mstd >= 0.0)) return vt_fail(VT_EVALUE, "%s: magnitude_std must be >= 0, got %g", who, mstd);
    VT_TRY(check_prob(prob, who, "prob"));
    if (!(tpct >= 0.0 && tpct <= 1.0)) return vt_fail(VT_EVALUE, "%s: translate_pct must be in [0, 1], got %g", who, tpct);
    if (interp < 0 || interp > 2) return vt_fail(VT_EVALUE, "%s: interpolation must be 0 (bilinear), 1 (bicubic) or 2 (random)", who);
    if (increasing != 0 && increasing != 1) return vt_fail(VT_EVALUE, "%s: increasing must be 0 or 1", who);
    if (plin) {
        VT_TRY(vt_require_f32(plin, who, "plan"));
        if (plin->ndim != 3 || plin->shape[0] != B || plin->shape[1] != nops || plin->shape[2] != RA_NP)
            return vt_fail(VT_ESHAPE, "%s: plan must have shape (%lld, %lld, %d)", who, (long long)B, (long long)nops, RA_NP);
    }
    vt_tensor *x = NULL, *fl = NULL, *pl = NULL, *xo = NULL, *po = NULL;
    uint8_t *buf = NULL;
    int64_t n = C * H * W;
    size_t nbuf = (size_t)(B * 3 * n);
    int st = VT_OK;
    if (!(x = vt_contiguous(xin)) || !(fl = vt_contiguous(fin)) || (plin && !(pl = vt_contiguous(plin)))) {
        st = vt_last_code();
        goto done;
    }
    const float *X = vt_f32(x), *F = vt_f32(fl);
    uint8_t fill[3];
    for (int64_t ch = 0; ch < C; ch++) {
        if (!(F[ch] >= 0.0f && F[ch] <= 255.0f && F[ch] == floorf(F[ch]))) {
            st = vt_fail(VT_EVALUE, "%s: fill values must be integers in 0..255, got %g", who, (double)F[ch]);
            goto done;
        }
        fill[ch] = (uint8_t)F[ch];
    }
    int64_t nbad = 0;
    #pragma omp parallel for if (B * n > 65536) schedule(static) reduction(+:nbad)
    for (int64_t i = 0; i < B * n; i++) nbad += !(X[i] >= 0.0f && X[i] <= 255.0f && X[i] == floorf(X[i]));
    if (nbad) {
        int64_t i = 0;
        while (X[i] >= 0.0f && X[i] <= 255.0f && X[i] == floorf(X[i])) i++;
        st = vt_fail(VT_EVALUE, "%s: images must hold integer values 0..255 (uint8 pixels); element %lld is %g", who,
                     (long long)i, (double)X[i]);
        goto done;
    }
    int64_t psh[3] = {B, nops, RA_NP};
    if (!(xo = vt_empty(VT_FLOAT32, 4, x->shape)) || !(po = vt_empty(VT_FLOAT32, 3, psh)) || (nbuf && !(buf = vt_alloc(nbuf)))) {
        st = vt_last_code();
        goto done;
    }
    float *P = vt_f32(po);
    if (pl) {
        const float *Q = vt_f32(pl);
        for (int64_t i = 0; i < B * nops; i++) {
            const float *q = Q + i * RA_NP;
            if (!((q[0] == -1.0f || (q[0] >= 0.0f && q[0] < RA_NOPS && q[0] == floorf(q[0]))) && q[1] >= 0.0f &&
                  q[1] <= 10.0f && (q[2] == 1.0f || q[2] == -1.0f) && (q[3] == 0.0f || q[3] == 1.0f))) {
                st = vt_fail(VT_EVALUE, "%s: plan row %lld must be (op id -1..%d, magnitude 0..10, sign ±1, filter 0|1), got "
                             "(%g, %g, %g, %g)", who, (long long)i, RA_NOPS - 1, (double)q[0], (double)q[1], (double)q[2], (double)q[3]);
                goto done;
            }
        }
        if (B > 0 && nops > 0) memcpy(P, Q, (size_t)(B * nops * RA_NP) * sizeof(float));
    } else {
        for (int64_t s = 0; s < B * nops; s++) {
            uint32_t w[4], z[4];
            vt_philox(seed, off + 2 * (uint64_t)s, w);
            vt_philox(seed, off + 2 * (uint64_t)s + 1, z);
            float *q = P + s * RA_NP;
            int pick = (int)(u32d(w[0]) * 15.0);
            double m = mag;
            if (isinf(mstd)) m = mag * u53(z[0], z[1]);
            else if (mstd > 0.0) m = mag + mstd * normal2(z[0], z[1]);
            m = fmax(0.0, fmin(m, mmax));
            q[0] = prob < 1.0 && u32d(w[1]) > prob ? -1.0f : (float)(increasing ? pick : ra_set_original[pick]);
            q[1] = (float)m;
            q[2] = u32d(w[2]) > 0.5 ? -1.0f : 1.0f;
            q[3] = interp == 2 ? (float)(u32d(w[3]) >= 0.5) : (float)interp;
        }
    }
    ra_img g = {C, H, W, fill, tpct};
    float *O = vt_f32(xo);
    if (B == 0) goto finish; /* an empty batch: nothing to transform (and no scratch) */
    #pragma omp parallel for if (B * n * (nops ? nops : 1) > 32768) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        uint8_t *cur = buf + (size_t)(b * 3 * n), *nxt = cur + n, *tmp = nxt + n;
        const float *xs = X + b * n;
        for (int64_t i = 0; i < n; i++) cur[i] = (uint8_t)xs[i];
        for (int64_t t = 0; t < nops; t++) {
            const float *q = P + (b * nops + t) * RA_NP;
            if (q[0] < 0.0f) continue;
            ra_apply(&g, (int)q[0], (double)q[1], (double)q[2], q[3] != 0.0f, cur, nxt, tmp);
            uint8_t *sw = cur; cur = nxt; nxt = sw;
        }
        float *o = O + b * n;
        for (int64_t i = 0; i < n; i++) o[i] = (float)cur[i];
    }
finish:
    c->out[0] = xo; c->out[1] = po;
    c->nout = 2;
    xo = po = NULL;
done:
    if (buf) vt_free(buf, nbuf);
    if (xo) vt_tensor_decref(xo);
    if (po) vt_tensor_decref(po);
    if (x) vt_tensor_decref(x);
    if (fl) vt_tensor_decref(fl);
    if (pl) vt_tensor_decref(pl);
    return st;
}
