/* vitc ops: optimizer steps. One call updates every parameter of a group: the group's parameters,
 * gradients and optimizer moments each live in one flat float32 buffer (vitc/optim keeps each
 * Parameter and its .grad as views of them), and an int64 segment table (S, 4) holds per
 * parameter [start, numel, step, active]. The math is torch.optim's single-tensor path, element
 * by element in float32 with the per-parameter scalars (bias corrections) in double, so a step
 * matches PyTorch to float rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops_util.h"
#include "../core/bf16.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define SEG_START 0
#define SEG_NUMEL 1
#define SEG_STEP 2
#define SEG_ACTIVE 3
#define CHUNK 16384 /* elements per work item: big parameters split, small ones stay whole */
/* memory-bound loops: threads split groups from 256K elements. At the old 1M the seed ViT's 893K
 * parameters stepped on one thread: its Adam step took 1.73 ms at 1 thread and 1.80 at 2; split,
 * 1.18 ms at 2 (bench/op_scaling.py, 2026-12-01). Elementwise, so the bits do not change. */
#define PAR_MIN (1 << 18)

/* the output of an in-place update: an alias of the buffer it wrote (marked modified) */
static int out_alias(vt_ctx *c, vt_tensor *t) {
    vt_mark_modified(t);
    vt_tensor *a = vt_alias(t);
    if (!a) return vt_last_code();
    c->out[0] = a;
    c->nout = 1;
    return VT_OK;
}

/* ---- views into a flat buffer ---------------------------------------------------------------- */

int vt_optim_view_forward(vt_ctx *c) {
    const vt_args *a = c->args;
    vt_tensor *flat = c->in[0];
    if (c->nin != 1 || !flat) return vt_fail(VT_ETYPE, "optim_view: expected one tensor (the flat buffer)");
    int nd = VT_LIST_LEN(a, optim_view, shape);
    if (nd > VT_MAX_DIMS) return vt_fail(VT_ESHAPE, "optim_view: %d dimensions, at most %d supported", nd, VT_MAX_DIMS);
    if (flat->ndim != 1 || !vt_is_contiguous(flat))
        return vt_fail(VT_ESHAPE, "optim_view: the flat buffer must be a contiguous 1-d tensor");
    const int64_t *shape = a->i + IARG(optim_view, shape);
    VT_TRY(vt_check_shape(nd, shape, "optim_view"));
    int64_t off = a->i[IARG(optim_view, offset)], n = vt_shape_numel(nd, shape);
    if (off < 0 || off > flat->shape[0] || n > flat->shape[0] - off) {
        char b[128];
        return vt_fail(VT_EINDEX, "optim_view: %s at offset %lld does not fit in a buffer of %lld elements",
                       vt_shape_str(nd, shape, b, sizeof b), (long long)off, (long long)flat->shape[0]);
    }
    int64_t strides[VT_MAX_DIMS];
    vt_contiguous_strides(nd, shape, strides);
    vt_tensor *v = vt_view_of(flat, nd, shape, strides, flat->offset + off);
    if (!v) return vt_last_code();
    c->out[0] = v;
    c->nout = 1;
    return VT_OK;
}

/* ---- shared checks and work split ------------------------------------------------------------ */

static int check_flat(const vt_tensor *t, int64_t n, const char *who, const char *what) {
    VT_TRY(vt_require_f32(t, who, what));
    if (t->ndim != 1 || !vt_is_contiguous(t))
        return vt_fail(VT_ESHAPE, "%s: %s must be a contiguous 1-d buffer", who, what);
    if (n >= 0 && t->shape[0] != n)
        return vt_fail(VT_ESHAPE, "%s: %s has %lld elements, the parameter buffer %lld", who, what,
                       (long long)t->shape[0], (long long)n);
    if (t->requires_grad && vt_grad_enabled())
        return vt_fail(VT_ERUNTIME, "%s: %s requires grad; optimizer steps run under vitc.no_grad()", who, what);
    return VT_OK;
}

/* a stored moment: a flat float32 or bfloat16 buffer */
static int check_state(const vt_tensor *t, int64_t n, const char *who, const char *what) {
    if (t && t->dtype == VT_BFLOAT16) {
        if (t->ndim != 1 || !vt_is_contiguous(t))
            return vt_fail(VT_ESHAPE, "%s: %s must be a contiguous 1-d buffer", who, what);
        if (n >= 0 && t->shape[0] != n)
            return vt_fail(VT_ESHAPE, "%s: %s has %lld elements, the parameter buffer %lld", who, what,
                           (long long)t->shape[0], (long long)n);
        return VT_OK;
    }
    return check_flat(t, n, who, what);
}

