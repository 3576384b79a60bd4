/* vitc ops: elementwise arithmetic, unary math, comparisons, masks and casts.
 * Forward and backward of each op side by side. Every float kernel is one expression applied by
 * fmap() over broadcast operands (vt_map, kernels/map.h); broadcasting backward sums the gradient
 * back to each input's shape (vt_k_sum_to). Derivatives follow PyTorch's tools/autograd/derivatives.yaml
 * conventions where a choice exists: d|x|/dx = sign(x) with sign(0) = 0, clamp passes gradient
 * where min <= x <= max, d(x^c)/dx = 0 when c = 0, d(a^b)/db = 0 where a = 0 and b >= 0. */
#include <math.h>
#include <string.h>
#include "ops_util.h"
#include "../core/bf16.h"

/* ---- the float expression engine ---------------------------------------------------------- */

enum {
    K_ADD, K_SUB, K_MUL, K_DIV, K_POW,                    /* x (op) y */
    K_NEG, K_EXP, K_LOG, K_SQRT, K_RSQRT, K_ABS,          /* f(x) */
    K_ADDC, K_MULC, K_POWC, K_RPOWC, K_CLAMP,             /* f(x; c, c2) */
    K_SQRT_BW, K_RSQRT_BW, K_ABS_BW, K_POWC_BW, K_CLAMP_BW, K_RPOWC_BW, /* (g, x or y) */
    K_DIV_BW_B, K_POW_BW_A, K_POW_BW_B,                   /* (g, a, b) */
};

typedef struct { int kind; float c, c2; } fctx;

#define FLOOP(E)                                                                       \
    do {                                                                               \
        if (so == 1 && sx == 1 && sy == 1 && sz == 1)                                  \
            for (int64_t i = 0; i < n; i++) { float x = X[i], y = Y[i], z = Z[i]; (void)y; (void)z; O[i] = (E); } \
        else                                                                           \
            for (int64_t i = 0; i < n; i++) { float x = X[i * sx], y = Y[i * sy], z = Z[i * sz]; (void)y; (void)z; O[i * so] = (E); } \
    } while (0)

VT_SIMD_CLONES static void float_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const fctx *k = vctx;
    float *O = (float *)p[0];
    const float *X = (const float *)p[1];
    int64_t so = s[0] / 4, sx = s[1] / 4;
    /* absent operands alias X (their expressions never read them) */
    int has_y = k->kind <= K_POW || k->kind >= K_SQRT_BW, has_z = k->kind >= K_DIV_BW_B;
    const float *Y = has_y ? (const float *)p[2] : X, *Z = has_z ? (const float *)p[3] : X;
    int64_t sy = has_y ? s[2] / 4 : sx, sz = has_z ? s[3] / 4 : sx;
    const float c = k->c, c2 = k->c2;
    switch (k->kind) {
    case K_ADD: FLOOP(x + y); break;
    case K_SUB: FLOOP(x - y); break;
    case K_MUL: FLOOP(x * y); break;
    case K_DIV: FLOOP(x / y); break;
    case K_POW: FLOOP(powf(x, y)); break;
    case K_NEG: FLOOP(-x); break;
    case K_EXP: FLOOP(expf(x)); break;
    case K_LOG: FLOOP(logf(x)); break;
    case K_SQRT: FLOOP(sqrtf(x)); break;
    case K_RSQRT: FLOOP(1.0f / sqrtf(x)); break;
    case K_ABS: FLOOP(fabsf(x)); break;
    case K_ADDC: FLOOP(x + c); break;
    case K_MULC: FLOOP(x * c); break;
    case K_POWC: FLOOP(powf(x, c)); break;
    case K_RPOWC: FLOOP(powf(c, x)); break;
    case K_CLAMP: FLOOP(isnan(x) ? x : fminf(fmaxf(x, c), c2)); break;
    case K_SQRT_BW: FLOOP(x * 0.5f / y); break;                              /* g/(2·sqrt x) */
    case K_RSQRT_BW: FLOOP(-0.5f * x * y * y * y); break;                    /* -½ g x^{-3/2} */
    case K_ABS_BW: FLOOP(y > 0 ? x : y < 0 ? -x : 0.0f); break;
    case K_POWC_BW: FLOOP(c == 0.0f ? 0.0f : x * c * powf(y, c - 1.0f)); break;
    case K_CLAMP_BW: FLOOP(y >= c && y <= c2 ? x : 0.0f); break;
    case K_RPOWC_BW: FLOOP(x * y * c2); break;                               /* g·c^x·ln c */
    case K_DIV_BW_B: FLOOP(-x * y / (z * z)); break;                         /* -g a / b² */
    case K_POW_BW_A: FLOOP(z == 0.0f ? 0.0f : x * z * powf(y, z - 1.0f)); break;
    case K_POW_BW_B: FLOOP(y == 0.0f && z >= 0.0f ? 0.0f : x * powf(y, z) * logf(y)); break;
    }
}

