/* vitc kernels: branch-free float math (exp, tanh, sigmoid, the normal CDF) for loops GCC
 * vectorizes: no libm calls, selects instead of branches. libm's expf/tanhf/erff are scalar calls
 * and were 5-20x slower than a vectorized kernel. Polynomials are our own least-squares fits
 * (relative error of the fit: exp 3e-9, tanh 1.3e-7 on |x| < 0.625, erfc 1.3e-7); results are
 * within a few ulp of the correctly rounded values (tests compare with PyTorch at rtol 1e-5).
 * Wrap hot loops in a function marked VT_SIMD_CLONES (core/simd.h) to get AVX-512 and AVX2 + FMA
 * versions picked at load time, and compile the file with
 * `#pragma GCC optimize ("no-trapping-math")` before its includes: under GCC's default
 * -ftrapping-math the selects below are not if-converted and nothing vectorizes (vitc never
 * enables floating-point traps, so the flag changes no result). */
#ifndef VT_KERNELS_FASTMATH_H
#define VT_KERNELS_FASTMATH_H
#include <stdint.h>
#include <string.h>

static inline float vt_bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* e^x: n = round(x/ln2) by the 1.5·2^23 trick, r = x − n·ln2 in two parts (Cody–Waite),
 * e^r = 1 + r + r²·P(r), times 2^h·2^(n−h), h = n/2, so overflow to inf and underflow through
 * the denormals to 0 happen in the final multiply as IEEE says. Clamping x to [−110, 89] keeps
 * n in range (e^−110 rounds to 0, e^89 to inf); NaN stays NaN. */
static inline float vt_expf(float x) {
    float xc = x < -110.0f ? -110.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    float nf = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = xc - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 0.00138146f;
    p = p * r + 0.00836871f;
    p = p * r + 0.04166839f;
    p = p * r + 0.16666521f;
    p = p * r + 0.49999993f;
    p = p * (r * r) + r + 1.0f;
    int32_t n = (int32_t)nf, h = n >> 1;
    return p * vt_bits_f((uint32_t)(h + 127) << 23) * vt_bits_f((uint32_t)(n - h + 127) << 23);
}

/* tanh: x + x³·P(x²) for |x| < 0.625, else 1 − 2/(e^{2|x|} + 1); the sign of x restored */
static inline float vt_tanhf(float x) {
    float a = x < 0 ? -x : x, a2 = a * a;
    float p = -0.0060969f;
    p = p * a2 + 0.02099732f;
    p = p * a2 - 0.05385094f;
    p = p * a2 + 0.1333277f;
    p = p * a2 - 0.33333329f;
    float small = a + a * a2 * p;
    float big = 1.0f - 2.0f / (vt_expf(2.0f * a) + 1.0f);
    float t = a < 0.625f ? small : big;
    return x < 0 ? -t : t;
}

static inline float vt_sigmoidf(float x) { return 1.0f / (1.0f + vt_expf(-x)); }

/* Φ(x) = ½·erfc(−x/√2), and e^{−x²/2} (= √(2π)·φ(x)) on the side for the GELU derivative.
 * erfc(z), z >= 0, = t·e^{−z²}·P(t), t = 1/(1 + 0.435z) (the form of Abramowitz–Stegun 7.1.26;
 * P is our degree-7 fit of erfc(z)·e^{z²}/t on z in [0, 12], relative error 1.3e-7; beyond, e^{−z²}
 * underflows), and erfc(−z) = 2 − erfc(z). Relative accuracy is kept in the lower tail, where
 * ½(1 + erf) would cancel. */
static inline float vt_normcdf_gauss(float x, float *gauss) {
    float z = x * -0.70710678f, a = z < 0 ? -z : z;
    float t = 1.0f / (1.0f + 0.435f * a);
    float q = 0.0725933066f;
    q = q * t - 0.294367728f;
    q = q * t + 0.339451417f;
    q = q * t - 0.0514338663f;
    q = q * t + 0.230315522f;
    q = q * t + 0.211511308f;
    q = q * t + 0.246557822f;
    q = q * t + 0.245372346f;
    float g = vt_expf(-a * a), e = t * q * g;
    *gauss = g;
    return 0.5f * (z < 0 ? 2.0f - e : e);
}

static inline float vt_normcdff(float x) {
    float g;
    return vt_normcdf_gauss(x, &g);
}

#endif