static int check_seg(const vt_tensor *seg, int64_t n, const char *who) {
    VT_TRY(vt_require_dtype(seg, VT_INT64, who, "seg"));
    if (seg->ndim != 2 || seg->shape[1] != 4 || !vt_is_contiguous(seg))
        return vt_fail(VT_ESHAPE, "%s: seg must be a contiguous (S, 4) int64 table [start, numel, step, active]", who);
    const int64_t *s = vt_i64(seg);
    for (int64_t r = 0; r < seg->shape[0]; r++, s += 4) {
        if (s[SEG_START] < 0 || s[SEG_NUMEL] < 0 || s[SEG_START] > n || s[SEG_NUMEL] > n - s[SEG_START])
            return vt_fail(VT_EINDEX, "%s: segment %lld [%lld, +%lld) lies outside the buffer of %lld elements", who,
                           (long long)r, (long long)s[SEG_START], (long long)s[SEG_NUMEL], (long long)n);
        if (s[SEG_STEP] < 0) return vt_fail(VT_EVALUE, "%s: segment %lld has a negative step count", who, (long long)r);
    }
    return VT_OK;
}

typedef struct { int64_t seg, lo, hi; } work_item;

/* split the active segments into items of at most CHUNK elements; *nitems set; NULL on OOM */
static work_item *split_work(const vt_tensor *seg, int64_t *nitems) {
    const int64_t *s = vt_i64(seg);
    int64_t S = seg->shape[0], count = 0;
    for (int64_t r = 0; r < S; r++)
        if (s[4 * r + SEG_ACTIVE]) count += (s[4 * r + SEG_NUMEL] + CHUNK - 1) / CHUNK;
    work_item *w = malloc(sizeof *w * (size_t)(count ? count : 1));
    if (!w) return vt_fail_null(VT_ENOMEM, "optimizer step: out of memory");
    int64_t k = 0;
    for (int64_t r = 0; r < S; r++) {
        if (!s[4 * r + SEG_ACTIVE]) continue;
        int64_t a = s[4 * r + SEG_START], n = s[4 * r + SEG_NUMEL];
        for (int64_t lo = 0; lo < n; lo += CHUNK) {
            w[k].seg = r;
            w[k].lo = a + lo;
            w[k].hi = a + (lo + CHUNK < n ? lo + CHUNK : n);
            k++;
        }
    }
    *nitems = k;
    return w;
}

static int64_t active_elements(const vt_tensor *seg) {
    const int64_t *s = vt_i64(seg);
    int64_t n = 0;
    for (int64_t r = 0; r < seg->shape[0]; r++) if (s[4 * r + SEG_ACTIVE]) n += s[4 * r + SEG_NUMEL];
    return n;
}

static int check_hyper(double v, double lo, double hi, int hi_open, const char *who, const char *what) {
    if (!(v >= lo) || (hi_open ? !(v < hi) : !(v <= hi)))
        return vt_fail(VT_EVALUE, "%s: invalid %s %g (expected %g <= %s %s %g)", who, what, v, lo, what,
                       hi_open ? "<" : "<=", hi);
    return VT_OK;
}

/* ---- SGD (torch.optim.SGD, single-tensor path) ------------------------------------------------
 * g = ±grad + wd·p; with momentum μ: buf = g on a parameter's first step, else buf = μ·buf +
 * (1−dampening)·g; g = g + μ·buf (Nesterov) or buf; p = p − lr·g. */
int vt_sgd_step_forward(vt_ctx *c) {
    const char *who = "sgd_step";
    if (c->nin != 4) return vt_fail(VT_ETYPE, "%s: expected (param, grad, momentum_buf|None, seg)", who);
    vt_tensor *P = c->in[0], *G = c->in[1], *B = c->in[2], *seg = c->in[3];
    VT_TRY(check_flat(P, -1, who, "param"));
    int64_t n = P->shape[0];
    VT_TRY(check_flat(G, n, who, "grad"));
    const double lr = c->args->f[FARG(sgd_step, lr)], mom = c->args->f[FARG(sgd_step, momentum)],
                 damp = c->args->f[FARG(sgd_step, dampening)], wd = c->args->f[FARG(sgd_step, weight_decay)];
    const int nesterov = c->args->i[IARG(sgd_step, nesterov)] != 0, maximize = c->args->i[IARG(sgd_step, maximize)] != 0;
    VT_TRY(check_hyper(lr, 0, INFINITY, 0, who, "lr"));
    VT_TRY(check_hyper(mom, 0, INFINITY, 0, who, "momentum"));
    VT_TRY(check_hyper(damp, -INFINITY, INFINITY, 0, who, "dampening"));
    VT_TRY(check_hyper(wd, 0, INFINITY, 0, who, "weight_decay"));
    if (mom != 0 && !B) return vt_fail(VT_EVALUE, "%s: momentum %g needs a momentum buffer", who, mom);
    if (nesterov && (mom <= 0 || damp != 0))
        return vt_fail(VT_EVALUE, "%s: Nesterov momentum requires a momentum and zero dampening", who);
    if (B) VT_TRY(check_flat(B, n, who, "momentum_buf"));
    VT_TRY(check_seg(seg, n, who));
    int64_t nitems;
    work_item *w = split_work(seg, &nitems);
    if (!w) return vt_last_code();
    float *p = vt_f32(P), *buf = B ? vt_f32(B) : NULL;
    const float *g = vt_f32(G);
    int64_t *s = vt_i64(seg);
    const float flr = (float)lr, fmom = (float)mom, fdamp1 = (float)(1.0 - damp), fwd = (float)wd;
    #pragma omp parallel for if (active_elements(seg) > PAR_MIN) schedule(dynamic, 1)
    for (int64_t k = 0; k < nitems; k++) {
        const int first = s[4 * w[k].seg + SEG_STEP] == 0;
        for (int64_t i = w[k].lo; i < w[k].hi; i++) {
            float d = maximize ? -g[i] : g[i];
            if (fwd != 0.f) d += fwd * p[i];
            if (buf) {
                float b = first ? d : buf[i] * fmom + fdamp1 * d;
                buf[i] = b;
                d = nesterov ? d + fmom * b : b;
            }
            p[i] -= flr * d;
        }
    }
    free(w);
    for (int64_t r = 0; r < seg->shape[0]; r++) if (s[4 * r + SEG_ACTIVE]) s[4 * r + SEG_STEP]++;
    return out_alias(c, P);
}