static vt_tensor *fmap(const char *who, int kind, float c, float c2, int nin, const vt_tensor *x,
                       const vt_tensor *y, const vt_tensor *z) {
    fctx k = {kind, c, c2};
    const vt_tensor *in[3] = {x, y, z};
    return vt_map(who, VT_FLOAT32, nin, in, float_row, &k);
}


static int check_float_inputs(vt_ctx *c, int n) {
    VT_TRY(vt_need_inputs(c, n));
    for (int i = 0; i < n; i++) {
        if (!c->in[i]) return vt_fail(VT_ETYPE, "%s: argument %d is missing", vt_ops[c->op].name, i);
        if (c->in[i]->dtype != VT_FLOAT32)
            return vt_fail(VT_ETYPE, "%s: expected float32 tensors, argument %d is %s (convert with .float())",
                           vt_ops[c->op].name, i, vt_dtype_name(c->in[i]->dtype));
    }
    return VT_OK;
}

/* gradient g reduced to input i's shape (new ref) */
static vt_tensor *to_input(const vt_node *n, int i, const vt_tensor *g) {
    return vt_k_sum_to(g, n->in_meta[i].ndim, n->in_meta[i].shape);
}
/* ---- binary arithmetic ------------------------------------------------------------------- */

static int binary_forward(vt_ctx *c, int kind, int save_a, int save_b) {
    VT_TRY(check_float_inputs(c, 2));
    VT_TRY(out1(c, fmap(vt_ops[c->op].name, kind, 0, 0, 2, c->in[0], c->in[1], NULL)));
    if (save_a) VT_TRY(vt_save(c, c->in[0]));
    if (save_b) VT_TRY(vt_save(c, c->in[1]));
    return VT_OK;
}

/* gin[i] = sum_to(g * sign), for add and sub */
static int additive_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, float sign_b) {
    vt_tensor *g = grad0(n, gout);
    if (!g) return vt_last_code();
    if (wants(n, 0) && !(gin[0] = to_input(n, 0, g))) goto fail;
    if (wants(n, 1)) {
        vt_tensor *gb = sign_b < 0 ? vt_k_scale(g, -1.0f) : (vt_tensor_incref(g), g);
        if (!gb) goto fail;
        gin[1] = to_input(n, 1, gb);
        vt_tensor_decref(gb);
        if (!gin[1]) goto fail;
    }
    vt_tensor_decref(g);
    return VT_OK;
fail:
    vt_tensor_decref(g);
    return vt_last_code();
}

int vt_add_forward(vt_ctx *c) { return binary_forward(c, K_ADD, 0, 0); }
int vt_add_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return additive_backward(n, gout, gin, 1.0f); }
int vt_sub_forward(vt_ctx *c) { return binary_forward(c, K_SUB, 0, 0); }
int vt_sub_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return additive_backward(n, gout, gin, -1.0f); }

