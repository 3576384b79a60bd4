/* vitc ops, attention: the AVX-512 builds of the row kernels of kernels.c (softmax, its one-pass
 * rebuild from saved statistics, and its backward), picked by vt_attn_kernels() when
 * vt_use_avx512_kernels() (kernels/cpu.h).
 *
 * They give the AVX2 build's bits: every element goes through the same operations in the same
 * order (exp16 is exp8 op for op, its 2^n step a vscalefps, which rounds y·2^n as the AVX2
 * multiply by the built power of two does), and every row sum is accumulated in 8 lanes chunk by
 * chunk and folded by the same halving tree. What differs is the schedule: rows go four at a time
 * so the per-row chains (max, Σ, 1/Σ, the dot of the backward) overlap instead of each row waiting
 * on the previous one's, which is what bounded the AVX2 loops on ViT-sized rows (17 to 200 columns),
 * and the exp takes ~15 instructions a vector instead of ~21 (mask registers for the underflow lanes
 * and the clamp, vscalefps for the exponent). Zen 4 runs a zmm operation as two 256-bit halves, so
 * the gain is in instructions and overlap, not in lanes. */
#include <immintrin.h>
#include <math.h>
#include "attention.h"

#define AI512 static inline __attribute__((always_inline, target("avx512f,avx512vl,avx2,fma")))
#define T512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define GROUP 4 /* rows in flight */

/* the lanes of an 8-column chunk that lie before column n, the chunk starting at column j */
AI512 __mmask8 lanes_before(int64_t n, int64_t j) {
    int64_t left = n - j;
    return left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1u);
}

/* kernels.c's exp8, op for op: x <= 0 (NaN stays NaN), exactly 0 below -87.3365 */
AI512 __m256 exp8vl(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3365f), magic = _mm256_set1_ps(12582912.0f);
    __mmask8 under = _mm256_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm256_mask_mov_ps(x, under, lo);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    return _mm256_maskz_scalef_ps((__mmask8)~under, y, n);
}

/* kernels.c's allsum8 tree: lane 0 = ((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7)) */
AI512 float sum8(__m256 v) {
    v = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 1));
    v = _mm256_add_ps(v, _mm256_permute_ps(v, 0x4E));
    v = _mm256_add_ps(v, _mm256_permute_ps(v, 0xB1));
    return _mm256_cvtss_f32(v);
}

/* softmax of G rows (n a multiple of 8, padded with -inf), as kernels.c's softmax_rows_body does
 * each row; 0 when done, 1 when a row has no finite entry (the caller then goes row by row) */
AI512 int softmax_group(const int G, float *s, int64_t ld, int64_t n, float *stats) {
    __m256 vm[GROUP];
    float mx[GROUP];
    for (int g = 0; g < G; g++) {
        __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0; /* max(new, m): a NaN in new keeps m, as the AVX2 compare-and-select does */
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) {
            m0 = _mm256_max_ps(_mm256_loadu_ps(s + g * ld + j), m0);
            m1 = _mm256_max_ps(_mm256_loadu_ps(s + g * ld + j + 8), m1);
        }
        if (j < n) m0 = _mm256_max_ps(_mm256_loadu_ps(s + g * ld + j), m0);
        m0 = _mm256_max_ps(m0, m1);
        m0 = _mm256_max_ps(m0, _mm256_permute2f128_ps(m0, m0, 1));
        m0 = _mm256_max_ps(m0, _mm256_permute_ps(m0, 0x4E));
        m0 = _mm256_max_ps(m0, _mm256_permute_ps(m0, 0xB1));
        vm[g] = m0;
        mx[g] = _mm256_cvtss_f32(m0);
    }
    for (int g = 0; g < G; g++)
        if (mx[g] == -INFINITY) {
            if (G > 1) return 1;
            float fill = 0.0f;
            for (int64_t j = 0; j < n; j++) fill = s[j] != s[j] ? NAN : fill;
            for (int64_t j = 0; j < n; j++) s[j] = fill;
            if (stats) { stats[0] = -INFINITY; stats[1] = fill; }
            return 0;
        }
    __m256 acc[GROUP];
    for (int g = 0; g < G; g++) acc[g] = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; j += 8)
        for (int g = 0; g < G; g++) {
            __m256 e = exp8vl(_mm256_sub_ps(_mm256_loadu_ps(s + g * ld + j), vm[g]));
            _mm256_storeu_ps(s + g * ld + j, e);
            acc[g] = _mm256_add_ps(acc[g], e);
        }
    __m256 inv[GROUP];
    for (int g = 0; g < G; g++) {
        float iv = 1.0f / sum8(acc[g]);
        inv[g] = _mm256_set1_ps(iv);
        if (stats) { stats[2 * g] = mx[g]; stats[2 * g + 1] = iv; }
    }
    for (int64_t j = 0; j < n; j += 8)
        for (int g = 0; g < G; g++) _mm256_storeu_ps(s + g * ld + j, _mm256_mul_ps(_mm256_loadu_ps(s + g * ld + j), inv[g]));
    return 0;
}

