/* vitc kernels: pointwise activations and their gradients, one expression per kind applied by
 * act_row over broadcast operands; the activation op family runs them through vt_k_act, and the
 * fused feed-forward layer uses the GELU entry points (same expressions, so the same bits).
 *
 * GELU (Hendrycks & Gimpel, "Gaussian Error Linear Units", arXiv 1606.08415, §2): exact
 * x·Φ(x), derivative Φ(x) + x·φ(x); tanh form ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³),
 * computed as x·σ(2u), derivative σ(2u) + 2x·σ(2u)(1 − σ(2u))·√(2/π)(1 + 3·0.044715x²). */
/* no FP traps are ever enabled; without this the vt_*f math of fastmath.h does not vectorize */
#pragma GCC optimize ("no-trapping-math")
#include "activation.h"
#include "fastmath.h"
#include "map.h"
#include "../core/simd.h"

typedef struct { int kind; float c; } actx;

#define INV_SQRT_2PI 0.39894228040143267794f /* 1/√(2π) */
#define SQRT_2_PI 0.79788456080286535588f   /* √(2/π) */
#define GELU_K 0.044715f

/* tanh-form GELU as x·σ(2u): ½(1 + tanh u) = σ(2u), which does not cancel for x << 0 */
static inline float gelu_tanh_sig(float x) { return vt_sigmoidf(2.0f * SQRT_2_PI * (x + GELU_K * x * x * x)); }
/* GELU'(x) from Φ(x) and e^{−x²/2}: Φ + x·φ */
static inline float gelu_grad(float x, float cdf, float gauss) { return cdf + x * INV_SQRT_2PI * gauss; }
/* the tanh form's derivative from s = σ(2u): s + 2x·s(1−s)·u', u' = √(2/π)(1 + 3k x²) */
static inline float gelu_tanh_grad(float x, float sg) {
    return sg + 2.0f * x * sg * (1.0f - sg) * SQRT_2_PI * (1.0f + 3.0f * GELU_K * x * x);
}

#define ALOOP(E)                                                                        \
    do {                                                                                \
        if (so == 1 && sx == 1 && sy == 1)                                              \
            for (int64_t i = 0; i < n; i++) { float x = X[i], y = Y[i]; (void)y; O[i] = (E); } \
        else                                                                            \
            for (int64_t i = 0; i < n; i++) { float x = X[i * sx], y = Y[i * sy]; (void)y; O[i * so] = (E); } \
    } while (0)

/* forward kinds read x; backward kinds read x = g and y = the saved tensor */
VT_SIMD_CLONES static void act_row(int64_t n, char **p, const int64_t *s, void *vctx) {
    const actx *k = vctx;
    float *O = (float *)p[0];
    const float *X = (const float *)p[1];
    int bw = k->kind >= A_TANH_BW;
    const float *Y = bw ? (const float *)p[2] : X;
    int64_t so = s[0] / 4, sx = s[1] / 4, sy = bw ? s[2] / 4 : sx;
    const float c = k->c;
    switch (k->kind) {
    case A_TANH: ALOOP(vt_tanhf(x)); break;
    case A_SIGMOID: ALOOP(vt_sigmoidf(x)); break;
    case A_RELU: ALOOP(x < 0.0f ? 0.0f : x); break; /* NaN passes through */
    case A_LEAKY: ALOOP(x > 0.0f ? x : x * c); break;
    case A_SILU: ALOOP(x * vt_sigmoidf(x)); break;
    case A_GELU: ALOOP(x * vt_normcdff(x)); break;
    case A_GELU_TANH: ALOOP(x * gelu_tanh_sig(x)); break;
    case A_TANH_BW: ALOOP(x * (1.0f - y * y)); break;
    case A_SIGMOID_BW: ALOOP(x * y * (1.0f - y)); break;
    case A_RELU_BW: ALOOP(y > 0.0f ? x : 0.0f); break;
    case A_LEAKY_BW: ALOOP(y > 0.0f ? x : x * c); break;
    case A_SILU_BW: ALOOP(({ float sg = vt_sigmoidf(y); x * sg * (1.0f + y * (1.0f - sg)); })); break;
    case A_GELU_BW: ALOOP(({ float gs, cdf = vt_normcdf_gauss(y, &gs); x * gelu_grad(y, cdf, gs); })); break;
    case A_GELU_TANH_BW: ALOOP(x * gelu_tanh_grad(y, gelu_tanh_sig(y))); break;
    }
}

