/* vitc ops: 2-d pooling over (N, C, H, W) or (C, H, W) float32 tensors (max, average, adaptive
 * average), forward and backward side by side, with torch.nn.functional semantics (output sizes,
 * padding rules, argmax tie-breaking). OpenMP loops over H×W planes. Rows in conv.def. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include "../conv.h"
#include "../ops_util.h"

/* ---- pooling geometry -------------------------------------------------------------------- */

/* (N, C, H, W) or (C, H, W): `planes` H×W planes */
static int pool_input(const char *who, const vt_tensor *x, int64_t *planes, int64_t *H, int64_t *W) {
    VT_TRY(vt_require_f32(x, who, "input"));
    char b1[128];
    if (x->ndim != 3 && x->ndim != 4)
        return vt_fail(VT_ESHAPE, "%s: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape %s", who,
                       vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    for (int d = x->ndim == 4; d < x->ndim; d++)
        if (x->shape[d] == 0)
            return vt_fail(VT_ESHAPE, "%s: input %s has an empty non-batch dimension", who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    *H = x->shape[x->ndim - 2];
    *W = x->shape[x->ndim - 1];
    *planes = vt_numel(x) / (*H * *W);
    return VT_OK;
}

/* PyTorch's pooling_output_shape: floor or ceil division; with ceil_mode the last window must
 * start inside the input or its left padding */
static int pool_out(const char *who, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int ceil, int64_t *out) {
    int64_t span = in + 2 * p - d * (k - 1) - 1;
    int64_t o = (span < 0 ? -1 : (span + (ceil ? s - 1 : 0)) / s) + 1;
    if (ceil && o > 0 && (o - 1) * s >= in + p) o--;
    if (o < 1)
        return vt_fail(VT_ESHAPE, "%s: output size is too small (input size %lld, kernel %lld, stride %lld, padding %lld, dilation %lld)",
                       who, (long long)in, (long long)k, (long long)s, (long long)p, (long long)d);
    *out = o;
    return VT_OK;
}

typedef struct { int64_t kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo; } pool_geom;

/* kernel, stride, padding (<= kernel/2 as PyTorch requires), dilation (max_pool2d only; else 1) and
 * the output size; both pools keep the window arguments in the same slots */
VT_SAME_IARG(max_pool2d, avg_pool2d, kernel_h); VT_SAME_IARG(max_pool2d, avg_pool2d, kernel_w);
VT_SAME_IARG(max_pool2d, avg_pool2d, stride_h); VT_SAME_IARG(max_pool2d, avg_pool2d, stride_w);
VT_SAME_IARG(max_pool2d, avg_pool2d, pad_h); VT_SAME_IARG(max_pool2d, avg_pool2d, pad_w);
static int pool_geometry(const char *who, const vt_args *a, int dil, int ceil, int64_t H, int64_t W, pool_geom *p) {
#define A(name) a->i[IARG(max_pool2d, name)]
    *p = (pool_geom){.kh = A(kernel_h), .kw = A(kernel_w), .sh = A(stride_h), .sw = A(stride_w), .ph = A(pad_h),
                     .pw = A(pad_w), .dh = dil ? A(dilation_h) : 1, .dw = dil ? A(dilation_w) : 1};
#undef A
    const int64_t args[8] = {p->kh, p->kw, p->sh, p->sw, p->ph, p->pw, p->dh, p->dw};
    for (int k = 0; k < 8; k++)
        if (args[k] > INT_MAX || args[k] < INT_MIN) return vt_fail(VT_EVALUE, "%s: argument %lld is out of range", who, (long long)args[k]);
    if (p->kh < 1 || p->kw < 1) return vt_fail(VT_EVALUE, "%s: kernel_size must be positive, got (%lld, %lld)", who, (long long)p->kh, (long long)p->kw);
    if (p->sh < 1 || p->sw < 1) return vt_fail(VT_EVALUE, "%s: stride must be positive, got (%lld, %lld)", who, (long long)p->sh, (long long)p->sw);
    if (p->ph < 0 || p->pw < 0) return vt_fail(VT_EVALUE, "%s: padding must be non-negative, got (%lld, %lld)", who, (long long)p->ph, (long long)p->pw);
    if (p->dh < 1 || p->dw < 1) return vt_fail(VT_EVALUE, "%s: dilation must be positive, got (%lld, %lld)", who, (long long)p->dh, (long long)p->dw);
    if (p->ph > p->kh / 2 || p->pw > p->kw / 2)
        return vt_fail(VT_EVALUE, "%s: padding (%lld, %lld) should be at most half of kernel_size (%lld, %lld)", who,
                       (long long)p->ph, (long long)p->pw, (long long)p->kh, (long long)p->kw);
    VT_TRY(pool_out(who, H, p->kh, p->sh, p->ph, p->dh, ceil, &p->Ho));
    return pool_out(who, W, p->kw, p->sw, p->pw, p->dw, ceil, &p->Wo);
}

/* shape of x with its last two dims replaced by (Ho, Wo) */
static void pooled_shape(int ndim, const int64_t *xs, int64_t Ho, int64_t Wo, int64_t *out) {
    memcpy(out, xs, sizeof(int64_t) * (size_t)ndim);
    out[ndim - 2] = Ho;
    out[ndim - 1] = Wo;
}

/* ---- max_pool2d --------------------------------------------------------------------------- */

/* running max and its int32 index over one tap's reach [lo, hi) of an output row; inlined with
 * constant strides so the compiler vectorizes the selects */
static inline __attribute__((always_inline)) void max_row_idx(const float *restrict xr, int64_t sw, float *restrict y,
                                                              int32_t *restrict idx, int64_t lo, int64_t hi, int32_t base) {
    for (int64_t ow = lo; ow < hi; ow++) {
        float v = xr[ow * sw], m = y[ow];
        int take = (v > m) | (v != v);
        y[ow] = take ? v : m;
        idx[ow] = take ? base + (int32_t)(ow * sw) : idx[ow];
    }
}

/* One plane, a whole output row at a time: for each tap (ki, kj) in window order, compare it
 * with the running max of every output column it reaches, so the inner loop runs over ow without
 * bounds checks and vectorizes. Indices (ip may be NULL) start at the window's first valid tap;
 * they are tracked as int32 in the front half of each int64 row (same width as the float mask,
 * so the select vectorizes too) and widened in place, back to front, when the row is done.
 * Planes of 2^31 pixels or more take the int64 loop. */
static void max_pool_plane(const pool_geom *p, const float *xs, int64_t H, int64_t W, float *y, int64_t *ip) {
    int narrow = H * W <= INT32_MAX;
    for (int64_t oh = 0; oh < p->Ho; oh++, y += p->Wo, ip = ip ? ip + p->Wo : NULL) {
        int32_t *i32 = (int32_t *)ip;
        int64_t h0 = oh * p->sh - p->ph, ki0 = h0 >= 0 ? 0 : (-h0 + p->dh - 1) / p->dh;
        for (int64_t ow = 0; ow < p->Wo; ow++) {
            int64_t w0 = ow * p->sw - p->pw, kj0 = w0 >= 0 ? 0 : (-w0 + p->dw - 1) / p->dw;
            int64_t first = (h0 + ki0 * p->dh) * W + w0 + kj0 * p->dw;
            y[ow] = -INFINITY;
            if (ip && narrow) i32[ow] = (int32_t)first;
            else if (ip) ip[ow] = first;
        }
        for (int64_t ki = ki0; ki < p->kh && h0 + ki * p->dh < H; ki++) {
            int64_t ih = h0 + ki * p->dh;
            const float *xr = xs + ih * W;
            for (int64_t kj = 0; kj < p->kw; kj++) {
                int64_t lo, hi, iw0 = kj * p->dw - p->pw, sw = p->sw;
                valid_range(iw0, sw, W, p->Wo, &lo, &hi);
                /* torch's rule: take v when v > max or v is NaN (so the last NaN wins) */
                if (ip && narrow) {
                    if (sw == 1) max_row_idx(xr + iw0, 1, y, i32, lo, hi, (int32_t)(ih * W + iw0));
                    else if (sw == 2) max_row_idx(xr + iw0, 2, y, i32, lo, hi, (int32_t)(ih * W + iw0));
                    else max_row_idx(xr + iw0, sw, y, i32, lo, hi, (int32_t)(ih * W + iw0));
                } else if (ip) {
                    for (int64_t ow = lo; ow < hi; ow++) {
                        float v = xr[iw0 + ow * sw];
                        if (v > y[ow] || v != v) { y[ow] = v; ip[ow] = ih * W + iw0 + ow * sw; }
                    }
                } else {
                    for (int64_t ow = lo; ow < hi; ow++) {
                        float v = xr[iw0 + ow * sw];
                        y[ow] = (v > y[ow]) | (v != v) ? v : y[ow];
                    }
                }
            }
        }
        if (ip && narrow)
            for (int64_t ow = p->Wo - 1; ow >= 0; ow--) ip[ow] = i32[ow];
    }
}

/* per output: the max over the in-bounds taps (padding never wins), first index on ties, a NaN
 * wins (the last NaN's index, as torch's max_pool2d_with_indices), index = ih·W + iw in the plane */
int vt_max_pool2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    int64_t planes, H, W;
    VT_TRY(pool_input("max_pool2d", x, &planes, &H, &W));
    int return_indices = c->args->i[IARG(max_pool2d, return_indices)] != 0;
    pool_geom p;
    VT_TRY(pool_geometry("max_pool2d", c->args, 1, c->args->i[IARG(max_pool2d, ceil_mode)] != 0, H, W, &p));
    int want_idx = return_indices || c->save;
    int64_t oshape[4];
    pooled_shape(x->ndim, x->shape, p.Ho, p.Wo, oshape);
    vt_tensor *xc = vt_contiguous(x), *y = NULL, *idx = NULL;
    if (!xc) return vt_last_code();
    if (!(y = vt_empty(VT_FLOAT32, x->ndim, oshape))) goto fail;
    if (want_idx && !(idx = vt_empty(VT_INT64, x->ndim, oshape))) goto fail;
    const float *xp = vt_f32(xc);
    float *yp = vt_f32(y);
    int64_t *ip = idx ? vt_i64(idx) : NULL, HW = H * W, OP = p.Ho * p.Wo;
    #pragma omp parallel for if (planes * OP * p.kh * p.kw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++) max_pool_plane(&p, xp + t * HW, H, W, yp + t * OP, ip ? ip + t * OP : NULL);
    vt_tensor_decref(xc);
    xc = NULL;
    c->out[0] = y;
    c->nout = 1;
    int st = VT_OK;
    if (idx) {
        st = vt_save(c, idx);
        if (return_indices) { c->out[c->nout++] = idx; idx = NULL; }
        vt_tensor_decref(idx);
    }
    return st;
fail:
    vt_tensor_decref(xc);
    vt_tensor_decref(y);
    vt_tensor_decref(idx);
    return vt_last_code();
}

/* dx[plane][idx] += dy: the gradient goes to the argmax of each window */
int vt_max_pool2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    vt_tensor *idx = n->saved[0];
    if (!(gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
    if (!gout[0]) return VT_OK;
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    const vt_meta *om = &n->out_meta[0];
    int64_t HW = m->shape[m->ndim - 2] * m->shape[m->ndim - 1], OP = om->shape[om->ndim - 2] * om->shape[om->ndim - 1];
    int64_t planes = vt_shape_numel(m->ndim - 2, m->shape);
    const float *gp = vt_f32(g);
    const int64_t *ip = vt_i64(idx);
    float *dx = vt_f32(gin[0]);
    #pragma omp parallel for if (planes * OP > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t k = 0; k < OP; k++) {
            int64_t i = ip[t * OP + k]; /* outside the plane when a dilated window missed it (-inf) */
            if (i >= 0 && i < HW) dx[t * HW + i] += gp[t * OP + k];
        }
    vt_tensor_decref(g);
    return VT_OK;
}

/* ---- avg_pool2d ---------------------------------------------------------------------------- */

/* torch's avg_pool2d window: [h0, h1) clipped to the input; the divisor counts the window as
 * clipped to the padded input (count_include_pad) or to the input, unless divisor_override */
typedef struct { int64_t h0, h1, w0, w1; float div; } avg_window; /* div 0: empty window, output 0 */

static void avg_win(const pool_geom *p, int64_t H, int64_t W, int cip, int64_t divisor, int64_t oh, int64_t ow, avg_window *r) {
    int64_t h0 = oh * p->sh - p->ph, w0 = ow * p->sw - p->pw;
    int64_t h1 = min64(h0 + p->kh, H + p->ph), w1 = min64(w0 + p->kw, W + p->pw);
    int64_t padded = (h1 - h0) * (w1 - w0);
    h0 = max64(h0, 0); w0 = max64(w0, 0); h1 = min64(h1, H); w1 = min64(w1, W);
    int64_t d = divisor ? divisor : cip ? padded : (h1 - h0) * (w1 - w0);
    *r = (avg_window){h0, h1, w0, w1, h0 < h1 && w0 < w1 ? (float)d : 0.0f};
}

/* y[lo..hi) += x[ow·sw] (one tap's reach along an output row); inlined with constant strides */
static inline __attribute__((always_inline)) void add_row(const float *restrict xr, int64_t sw, float *restrict y,
                                                          int64_t lo, int64_t hi) {
    for (int64_t ow = lo; ow < hi; ow++) y[ow] += xr[ow * sw];
}

/* one plane, a row at a time: window sums tap by tap in window order (as torch sums), then the
 * division by each window's divisor */
static void avg_pool_plane(const pool_geom *p, const float *xs, int64_t H, int64_t W, int cip, int64_t divisor, float *y) {
    for (int64_t oh = 0; oh < p->Ho; oh++, y += p->Wo) {
        memset(y, 0, sizeof(float) * (size_t)p->Wo);
        for (int64_t ki = 0; ki < p->kh; ki++) {
            int64_t ih = oh * p->sh - p->ph + ki;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kj = 0; kj < p->kw; kj++) {
                int64_t lo, hi, iw0 = kj - p->pw;
                valid_range(iw0, p->sw, W, p->Wo, &lo, &hi);
                const float *xr = xs + ih * W + iw0;
                if (p->sw == 1) add_row(xr, 1, y, lo, hi);
                else if (p->sw == 2) add_row(xr, 2, y, lo, hi);
                else add_row(xr, p->sw, y, lo, hi);
            }
        }
        for (int64_t ow = 0; ow < p->Wo; ow++) {
            avg_window r;
            avg_win(p, H, W, cip, divisor, oh, ow, &r);
            y[ow] = r.div != 0.0f ? y[ow] / r.div : 0.0f;
        }
    }
}