T512 void vt_attn_softmax_rows_avx512(float *s, int64_t rows, int64_t n, int64_t ld, float *stats) {
    int64_t i = 0;
    for (; i + GROUP <= rows; i += GROUP)
        if (softmax_group(GROUP, s + i * ld, ld, n, stats ? stats + 2 * i : NULL))
            for (int64_t r = i; r < i + GROUP; r++) softmax_group(1, s + r * ld, ld, n, stats ? stats + 2 * r : NULL);
    for (; i < rows; i++) softmax_group(1, s + i * ld, ld, n, stats ? stats + 2 * i : NULL);
}

T512 void vt_attn_softmax_known_rows_avx512(float *s, int64_t rows, int64_t n, int64_t ld, const float *stats) {
    for (int64_t i = 0; i < rows; i++, s += ld) {
        float mx = stats[2 * i], inv_s = stats[2 * i + 1];
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < n; j++) s[j] = inv_s;
            continue;
        }
        __m256 vm = _mm256_set1_ps(mx), inv = _mm256_set1_ps(inv_s);
        for (int64_t j = 0; j < n; j += 8)
            _mm256_storeu_ps(s + j, _mm256_mul_ps(exp8vl(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm)), inv));
    }
}

/* dp <- p⊙(dp − Σ dp⊙p) for G rows over the first n columns: the dot in 8 lanes chunk by chunk, the
 * last partial chunk in the top lanes, as kernels.c's dsoftmax_rows_body */
AI512 void dsoftmax_group(const int G, const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t n) {
    __m256 acc[GROUP];
    for (int g = 0; g < G; g++) acc[g] = _mm256_setzero_ps();
    int64_t n8 = n & ~(int64_t)7;
    for (int64_t j = 0; j < n8; j += 8)
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(p + g * ldp + j), _mm256_loadu_ps(dp + g * lddp + j), acc[g]);
    __mmask8 k = lanes_before(n, n8), top = (__mmask8)(0xFF << (8 - (n - n8)));
    if (k) /* lane l: column n − 8 + l, zero below column n8 (masked lanes do not fault, n < 8 included) */
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(top, p + g * ldp + n - 8),
                                     _mm256_maskz_loadu_ps(top, dp + g * lddp + n - 8), acc[g]);
    __m256 vd[GROUP];
    for (int g = 0; g < G; g++) vd[g] = _mm256_set1_ps(sum8(acc[g]));
    for (int64_t j = 0; j < n8; j += 8)
        for (int g = 0; g < G; g++)
            _mm256_storeu_ps(dp + g * lddp + j, _mm256_mul_ps(_mm256_loadu_ps(p + g * ldp + j),
                                                              _mm256_sub_ps(_mm256_loadu_ps(dp + g * lddp + j), vd[g])));
    if (k)
        for (int g = 0; g < G; g++) {
            __m256 pv = _mm256_maskz_loadu_ps(k, p + g * ldp + n8), dv = _mm256_maskz_loadu_ps(k, dp + g * lddp + n8);
            _mm256_mask_storeu_ps(dp + g * lddp + n8, k, _mm256_mul_ps(pv, _mm256_sub_ps(dv, vd[g])));
        }
}

T512 void vt_attn_dsoftmax_rows_avx512(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, int64_t n) {
    int64_t i = 0;
    for (; i + GROUP <= rows; i += GROUP) dsoftmax_group(GROUP, p + i * ldp, ldp, dp + i * lddp, lddp, n);
    for (; i < rows; i++) dsoftmax_group(1, p + i * ldp, ldp, dp + i * lddp, lddp, n);
}

/* ---- scores and softmax in one pass, for rows that fit in registers ------------------------------ */

/* acc (R × NV vectors) = a (R rows at lda) · b (kd × NV·8, packed strip-major by pack_bt: strips of
 * 16 columns, the last one 8 when NV is odd), one FMA per k from zero as kernels.c's tile() */
AI512 void product_tile(const int R, const int NV, int64_t kd, const float *a, int64_t lda, const float *bp,
                        __m256 acc[8][8]) {
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kd; k++) {
        __m256 b[8];
        for (int u = 0; u < NV; u++) {
            int st = u / 2, w = 2 * st + 2 <= NV ? 16 : 8;
            b[u] = _mm256_loadu_ps(bp + st * 16 * kd + k * w + (u % 2) * 8);
        }
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_set1_ps(a[r * lda + k]);
            for (int u = 0; u < NV; u++) acc[r][u] = _mm256_fmadd_ps(av, b[u], acc[r][u]);
        }
    }
}

