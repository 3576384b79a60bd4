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

int vt_adam_step_forward(vt_ctx *c) {
    const char *who = "adam_step";
    if (c->nin != 6) return vt_fail(VT_ETYPE, "%s: expected (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|None, seg)", who);
    vt_tensor *P = c->in[0], *G = c->in[1], *M = c->in[2], *V = c->in[3], *VM = c->in[4], *seg = c->in[5];
    VT_TRY(check_flat(P, -1, who, "param"));
    int64_t n = P->shape[0];
    VT_TRY(check_flat(G, n, who, "grad"));
    VT_TRY(check_flat(M, n, who, "exp_avg"));
    VT_TRY(check_flat(V, n, who, "exp_avg_sq"));
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
    float *p = vt_f32(P), *m = vt_f32(M), *v = vt_f32(V), *vm = amsgrad ? vt_f32(VM) : NULL;
    const float *g = vt_f32(G);
    const adam_k k = {(float)(1.0 - lr * wd), (float)wd, (float)(1.0 - b1), (float)b2, (float)(1.0 - b2), (float)eps,
                      wd == 0 ? 0 : decoupled ? 2 : 1, maximize};
    #pragma omp parallel for if (active_elements(seg) > PAR_MIN) schedule(dynamic, 1)
    for (int64_t j = 0; j < nitems; j++)
        adam_row(w[j].lo, w[j].hi, p, g, m, v, vm, &k, coef[2 * w[j].seg], coef[2 * w[j].seg + 1]);
    free(w);
    free(coef);
    for (int64_t r = 0; r < S; r++) if (s[4 * r + SEG_ACTIVE]) s[4 * r + SEG_STEP]++;
    return out_alias(c, P);
}

/* ---- zeroing a flat buffer (zero_grad(set_to_none=False) in one memset) ------------------------- */

int vt_optim_zero_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 1));
    vt_tensor *t = c->in[0];
    VT_TRY(check_flat(t, -1, "optim_zero", "buffer"));
    float *d = vt_f32(t);
    int64_t n = t->shape[0], nchunks = (n + (1 << 18) - 1) >> 18;
    #pragma omp parallel for if (n > 4 * PAR_MIN) schedule(static)
    for (int64_t k = 0; k < nchunks; k++) {
        int64_t lo = k << 18, hi = lo + (1 << 18) < n ? lo + (1 << 18) : n;
        memset(d + lo, 0, sizeof(float) * (size_t)(hi - lo));
    }
    return out_alias(c, t);
}