static int avg_args(vt_ctx *c, const vt_tensor *x, int64_t *planes, int64_t *H, int64_t *W, pool_geom *p) {
    VT_TRY(pool_input("avg_pool2d", x, planes, H, W));
    int64_t divisor = c->args->i[IARG(avg_pool2d, divisor_override)];
    if (divisor < 0 || divisor > INT_MAX) return vt_fail(VT_EVALUE, "avg_pool2d: divisor_override must be positive, got %lld", (long long)divisor);
    return pool_geometry("avg_pool2d", c->args, 0, c->args->i[IARG(avg_pool2d, ceil_mode)] != 0, *H, *W, p);
}

int vt_avg_pool2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    int64_t planes, H, W;
    pool_geom p;
    VT_TRY(avg_args(c, x, &planes, &H, &W, &p));
    int cip = c->args->i[IARG(avg_pool2d, count_include_pad)] != 0;
    int64_t divisor = c->args->i[IARG(avg_pool2d, divisor_override)], oshape[4];
    pooled_shape(x->ndim, x->shape, p.Ho, p.Wo, oshape);
    vt_tensor *xc = vt_contiguous(x), *y = NULL;
    if (!xc || !(y = vt_empty(VT_FLOAT32, x->ndim, oshape))) { vt_tensor_decref(xc); return vt_last_code(); }
    const float *xp = vt_f32(xc);
    float *yp = vt_f32(y);
    int64_t HW = H * W, OP = p.Ho * p.Wo;
    #pragma omp parallel for if (planes * OP * p.kh * p.kw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++) avg_pool_plane(&p, xp + t * HW, H, W, cip, divisor, yp + t * OP);
    vt_tensor_decref(xc);
    c->out[0] = y;
    c->nout = 1;
    return VT_OK;
}