/* gin[i] = sum_to(expr(g, saved...)) */
static int reduce_into(vt_node *n, int i, vt_tensor *full, vt_tensor **gin) {
    if (!full) return vt_last_code();
    gin[i] = to_input(n, i, full);
    vt_tensor_decref(full);
    return gin[i] ? VT_OK : vt_last_code();
}

int vt_mul_forward(vt_ctx *c) { return binary_forward(c, K_MUL, c->needs_input_grad & 2, c->needs_input_grad & 1); }
/* saved: [a if b needs grad][b if a needs grad] in that order */
int vt_mul_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *g = grad0(n, gout);
    if (!g) return vt_last_code();
    int k = 0, st = VT_OK;
    vt_tensor *a = wants(n, 1) ? n->saved[k++] : NULL, *b = wants(n, 0) ? n->saved[k++] : NULL;
    if (wants(n, 0)) st = reduce_into(n, 0, vt_k_mul(g, b), gin);
    if (!st && wants(n, 1)) st = reduce_into(n, 1, vt_k_mul(g, a), gin);
    vt_tensor_decref(g);
    return st;
}

int vt_div_forward(vt_ctx *c) { return binary_forward(c, K_DIV, 1, 1); }
int vt_div_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *g = grad0(n, gout), *a = n->saved[0], *b = n->saved[1];
    if (!g) return vt_last_code();
    int st = VT_OK;
    if (wants(n, 0)) st = reduce_into(n, 0, fmap("div", K_DIV, 0, 0, 2, g, b, NULL), gin);
    if (!st && wants(n, 1)) st = reduce_into(n, 1, fmap("div", K_DIV_BW_B, 0, 0, 3, g, a, b), gin);
    vt_tensor_decref(g);
    return st;
}

int vt_pow_forward(vt_ctx *c) { return binary_forward(c, K_POW, 1, 1); }
int vt_pow_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *g = grad0(n, gout), *a = n->saved[0], *b = n->saved[1];
    if (!g) return vt_last_code();
    int st = VT_OK;
    if (wants(n, 0)) st = reduce_into(n, 0, fmap("pow", K_POW_BW_A, 0, 0, 3, g, a, b), gin);
    if (!st && wants(n, 1)) st = reduce_into(n, 1, fmap("pow", K_POW_BW_B, 0, 0, 3, g, a, b), gin);
    vt_tensor_decref(g);
    return st;
}

/* ---- unary ops: forward f(x), backward from the saved input (x) or output (y) --------------- */

static int unary_forward(vt_ctx *c, int kind, float k1, float k2, int save_in, int save_out) {
    VT_TRY(check_float_inputs(c, 1));
    VT_TRY(out1(c, fmap(vt_ops[c->op].name, kind, k1, k2, 1, c->in[0], NULL, NULL)));
    if (save_in) VT_TRY(vt_save(c, c->in[0]));
    if (save_out) VT_TRY(vt_save(c, c->out[0]));
    return VT_OK;
}

/* gin[0] = kind(g, saved[0]; c, c2) */
static int unary_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin, int kind, float k1, float k2) {
    vt_tensor *g = grad0(n, gout);
    if (!g) return vt_last_code();
    gin[0] = kind < 0 ? vt_k_scale(g, k1) : fmap(vt_ops[n->op].name, kind, k1, k2, 2, g, n->saved[0], NULL);
    vt_tensor_decref(g);
    return gin[0] ? VT_OK : vt_last_code();
}

#define SCALAR(n, op, name) ((float)(n)->args.f[FARG(op, name)])