/* GELU(h) into a and GELU'(h) into d in one pass: the two share Φ(h) and the Gaussian (or σ(2u)),
 * so the FFN backward evaluates them once instead of twice. The expressions are the A_GELU* ones
 * above: a is vt_k_gelu's bits and g·d vt_k_gelu_backward's. */
VT_SIMD_CLONES static void gelu_pair_row(int64_t n, char **p, const int64_t *s, void *approximate) {
    float *A = (float *)p[0], *D = (float *)p[1];
    const float *H = (const float *)p[2];
    (void)s; /* contiguous operands only (vt_gelu_with_grad) */
    if (*(const int *)approximate)
        for (int64_t i = 0; i < n; i++) {
            float x = H[i], sg = gelu_tanh_sig(x);
            A[i] = x * sg;
            D[i] = gelu_tanh_grad(x, sg);
        }
    else
        for (int64_t i = 0; i < n; i++) {
            float x = H[i], gs, cdf = vt_normcdf_gauss(x, &gs);
            A[i] = x * cdf;
            D[i] = gelu_grad(x, cdf, gs);
        }
}

vt_tensor *vt_k_act(const char *who, int kind, float c, const vt_tensor *a, const vt_tensor *b) {
    actx k = {kind, c};
    const vt_tensor *in[2] = {a, b};
    return vt_map(who, VT_FLOAT32, b ? 2 : 1, in, act_row, &k);
}

vt_tensor *vt_k_gelu(const vt_tensor *x, int approximate) {
    return vt_k_act("gelu", approximate ? A_GELU_TANH : A_GELU, 0, x, NULL);
}

void vt_gelu_floats(float *out, const float *in, int64_t n, int approximate) {
    actx k = {approximate ? A_GELU_TANH : A_GELU, 0};
    char *p[2] = {(char *)out, (char *)in};
    const int64_t s[2] = {sizeof(float), sizeof(float)};
    act_row(n, p, s, &k);
}

vt_tensor *vt_k_gelu_backward(const vt_tensor *g, const vt_tensor *x, int approximate) {
    return vt_k_act("gelu", approximate ? A_GELU_TANH_BW : A_GELU_BW, 0, g, x);
}

int vt_gelu_with_grad(const vt_tensor *h, int approximate, vt_tensor **a_out, vt_tensor **d_out) {
    *a_out = *d_out = NULL;
    if (h->dtype != VT_FLOAT32) return vt_fail(VT_ETYPE, "gelu: expected a float32 tensor, got %s", vt_dtype_name(h->dtype));
    vt_tensor *hc = vt_contiguous((vt_tensor *)h), *a = NULL, *d = NULL;
    if (!hc || !(a = vt_empty(VT_FLOAT32, h->ndim, h->shape)) || !(d = vt_empty(VT_FLOAT32, h->ndim, h->shape))) {
        int st = vt_last_code();
        vt_tensor_decref(hc);
        vt_tensor_decref(a);
        return st;
    }
    int64_t n = vt_numel(h), strides[3][VT_MAX_DIMS] = {{4}, {4}, {4}};
    char *base[3] = {(char *)vt_f32(a), (char *)vt_f32(d), (char *)vt_f32(hc)};
    vt_iter(1, &n, 3, base, strides, gelu_pair_row, &approximate);
    vt_tensor_decref(hc);
    *a_out = a;
    *d_out = d;
    return VT_OK;
}