int vt_avg_pool2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    vt_tensor shell = {.ndim = m->ndim, .dtype = VT_FLOAT32};
    memcpy(shell.shape, m->shape, sizeof shell.shape);
    vt_ctx c = {.op = n->op, .args = &n->args};
    int64_t planes, H, W;
    pool_geom p;
    VT_TRY(avg_args(&c, &shell, &planes, &H, &W, &p));
    int cip = n->args.i[IARG(avg_pool2d, count_include_pad)] != 0;
    int64_t divisor = n->args.i[IARG(avg_pool2d, divisor_override)], HW = H * W, OP = p.Ho * p.Wo;
    if (!(gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
    if (!gout[0]) return VT_OK;
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    const float *gp = vt_f32(g);
    float *dx = vt_f32(gin[0]);
    #pragma omp parallel for if (planes * OP * p.kh * p.kw > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t oh = 0; oh < p.Ho; oh++)
            for (int64_t ow = 0; ow < p.Wo; ow++) {
                avg_window r;
                avg_win(&p, H, W, cip, divisor, oh, ow, &r);
                if (r.div == 0.0f) continue;
                float v = gp[t * OP + oh * p.Wo + ow] / r.div;
                for (int64_t ih = r.h0; ih < r.h1; ih++)
                    for (int64_t iw = r.w0; iw < r.w1; iw++) dx[t * HW + ih * W + iw] += v;
            }
    vt_tensor_decref(g);
    return VT_OK;
}

/* ---- adaptive_avg_pool2d ------------------------------------------------------------------- */

/* window of output i of o over n inputs: [⌊i·n/o⌋, ⌈(i+1)·n/o⌉) (torch's start_index/end_index) */
static inline int64_t ad_start(int64_t i, int64_t n, int64_t o) { return i * n / o; }
static inline int64_t ad_end(int64_t i, int64_t n, int64_t o) { return ((i + 1) * n + o - 1) / o; }

static int adaptive_args(const vt_args *a, const char *who, int64_t *oh, int64_t *ow) {
    *oh = a->i[IARG(adaptive_avg_pool2d, output_h)];
    *ow = a->i[IARG(adaptive_avg_pool2d, output_w)];
    if (*oh < 0 || *ow < 0 || *oh > INT_MAX || *ow > INT_MAX)
        return vt_fail(VT_EVALUE, "%s: output_size must be non-negative, got (%lld, %lld)", who, (long long)*oh, (long long)*ow);
    return VT_OK;
}

int vt_adaptive_avg_pool2d_forward(vt_ctx *c) {
    vt_tensor *x = c->in[0];
    int64_t planes, H, W, Ho, Wo, oshape[4];
    VT_TRY(pool_input("adaptive_avg_pool2d", x, &planes, &H, &W));
    VT_TRY(adaptive_args(c->args, "adaptive_avg_pool2d", &Ho, &Wo));
    pooled_shape(x->ndim, x->shape, Ho, Wo, oshape);
    vt_tensor *xc = vt_contiguous(x), *y = NULL;
    if (!xc || !(y = vt_empty(VT_FLOAT32, x->ndim, oshape))) { vt_tensor_decref(xc); return vt_last_code(); }
    const float *xp = vt_f32(xc);
    float *yp = vt_f32(y);
    int64_t HW = H * W, OP = Ho * Wo;
    #pragma omp parallel for if (planes * HW > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            int64_t h0 = ad_start(oh, H, Ho), h1 = ad_end(oh, H, Ho);
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t w0 = ad_start(ow, W, Wo), w1 = ad_end(ow, W, Wo);
                double s = 0; /* global pooling sums whole planes: keep the error at float rounding */
                for (int64_t ih = h0; ih < h1; ih++) {
                    const float *r = xp + t * HW + ih * W;
                    float rs = 0.0f;
                    #pragma omp simd reduction(+:rs)
                    for (int64_t iw = w0; iw < w1; iw++) rs += r[iw];
                    s += rs;
                }
                yp[t * OP + oh * Wo + ow] = (float)(s / (double)((h1 - h0) * (w1 - w0)));
            }
        }
    vt_tensor_decref(xc);
    c->out[0] = y;
    c->nout = 1;
    return VT_OK;
}

