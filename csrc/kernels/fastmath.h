/* vitc kernels: branch-free float math (exp, tanh, sigmoid, the normal CDF) for loops GCC
 * vectorizes: no libm calls, selects instead of branches. libm's expf/tanhf/erff are scalar calls
 * and were 5-20x slower than a vectorized kernel. Polynomials are our own least-squares or
 * minimax fits (relative error of the fit: exp 3e-9, tanh 1.3e-7 on |x| < 0.625, the normal CDF
 * below); results are within a few ulp of the correctly rounded values, bar the normal CDF's far
 * tail (below), and tests compare with PyTorch at rtol 1e-5.
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
 * With u = |x|: Φ(−u) = e^{−u²/2}·P(u)/Q(u), where P/Q (degrees 4 and 5) is our relative minimax
 * fit of Φ(−u)·e^{u²/2} = ½·erfcx(u/√2) on u in [0, 13.2] (relative error 3.5e-8 with these float
 * coefficients, a linear program on a dense grid; it falls like 1/(u√(2π)), Mills' ratio, hence
 * a rational form), and
 * Φ(u) = 1 − Φ(−u). e^{−u²/2} = 2^−n·e^{−r/2}, n = round(u²/(2 ln 2)), r = u² − n·2 ln 2 in
 * [−ln 2, ln 2] (Cody–Waite, 2 ln 2 in two parts); e^{−r/2} is a degree-5 fit (relative error
 * 1.2e-7) scaled by 2^−40 and n goes in as one factor 2^(40−n), so values below 2^−126 round once
 * into the denormals. Relative accuracy holds in the lower tail, where ½(1 + erf) would cancel:
 * against float64, Φ(x) for x <= 0 is within 4e-7 down to x = −2 and 4.2e-6 at x = −13 (the
 * rounding of u², 2^−24 relative, is u²·2^−25 in e^{−u²/2}). u is clamped to 15 (Φ(−15) ≈ 4e-51
 * is 0 in float; 2^(40−n) stays normal); NaN passes the clamp and stays NaN. GELU's AVX-512
 * loop is 38 instructions, 20 of them multiplies or FMAs, and one division (the former form,
 * t = 1/(1 + pu), a degree-7 polynomial in t and vt_expf: 59 and 26; 1.5x the time). */
static inline uint32_t vt_f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float vt_normcdf_gauss(float x, float *gauss) {
    float u = __builtin_fabsf(x);
    u = u > 15.0f ? 15.0f : u;
    float u2 = u * u;
    float s = u2 * 0.721347511f + 12582912.0f, nf = s - 12582912.0f; /* s = 1.5·2^23 + n: its low bits hold n */
    float r = (u2 - nf * 1.38671875f) - nf * -4.24388883e-4f;
    float p = -2.40425405e-16f;
    p = p * r + 2.38506817e-15f;
    p = p * r - 1.89465549e-14f;
    p = p * r + 1.13683341e-13f;
    p = p * r - 4.54747405e-13f;
    p = p * r + 9.0949481e-13f;
    float g = p * vt_bits_f((0x4B400000u + 167u - vt_f_bits(s)) << 23); /* 2^(40−n) */
    float P = 0.398948044f;
    P = P * u + 3.97055221f;
    P = P * u + 18.0132618f;
    P = P * u + 43.3043861f;
    P = P * u + 49.7234344f;
    float Q = u + 9.95344162f;
    Q = Q * u + 46.1359711f;
    Q = Q * u + 118.716354f;
    Q = Q * u + 165.955933f;
    Q = Q * u + 99.4468689f;
    float lower = P * g / Q; /* Φ(−u) */
    *gauss = g;
    return x > 0 ? 1.0f - lower : lower;
}

static inline float vt_normcdff(float x) {
    float g;
    return vt_normcdf_gauss(x, &g);
}

#endif