/* R rows of P = softmax(alpha·q·kᵀ) over NV·8 columns (tk real, the rest padding), with kᵀ packed
 * strip-major by pack_bt (strips of 16 columns, the last one 8 when NV is odd). The scores are
 * accumulated as kernels.c's tile() does (one FMA per k from zero, then ·alpha), the pad set to -inf
 * as vt_attn_probs does, and the softmax run on the registers with softmax_group's operations; with
 * stats_in, the one-pass rebuild of softmax_known_rows instead. So P has the two-pass path's bits
 * without being written as scores and read back three times. A row with no finite score goes
 * through the row kernel from memory. */
AI512 void probs_tile(const int R, const int NV, int64_t kd, float alpha, const float *q, int64_t ldq,
                      const float *bp, int64_t tk, float *p, int64_t ldp, float *stats_out, const float *stats_in) {
    __m256 acc[8][8];
    product_tile(R, NV, kd, q, ldq, bp, acc);
    const __m256 va = _mm256_set1_ps(alpha), ninf = _mm256_set1_ps(-INFINITY);
    __mmask8 pad = (__mmask8)~lanes_before(tk, 8 * (NV - 1)); /* only the last vector holds padding */
    for (int r = 0; r < R; r++) {
        for (int u = 0; u < NV; u++) acc[r][u] = _mm256_mul_ps(acc[r][u], va);
        acc[r][NV - 1] = _mm256_mask_mov_ps(acc[r][NV - 1], pad, ninf);
    }
    if (stats_in) {
        for (int r = 0; r < R; r++) {
            float mx = stats_in[2 * r], inv_s = stats_in[2 * r + 1];
            __m256 vm = _mm256_set1_ps(mx), inv = _mm256_set1_ps(inv_s);
            for (int u = 0; u < NV; u++)
                _mm256_storeu_ps(p + r * ldp + 8 * u, mx == -INFINITY ? inv : _mm256_mul_ps(exp8vl(_mm256_sub_ps(acc[r][u], vm)), inv));
        }
        return;
    }
    __m256 vm[8];
    int empty = 0;
    for (int r = 0; r < R; r++) {
        __m256 m = ninf;
        for (int u = 0; u < NV; u++) m = _mm256_max_ps(acc[r][u], m);
        m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
        m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4E));
        vm[r] = _mm256_max_ps(m, _mm256_permute_ps(m, 0xB1));
        empty |= _mm256_cvtss_f32(vm[r]) == -INFINITY;
    }
    if (empty) {
        for (int r = 0; r < R; r++)
            for (int u = 0; u < NV; u++) _mm256_storeu_ps(p + r * ldp + 8 * u, acc[r][u]);
        vt_attn_softmax_rows_avx512(p, R, 8 * NV, ldp, stats_out);
        return;
    }
    for (int r = 0; r < R; r++) {
        __m256 sum = _mm256_setzero_ps();
        for (int u = 0; u < NV; u++) {
            acc[r][u] = exp8vl(_mm256_sub_ps(acc[r][u], vm[r]));
            sum = _mm256_add_ps(sum, acc[r][u]);
        }
        float iv = 1.0f / sum8(sum);
        __m256 inv = _mm256_set1_ps(iv);
        for (int u = 0; u < NV; u++) _mm256_storeu_ps(p + r * ldp + 8 * u, _mm256_mul_ps(acc[r][u], inv));
        if (stats_out) { stats_out[2 * r] = _mm256_cvtss_f32(vm[r]); stats_out[2 * r + 1] = iv; }
    }
}

/* R rows of dS = P⊙(dP − rowsum(dP⊙P)) with dP = dout·vᵀ (vᵀ packed by pack_bt) in registers: the
 * product as gemm's tile (its ·1 leaves the bits alone), the row dot in 8 lanes vector by vector (a
 * partial last vector rotated to the top lanes, as dsoftmax_rows lays it), then the same elementwise
 * step: gemm + dsoftmax_rows' bits, dP never stored and reread. */