/* ---- Adam / AdamW (torch.optim.Adam / AdamW, single-tensor path) --------------------------------
 * t = step+1; AdamW: p = p·(1 − lr·wd), Adam: g = g + wd·p (L2);
 * m = lerp(m, g, 1−β1); v = β2·v + (1−β2)·g²; (AMSGrad: v̂max = max(v̂max, v), used for v);
 * p = p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)   (ε added after the square root, as torch). */

typedef struct {
    float decay, wd, w1, b2, w2, eps;
    int wd_mode; /* 0 none, 1 L2 (Adam), 2 decoupled (AdamW) */
    int maximize;
} adam_k;

/* one contiguous run of a parameter; step_size = lr/(1−β1^t), bc2 = √(1−β2^t).
 * The SSE2 path (baseline x86-64: libm's sqrtf keeps errno, which stops GCC vectorizing the
 * scalar loop) evaluates the same float expressions in the same order as the scalar tail. */
static void adam_row(int64_t lo, int64_t hi, float *p, const float *g, float *m, float *v, float *vm,
                     const adam_k *k, float step_size, float bc2) {
    int64_t i = lo;
#if defined(__SSE2__)
    const __m128 w1 = _mm_set1_ps(k->w1), b2 = _mm_set1_ps(k->b2), w2 = _mm_set1_ps(k->w2),
                 eps = _mm_set1_ps(k->eps), nss = _mm_set1_ps(-step_size), vbc2 = _mm_set1_ps(bc2),
                 decay = _mm_set1_ps(k->decay), wd = _mm_set1_ps(k->wd), sign = _mm_set1_ps(-0.0f);
    for (; i + 4 <= hi; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i), pi = _mm_loadu_ps(p + i), mi = _mm_loadu_ps(m + i),
               vi = _mm_loadu_ps(v + i);
        if (k->maximize) gi = _mm_xor_ps(gi, sign);
        if (k->wd_mode == 2) pi = _mm_mul_ps(pi, decay);
        else if (k->wd_mode == 1) gi = _mm_add_ps(gi, _mm_mul_ps(wd, pi));
        mi = _mm_add_ps(mi, _mm_mul_ps(w1, _mm_sub_ps(gi, mi)));
        vi = _mm_add_ps(_mm_mul_ps(vi, b2), _mm_mul_ps(_mm_mul_ps(w2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        if (vm) {
            __m128 mx = _mm_loadu_ps(vm + i);
            mx = _mm_max_ps(vi, mx); /* (vi > mx) ? vi : mx, as the scalar tail */
            _mm_storeu_ps(vm + i, mx);
            vi = mx;
        }
        __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc2), eps);
        _mm_storeu_ps(p + i, _mm_add_ps(pi, _mm_mul_ps(nss, _mm_div_ps(mi, denom))));
    }
#endif
    for (; i < hi; i++) {
        float gi = k->maximize ? -g[i] : g[i], pi = p[i];
        if (k->wd_mode == 2) pi *= k->decay;
        else if (k->wd_mode == 1) gi += k->wd * pi;
        float mi = m[i] + k->w1 * (gi - m[i]);
        float vi = v[i] * k->b2 + k->w2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (vm) { if (vi > vm[i]) vm[i] = vi; vi = vm[i]; }
        float denom = sqrtf(vi) / bc2 + k->eps;
        p[i] = pi + (-step_size) * (mi / denom);
    }
}

/* the same step with a moment stored in bfloat16 (mb/vb non-NULL instead of m/v): the new moment
 * is computed in float32 from the stored one, the step uses that unrounded value and the buffer
 * keeps it rounded to nearest even (optax scale_by_adam(mu_dtype=jnp.bfloat16): the update comes
 * from the f32 moment, only the carried state is cast). Scalar: the bf16 paths are not the hot
 * default. */