int vt_adaptive_avg_pool2d_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    const vt_meta *m = &n->in_meta[0];
    int64_t Ho, Wo;
    VT_TRY(adaptive_args(&n->args, "adaptive_avg_pool2d", &Ho, &Wo));
    int64_t H = m->shape[m->ndim - 2], W = m->shape[m->ndim - 1], HW = H * W, OP = Ho * Wo;
    int64_t planes = vt_shape_numel(m->ndim - 2, m->shape);
    if (!(gin[0] = vt_zeros(VT_FLOAT32, m->ndim, m->shape))) return vt_last_code();
    if (!gout[0]) return VT_OK;
    vt_tensor *g = vt_contiguous(gout[0]);
    if (!g) return vt_last_code();
    const float *gp = vt_f32(g);
    float *dx = vt_f32(gin[0]);
    #pragma omp parallel for if (planes * HW > 32768) schedule(static)
    for (int64_t t = 0; t < planes; t++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            int64_t h0 = ad_start(oh, H, Ho), h1 = ad_end(oh, H, Ho);
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t w0 = ad_start(ow, W, Wo), w1 = ad_end(ow, W, Wo);
                float v = gp[t * OP + oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dx[t * HW + ih * W + iw] += v;
            }
        }
    vt_tensor_decref(g);
    return VT_OK;
}