AI512 void dscores_tile(const int R, const int NV, int64_t kd, const float *dout, int64_t lddo, const float *bp,
                        int64_t tk, const float *p, int64_t ldp, float *ds, int64_t ldds) {
    __m256 acc[8][8];
    product_tile(R, NV, kd, dout, lddo, bp, acc);
    int64_t rest = tk - 8 * (NV - 1); /* columns in the last vector, 1 to 8 */
    __mmask8 last = lanes_before(tk, 8 * (NV - 1)), top = (__mmask8)(0xFF << (8 - rest));
    const __m256i rot = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)rest - 8));
    for (int r = 0; r < R; r++) {
        __m256 pv[8], dot = _mm256_setzero_ps();
        for (int u = 0; u < NV; u++) {
            pv[u] = u < NV - 1 ? _mm256_loadu_ps(p + r * ldp + 8 * u) : _mm256_maskz_loadu_ps(last, p + r * ldp + 8 * u);
            if (u < NV - 1 || rest == 8) dot = _mm256_fmadd_ps(pv[u], acc[r][u], dot);
            else /* a partial last chunk as dsoftmax_rows takes it: lane l holds column tk − 8 + l, zero below */
                dot = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(top, p + r * ldp + tk - 8),
                                      _mm256_maskz_permutexvar_ps(top, rot, acc[r][u]), dot);
        }
        __m256 vd = _mm256_set1_ps(sum8(dot));
        for (int u = 0; u < NV; u++)
            _mm256_storeu_ps(ds + r * ldds + 8 * u, _mm256_mul_ps(pv[u], _mm256_sub_ps(acc[r][u], vd)));
    }
}

/* all tq rows of a fused kernel: R-row tiles, then one tile of the rows left */
#define TILE_ROWS(tile, R, tq, ...)                                                          \
    do {                                                                                      \
        int64_t i_ = 0;                                                                       \
        for (; i_ + (R) <= (tq); i_ += (R)) tile((R), i_, __VA_ARGS__);                       \
        switch ((tq) - i_) {                                                                  \
            case 1: if (1 < (R)) tile(1, i_, __VA_ARGS__); break;                             \
            case 2: if (2 < (R)) tile(2, i_, __VA_ARGS__); break;                             \
            case 3: if (3 < (R)) tile(3, i_, __VA_ARGS__); break;                             \
            case 4: if (4 < (R)) tile(4, i_, __VA_ARGS__); break;                             \
            case 5: if (5 < (R)) tile(5, i_, __VA_ARGS__); break;                             \
            case 6: if (6 < (R)) tile(6, i_, __VA_ARGS__); break;                             \
            case 7: if (7 < (R)) tile(7, i_, __VA_ARGS__); break;                             \
            default: break;                                                                   \
        }                                                                                     \
    } while (0)

AI512 void probs_at(const int R, int64_t i, const int NV, int64_t tk, int64_t kd, float alpha, const float *q,
                    int64_t ldq, const float *bp, float *p, int64_t ldp, float *stats_out, const float *stats_in) {
    probs_tile(R, NV, kd, alpha, q + i * ldq, ldq, bp, tk, p + i * ldp, ldp, stats_out ? stats_out + 2 * i : NULL,
               stats_in ? stats_in + 2 * i : NULL);
}

AI512 void dscores_at(const int R, int64_t i, const int NV, int64_t tk, int64_t kd, const float *dout, int64_t lddo,
                      const float *bp, const float *p, int64_t ldp, float *ds, int64_t ldds) {
    dscores_tile(R, NV, kd, dout + i * lddo, lddo, bp, tk, p + i * ldp, ldp, ds + i * ldds, ldds);
}

/* rows of R·(NV vectors) accumulators: at most 24 of AVX-512's 32 registers, room left for the kᵀ row */
#define PROBS_ROWS(NV) ((NV) <= 3 ? 8 : (NV) == 4 ? 6 : (NV) <= 6 ? 4 : (NV) == 7 ? 3 : 2)

T512 int vt_attn_probs_fused_avx512(int64_t tq, int64_t tk, int64_t kd, float alpha, const float *q, int64_t ldq,
                                    const float *bp, float *p, int64_t ldp, float *stats_out, const float *stats_in) {
    if (!vt_attn_fused_keys(tk)) return 0;
    switch ((tk + 7) / 8) {
#define CASE(NV) case NV: TILE_ROWS(probs_at, PROBS_ROWS(NV), tq, NV, tk, kd, alpha, q, ldq, bp, p, ldp, stats_out, stats_in); break;
        CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    }
    return 1;
}

T512 int vt_attn_dscores_fused_avx512(int64_t tq, int64_t tk, int64_t kd, const float *dout, int64_t lddo,
                                      const float *bp, const float *p, int64_t ldp, float *ds, int64_t ldds) {
    if (!vt_attn_fused_keys(tk)) return 0;
    switch ((tk + 7) / 8) {
#define CASE(NV) case NV: TILE_ROWS(dscores_at, PROBS_ROWS(NV), tq, NV, tk, kd, dout, lddo, bp, p, ldp, ds, ldds); break;
        CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    }
    return 1;
}