static void adam_row_bf16(int64_t lo, int64_t hi, float *p, const float *g, float *m, uint16_t *mb, float *v,
                          uint16_t *vb, float *vm, const adam_k *k, float step_size, float bc2) {
    for (int64_t i = lo; i < hi; i++) {
        float gi = k->maximize ? -g[i] : g[i], pi = p[i];
        if (k->wd_mode == 2) pi *= k->decay;
        else if (k->wd_mode == 1) gi += k->wd * pi;
        float m0 = mb ? vt_bf16_to_f32(mb[i]) : m[i], v0 = vb ? vt_bf16_to_f32(vb[i]) : v[i];
        float mi = m0 + k->w1 * (gi - m0);
        float vi = v0 * k->b2 + k->w2 * gi * gi;
        if (mb) mb[i] = vt_f32_to_bf16(mi); else m[i] = mi;
        if (vb) vb[i] = vt_f32_to_bf16(vi); else v[i] = vi;
        if (vm) { if (vi > vm[i]) vm[i] = vi; vi = vm[i]; }
        float denom = sqrtf(vi) / bc2 + k->eps;
        p[i] = pi + (-step_size) * (mi / denom);
    }
}

int vt_adam_step_forward(vt_ctx *c) {
    const char *who = "adam_step";
    if (c->nin != 6) return vt_fail(VT_ETYPE, "%s: expected (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|None, seg)", who);
    vt_tensor *P = c->in[0], *G = c->in[1], *M = c->in[2], *V = c->in[3], *VM = c->in[4], *seg = c->in[5];
    VT_TRY(check_flat(P, -1, who, "param"));
    int64_t n = P->shape[0];
    VT_TRY(check_flat(G, n, who, "grad"));
    VT_TRY(check_state(M, n, who, "exp_avg"));
    VT_TRY(check_state(V, n, who, "exp_avg_sq"));
    const int amsgrad = c->args->i[IARG(adam_step, amsgrad)] != 0, decoupled = c->args->i[IARG(adam_step, decoupled)] != 0,
              maximize = c->args->i[IARG(adam_step, maximize)] != 0;
    if (amsgrad && !VM) return vt_fail(VT_EVALUE, "%s: amsgrad needs a max_exp_avg_sq buffer", who);
    if (VM) VT_TRY(check_flat(VM, n, who, "max_exp_avg_sq"));
    const double lr = c->args->f[FARG(adam_step, lr)], b1 = c->args->f[FARG(adam_step, beta1)],
                 b2 = c->args->f[FARG(adam_step, beta2)], eps = c->args->f[FARG(adam_step, eps)],
                 wd = c->args->f[FARG(adam_step, weight_decay)];
    VT_TRY(check_hyper(lr, 0, INFINITY, 0, who, "lr"));
    VT_TRY(check_hyper(b1, 0, 1, 1, who, "beta1"));
    VT_TRY(check_hyper(b2, 0, 1, 1, who, "beta2"));
    VT_TRY(check_hyper(eps, 0, INFINITY, 0, who, "eps"));
    VT_TRY(check_hyper(wd, 0, INFINITY, 0, who, "weight_decay"));
    VT_TRY(check_seg(seg, n, who));
    int64_t S = seg->shape[0], nitems;
    int64_t *s = vt_i64(seg);
    /* per parameter: step size lr/(1−β1^t) and √(1−β2^t), in double like torch's Python scalars */
    float *coef = malloc(sizeof(float) * 2 * (size_t)(S ? S : 1));
    if (!coef) return vt_fail(VT_ENOMEM, "%s: out of memory", who);
    for (int64_t r = 0; r < S; r++) {
        double t = (double)(s[4 * r + SEG_STEP] + 1);
        coef[2 * r] = (float)(lr / (1.0 - pow(b1, t)));
        coef[2 * r + 1] = (float)sqrt(1.0 - pow(b2, t));
    }
    work_item *w = split_work(seg, &nitems);
    if (!w) { free(coef); return vt_last_code(); }
    const int mbf = M->dtype == VT_BFLOAT16, vbf = V->dtype == VT_BFLOAT16;
    float *p = vt_f32(P), *m = mbf ? NULL : vt_f32(M), *v = vbf ? NULL : vt_f32(V), *vm = amsgrad ? vt_f32(VM) : NULL;
    uint16_t *mb = mbf ? vt_bf16(M) : NULL, *vb = vbf ? vt_bf16(V) : NULL;
    const float *g = vt_f32(G);
    const adam_k k = {(float)(1.0 - lr * wd), (float)wd, (float)(1.0 - b1), (float)b2, (float)(1.0 - b2), (float)eps,
                      wd == 0 ? 0 : decoupled ? 2 : 1, maximize};
    #pragma omp parallel for if (active_elements(seg) > PAR_MIN) schedule(dynamic, 1)
    for (int64_t j = 0; j < nitems; j++) {
        if (mbf || vbf)
            adam_row_bf16(w[j].lo, w[j].hi, p, g, m, mb, v, vb, vm, &k, coef[2 * w[j].seg], coef[2 * w[j].seg + 1]);
        else
            adam_row(w[j].lo, w[j].hi, p, g, m, v, vm, &k, coef[2 * w[j].seg], coef[2 * w[j].seg + 1]);
    }
    free(w);
    free(coef);
    for (int64_t r = 0; r < S; r++) if (s[4 * r + SEG_ACTIVE]) s[4 * r + SEG_STEP]++;
    return out_alias(c, P);
}