int vt_add_scalar_forward(vt_ctx *c) { return unary_forward(c, K_ADDC, (float)c->args->f[FARG(add_scalar, other)], 0, 0, 0); }
int vt_add_scalar_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, -1, 1.0f, 0); }
int vt_mul_scalar_forward(vt_ctx *c) { return unary_forward(c, K_MULC, (float)c->args->f[FARG(mul_scalar, other)], 0, 0, 0); }
int vt_mul_scalar_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, -1, SCALAR(n, mul_scalar, other), 0); }
int vt_pow_scalar_forward(vt_ctx *c) { return unary_forward(c, K_POWC, (float)c->args->f[FARG(pow_scalar, exponent)], 0, 1, 0); }
int vt_pow_scalar_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_POWC_BW, SCALAR(n, pow_scalar, exponent), 0); }
int vt_rpow_scalar_forward(vt_ctx *c) { return unary_forward(c, K_RPOWC, (float)c->args->f[FARG(rpow_scalar, base)], 0, 0, 1); }
int vt_rpow_scalar_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_RPOWC_BW, 0, logf(SCALAR(n, rpow_scalar, base))); }
int vt_neg_forward(vt_ctx *c) { return unary_forward(c, K_NEG, 0, 0, 0, 0); }
int vt_neg_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, -1, -1.0f, 0); }
int vt_exp_forward(vt_ctx *c) { return unary_forward(c, K_EXP, 0, 0, 0, 1); }
int vt_exp_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_MUL, 0, 0); }
int vt_log_forward(vt_ctx *c) { return unary_forward(c, K_LOG, 0, 0, 1, 0); }
int vt_log_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_DIV, 0, 0); }
int vt_sqrt_forward(vt_ctx *c) { return unary_forward(c, K_SQRT, 0, 0, 0, 1); }
int vt_sqrt_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_SQRT_BW, 0, 0); }
int vt_rsqrt_forward(vt_ctx *c) { return unary_forward(c, K_RSQRT, 0, 0, 0, 1); }
int vt_rsqrt_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_RSQRT_BW, 0, 0); }
int vt_abs_forward(vt_ctx *c) { return unary_forward(c, K_ABS, 0, 0, 1, 0); }
int vt_abs_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) { return unary_backward(n, gout, gin, K_ABS_BW, 0, 0); }

/* clamp bounds: a missing bound is ±inf */
static void clamp_bounds(const vt_args *a, float *lo, float *hi) {
    *lo = a->i[IARG(clamp, has_min)] ? (float)a->f[FARG(clamp, min)] : -INFINITY;
    *hi = a->i[IARG(clamp, has_max)] ? (float)a->f[FARG(clamp, max)] : INFINITY;
}
int vt_clamp_forward(vt_ctx *c) {
    if (!c->args->i[IARG(clamp, has_min)] && !c->args->i[IARG(clamp, has_max)]) return vt_fail(VT_EVALUE, "clamp: at least one of min or max must be given");
    float lo, hi;
    clamp_bounds(c->args, &lo, &hi);
    return unary_forward(c, K_CLAMP, lo, hi, 1, 0);
}
int vt_clamp_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    float lo, hi;
    clamp_bounds(&n->args, &lo, &hi);
    return unary_backward(n, gout, gin, K_CLAMP_BW, lo, hi);
}

/* ---- where / masked_fill: a bool selector ------------------------------------------------- */

typedef struct { int mode; float value; } selctx; /* mode 0: where(c,x,y); 1: c ? 0 : x; 2: c ? x : 0; 3: c ? v : x */

static void select_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const selctx *k = vctx;
    float *o = (float *)p[0];
    const uint8_t *m = (const uint8_t *)p[1];
    const float *x = (const float *)p[2];
    int64_t so = s[0] / 4, sm = s[1], sx = s[2] / 4;
    if (k->mode == 0) {
        const float *y = (const float *)p[3];
        int64_t sy = s[3] / 4;
        for (int64_t i = 0; i < n; i++) o[i * so] = m[i * sm] ? x[i * sx] : y[i * sy];
    } else if (k->mode == 1) {
        for (int64_t i = 0; i < n; i++) o[i * so] = m[i * sm] ? 0.0f : x[i * sx];
    } else if (k->mode == 2) {
        for (int64_t i = 0; i < n; i++) o[i * so] = m[i * sm] ? x[i * sx] : 0.0f;
    } else {
        for (int64_t i = 0; i < n; i++) o[i * so] = m[i * sm] ? k->value : x[i * sx];
    }
}