/* ---- RMSprop (torch.optim.RMSprop, single-tensor path; Hinton's lecture 6e, Graves 2013 eq. 38-40
 * for the centered form) -------------------------------------------------------------------------
 * g = ±grad (+ wd·p); v = α·v + (1−α)·g²; centered: ḡ = lerp(ḡ, g, 1−α), d = √(v − ḡ²) + ε, else
 * d = √v + ε; with momentum μ: b = μ·b + g/d, p = p − lr·b; else p = p − lr·g/d. torch's order of
 * operations, in float32. */
typedef struct { float lr, alpha, w, eps, wd, mom; int centered, maximize; } rmsprop_k;

static void rmsprop_row(int64_t lo, int64_t hi, float *p, const float *g, float *v, float *b, float *ga,
                        const rmsprop_k *k) {
    for (int64_t i = lo; i < hi; i++) {
        float gi = k->maximize ? -g[i] : g[i];
        if (k->wd != 0.f) gi += k->wd * p[i];
        float vi = v[i] * k->alpha + k->w * gi * gi;
        v[i] = vi;
        float d;
        if (k->centered) {
            /* torch.lerp's two branches (aten/src/ATen/native/Lerp.h) */
            float a = k->w < 0.5f ? ga[i] + k->w * (gi - ga[i]) : gi - (gi - ga[i]) * (1.f - k->w);
            ga[i] = a;
            d = sqrtf(vi + -1.f * a * a) + k->eps;
        } else {
            d = sqrtf(vi) + k->eps;
        }
        if (b) {
            b[i] = b[i] * k->mom + gi / d;
            p[i] += -k->lr * b[i];
        } else {
            p[i] += -k->lr * (gi / d);
        }
    }
}

int vt_rmsprop_step_forward(vt_ctx *c) {
    const char *who = "rmsprop_step";
    if (c->nin != 6)
        return vt_fail(VT_ETYPE, "%s: expected (param, grad, square_avg, momentum_buf|None, grad_avg|None, seg)", who);
    vt_tensor *P = c->in[0], *G = c->in[1], *V = c->in[2], *B = c->in[3], *GA = c->in[4], *seg = c->in[5];
    VT_TRY(check_flat(P, -1, who, "param"));
    int64_t n = P->shape[0];
    VT_TRY(check_flat(G, n, who, "grad"));
    VT_TRY(check_flat(V, n, who, "square_avg"));
    const double lr = c->args->f[FARG(rmsprop_step, lr)], alpha = c->args->f[FARG(rmsprop_step, alpha)],
                 eps = c->args->f[FARG(rmsprop_step, eps)], wd = c->args->f[FARG(rmsprop_step, weight_decay)],
                 mom = c->args->f[FARG(rmsprop_step, momentum)];
    const int centered = c->args->i[IARG(rmsprop_step, centered)] != 0,
              maximize = c->args->i[IARG(rmsprop_step, maximize)] != 0;
    VT_TRY(check_hyper(lr, 0, INFINITY, 0, who, "lr"));
    VT_TRY(check_hyper(alpha, 0, INFINITY, 0, who, "alpha"));
    VT_TRY(check_hyper(eps, 0, INFINITY, 0, who, "eps"));
    VT_TRY(check_hyper(wd, 0, INFINITY, 0, who, "weight_decay"));
    VT_TRY(check_hyper(mom, 0, INFINITY, 0, who, "momentum"));
    if (mom > 0 && !B) return vt_fail(VT_EVALUE, "%s: momentum %g needs a momentum buffer", who, mom);
    if (centered && !GA) return vt_fail(VT_EVALUE, "%s: centered needs a grad_avg buffer", who);
    if (B) VT_TRY(check_flat(B, n, who, "momentum_buf"));
    if (GA) VT_TRY(check_flat(GA, n, who, "grad_avg"));
    VT_TRY(check_seg(seg, n, who));
    int64_t nitems;
    work_item *w = split_work(seg, &nitems);
    if (!w) return vt_last_code();
    float *p = vt_f32(P), *v = vt_f32(V), *b = mom > 0 ? vt_f32(B) : NULL, *ga = centered ? vt_f32(GA) : NULL;
    const float *g = vt_f32(G);
    const rmsprop_k k = {(float)lr, (float)alpha, (float)(1.0 - alpha), (float)eps, (float)wd, (float)mom, centered,
                         maximize};
    #pragma omp parallel for if (active_elements(seg) > PAR_MIN) schedule(dynamic, 1)
    for (int64_t j = 0; j < nitems; j++) rmsprop_row(w[j].lo, w[j].hi, p, g, v, b, ga, &k);
    free(w);
    int64_t *s = vt_i64(seg);
    for (int64_t r = 0; r < seg->shape[0]; r++) if (s[4 * r + SEG_ACTIVE]) s[4 * r + SEG_STEP]++;
    return out_alias(c, P);
}

/* ---- modified Adafactor (Zhai et al. 2021 §3.4; big_vision scale_by_adafactor = optax
 * scale_by_factored_rms followed by an EMA momentum; decoupled weight decay as big_vision) ------
 * Per parameter, c = its step count (0 on the first step):
 *   β2 = min(beta2_cap, 1 − (c+1)^−decay_rate); Q = G² + ε (ε 1e-30)
 *   factored (the layout table says so): R ← β2R + (1−β2)·mean_{d0}(Q), C ← β2C + (1−β2)·mean_{d1}(Q),
 *     Û = G · (R / mean_{d1}(R))^−½ · C^−½ (each broadcast back over the axis it lacks)
 *   else V ← β2V + (1−β2)·Q, Û = G · V^−½           (no update clipping, no relative step)
 *   m̃ = momentum·m + (1 − momentum)·Û (no debiasing); m ← m̃ (rounded when m is bfloat16)
 *   θ ← θ − lr·(m̃ + weight_decay·θ)                 (the step uses the unrounded m̃)
 * Layout table `fac` (S, 8) int64, per parameter: [v_start, A, X, B, Y, K, d0_first, factored]: the
 * parameter is seen as (A, X, B, Y, K) with X, Y the two factored axes (X the earlier one) and
 * d0_first = 1 when X is d0 (the axis R averages over). R has the shape without d0 and starts at
 * v_start of the packed second-moment buffer, C (the shape without d1) follows it; a parameter
 * that is not factored has V (its own shape) at v_start (then A = X = B = Y = 1, K = numel). */
#define FAC_VSTART 0
#define FAC_A 1
#define FAC_X 2
#define FAC_B 3
#define FAC_Y 4
#define FAC_K 5
#define FAC_D0FIRST 6
#define FAC_FACTORED 7

typedef struct { float lr, mom, wd, eps; } adafactor_k;

/* numbers of R and C entries of a factored parameter */
static void fac_sizes(const int64_t *f, int64_t *nr, int64_t *nc) {
    int64_t rest = f[FAC_A] * f[FAC_B] * f[FAC_K];
    *nr = rest * (f[FAC_D0FIRST] ? f[FAC_Y] : f[FAC_X]);
    *nc = rest * (f[FAC_D0FIRST] ? f[FAC_X] : f[FAC_Y]);
}

/* momentum and parameter update of one element from its preconditioned gradient u */
static inline void adafactor_apply(int64_t i, float u, float *p, float *m, uint16_t *mb, const adafactor_k *k) {
    float m0 = mb ? vt_bf16_to_f32(mb[i]) : m[i];
    float mt = (1.f - k->mom) * u + k->mom * m0;
    if (mb) mb[i] = vt_f32_to_bf16(mt); else m[i] = mt;
    p[i] = p[i] - k->lr * (mt + k->wd * p[i]);
}