static vt_tensor *select_map(const char *who, int mode, float v, const vt_tensor *m, const vt_tensor *x, const vt_tensor *y) {
    selctx k = {mode, v};
    const vt_tensor *in[3] = {m, x, y};
    return vt_map(who, VT_FLOAT32, y ? 3 : 2, in, select_row, &k);
}

int vt_where_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 3));
    VT_TRY(vt_require_dtype(c->in[0], VT_BOOL, "where", "condition"));
    VT_TRY(vt_require_f32(c->in[1], "where", "input"));
    VT_TRY(vt_require_f32(c->in[2], "where", "other"));
    VT_TRY(out1(c, select_map("where", 0, 0, c->in[0], c->in[1], c->in[2])));
    return vt_save(c, c->in[0]);
}
int vt_where_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *g = grad0(n, gout), *m = n->saved[0];
    if (!g) return vt_last_code();
    int st = VT_OK;
    if (wants(n, 1)) st = reduce_into(n, 1, select_map("where", 2, 0, m, g, NULL), gin);
    if (!st && wants(n, 2)) st = reduce_into(n, 2, select_map("where", 1, 0, m, g, NULL), gin);
    vt_tensor_decref(g);
    return st;
}

int vt_masked_fill_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    VT_TRY(vt_require_f32(c->in[0], "masked_fill", "input"));
    VT_TRY(vt_require_dtype(c->in[1], VT_BOOL, "masked_fill", "mask"));
    vt_tensor *x = c->in[0], *m = c->in[1];
    int nd;
    int64_t shape[VT_MAX_DIMS];
    VT_TRY(vt_broadcast_shapes(x->ndim, x->shape, m->ndim, m->shape, &nd, shape, "masked_fill"));
    if (nd != x->ndim || memcmp(shape, x->shape, sizeof(int64_t) * (size_t)nd)) {
        char b1[128], b2[128];
        return vt_fail(VT_ESHAPE, "masked_fill: mask of shape %s does not broadcast to the input's shape %s",
                       vt_shape_str(m->ndim, m->shape, b1, sizeof b1), vt_shape_str(x->ndim, x->shape, b2, sizeof b2));
    }
    VT_TRY(out1(c, select_map("masked_fill", 3, (float)c->args->f[FARG(masked_fill, value)], m, x, NULL)));
    return vt_save(c, m);
}
int vt_masked_fill_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *g = grad0(n, gout);
    if (!g) return vt_last_code();
    gin[0] = select_map("masked_fill", 1, 0, n->saved[0], g, NULL);
    vt_tensor_decref(g);
    return gin[0] ? VT_OK : vt_last_code();
}

/* ---- comparisons (float32 or int64 operands, bool result) -------------------------------- */

typedef struct { int kind; int is_int; double c; int scalar; } cmpctx;

#define CMP(a, b) (kind == 0 ? a == b : kind == 1 ? a != b : kind == 2 ? a < b : kind == 3 ? a <= b : kind == 4 ? a > b : a >= b)
static void cmp_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const cmpctx *k = vctx;
    int kind = k->kind;
    uint8_t *o = (uint8_t *)p[0];
    for (int64_t i = 0; i < n; i++) {
        double a = k->is_int ? (double)*(const int64_t *)(p[1] + i * s[1]) : (double)*(const float *)(p[1] + i * s[1]);
        double b = k->scalar ? k->c
                 : k->is_int ? (double)*(const int64_t *)(p[2] + i * s[2]) : (double)*(const float *)(p[2] + i * s[2]);
        o[i * s[0]] = (uint8_t)CMP(a, b);
    }
}