/* one factored parameter; scratch holds nr + nc + A·B·K doubles */
static void adafactor_factored(const int64_t *f, int64_t start, float *p, const float *g, float *m, uint16_t *mb,
                               float *vbuf, double *scratch, float b2, const adafactor_k *k) {
    const int64_t A = f[FAC_A], X = f[FAC_X], B = f[FAC_B], Y = f[FAC_Y], K = f[FAC_K];
    const int d0x = f[FAC_D0FIRST] != 0;
    int64_t nr, nc;
    fac_sizes(f, &nr, &nc);
    float *R = vbuf + f[FAC_VSTART], *C = R + nr;
    double *rs = scratch, *cs = rs + nr, *rm = cs + nc;
    memset(scratch, 0, sizeof(double) * (size_t)(nr + nc + A * B * K));
    /* element (a, x, b, y, q): without x -> ((a·B + b)·Y + y)·K + q, without y -> ((a·X + x)·B + b)·K + q */
    for (int64_t a = 0; a < A; a++)
        for (int64_t x = 0; x < X; x++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t y = 0; y < Y; y++) {
                    const float *gi = g + start + (((a * X + x) * B + b) * Y + y) * K;
                    int64_t jx = ((a * B + b) * Y + y) * K, jy = ((a * X + x) * B + b) * K;
                    double *r = rs + (d0x ? jx : jy), *cc = cs + (d0x ? jy : jx);
                    for (int64_t q = 0; q < K; q++) {
                        float sq = gi[q] * gi[q] + k->eps;
                        r[q] += sq;
                        cc[q] += sq;
                    }
                }
    const double n0 = (double)(d0x ? X : Y), n1 = (double)(d0x ? Y : X);
    for (int64_t j = 0; j < nr; j++) R[j] = b2 * R[j] + (1.f - b2) * (float)(rs[j] / n0);
    for (int64_t j = 0; j < nc; j++) C[j] = b2 * C[j] + (1.f - b2) * (float)(cs[j] / n1);
    /* R is (P, D1, Q) with the d1 axis in the middle: d0 first -> (A·B, Y, K), else (A, X, B·K) */
    const int64_t P = d0x ? A * B : A, D1 = d0x ? Y : X, Q = d0x ? K : B * K;
    for (int64_t a = 0; a < P; a++)
        for (int64_t d = 0; d < D1; d++)
            for (int64_t q = 0; q < Q; q++) rm[a * Q + q] += R[(a * D1 + d) * Q + q];
    /* the factors, in place of the sums: row (R/mean_{d1}R)^−½, column C^−½ */
    for (int64_t a = 0; a < P; a++)
        for (int64_t d = 0; d < D1; d++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t j = (a * D1 + d) * Q + q;
                rs[j] = 1.f / sqrtf(R[j] / (float)(rm[a * Q + q] / (double)D1));
            }
    for (int64_t j = 0; j < nc; j++) cs[j] = 1.f / sqrtf(C[j]);
    for (int64_t a = 0; a < A; a++)
        for (int64_t x = 0; x < X; x++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t y = 0; y < Y; y++) {
                    int64_t e = start + (((a * X + x) * B + b) * Y + y) * K;
                    int64_t jx = ((a * B + b) * Y + y) * K, jy = ((a * X + x) * B + b) * K;
                    const double *r = rs + (d0x ? jx : jy), *cc = cs + (d0x ? jy : jx);
                    for (int64_t q = 0; q < K; q++)
                        adafactor_apply(e + q, g[e + q] * (float)r[q] * (float)cc[q], p, m, mb, k);
                }
}

static void adafactor_full(int64_t start, int64_t n, float *p, const float *g, float *m, uint16_t *mb, float *V,
                           float b2, const adafactor_k *k) {
    for (int64_t i = 0; i < n; i++) {
        float gi = g[start + i];
        V[i] = b2 * V[i] + (1.f - b2) * (gi * gi + k->eps);
        adafactor_apply(start + i, gi * (1.f / sqrtf(V[i])), p, m, mb, k);
    }
}

static int check_fac(const vt_tensor *fac, const vt_tensor *seg, int64_t nv, const char *who) {
    VT_TRY(vt_require_dtype(fac, VT_INT64, who, "fac"));
    if (fac->ndim != 2 || fac->shape[0] != seg->shape[0] || fac->shape[1] != 8 || !vt_is_contiguous(fac))
        return vt_fail(VT_ESHAPE, "%s: fac must be a contiguous (S, 8) int64 table, one row per segment", who);
    const int64_t *f = vt_i64(fac), *s = vt_i64(seg);
    for (int64_t r = 0; r < fac->shape[0]; r++, f += 8, s += 4) {
        for (int j = FAC_A; j <= FAC_K; j++)
            if (f[j] < 0) return vt_fail(VT_EVALUE, "%s: segment %lld has a negative size in its layout", who, (long long)r);
        if (f[FAC_A] * f[FAC_X] * f[FAC_B] * f[FAC_Y] * f[FAC_K] != s[SEG_NUMEL])
            return vt_fail(VT_ESHAPE, "%s: segment %lld: layout (%lld, %lld, %lld, %lld, %lld) does not hold its %lld "
                           "elements", who, (long long)r, (long long)f[FAC_A], (long long)f[FAC_X], (long long)f[FAC_B],
                           (long long)f[FAC_Y], (long long)f[FAC_K], (long long)s[SEG_NUMEL]);
        int64_t nr, nc, need = s[SEG_NUMEL];
        if (f[FAC_FACTORED]) { fac_sizes(f, &nr, &nc); need = nr + nc; }
        if (f[FAC_VSTART] < 0 || f[FAC_VSTART] > nv || need > nv - f[FAC_VSTART])
            return vt_fail(VT_EINDEX, "%s: segment %lld: its second-moment state [%lld, +%lld) lies outside the buffer of "
                           "%lld elements", who, (long long)r, (long long)f[FAC_VSTART], (long long)need, (long long)nv);
    }
    return VT_OK;
}