static int compare(vt_ctx *c, int kind, int scalar) {
    const char *who = vt_ops[c->op].name;
    vt_tensor *a = c->in[0], *b = scalar ? NULL : c->in[1];
    if (!a || (!scalar && !b)) return vt_fail(VT_ETYPE, "%s: missing operand", who);
    if (a->dtype == VT_BOOL || (b && b->dtype != a->dtype))
        return vt_fail(VT_ETYPE, "%s: operands must both be float32 or both int64, got %s and %s", who,
                       vt_dtype_name(a->dtype), vt_dtype_name(b ? b->dtype : a->dtype));
    cmpctx k = {kind, a->dtype == VT_INT64, scalar ? c->args->f[FARG(cmp_scalar, other)] : 0, scalar};
    const vt_tensor *in[2] = {a, b};
    return out1(c, vt_map(who, VT_BOOL, scalar ? 1 : 2, in, cmp_row, &k));
}
int vt_eq_forward(vt_ctx *c) { return compare(c, 0, 0); }
int vt_ne_forward(vt_ctx *c) { return compare(c, 1, 0); }
int vt_lt_forward(vt_ctx *c) { return compare(c, 2, 0); }
int vt_le_forward(vt_ctx *c) { return compare(c, 3, 0); }
int vt_gt_forward(vt_ctx *c) { return compare(c, 4, 0); }
int vt_ge_forward(vt_ctx *c) { return compare(c, 5, 0); }
int vt_cmp_scalar_forward(vt_ctx *c) {
    int64_t kind = c->args->i[IARG(cmp_scalar, kind)];
    if (kind < 0 || kind > 5) return vt_fail(VT_EVALUE, "cmp_scalar: unknown comparison %lld", (long long)kind);
    return compare(c, (int)kind, 1);
}

/* ---- casts, fill, copy --------------------------------------------------------------------- */

typedef struct { vt_dtype from, to; } castctx;
static void cast_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const castctx *k = vctx;
    for (int64_t i = 0; i < n; i++) {
        const char *src = p[1] + i * s[1];
        char *dst = p[0] + i * s[0];
        double v = k->from == VT_FLOAT32 ? *(const float *)src : k->from == VT_INT64 ? (double)*(const int64_t *)src
                 : k->from == VT_BFLOAT16 ? vt_bf16_to_f32(*(const uint16_t *)src) : *(const uint8_t *)src;
        /* int64 goes through float32 first, as torch's casts to float types do */
        float f = k->from == VT_INT64 ? (float)*(const int64_t *)src : (float)v;
        if (k->to == VT_FLOAT32) *(float *)dst = f;
        else if (k->to == VT_BFLOAT16) *(uint16_t *)dst = vt_f32_to_bf16(f);
        else if (k->to == VT_INT64) *(int64_t *)dst = k->from == VT_INT64 ? *(const int64_t *)src : (isfinite(v) ? (int64_t)v : 0);
        else *(uint8_t *)dst = v != 0;
    }
}

int vt_to_dtype_forward(vt_ctx *c) {
    int64_t dt = c->args->i[IARG(to_dtype, dtype)];
    if (dt < 0 || dt >= VT_NDTYPES) return vt_fail(VT_ETYPE, "to: unknown dtype code %lld", (long long)dt);
    castctx k = {c->in[0]->dtype, (vt_dtype)dt};
    const vt_tensor *in[1] = {c->in[0]};
    return out1(c, vt_map("to", (vt_dtype)dt, 1, in, cast_row, &k));
}
int vt_to_dtype_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    gin[0] = grad0(n, gout);
    return gin[0] ? VT_OK : vt_last_code();
}

static int check_inplace(vt_tensor *t, const char *who) {
    if (vt_grad_enabled() && t->requires_grad)
        return vt_fail(VT_ERUNTIME, "%s: a tensor that requires grad is being used in an in-place operation "
                       "(wrap it in vitc.no_grad())", who);
    /* core/tensor.h rule 7: an expanded destination keeps one of its several writes */
    if (vt_numel(t) > 0)
        for (int d = 0; d < t->ndim; d++)
            if (t->strides[d] == 0 && t->shape[d] > 1)
                return vt_fail(VT_ERUNTIME, "%s: unsupported operation: more than one element of the written-to "
                               "tensor refers to a single memory location (dimension %d is expanded); clone() "
                               "it first", who, d);
    return VT_OK;
}