int vt_adafactor_step_forward(vt_ctx *c) {
    const char *who = "adafactor_step";
    if (c->nin != 6) return vt_fail(VT_ETYPE, "%s: expected (param, grad, exp_avg, exp_avg_sq, seg, fac)", who);
    vt_tensor *P = c->in[0], *G = c->in[1], *M = c->in[2], *V = c->in[3], *seg = c->in[4], *fac = c->in[5];
    VT_TRY(check_flat(P, -1, who, "param"));
    int64_t n = P->shape[0];
    VT_TRY(check_flat(G, n, who, "grad"));
    VT_TRY(check_state(M, n, who, "exp_avg"));
    VT_TRY(check_flat(V, -1, who, "exp_avg_sq"));
    const double lr = c->args->f[FARG(adafactor_step, lr)], mom = c->args->f[FARG(adafactor_step, momentum)],
                 rate = c->args->f[FARG(adafactor_step, decay_rate)], cap = c->args->f[FARG(adafactor_step, beta2_cap)],
                 eps = c->args->f[FARG(adafactor_step, eps)], wd = c->args->f[FARG(adafactor_step, weight_decay)];
    VT_TRY(check_hyper(lr, 0, INFINITY, 0, who, "lr"));
    VT_TRY(check_hyper(mom, 0, 1, 1, who, "momentum"));
    VT_TRY(check_hyper(rate, 0, INFINITY, 0, who, "decay_rate"));
    VT_TRY(check_hyper(cap, 0, 1, 1, who, "beta2_cap"));
    VT_TRY(check_hyper(eps, 0, INFINITY, 0, who, "eps"));
    VT_TRY(check_hyper(wd, 0, INFINITY, 0, who, "weight_decay"));
    VT_TRY(check_seg(seg, n, who));
    VT_TRY(check_fac(fac, seg, V->shape[0], who));
    const int64_t S = seg->shape[0];
    int64_t *s = vt_i64(seg);
    const int64_t *f = vt_i64(fac);
    /* scratch offsets: every active factored parameter gets its own (parameters run in parallel) */
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(S + 1));
    if (!off) return vt_fail(VT_ENOMEM, "%s: out of memory", who);
    off[0] = 0;
    for (int64_t r = 0; r < S; r++) {
        int64_t nr = 0, nc = 0;
        const int64_t *fr = f + 8 * r;
        if (s[4 * r + SEG_ACTIVE] && fr[FAC_FACTORED]) fac_sizes(fr, &nr, &nc);
        off[r + 1] = off[r] + (nr || nc ? nr + nc + fr[FAC_A] * fr[FAC_B] * fr[FAC_K] : 0);
    }
    double *scratch = malloc(sizeof(double) * (size_t)(off[S] ? off[S] : 1));
    if (!scratch) { free(off); return vt_fail(VT_ENOMEM, "%s: out of memory", who); }
    float *p = vt_f32(P), *vbuf = vt_f32(V), *m = M->dtype == VT_BFLOAT16 ? NULL : vt_f32(M);
    uint16_t *mb = M->dtype == VT_BFLOAT16 ? vt_bf16(M) : NULL;
    const float *g = vt_f32(G);
    const adafactor_k k = {(float)lr, (float)mom, (float)wd, (float)eps};
    #pragma omp parallel for if (active_elements(seg) > PAR_MIN) schedule(dynamic, 1)
    for (int64_t r = 0; r < S; r++) {
        const int64_t *sr = s + 4 * r, *fr = f + 8 * r;
        if (!sr[SEG_ACTIVE] || sr[SEG_NUMEL] == 0) continue;
        double b2d = 1.0 - pow((double)(sr[SEG_STEP] + 1), -rate);
        const float b2 = (float)(b2d < cap ? b2d : cap);
        if (fr[FAC_FACTORED])
            adafactor_factored(fr, sr[SEG_START], p, g, m, mb, vbuf, scratch + off[r], b2, &k);
        else
            adafactor_full(sr[SEG_START], sr[SEG_NUMEL], p, g, m, mb, vbuf + fr[FAC_VSTART], b2, &k);
    }
    free(scratch);
    free(off);
    for (int64_t r = 0; r < S; r++) if (s[4 * r + SEG_ACTIVE]) s[4 * r + SEG_STEP]++;
    return out_alias(c, P);
}

/* ---- zeroing a flat buffer (zero_grad(set_to_none=False) in one memset) ------------------------- */

int vt_optim_zero_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 1));
    vt_tensor *t = c->in[0];
    VT_TRY(check_state(t, -1, "optim_zero", "buffer"));
    char *d = (char *)t->storage->data + t->offset * (int64_t)vt_dtype_size(t->dtype);
    const size_t es = vt_dtype_size(t->dtype);
    int64_t n = t->shape[0], nchunks = (n + (1 << 18) - 1) >> 18;
    #pragma omp parallel for if (n > 4 * PAR_MIN) schedule(static)
    for (int64_t k = 0; k < nchunks; k++) {
        int64_t lo = k << 18, hi = lo + (1 << 18) < n ? lo + (1 << 18) : n;
        memset(d + lo * (int64_t)es, 0, es * (size_t)(hi - lo)); /* all-zero bits: +0.0 in float32 and bfloat16 */
    }
    return out_alias(c, t);
}