/* [first, last] element of t's storage that t touches (strides are >= 0, numel > 0) */
static void element_span(const vt_tensor *t, int64_t *first, int64_t *last) {
    int64_t hi = t->offset;
    for (int d = 0; d < t->ndim; d++) hi += (t->shape[d] - 1) * t->strides[d];
    *first = t->offset;
    *last = hi;
}

/* src shares bytes with dst without being the very same view: copying element by element would
 * read values already overwritten (x.copy_(x.T)), so the caller reads a temporary copy instead */
static int partially_overlaps(const vt_tensor *dst, const vt_tensor *src) {
    if (dst->storage != src->storage || vt_numel(dst) == 0 || vt_numel(src) == 0) return 0;
    if (dst->dtype == src->dtype && dst->offset == src->offset && dst->ndim == src->ndim &&
        !memcmp(dst->shape, src->shape, sizeof(int64_t) * (size_t)dst->ndim) &&
        !memcmp(dst->strides, src->strides, sizeof(int64_t) * (size_t)dst->ndim))
        return 0;
    int64_t a0, a1, b0, b1;
    element_span(dst, &a0, &a1);
    element_span(src, &b0, &b1);
    int64_t ea = (int64_t)vt_dtype_size(dst->dtype), eb = (int64_t)vt_dtype_size(src->dtype);
    return a0 * ea < (b1 + 1) * eb && b0 * eb < (a1 + 1) * ea; /* byte ranges intersect */
}

int vt_fill_forward(vt_ctx *c) {
    vt_tensor *t = c->in[0];
    VT_TRY(check_inplace(t, "fill_"));
    vt_tensor *v = vt_full(t->dtype, 0, NULL, c->args->f[FARG(fill_, value)]);
    if (!v) return vt_last_code();
    vt_tensor *e = vt_view_of(v, t->ndim, t->shape, (int64_t[VT_MAX_DIMS]){0}, 0);
    vt_tensor_decref(v);
    if (!e) return vt_last_code();
    int st = vt_copy_into(t, e);
    vt_tensor_decref(e);
    if (st) return st;
    vt_mark_modified(t);
    vt_tensor_incref(t);
    return out1(c, t);
}

int vt_copy_forward(vt_ctx *c) {
    vt_tensor *dst = c->in[0], *src = c->in[1];
    if (!dst || !src) return vt_fail(VT_ETYPE, "copy_: missing operand");
    VT_TRY(check_inplace(dst, "copy_"));
    int nd;
    int64_t shape[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    VT_TRY(vt_broadcast_shapes(dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape, "copy_"));
    if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd)) {
        char b1[128], b2[128];
        return vt_fail(VT_ESHAPE, "copy_: source of shape %s does not broadcast to the destination's shape %s",
                       vt_shape_str(src->ndim, src->shape, b1, sizeof b1), vt_shape_str(dst->ndim, dst->shape, b2, sizeof b2));
    }
    vt_broadcast_strides(src, nd, shape, strides);
    vt_tensor *e = vt_view_of(src, nd, shape, strides, src->offset), *conv = NULL;
    if (!e) return vt_last_code();
    if (partially_overlaps(dst, e)) {
        vt_tensor *tmp = vt_clone(e);
        vt_tensor_decref(e);
        if (!tmp) return vt_last_code();
        e = tmp;
    }
    if (e->dtype != dst->dtype) {
        castctx k = {e->dtype, dst->dtype};
        const vt_tensor *in[1] = {e};
        conv = vt_map("copy_", dst->dtype, 1, in, cast_row, &k);
        vt_tensor_decref(e);
        if (!conv) return vt_last_code();
        e = conv;
    }
    int st = vt_copy_into(dst, e);
    vt_tensor_decref(e);
    if (st) return st;
    vt_mark_modified(dst);
    vt_tensor_incref(dst);
    return out1(c, dst);
}
