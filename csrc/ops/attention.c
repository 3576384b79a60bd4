/* vitc ops: attention. The fused multi-head self-attention on the packed qkv projection
 * (SPEC §1.4), the same with the qkv and output projections folded in (qkv_attention, what
 * nn.Attention runs), DeepViT's re-attention and torch's scaled_dot_product_attention, all on the
 * per-head kernels of attention.h.
 *
 * Why own kernels instead of cblas_sgemm per head: ViT heads are small (T = 17 in the seed model,
 * 197 in DeiT; Dh = 64), so a BLAS call per product costs as much as its arithmetic, and calling
 * the pthread OpenBLAS from inside an OpenMP loop over heads would need its thread count switched
 * globally around every op. Here each OpenMP thread takes whole heads and runs register-tiled
 * loops on L1/L2-resident operands, reading q, k, v straight out of the packed projection.
 * Every reduction runs in a fixed order per element, so results do not depend on thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../core/rng.h"
#include "attention.h"
#include "ops_util.h"

#include "vec8.h"

/* ---- ISA-generic small kernels (vec8.h), compiled for AVX2+FMA and for the baseline ---------- */

/* exp for x <= 0 (Cephes expf: x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial in r, 2^n built in
 * the exponent bits); below -87.3 (and for -inf) the result is exactly 0. Softmax only feeds it
 * x = s − rowmax <= 0; a NaN stays NaN. */
AI v8 exp8(const v8 *xp) {
    v8 x = *xp;
    v8i under = x < bc8(-87.3365f);
    x = sel8(under, bc8(-87.3365f), x);
    v8 t = x * bc8(1.44269504f) + bc8(12582912.0f); /* + 1.5·2^23 rounds to an integer */
    v8 n = t - bc8(12582912.0f);
    v8i ni = (v8i)t - 0x4B400000;                   /* that integer, from t's mantissa bits */
    v8 r = x - n * bc8(0.693359375f);
    r = r - n * bc8(-2.12194440e-4f);
    v8 p = bc8(1.9875691500e-4f);
    p = p * r + bc8(1.3981999507e-3f);
    p = p * r + bc8(8.3334519073e-3f);
    p = p * r + bc8(4.1665795894e-2f);
    p = p * r + bc8(1.6666665459e-1f);
    p = p * r + bc8(5.0000001201e-1f);
    v8 y = p * (r * r) + r + bc8(1.0f);
    y = y * (v8)((ni + 127) << 23);
    return (v8)((v8i)y & ~under);
}

/* all lanes <- max / sum of the 8 lanes, by halving shuffles (a fixed order: deterministic) */
AI v8 allmax8(const v8 *vp) {
    v8 v = *vp;
    v = max8(v, __builtin_shuffle(v, (v8i){4, 5, 6, 7, 0, 1, 2, 3}));
    v = max8(v, __builtin_shuffle(v, (v8i){2, 3, 0, 1, 6, 7, 4, 5}));
    return max8(v, __builtin_shuffle(v, (v8i){1, 0, 3, 2, 5, 4, 7, 6}));
}
AI v8 allsum8(const v8 *vp) {
    v8 v = *vp;
    v = v + __builtin_shuffle(v, (v8i){4, 5, 6, 7, 0, 1, 2, 3});
    v = v + __builtin_shuffle(v, (v8i){2, 3, 0, 1, 6, 7, 4, 5});
    return v + __builtin_shuffle(v, (v8i){1, 0, 3, 2, 5, 4, 7, 6});
}

/* C[R×8NV] = alpha · Σ_k A(r,k)·B[k, 0:8NV], A(r,k) = a[r·sar + k·sak] (any strides: A is only
 * read as broadcast scalars, so transposed operands cost nothing), B rows at ldb. The R×NV
 * accumulators stay in registers across the whole k loop. */
AI void tile(const int R, const int NV, int64_t kd, const float *restrict a, int64_t sar, int64_t sak,
             const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc, float alpha) {
    v8 acc[6][2];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = bc8(0.0f);
    for (int64_t kk = 0; kk < kd; kk++) {
        const float *bk = b + kk * ldb, *ak = a + kk * sak;
        v8 bv[2];
        for (int u = 0; u < NV; u++) bv[u] = ld8(bk + 8 * u);
        for (int r = 0; r < R; r++) {
            v8 ar = bc8(ak[r * sar]);
            for (int u = 0; u < NV; u++) acc[r][u] += ar * bv[u];
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) st8(c + r * ldc + 8 * u, acc[r][u] * bc8(alpha));
}

/* all rows of one 8·NV-column strip: tiles of RM rows, then the remainder */
AI void strip(const int RM, const int NV, int64_t m, int64_t kd, const float *a, int64_t sar, int64_t sak,
              const float *b, int64_t ldb, float *c, int64_t ldc, float alpha) {
    int64_t i = 0;
    for (; i + RM <= m; i += RM) tile(RM, NV, kd, a + i * sar, sar, sak, b, ldb, c + i * ldc, ldc, alpha);
    switch (m - i) {
#define REM(R) case R: if (R < RM) tile(R, NV, kd, a + i * sar, sar, sak, b, ldb, c + i * ldc, ldc, alpha); break;
        REM(1) REM(2) REM(3) REM(4) REM(5)
#undef REM
        default: break;
    }
}

/* B (kd × n8) in strip-major form: strips of 16 columns (the last one may be 8), each holding its kd
 * rows contiguously, as BLAS packs. A strip then sits in L1 while every row tile streams past it;
 * the original rows (3·H·Dh floats apart in the packed projection) map onto a few cache sets. */
AI void gemm_packed(const int RM, int64_t m, int64_t n8, int64_t kd, float alpha, const float *a, int64_t sar,
                    int64_t sak, const float *bp, float *c, int64_t ldc) {
    int64_t j = 0;
    for (; j + 16 <= n8; j += 16) strip(RM, 2, m, kd, a, sar, sak, bp + j * kd, 16, c + j, ldc, alpha);
    if (j < n8) strip(RM, 1, m, kd, a, sar, sak, bp + j * kd, 8, c + j, ldc, alpha);
}

AI void pack_b_body(int64_t kd, int64_t n8, const float *b, int64_t ldb, float *dst) {
    for (int64_t j = 0; j < n8; j += 16) {
        float *d = dst + j * kd;
        if (n8 - j >= 16)
            for (int64_t k = 0; k < kd; k++) {
                st8(d + 16 * k, ld8(b + k * ldb + j));
                st8(d + 16 * k + 8, ld8(b + k * ldb + j + 8));
            }
        else
            for (int64_t k = 0; k < kd; k++) st8(d + 8 * k, ld8(b + k * ldb + j));
    }
}

/* r[c] <- column c of the 8×8 block r (unpack, 2×2-block shuffle, 128-bit halves) */
AI void transpose8(v8 *r) {
    v8 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shuffle(r[i], r[i + 1], (v8i){0, 8, 1, 9, 4, 12, 5, 13});
        t[i + 1] = __builtin_shuffle(r[i], r[i + 1], (v8i){2, 10, 3, 11, 6, 14, 7, 15});
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = __builtin_shuffle(t[i], t[i + 2], (v8i){0, 1, 8, 9, 4, 5, 12, 13});
        u[i + 1] = __builtin_shuffle(t[i], t[i + 2], (v8i){2, 3, 10, 11, 6, 7, 14, 15});
        u[i + 2] = __builtin_shuffle(t[i + 1], t[i + 3], (v8i){0, 1, 8, 9, 4, 5, 12, 13});
        u[i + 3] = __builtin_shuffle(t[i + 1], t[i + 3], (v8i){2, 3, 10, 11, 6, 7, 14, 15});
    }
    for (int i = 0; i < 4; i++) {
        r[i] = __builtin_shuffle(u[i], u[i + 4], (v8i){0, 1, 2, 3, 8, 9, 10, 11});
        r[i + 4] = __builtin_shuffle(u[i], u[i + 4], (v8i){4, 5, 6, 7, 12, 13, 14, 15});
    }
}

/* strip-major B (kd × np) = srcᵀ: B(d, j) = src[j·lds + d] for j < rows, 0 up to np = pad8(rows) */
AI void pack_bt_body(int64_t rows, int64_t kd, const float *src, int64_t lds, int64_t np, float *dst) {
    for (int64_t j0 = 0; j0 < np; j0 += 8) {
        int64_t s16 = j0 & ~(int64_t)15, w = s16 + 16 <= np ? 16 : 8, nr = rows - j0;
        float *base = dst + s16 * kd + (j0 - s16);
        int64_t d0 = 0;
        for (; d0 + 8 <= kd; d0 += 8) {
            v8 r[8];
            for (int jj = 0; jj < 8; jj++) r[jj] = jj < nr ? ld8(src + (j0 + jj) * lds + d0) : bc8(0.0f);
            transpose8(r);
            for (int c = 0; c < 8; c++) st8(base + (d0 + c) * w, r[c]);
        }
        for (; d0 < kd; d0++)
            for (int jj = 0; jj < 8; jj++) base[d0 * w + jj] = jj < nr ? src[(j0 + jj) * lds + d0] : 0.0f;
    }
}

/* C (m×n, ldc) = alpha · A (m×kd, strides sar, sak) · B (kd×n). B is rows at ldb with unit column
 * stride, or (bpacked) strip-major with n a multiple of 8. pk: room for a packed copy of B,
 * used when the k loop is long enough to be worth it (or NULL). */
AI void gemm_body(const int RM, int64_t m, int64_t n, int64_t kd, float alpha, const float *a, int64_t sar,
                  int64_t sak, const float *b, int64_t ldb, int bpacked, float *pk, float *c, int64_t ldc) {
    int64_t n8 = n & ~(int64_t)7, j = 0;
    if (!bpacked && pk && kd >= 32 && m > RM && n8) {
        pack_b_body(kd, n8, b, ldb, pk);
        gemm_packed(RM, m, n8, kd, alpha, a, sar, sak, pk, c, ldc);
        j = n8;
    } else if (bpacked) {
        gemm_packed(RM, m, n8, kd, alpha, a, sar, sak, b, c, ldc);
        j = n8;
    } else {
        for (; j + 16 <= n8; j += 16) strip(RM, 2, m, kd, a, sar, sak, b + j, ldb, c + j, ldc, alpha);
        for (; j < n8; j += 8) strip(RM, 1, m, kd, a, sar, sak, b + j, ldb, c + j, ldc, alpha);
    }
    for (; j < n; j++) /* head widths that are not a multiple of 8 */
        for (int64_t i = 0; i < m; i++) {
            float s = 0.0f;
            for (int64_t kk = 0; kk < kd; kk++) s += a[i * sar + kk * sak] * b[kk * ldb + j];
            c[i * ldc + j] = alpha * s;
        }
}

/* in place softmax of each row of s (rows × n, ld; n a multiple of 8, pad with -inf):
 * exp(s − max)/Σ. A row of -inf gives zeros (PyTorch's sdpa); a NaN makes its row NaN through
 * the sum, or through the scan below when nothing else is finite. */
AI void softmax_rows_body(float *s, int64_t rows, int64_t n, int64_t ld) {
    for (int64_t i = 0; i < rows; i++, s += ld) {
        /* four independent max chains: one chain would wait on each compare+blend */
        v8 m0 = bc8(-INFINITY), m1 = m0, m2 = m0, m3 = m0; /* NaN lanes lose every compare */
        int64_t j = 0;
        for (; j + 32 <= n; j += 32) {
            m0 = max8(m0, ld8(s + j));
            m1 = max8(m1, ld8(s + j + 8));
            m2 = max8(m2, ld8(s + j + 16));
            m3 = max8(m3, ld8(s + j + 24));
        }
        for (; j < n; j += 8) m0 = max8(m0, ld8(s + j));
        m0 = max8(m0, m1);
        m2 = max8(m2, m3);
        v8 vm = max8(m0, m2);
        vm = allmax8(&vm);
        if (vm[0] == -INFINITY) {
            float fill = 0.0f;
            for (j = 0; j < n; j++) fill = s[j] != s[j] ? NAN : fill;
            for (j = 0; j < n; j++) s[j] = fill;
            continue;
        }
        v8 vs = bc8(0.0f);
        for (j = 0; j < n; j += 8) {
            v8 d = ld8(s + j) - vm, e = exp8(&d);
            st8(s + j, e);
            vs += e;
        }
        v8 inv = bc8(1.0f) / allsum8(&vs);
        for (j = 0; j < n; j += 8) st8(s + j, ld8(s + j) * inv);
    }
}

/* softmax backward of each row, in place: dp <- p⊙(dp − Σ dp⊙p) over the first n columns */
AI void dsoftmax_rows_body(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, int64_t n) {
    for (int64_t i = 0; i < rows; i++, p += ldp, dp += lddp) {
        v8 acc = bc8(0.0f);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) acc += ld8(p + j) * ld8(dp + j);
        float dot = allsum8(&acc)[0];
        for (int64_t t = j; t < n; t++) dot += p[t] * dp[t];
        v8 vd = bc8(dot);
        for (j = 0; j + 8 <= n; j += 8) st8(dp + j, ld8(p + j) * (ld8(dp + j) - vd));
        for (; j < n; j++) dp[j] = p[j] * (dp[j] - dot);
    }
}

typedef struct {
    void (*gemm)(int64_t m, int64_t n, int64_t kd, float alpha, const float *a, int64_t sar, int64_t sak,
                 const float *b, int64_t ldb, int bpacked, float *pk, float *c, int64_t ldc);
    void (*pack_bt)(int64_t rows, int64_t kd, const float *src, int64_t lds, int64_t np, float *dst);
    void (*softmax_rows)(float *s, int64_t rows, int64_t n, int64_t ld);
    void (*dsoftmax_rows)(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, int64_t n);
} attn_kernels;

#define ISA_VARIANTS(suffix, attr, RM)                                                                        \
    static attr void gemm_##suffix(int64_t m, int64_t n, int64_t kd, float alpha, const float *a, int64_t sar, \
                                   int64_t sak, const float *b, int64_t ldb, int bpacked, float *pk, float *c, \
                                   int64_t ldc) {                                                             \
        gemm_body(RM, m, n, kd, alpha, a, sar, sak, b, ldb, bpacked, pk, c, ldc);                             \
    }                                                                                                         \
    static attr void pack_bt_##suffix(int64_t rows, int64_t kd, const float *src, int64_t lds, int64_t np,     \
                                      float *dst) {                                                           \
        pack_bt_body(rows, kd, src, lds, np, dst);                                                            \
    }                                                                                                         \
    static attr void softmax_rows_##suffix(float *s, int64_t rows, int64_t n, int64_t ld) {                  \
        softmax_rows_body(s, rows, n, ld);                                                                    \
    }                                                                                                         \
    static attr void dsoftmax_rows_##suffix(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, \
                                            int64_t n) {                                                      \
        dsoftmax_rows_body(p, ldp, dp, lddp, rows, n);                                                        \
    }                                                                                                         \
    static const attn_kernels kernels_##suffix = {gemm_##suffix, pack_bt_##suffix, softmax_rows_##suffix,       \
                                                  dsoftmax_rows_##suffix};

/* 6×16 tile: 12 ymm accumulators + 2 B vectors + 1 broadcast fit AVX2's 16 registers; the
 * baseline build splits each vector in two xmm, so it takes 3-row tiles. */
ISA_VARIANTS(avx2, __attribute__((target("avx2,fma"))), 6)
ISA_VARIANTS(base, , 3)

static const attn_kernels *kern(void) { return vt_use_avx2_kernels() ? &kernels_avx2 : &kernels_base; }

/* ---- one head ------------------------------------------------------------------------------- */

static int64_t pad8(int64_t n) { return (n + 7) & ~(int64_t)7; }

/* floats of B-operand packing room the phase functions need: kᵀ or vᵀ (w × tkp), or a copy of
 * q, k, v or dout (rows × w) */
static int64_t pack_floats(int64_t tq, int64_t tk, int64_t dh, int64_t dv) {
    int64_t w = pad8(dh > dv ? dh : dv), r = pad8(tq > tk ? tq : tk);
    return w * r;
}

int64_t vt_attn_scratch_floats(int64_t tq, int64_t tk, int64_t dh, int64_t dv, int dropout) {
    int64_t tkp = pad8(tk);
    int64_t n = tq * tkp + pack_floats(tq, tk, dh, dv) + tkp + (dropout ? 2 * tq * tkp : 0) + 8;
    return (n + 15) & ~(int64_t)15; /* whole cache lines per thread */
}

void vt_attn_dropout_row(const vt_attn_head *h, int64_t i, float *mult) {
    float p = h->dropout_p, keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    uint64_t e0 = h->elem0 + (uint64_t)(i * h->tk), cur = UINT64_MAX;
    uint32_t w[4] = {0};
    /* four elements per Philox counter: element e draws word e%4 of counter base + e/4 */
    for (int64_t j = 0; j < h->tk; j++) {
        uint64_t e = e0 + (uint64_t)j;
        if (e >> 2 != cur) { cur = e >> 2; vt_philox(h->seed, h->base + cur, w); }
        float u = (float)(w[e & 3] >> 8) * (1.0f / 16777216.0f);
        mult[j] = u >= p ? keep : 0.0f;
    }
}

void vt_attn_probs(const vt_attn_head *h, float *p, int64_t ldp, float *scratch) {
    const attn_kernels *K = kern();
    int64_t tq = h->tq, tk = h->tk, tkp = pad8(tk);
    K->pack_bt(tk, h->dh, h->k, h->ldk, tkp, scratch);
    K->gemm(tq, tkp, h->dh, h->scale, h->q, h->ldq, 1, scratch, 0, 1, NULL, p, ldp);
    for (int64_t i = 0; i < tq; i++) {
        float *row = p + i * ldp;
        if (h->causal)
            for (int64_t j = i + 1; j < tk; j++) row[j] = -INFINITY;
        if (h->mask_keep) {
            const uint8_t *mk = h->mask_keep + i * h->ms0;
            for (int64_t j = 0; j < tk; j++)
                if (!mk[j * h->ms1]) row[j] = -INFINITY;
        }
        if (h->mask_add) {
            const float *ma = h->mask_add + i * h->ms0;
            for (int64_t j = 0; j < tk; j++) row[j] += ma[j * h->ms1];
        }
        for (int64_t j = tk; j < tkp; j++) row[j] = -INFINITY; /* the pad joins the vector loop as zeros */
    }
    K->softmax_rows(p, tq, tkp, ldp);
}

void vt_attn_apply(const vt_attn_head *h, const float *m, int64_t ldm, float *o, int64_t ldo, float *scratch) {
    kern()->gemm(h->tq, h->dv, h->tk, 1.0f, m, ldm, 1, h->v, h->ldv, 0, scratch, o, ldo);
}

void vt_attn_apply_backward(const vt_attn_head *h, const float *m, int64_t ldm, const float *dout,
                            int64_t lddo, float *dm, int64_t lddm, float *dv, int64_t lddv, float *scratch) {
    const attn_kernels *K = kern();
    int64_t tkp = pad8(h->tk);
    K->pack_bt(h->tk, h->dv, h->v, h->ldv, tkp, scratch);
    K->gemm(h->tq, tkp, h->dv, 1.0f, dout, lddo, 1, scratch, 0, 1, NULL, dm, lddm);
    if (dv) /* mᵀ·dout: m read with its strides swapped */
        K->gemm(h->tk, h->dv, h->tq, 1.0f, m, 1, ldm, dout, lddo, 0, scratch, dv, lddv);
}

void vt_attn_probs_backward(const vt_attn_head *h, const float *p, int64_t ldp, float *dp, int64_t lddp,
                            float *dq, int64_t lddq, float *dk, int64_t lddk, float *scratch) {
    const attn_kernels *K = kern();
    K->dsoftmax_rows(p, ldp, dp, lddp, h->tq, h->tk);
    if (dq) K->gemm(h->tq, h->dh, h->tk, h->scale, dp, lddp, 1, h->k, h->ldk, 0, scratch, dq, lddq);
    if (dk) K->gemm(h->tk, h->dh, h->tq, h->scale, dp, 1, lddp, h->q, h->ldq, 0, scratch, dk, lddk);
}

void vt_attn_head_forward(const vt_attn_head *h, float *o, int64_t ldo, float *p, int64_t ldp, float *scratch) {
    int64_t tq = h->tq, tk = h->tk, tkp = pad8(tk);
    float *s = scratch, *aux = scratch + tq * tkp; /* s: the map (tq × tkp); aux: packing, mask rows */
    vt_attn_probs(h, s, tkp, aux);
    if (p)
        for (int64_t i = 0; i < tq; i++) memcpy(p + i * ldp, s + i * tkp, sizeof(float) * (size_t)tk);
    if (h->dropout_p > 0.0f)
        for (int64_t i = 0; i < tq; i++) {
            vt_attn_dropout_row(h, i, aux);
            for (int64_t j = 0; j < tk; j++) s[i * tkp + j] *= aux[j];
        }
    vt_attn_apply(h, s, tkp, o, ldo, aux);
}

void vt_attn_head_backward(const vt_attn_head *h, const float *dout, int64_t lddo, const float *p, int64_t ldp,
                           const float *gp, int64_t ldgp, float *dq, int64_t lddq, float *dk, int64_t lddk,
                           float *dv, int64_t lddv, float *dmask, int64_t lddm, float *scratch) {
    int64_t tq = h->tq, tk = h->tk, tkp = pad8(tk);
    float *dp = scratch, *aux = dp + tq * tkp, *mult = aux + pack_floats(tq, tk, h->dh, h->dv) + tkp;
    float *m = mult + tq * tkp;
    int drop = h->dropout_p > 0.0f;
    const float *map = p; /* the map that multiplied v: P, or P⊙mask/(1−p) */
    int64_t ldmap = ldp;
    if (drop) {
        for (int64_t i = 0; i < tq; i++) {
            vt_attn_dropout_row(h, i, mult + i * tkp);
            for (int64_t j = 0; j < tk; j++) m[i * tkp + j] = p[i * ldp + j] * mult[i * tkp + j];
        }
        map = m;
        ldmap = tkp;
    }
    if (dout) {
        vt_attn_apply_backward(h, map, ldmap, dout, lddo, dp, tkp, dv, lddv, aux);
    } else {
        memset(dp, 0, sizeof(float) * (size_t)(tq * tkp));
        for (int64_t j = 0; dv && j < tk; j++) memset(dv + j * lddv, 0, sizeof(float) * (size_t)h->dv);
    }
    if (!dq && !dk && !dmask) return;
    for (int64_t i = 0; i < tq; i++) {
        float *row = dp + i * tkp;
        if (drop)
            for (int64_t j = 0; j < tk; j++) row[j] *= mult[i * tkp + j];
        if (gp)
            for (int64_t j = 0; j < tk; j++) row[j] += gp[i * ldgp + j];
    }
    vt_attn_probs_backward(h, p, ldp, dp, tkp, dq, lddq, dk, lddk, aux);
    if (dmask)
        for (int64_t i = 0; i < tq; i++) memcpy(dmask + i * lddm, dp + i * tkp, sizeof(float) * (size_t)tk);
}

/* ---- drivers: OpenMP over heads, one scratch block per thread -------------------------------- */

typedef struct { float *buf; size_t bytes; int64_t per; } scratch_set;

static int scratch_alloc(scratch_set *s, int64_t per, int nthreads) {
    s->per = per;
    s->bytes = sizeof(float) * (size_t)per * (size_t)nthreads;
    s->buf = vt_alloc(s->bytes);
    return s->buf ? VT_OK : vt_last_code();
}

static void scratch_free(scratch_set *s) {
    if (s->buf) vt_free(s->buf, s->bytes);
    s->buf = NULL;
}

static float *scratch_mine(const scratch_set *s) { return s->buf + s->per * omp_get_thread_num(); }

/* threads for `heads` heads of `flops` multiply-adds in all */
static int team_size(int64_t heads, int64_t flops) {
    int nt = omp_get_max_threads();
    if (flops < 65536 || heads < 2) return 1;
    return heads < nt ? (int)heads : nt;
}

/* heads are handed out in chunks (about 16 per thread), not statically: on a busy machine a thread
 * that loses its core would otherwise hold up the whole op. Each head's arithmetic is the same
 * whichever thread runs it, so results stay bitwise identical. */
static int64_t chunk_size(int64_t heads, int nt) {
    int64_t c = heads / (16 * (int64_t)nt);
    return c > 0 ? c : 1;
}

/* pull the next head's rows toward L1 while this one computes: heads are Dh-wide column blocks of
 * rows 3·H·Dh floats apart, a pattern the hardware prefetchers do not follow */
static void prefetch_rows(const float *p, int64_t rows, int64_t width, int64_t ld) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < width; c += 16) __builtin_prefetch(p + r * ld + c, 0, 1); /* prefetcht2: measured best here */
}

static int64_t stage_limit_bytes(void) {
    static int64_t lim = 0; /* one core's L2 (sysconf; 512 KB when unknown), read once */
    int64_t v = __atomic_load_n(&lim, __ATOMIC_RELAXED);
    if (!v) {
        long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        v = l2 > 0 ? (int64_t)l2 : (int64_t)512 << 10;
        __atomic_store_n(&lim, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* Whole images at a time, from a staged copy: one image's rows of the packed projection (T × C
 * floats, contiguous when the tensor is) are copied into the thread's scratch first, a sequential
 * read the hardware prefetchers follow at full speed, where the heads' own reads are T short
 * pieces C floats apart for each of q, k and v. Used when the copy fits in one core's L2 and
 * there are enough images to share among the threads. The limit was 256 KB, half of this
 * machine's 512 KB L2; the whole L2 admits DeiT-Tiny's forward staging (197 × 576 floats,
 * 454 KB), and its step ran 4.2-4.5 % faster (bench/ab.py with limits 256 / 600 KB, both side
 * orders); a 1.1 MB limit, which also stages its backward (1.06 MB), changed nothing measurable
 * against 600 KB. */
static int by_image(int64_t B, int64_t staged_floats, int nt) {
    return staged_floats > 0 && B >= 4 * (int64_t)nt && staged_floats * (int64_t)sizeof(float) <= stage_limit_bytes();
}

static int64_t stage_floats(int64_t T, int64_t C) { return (T * C + 15) & ~(int64_t)15; }

static void stage_rows(float *dst, const float *src, int64_t T, int64_t C, int64_t ld) {
    if (ld == C) memcpy(dst, src, sizeof(float) * (size_t)(T * C));
    else
        for (int64_t t = 0; t < T; t++) memcpy(dst + t * C, src + t * ld, sizeof(float) * (size_t)C);
}

/* one head (number bh = b·H + h) of the packed projection: its q block starts at row0, k and v
 * follow HD = H·Dh floats apart, rows are ld floats apart (the tensor's, or C in a staged copy) */
typedef struct { int64_t T, Dh, HD, H; float scale, p; uint64_t seed, base; } packed_geom;

static vt_attn_head packed_head(const packed_geom *g, const float *row0, int64_t ld, int64_t bh) {
    return (vt_attn_head){.tq = g->T, .tk = g->T, .dh = g->Dh, .dv = g->Dh, .q = row0, .k = row0 + g->HD,
                          .v = row0 + 2 * g->HD, .ldq = ld, .ldk = ld, .ldv = ld, .scale = g->scale,
                          .dropout_p = g->p, .seed = g->seed, .base = g->base,
                          .elem0 = (uint64_t)(bh * g->T * g->T)};
}

static vt_tensor *rng_state(uint64_t seed, uint64_t base) {
    vt_tensor *r = vt_empty(VT_INT64, 1, (int64_t[]){2});
    if (r) { vt_i64(r)[0] = (int64_t)seed; vt_i64(r)[1] = (int64_t)base; }
    return r;
}

/* a view whose last dim has unit stride (the kernels' one layout requirement), as a new ref */
static vt_tensor *unit_last(vt_tensor *t) {
    if (t->ndim == 0 || t->strides[t->ndim - 1] == 1 || t->shape[t->ndim - 1] <= 1) {
        vt_tensor_incref(t);
        return t;
    }
    return vt_clone(t);
}

static int check_dropout(const char *who, double p) {
    if (!(p >= 0.0 && p <= 1.0)) return vt_fail(VT_EVALUE, "%s: dropout_p must be in [0, 1], got %g", who, p);
    return VT_OK;
}

/* ---- attention: fused multi-head self-attention on the packed projection --------------------- */

/* how a forward runs: threads, whether whole images are staged (by_image), scratch per thread */
typedef struct { int nt, staged; int64_t sq, per; } fwd_plan;

static fwd_plan forward_plan(int64_t B, int64_t T, int64_t H, int64_t Dh, double p) {
    int64_t pairs = B * H;
    fwd_plan pl = {.nt = team_size(pairs, pairs * T * T * Dh), .sq = stage_floats(T, 3 * H * Dh)};
    pl.staged = by_image(B, pl.sq, pl.nt);
    pl.per = vt_attn_scratch_floats(T, T, Dh, Dh, p > 0.0) + (pl.staged ? pl.sq : 0);
    return pl;
}

/* qkv_attention's projection, fused into the staged forward: each image's qkv rows are computed
 * straight into the thread's staging buffer (x_b·Wᵀ + bias against Wᵀ packed once for all
 * images), then streamed to the saved qkv tensor when a backward will need it. The projection's
 * 3·H·Dh-wide output is never written and read back through memory before attention. */
typedef struct { const float *x; int64_t sbx, ldx; vt_gemm_panel wt; const float *bias; } qkv_proj;

/* qkv_attention's optional output projection y = out·W_oᵀ + b_o, fused into the staged forward:
 * the image's heads write into scratch (T × H·Dh), y_b is computed from there, and the attention
 * output is streamed to its saved tensor (ao, for W_o's gradient) when a backward needs it. */
typedef struct { vt_gemm_panel wt; const float *bias; int64_t Do; } out_proj;

typedef struct { int64_t B, T, H, Dh; double scale, p; int need_weights; } attn_geom;

/* qkv (B, T, 3·H·Dh): q, k, v are the three consecutive H·Dh chunks of the last dim, head h owns
 * channels [h·Dh, (h+1)·Dh) of each. Saves qkv, A (B, H, T, T) and the dropout draws. With pj
 * (staged plans only) qkv is an empty tensor filled here, or NULL when nothing is saved. With po
 * (staged plans only) the output is y and *ao the attention output to save (NULL without save). */
static int packed_forward(vt_ctx *c, vt_tensor *qkv, qkv_proj *pj, out_proj *po, const fwd_plan *pl,
                          const attn_geom *ag, vt_tensor **ao) {
    int64_t B = ag->B, T = ag->T, H = ag->H, Dh = ag->Dh, HD = H * Dh, C = 3 * HD;
    double p = ag->p;
    vt_tensor *out = NULL, *A = NULL, *rng = NULL, *aot = NULL;
    scratch_set scr = {0};
    int st = VT_OK, nt = pl->nt;
    if (!(out = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, po ? po->Do : HD}))) goto fail;
    if (po && c->save && !(aot = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD}))) goto fail;
    if ((ag->need_weights || c->save) && !(A = vt_empty(VT_FLOAT32, 4, (int64_t[]){B, H, T, T}))) goto fail;
    uint64_t seed = 0, base = 0;
    if (p > 0.0) {
        seed = vt_rng_get_seed();
        base = vt_rng_reserve(((uint64_t)(B * H * T * T) + 3) / 4);
        if (c->save && !(rng = rng_state(seed, base))) goto fail;
    }
    int64_t pairs = B * H, so = po ? stage_floats(T, HD) : 0, per = pl->per + so, sq = pl->sq;
    if (pairs && T && (st = scratch_alloc(&scr, per, nt))) goto fail;
    float *xp = qkv ? vt_f32(qkv) : NULL, *op = vt_f32(out), *ap = A ? vt_f32(A) : NULL;
    float *aop = aot ? vt_f32(aot) : NULL;
    int64_t sb = qkv ? qkv->strides[0] : 0, ldx = qkv ? qkv->strides[1] : 0;
    int64_t chunk = chunk_size(pairs, nt);
    packed_geom pg = {T, Dh, HD, H, (float)ag->scale, (float)p, seed, base};
    if (pl->staged) {
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *mine = scratch_mine(&scr), *img = mine + per - sq - so, *obuf = img + sq;
            if (pj || po) {
                int64_t n1 = pj ? pj->wt.nstrips : 0, n2 = po ? po->wt.nstrips : 0;
                #pragma omp for schedule(static)
                for (int64_t s = 0; s < n1 + n2; s++) vt_gemm_panel_pack(s < n1 ? &pj->wt : &po->wt, s < n1 ? s : s - n1);
            }
            #pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < B; b++) {
                if (pj) {
                    vt_gemm_panel_linear(&pj->wt, T, pj->x + b * pj->sbx, pj->ldx, pj->bias, img);
                    if (xp) vt_stream_copy(xp + b * T * C, img, T * C);
                } else
                    stage_rows(img, xp + b * sb, T, C, ldx);
                float *ob = po ? obuf : op + b * T * HD;
                for (int64_t hh = 0; hh < H; hh++) {
                    int64_t bh = b * H + hh;
                    const float *row0 = img + hh * Dh;
                    vt_attn_head hd = packed_head(&pg, row0, C, bh);
                    vt_attn_head_forward(&hd, ob + hh * Dh, HD, ap ? ap + bh * T * T : NULL, T, mine);
                }
                if (po) {
                    vt_gemm_panel_linear(&po->wt, T, obuf, HD, po->bias, op + b * T * po->Do);
                    if (aop) vt_stream_copy(aop + b * T * HD, obuf, T * HD);
                }
            }
        }
    } else
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bh = 0; bh < pairs; bh++) {
            if (!T) continue;
            int64_t b = bh / H, hh = bh % H;
            const float *row0 = xp + b * sb + hh * Dh;
            vt_attn_head hd = packed_head(&pg, row0, ldx, bh);
            if (bh + 1 < pairs) {
                const float *nx = xp + (bh + 1) / H * sb + (bh + 1) % H * Dh;
                for (int part = 0; part < 3; part++) prefetch_rows(nx + part * HD, T, Dh, ldx);
            }
            vt_attn_head_forward(&hd, op + b * T * HD + hh * Dh, HD, ap ? ap + bh * T * T : NULL, T, mine);
        }
    }
    scratch_free(&scr);
    c->out[0] = out;
    c->nout = 1;
    if (ag->need_weights) {
        vt_tensor_incref(A);
        c->out[c->nout++] = A;
    }
    if (ao) *ao = aot;
    else vt_tensor_decref(aot);
    /* outputs already belong to c: on failure the dispatcher releases them */
    if (!(st = vt_save(c, qkv)) && !(st = vt_save(c, A)) && rng) st = vt_save(c, rng);
    vt_tensor_decref(A);
    vt_tensor_decref(rng);
    return st;
fail:
    st = vt_last_code();
    scratch_free(&scr);
    vt_tensor_decref(out);
    vt_tensor_decref(aot);
    vt_tensor_decref(A);
    vt_tensor_decref(rng);
    return st;
}

/* attention and qkv_attention keep their common arguments in the same slots, read through
 * attention's names by the code both share */
VT_SAME_IARG(attention, qkv_attention, heads);
VT_SAME_IARG(attention, qkv_attention, need_weights);
VT_SAME_IARG(attention, qkv_attention, default_scale);
VT_SAME_FARG(attention, qkv_attention, scale);
VT_SAME_FARG(attention, qkv_attention, dropout_p);
#define ATTN_I(a, name) ((a)->i[IARG(attention, name)])
#define ATTN_F(a, name) ((a)->f[FARG(attention, name)])
/* the scale: Dh^-1/2 when default_scale, else the given one */
#define ATTN_SCALE(a, Dh) (ATTN_I(a, default_scale) ? 1.0 / sqrt((double)(Dh)) : ATTN_F(a, scale))

/* heads, need_weights, scale and dropout of an attention op whose packed width is C; fills
 * everything of ag but B and T */
static int attn_args(const vt_ctx *c, const char *who, int64_t C, const int64_t *shape, int ndim, attn_geom *ag) {
    char buf[128];
    int64_t H = ATTN_I(c->args, heads);
    if (H <= 0) return vt_fail(VT_EVALUE, "%s: heads must be positive, got %lld", who, (long long)H);
    if (C == 0 || C % (3 * H))
        return vt_fail(VT_ESHAPE, "%s: qkv's last dim %lld is not a positive multiple of 3*heads = %lld (shape %s)",
                       who, (long long)C, (long long)(3 * H), vt_shape_str(ndim, shape, buf, sizeof buf));
    ag->H = H;
    ag->Dh = C / (3 * H);
    ag->need_weights = ATTN_I(c->args, need_weights) != 0;
    ag->scale = ATTN_SCALE(c->args, ag->Dh);
    ag->p = ATTN_F(c->args, dropout_p);
    return check_dropout(who, ag->p);
}

int vt_attention_forward(vt_ctx *c) {
    vt_tensor *x = c->nin > 0 ? c->in[0] : NULL;
    VT_TRY(vt_require_f32(x, "attention", "qkv"));
    char buf[128];
    if (x->ndim != 3)
        return vt_fail(VT_ESHAPE, "attention: qkv must be 3-d (B, T, 3*heads*head_dim), got shape %s",
                       vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    attn_geom ag = {.B = x->shape[0], .T = x->shape[1]};
    VT_TRY(attn_args(c, "attention", x->shape[2], x->shape, x->ndim, &ag));
    vt_tensor *xc = unit_last(x);
    if (!xc) return vt_last_code();
    fwd_plan pl = forward_plan(ag.B, ag.T, ag.H, ag.Dh, ag.p);
    int st = packed_forward(c, xc, NULL, NULL, &pl, &ag, NULL);
    vt_tensor_decref(xc);
    return st;
}

/* qkv_attention: the projection qkv = x·Wᵀ + b and attention in one node, optionally followed by
 * the output projection y = out·W_oᵀ + b_o (apply_projection, inputs 3 and 4). Staged plans (the seed
 * ViT's small images) fuse both projections per image (qkv_proj, out_proj); others run
 * vt_k_linear before and after the same attention. Saves qkv, A, [dropout draws], x, W
 * [, out, W_o]. */
int vt_qkv_attention_forward(vt_ctx *c) {
    VT_TRY(vt_need_inputs(c, 2));
    int proj = c->args->i[IARG(qkv_attention, apply_projection)] != 0;
    vt_tensor *x = c->in[0], *w = c->in[1], *b = c->nin > 2 ? c->in[2] : NULL;
    vt_tensor *wo = proj && c->nin > 3 ? c->in[3] : NULL, *bo = proj && c->nin > 4 ? c->in[4] : NULL;
    const char *who = "qkv_attention";
    VT_TRY(vt_require_f32(x, who, "input"));
    VT_TRY(vt_require_f32(w, who, "weight"));
    if (b) VT_TRY(vt_require_f32(b, who, "bias"));
    if (proj) VT_TRY(vt_require_f32(wo, who, "proj_weight"));
    if (bo) VT_TRY(vt_require_f32(bo, who, "proj_bias"));
    char b1[128], b2[128];
    if (x->ndim != 3 || w->ndim != 2 || w->shape[1] != x->shape[2])
        return vt_fail(VT_ESHAPE, "%s: input must be (B, T, dim) and weight (3*heads*head_dim, dim), got %s and %s",
                       who, vt_shape_str(x->ndim, x->shape, b1, sizeof b1), vt_shape_str(w->ndim, w->shape, b2, sizeof b2));
    int64_t C = w->shape[0], D = x->shape[2];
    if (b && (b->ndim != 1 || b->shape[0] != C))
        return vt_fail(VT_ESHAPE, "%s: bias must have shape (%lld,), got %s", who, (long long)C,
                       vt_shape_str(b->ndim, b->shape, b1, sizeof b1));
    attn_geom ag = {.B = x->shape[0], .T = x->shape[1]};
    VT_TRY(attn_args(c, who, C, w->shape, w->ndim, &ag));
    int64_t HD = ag.H * ag.Dh, Do = proj ? wo->shape[0] : 0;
    if (proj && (wo->ndim != 2 || wo->shape[1] != HD))
        return vt_fail(VT_ESHAPE, "%s: proj_weight must be (out_dim, heads*head_dim = %lld), got %s", who,
                       (long long)HD, vt_shape_str(wo->ndim, wo->shape, b1, sizeof b1));
    if (bo && (bo->ndim != 1 || bo->shape[0] != Do))
        return vt_fail(VT_ESHAPE, "%s: proj_bias must have shape (%lld,), got %s", who, (long long)Do,
                       vt_shape_str(bo->ndim, bo->shape, b1, sizeof b1));
    fwd_plan pl = forward_plan(ag.B, ag.T, ag.H, ag.Dh, ag.p);
    vt_tensor *ao = NULL;
    int st;
    if (!pl.staged || D < 1 || (proj && Do < 1)) {
        vt_tensor *qkv = vt_k_linear(x, w, b);
        if (!qkv) return vt_last_code();
        st = packed_forward(c, qkv, NULL, NULL, &pl, &ag, NULL);
        vt_tensor_decref(qkv);
        if (!st && proj) { /* y replaces the attention output, which is kept for W_o's gradient */
            vt_tensor *y = vt_k_linear(c->out[0], wo, bo);
            if (!y) return vt_last_code();
            ao = c->out[0];
            c->out[0] = y;
        }
    } else {
        vt_tensor *xc = vt_contiguous(x), *wc = xc ? vt_contiguous(w) : NULL, *bc = b && wc ? vt_contiguous(b) : NULL;
        vt_tensor *woc = proj && wc ? vt_contiguous(wo) : NULL, *boc = bo && wc ? vt_contiguous(bo) : NULL, *qkv = NULL;
        qkv_proj pj = {0};
        out_proj po = {0};
        st = !xc || !wc || (b && !bc) || (proj && !woc) || (bo && !boc) ? vt_last_code() : VT_OK;
        if (!st && c->save && !(qkv = vt_empty(VT_FLOAT32, 3, (int64_t[]){ag.B, ag.T, C}))) st = vt_last_code();
        if (!st) st = vt_gemm_panel_init(&pj.wt, 1, D, C, vt_f32(wc), D);
        if (!st && proj) st = vt_gemm_panel_init(&po.wt, 1, HD, Do, vt_f32(woc), HD);
        if (!st) {
            pj.x = vt_f32(xc);
            pj.sbx = ag.T * D;
            pj.ldx = D;
            pj.bias = bc ? vt_f32(bc) : NULL;
            po.bias = boc ? vt_f32(boc) : NULL;
            po.Do = Do;
            st = packed_forward(c, qkv, &pj, proj ? &po : NULL, &pl, &ag, &ao);
        }
        vt_gemm_panel_free(&pj.wt);
        vt_gemm_panel_free(&po.wt);
        vt_tensor_decref(qkv);
        vt_tensor_decref(bc);
        vt_tensor_decref(wc);
        vt_tensor_decref(xc);
        vt_tensor_decref(woc);
        vt_tensor_decref(boc);
    }
    if (!st) st = vt_save(c, x);
    if (!st) st = vt_save(c, w);
    if (!st && proj) st = vt_save(c, ao);
    if (!st && proj) st = vt_save(c, wo);
    vt_tensor_decref(ao);
    return st;
}

/* qkv_attention's input gradient dx = dqkv·W, computed per image from the staged dqkv rows while
 * they are in L2 (staged plans only): W (3·H·Dh × D, contiguous) in, *dx a new (B, T, D) tensor out,
 * left NULL when the plan did not stage (the caller then takes dx from dqkv in memory). Only
 * where vt_k_gemm would take the own kernel for dqkv·W, whose bits the panel reproduces */
typedef struct { const float *w; int64_t D; vt_tensor *dx; } in_grad;

/* SPEC §1.4 backward per head, all three gradients written into one packed dqkv (B, T, 3·H·Dh).
 * With wo (qkv_attention's output projection) gout[0] is the gradient of y = out·W_oᵀ + b_o and
 * the attention output's gradient is gy·W_o: per image into the staging buffer in staged plans
 * (W_o packed once), else as one product first. */
static int packed_backward(vt_node *n, vt_tensor *x, vt_tensor *A, vt_tensor *rng, vt_tensor **gout,
                           const vt_tensor *wo, in_grad *ig, vt_tensor **dx_out) {
    int64_t H = ATTN_I(&n->args, heads), B = x->shape[0], T = x->shape[1], C = x->shape[2], Dh = C / (3 * H), HD = H * Dh;
    double scale = ATTN_SCALE(&n->args, Dh), p = ATTN_F(&n->args, dropout_p);
    vt_tensor *gy = wo && gout[0] ? vt_contiguous(gout[0]) : NULL, *woc = gy ? vt_contiguous((vt_tensor *)wo) : NULL;
    vt_tensor *g = !wo && gout[0] ? vt_contiguous(gout[0]) : NULL;
    vt_tensor *ga = n->nout > 1 && gout[1] ? vt_contiguous(gout[1]) : NULL, *dx = NULL;
    vt_gemm_panel pw = {0}, pdx = {0};
    scratch_set scr = {0};
    int st = VT_OK;
    if (ig) ig->dx = NULL;
    if ((gout[0] && !g && !(gy && woc)) || (n->nout > 1 && gout[1] && !ga)) goto fail;
    if (!(dx = vt_empty(VT_FLOAT32, 3, x->shape))) goto fail;
    int64_t pairs = B * H, Do = wo ? wo->shape[0] : 0;
    int nt = team_size(pairs, 2 * pairs * T * T * Dh);
    /* staged: the image's qkv rows and dout rows in, its dqkv rows out (written whole, then copied) */
    int64_t sq = stage_floats(T, C), sg = gout[0] ? stage_floats(T, HD) : 0;
    int staged = by_image(B, 2 * sq + sg, nt);
    if (gy && !staged) { /* the attention output's gradient in one product, as vt_k_linear_grads' dx */
        if (!(g = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD}))) goto fail;
        if ((st = vt_k_gemm(0, 0, B * T, HD, Do, 1.0f, vt_f32(gy), Do, vt_f32(woc), HD, 0.0f, vt_f32(g), HD)))
            goto fail;
    } else if (gy && (st = vt_gemm_panel_init(&pw, 0, Do, HD, vt_f32(woc), HD)))
        goto fail;
    const float *gyp = gy && staged ? vt_f32(gy) : NULL;
    float *dinp = NULL;
    if (ig && staged && ig->D > 0 && vt_gemm_path_now(0, B * T, ig->D, C) == 1) {
        if (!(ig->dx = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, ig->D}))) goto fail;
        if ((st = vt_gemm_panel_init(&pdx, 0, C, ig->D, ig->w, ig->D))) goto fail;
        dinp = vt_f32(ig->dx);
    }
    int64_t per = vt_attn_scratch_floats(T, T, Dh, Dh, p > 0.0) + (staged ? 2 * sq + sg : 0);
    if (pairs && T && (st = scratch_alloc(&scr, per, nt))) goto fail;
    uint64_t seed = rng ? (uint64_t)vt_i64(rng)[0] : 0, base = rng ? (uint64_t)vt_i64(rng)[1] : 0;
    const float *xp = vt_f32(x), *gp = g ? vt_f32(g) : NULL, *gap = ga ? vt_f32(ga) : NULL, *ap = vt_f32(A);
    float *dp = vt_f32(dx);
    int64_t sb = x->strides[0], ldx = x->strides[1];
    int64_t chunk = chunk_size(pairs, nt);
    packed_geom pg = {T, Dh, HD, H, (float)scale, (float)p, seed, base};
    if (staged) {
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *mine = scratch_mine(&scr), *img = mine + per - 2 * sq - sg, *dimg = img + sq, *gimg = dimg + sq;
            if (gyp || dinp) {
                int64_t n1 = gyp ? pw.nstrips : 0, n2 = dinp ? pdx.nstrips : 0;
                #pragma omp for schedule(static)
                for (int64_t s = 0; s < n1 + n2; s++) vt_gemm_panel_pack(s < n1 ? &pw : &pdx, s < n1 ? s : s - n1);
            }
            #pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < B; b++) {
                stage_rows(img, xp + b * sb, T, C, ldx);
                if (gyp) vt_gemm_panel_rows(&pw, T, gyp + b * T * Do, Do, 0.0f, gimg, HD);
                else if (gp) stage_rows(gimg, gp + b * T * HD, T, HD, HD);
                for (int64_t hh = 0; hh < H; hh++) {
                    int64_t bh = b * H + hh;
                    const float *row0 = img + hh * Dh;
                    float *drow0 = dimg + hh * Dh;
                    vt_attn_head hd = packed_head(&pg, row0, C, bh);
                    vt_attn_head_backward(&hd, gp || gyp ? gimg + hh * Dh : NULL, HD, ap + bh * T * T, T,
                                          gap ? gap + bh * T * T : NULL, T, drow0, C, drow0 + HD, C, drow0 + 2 * HD,
                                          C, NULL, 0, mine);
                }
                memcpy(dp + b * T * C, dimg, sizeof(float) * (size_t)(T * C));
                if (dinp) vt_gemm_panel_rows(&pdx, T, dimg, C, 0.0f, dinp + b * T * ig->D, ig->D);
            }
        }
    } else
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bh = 0; bh < pairs; bh++) {
            if (!T) continue;
            int64_t b = bh / H, hh = bh % H;
            const float *row0 = xp + b * sb + hh * Dh;
            float *drow0 = dp + b * T * C + hh * Dh;
            vt_attn_head hd = packed_head(&pg, row0, ldx, bh);
            if (bh + 1 < pairs) {
                int64_t nb = (bh + 1) / H, nh = (bh + 1) % H;
                for (int part = 0; part < 3; part++) prefetch_rows(xp + nb * sb + nh * Dh + part * HD, T, Dh, ldx);
                if (gp) prefetch_rows(gp + nb * T * HD + nh * Dh, T, Dh, HD);
                prefetch_rows(ap + (bh + 1) * T * T, 1, T * T, 0);
            }
            vt_attn_head_backward(&hd, gp ? gp + b * T * HD + hh * Dh : NULL, HD, ap + bh * T * T, T,
                                  gap ? gap + bh * T * T : NULL, T, drow0, C, drow0 + HD, C, drow0 + 2 * HD, C,
                                  NULL, 0, mine);
        }
    }
    scratch_free(&scr);
    vt_gemm_panel_free(&pw);
    vt_gemm_panel_free(&pdx);
    vt_tensor_decref(g);
    vt_tensor_decref(gy);
    vt_tensor_decref(woc);
    vt_tensor_decref(ga);
    *dx_out = dx;
    return VT_OK;
fail:
    st = vt_last_code();
    scratch_free(&scr);
    vt_gemm_panel_free(&pw);
    vt_gemm_panel_free(&pdx);
    if (ig) { vt_tensor_decref(ig->dx); ig->dx = NULL; }
    vt_tensor_decref(g);
    vt_tensor_decref(gy);
    vt_tensor_decref(woc);
    vt_tensor_decref(ga);
    vt_tensor_decref(dx);
    return st;
}

int vt_attention_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    if (!(n->needs_input_grad & 1)) return VT_OK;
    return packed_backward(n, n->saved[0], n->saved[1], n->nsaved > 2 ? n->saved[2] : NULL, gout, NULL, NULL, &gin[0]);
}

/* the output projection's gradients (dW_o = gyᵀ·out, db_o = Σ gy), dqkv as attention's backward
 * (its dout from gy·W_o), then the qkv projection's: dx = dqkv·W, dW = dqkvᵀ·x, db = Σ dqkv.
 * In staged plans dx_b = dqkv_b·W is computed per image from the staged rows (in_grad), so the
 * K = 3·H·Dh product reads dqkv from L2 instead of memory: the op's forward+backward 4-5 % faster
 * at 1 and 2 threads (two live workers alternating, 80 rounds), the seed step 0-7 % (bench/ab.py,
 * both side orders). dW and db still read dqkv from memory (vt_k_linear_grads): a per-image
 * chunked dW_c += dqkv_bᵀ·x_b as well measured no faster at 2 threads and 6 % slower at 1 (its
 * chunk of dW, W's panel and the staging overflow L2). */
int vt_qkv_attention_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    unsigned need = n->needs_input_grad;
    int proj = n->args.i[IARG(qkv_attention, apply_projection)] != 0, ns = n->nsaved - (proj ? 4 : 2);
    vt_tensor *x = n->saved[ns], *w = n->saved[ns + 1], *dqkv = NULL;
    vt_tensor *ao = proj ? n->saved[ns + 2] : NULL, *wo = proj ? n->saved[ns + 3] : NULL;
    if (proj && (need & 24) && gout[0])
        VT_TRY(vt_k_linear_grads(gout[0], ao, wo, NULL, need & 8 ? &gin[3] : NULL, need & 16 ? &gin[4] : NULL));
    if (!(need & 7)) return VT_OK;
    vt_tensor *wc = need & 1 ? vt_contiguous(w) : NULL;
    if ((need & 1) && !wc) return vt_last_code();
    in_grad ig = {.w = wc ? vt_f32(wc) : NULL, .D = w->shape[1]};
    int st = packed_backward(n, n->saved[0], n->saved[1], ns > 2 ? n->saved[2] : NULL, gout, wo, wc ? &ig : NULL, &dqkv);
    vt_tensor_decref(wc);
    if (st) return st;
    if (ig.dx) gin[0] = ig.dx; /* computed per image; dqkv still feeds dW and db */
    st = vt_k_linear_grads(dqkv, x, w, (need & 1) && !ig.dx ? &gin[0] : NULL, need & 2 ? &gin[1] : NULL,
                           n->nin > 2 && (need & 4) ? &gin[2] : NULL);
    vt_tensor_decref(dqkv);
    return st;
}

/* ---- sdpa: torch.nn.functional.scaled_dot_product_attention ---------------------------------- */

/* batch geometry shared by forward and backward: broadcast batch shape and per-batch offsets */
typedef struct {
    int nbd;
    int64_t bshape[VT_MAX_DIMS], nb, L, S, E, Ev;
    int64_t *off; /* nb × 4: offsets of q, k, v, mask for each batch index */
    int64_t ms0, ms1;
} sdpa_geom;

static int sdpa_geometry(sdpa_geom *g, const vt_tensor *q, const vt_tensor *k, const vt_tensor *v,
                         const vt_tensor *mask) {
    char b1[128], b2[128], b3[128];
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2)
        return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: query, key and value need at least 2 dims (..., T, E), "
                       "got %d-d, %d-d and %d-d", q->ndim, k->ndim, v->ndim);
    int nq = q->ndim, nk = k->ndim, nv = v->ndim;
    g->L = q->shape[nq - 2];
    g->E = q->shape[nq - 1];
    g->S = k->shape[nk - 2];
    g->Ev = v->shape[nv - 1];
    if (k->shape[nk - 1] != g->E || v->shape[nv - 2] != g->S)
        return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: query %s, key %s and value %s do not fit "
                       "(need (..., L, E), (..., S, E), (..., S, Ev))", vt_shape_str(nq, q->shape, b1, sizeof b1),
                       vt_shape_str(nk, k->shape, b2, sizeof b2), vt_shape_str(nv, v->shape, b3, sizeof b3));
    if (g->E == 0) return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: the embedding dim E must be positive");
    int64_t t1[VT_MAX_DIMS];
    int n1;
    if (vt_broadcast_shapes(nq - 2, q->shape, nk - 2, k->shape, &n1, t1, "scaled_dot_product_attention") ||
        vt_broadcast_shapes(n1, t1, nv - 2, v->shape, &g->nbd, g->bshape, "scaled_dot_product_attention"))
        return vt_last_code();
    int nbd = g->nbd;
    int64_t full[VT_MAX_DIMS], sm[VT_MAX_DIMS];
    memcpy(full, g->bshape, sizeof(int64_t) * (size_t)nbd);
    full[nbd] = g->L;
    full[nbd + 1] = g->S;
    if (mask) {
        int nm;
        int64_t ms[VT_MAX_DIMS];
        int ok = mask->ndim <= nbd + 2 &&
                 !vt_broadcast_shapes(mask->ndim, mask->shape, nbd + 2, full, &nm, ms, "scaled_dot_product_attention") &&
                 nm == nbd + 2 && !memcmp(ms, full, sizeof(int64_t) * (size_t)nm);
        if (!ok)
            return vt_fail(VT_ESHAPE, "scaled_dot_product_attention: attn_mask of shape %s does not broadcast to "
                           "the attention shape %s", vt_shape_str(mask->ndim, mask->shape, b1, sizeof b1),
                           vt_shape_str(nbd + 2, full, b2, sizeof b2));
        vt_broadcast_strides(mask, nbd + 2, full, sm);
        g->ms0 = sm[nbd];
        g->ms1 = sm[nbd + 1];
    }
    g->nb = vt_shape_numel(nbd, g->bshape);
    g->off = malloc(sizeof(int64_t) * 4 * (size_t)(g->nb ? g->nb : 1));
    if (!g->off) return vt_fail(VT_ENOMEM, "scaled_dot_product_attention: out of memory");
    int64_t st[4][VT_MAX_DIMS] = {{0}};
    const vt_tensor *ts[3] = {q, k, v};
    for (int t = 0; t < 3; t++) {
        vt_tensor geo = *ts[t];
        geo.ndim -= 2; /* batch dims only */
        vt_broadcast_strides(&geo, nbd, g->bshape, st[t]);
    }
    if (mask) memcpy(st[3], sm, sizeof sm); /* its first nbd entries are the batch strides */
    for (int64_t i = 0; i < g->nb; i++) {
        int64_t rem = i, o[4] = {0, 0, 0, 0};
        for (int d = nbd - 1; d >= 0; d--) {
            int64_t idx = rem % g->bshape[d];
            rem /= g->bshape[d];
            for (int t = 0; t < 4; t++) o[t] += idx * st[t][d];
        }
        memcpy(g->off + 4 * i, o, sizeof o);
    }
    return VT_OK;
}

static vt_attn_head sdpa_head(const sdpa_geom *g, int64_t bi, const vt_tensor *q, const vt_tensor *k,
                              const vt_tensor *v, const vt_tensor *mask, int causal, float scale, float p,
                              uint64_t seed, uint64_t base) {
    const int64_t *o = g->off + 4 * bi;
    vt_attn_head h = {.tq = g->L, .tk = g->S, .dh = g->E, .dv = g->Ev, .q = vt_f32(q) + o[0], .k = vt_f32(k) + o[1],
                      .v = vt_f32(v) + o[2], .ldq = q->strides[q->ndim - 2], .ldk = k->strides[k->ndim - 2],
                      .ldv = v->strides[v->ndim - 2], .scale = scale, .causal = causal, .dropout_p = p,
                      .seed = seed, .base = base, .elem0 = (uint64_t)(bi * g->L * g->S)};
    if (mask) {
        h.ms0 = g->ms0;
        h.ms1 = g->ms1;
        if (mask->dtype == VT_BOOL) h.mask_keep = vt_u8(mask) + o[3];
        else h.mask_add = vt_f32(mask) + o[3];
    }
    return h;
}

/* E^-1/2 when default_scale, else the given scale */
static double sdpa_scale(const vt_args *a, int64_t E) {
    return a->i[IARG(scaled_dot_product_attention, default_scale)] ? 1.0 / sqrt((double)E)
                                                                   : a->f[FARG(scaled_dot_product_attention, scale)];
}

/* inputs q (..., L, E), k (..., S, E), v (..., S, Ev), attn_mask or NULL (bool: True takes part;
 * float: added to the scores), batch dims broadcast. Saves q, k, v, P, the dropout draws, mask. */
int vt_sdpa_forward(vt_ctx *c) {
    const char *who = "scaled_dot_product_attention";
    if (c->nin < 3) return vt_fail(VT_EVALUE, "%s: expected query, key, value (and attn_mask)", who);
    vt_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2], *mask = c->nin > 3 ? c->in[3] : NULL;
    VT_TRY(vt_require_f32(q, who, "query"));
    VT_TRY(vt_require_f32(k, who, "key"));
    VT_TRY(vt_require_f32(v, who, "value"));
    if (mask && mask->dtype != VT_BOOL && mask->dtype != VT_FLOAT32)
        return vt_fail(VT_ETYPE, "%s: attn_mask must be bool or float32, got %s", who, vt_dtype_name(mask->dtype));
    int causal = (int)c->args->i[IARG(scaled_dot_product_attention, is_causal)];
    if (causal && mask) return vt_fail(VT_EVALUE, "%s: attn_mask must not be given together with is_causal=True", who);
    double p = c->args->f[FARG(scaled_dot_product_attention, dropout_p)];
    VT_TRY(check_dropout(who, p));
    sdpa_geom g = {0};
    vt_tensor *qc = NULL, *kc = NULL, *vc = NULL, *out = NULL, *P = NULL, *rng = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    if (!(qc = unit_last(q)) || !(kc = unit_last(k)) || !(vc = unit_last(v))) goto fail;
    if ((st = sdpa_geometry(&g, qc, kc, vc, mask))) goto done; /* offsets of the views the kernels read */
    double scale = sdpa_scale(c->args, g.E);
    int64_t shape[VT_MAX_DIMS];
    memcpy(shape, g.bshape, sizeof(int64_t) * (size_t)g.nbd);
    shape[g.nbd] = g.L;
    shape[g.nbd + 1] = g.Ev;
    if (!(out = vt_empty(VT_FLOAT32, g.nbd + 2, shape))) goto fail;
    shape[g.nbd + 1] = g.S;
    if (c->save && !(P = vt_empty(VT_FLOAT32, g.nbd + 2, shape))) goto fail;
    uint64_t seed = 0, base = 0;
    if (p > 0.0) {
        seed = vt_rng_get_seed();
        base = vt_rng_reserve(((uint64_t)(g.nb * g.L * g.S) + 3) / 4);
    }
    if (c->save && !(rng = rng_state(seed, base))) goto fail;
    int nt = team_size(g.nb, g.nb * g.L * g.S * (g.E + g.Ev));
    if (g.nb && g.L && (st = scratch_alloc(&scr, vt_attn_scratch_floats(g.L, g.S, g.E, g.Ev, p > 0.0), nt))) goto done;
    float *op = vt_f32(out), *pp = P ? vt_f32(P) : NULL;
    int64_t chunk = chunk_size(g.nb, nt);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bi = 0; bi < g.nb; bi++) {
            if (!g.L) continue;
            vt_attn_head h = sdpa_head(&g, bi, qc, kc, vc, mask, causal, (float)scale, (float)p, seed, base);
            vt_attn_head_forward(&h, op + bi * g.L * g.Ev, g.Ev, pp ? pp + bi * g.L * g.S : NULL, g.S, mine);
        }
    }
    c->out[0] = out;
    c->nout = 1;
    out = NULL;
    if ((st = vt_save(c, qc)) || (st = vt_save(c, kc)) || (st = vt_save(c, vc)) || (P && (st = vt_save(c, P))) ||
        (rng && (st = vt_save(c, rng))) || (mask && (st = vt_save(c, mask))))
        goto done;
    goto done;
fail:
    st = vt_last_code();
done:
    free(g.off);
    scratch_free(&scr);
    vt_tensor_decref(qc); vt_tensor_decref(kc); vt_tensor_decref(vc);
    vt_tensor_decref(out); vt_tensor_decref(P); vt_tensor_decref(rng);
    return st;
}

/* gradients land in full broadcast-shape buffers and are summed back to each input's shape */
int vt_sdpa_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *P = n->saved[3], *rng = n->saved[4];
    vt_tensor *mask = n->nsaved > 5 ? n->saved[5] : NULL;
    double p = n->args.f[FARG(scaled_dot_product_attention, dropout_p)];
    int causal = (int)n->args.i[IARG(scaled_dot_product_attention, is_causal)];
    sdpa_geom g = {0};
    vt_tensor *gc = NULL, *full[4] = {NULL, NULL, NULL, NULL};
    scratch_set scr = {0};
    int st = VT_OK;
    if ((st = sdpa_geometry(&g, q, k, v, mask))) goto done;
    double scale = sdpa_scale(&n->args, g.E);
    if (!(gc = vt_contiguous(gout[0]))) goto fail;
    int64_t widths[4][2] = {{g.L, g.E}, {g.S, g.E}, {g.S, g.Ev}, {g.L, g.S}};
    for (int t = 0; t < 4; t++) {
        if (!(n->needs_input_grad >> t & 1) || (t == 3 && (!mask || mask->dtype != VT_FLOAT32))) continue;
        int64_t shape[VT_MAX_DIMS];
        memcpy(shape, g.bshape, sizeof(int64_t) * (size_t)g.nbd);
        shape[g.nbd] = widths[t][0];
        shape[g.nbd + 1] = widths[t][1];
        if (!(full[t] = vt_empty(VT_FLOAT32, g.nbd + 2, shape))) goto fail;
    }
    uint64_t seed = (uint64_t)vt_i64(rng)[0], base = (uint64_t)vt_i64(rng)[1];
    int nt = team_size(g.nb, 2 * g.nb * g.L * g.S * (g.E + g.Ev));
    if (g.nb && g.L && (st = scratch_alloc(&scr, vt_attn_scratch_floats(g.L, g.S, g.E, g.Ev, p > 0.0), nt))) goto done;
    const float *gp = vt_f32(gc), *pp = vt_f32(P);
    float *fp[4];
    for (int t = 0; t < 4; t++) fp[t] = full[t] ? vt_f32(full[t]) : NULL;
    int64_t chunk = chunk_size(g.nb, nt);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = scr.buf ? scratch_mine(&scr) : NULL;
        #pragma omp for schedule(dynamic, chunk)
        for (int64_t bi = 0; bi < g.nb; bi++) {
            vt_attn_head h = sdpa_head(&g, bi, q, k, v, mask, causal, (float)scale, (float)p, seed, base);
            if (!g.L) { /* no queries: key and value get zero gradients */
                for (int t = 1; t < 3; t++)
                    if (fp[t]) memset(fp[t] + bi * widths[t][0] * widths[t][1], 0,
                                      sizeof(float) * (size_t)(widths[t][0] * widths[t][1]));
                continue;
            }
            vt_attn_head_backward(&h, gp + bi * g.L * g.Ev, g.Ev, pp + bi * g.L * g.S, g.S, NULL, 0,
                                  fp[0] ? fp[0] + bi * g.L * g.E : NULL, g.E, fp[1] ? fp[1] + bi * g.S * g.E : NULL, g.E,
                                  fp[2] ? fp[2] + bi * g.S * g.Ev : NULL, g.Ev, fp[3] ? fp[3] + bi * g.L * g.S : NULL,
                                  g.S, mine);
        }
    }
    for (int t = 0; t < 4; t++) {
        if (!full[t]) continue;
        const vt_meta *m = &n->in_meta[t];
        if (!(gin[t] = vt_k_sum_to(full[t], m->ndim, m->shape))) goto fail;
    }
    goto done;
fail:
    st = vt_last_code();
done:
    free(g.off);
    scratch_free(&scr);
    vt_tensor_decref(gc);
    for (int t = 0; t < 4; t++) vt_tensor_decref(full[t]);
    return st;
}

/* ---- reattention: DeepViT re-attention on the packed projection (SPEC §4.1) --------------------
 * P-DeepViT arXiv 2103.11886 eq. 3; official zhoudaquan/dvit_repo `ReAttention`, lucidrains deepvit.py.
 * Per image b, with A[b,h] = softmax(q_h·k_hᵀ·scale) and A' = dropout(A):
 *   Ã[b,g] = Σ_h Θ[g,h]·A'[b,h] + θ_g                       head mixing (a 1×1 conv over heads)
 *   x̂      = norm(Ã):  batch: (Ã − μ_g)·rstd_g, statistics per head g over its B·T² values
 *                             (training; eval uses the running ones)
 *                      layer: per (b, i, j) over the H values of the head axis
 *                      none:  x̂ = Ã
 *   Â      = ts·(γ_g·x̂ + β_g)   (none: ts·x̂; ts = the optional transform scale, 1 by default)
 *   O_g    = Â[b,g]·v_g, heads concatenated head-major as in `attention`.
 * The kernels of attention.h do the softmax and the products with v (vt_attn_probs, then the
 * mixing and norm here, then vt_attn_apply). Work runs per image (the mixing needs all heads of
 * an image at once); per-image partial sums (norm statistics, dΘ, dθ, dγ, dβ) are reduced over
 * images in order afterwards, so results do not depend on the thread count. */

enum { REATTN_NONE = 0, REATTN_BATCH = 1, REATTN_LAYER = 2 };

/* Σ x and Σ x·y over n contiguous floats: float SIMD blocks, block totals in double (as norm.c) */
static double rsum(const float *x, int64_t n) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) a += x[i];
        S += a;
    }
    return S;
}

static double rdot(const float *x, const float *y, int64_t n) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) a += x[i] * y[i];
        S += a;
    }
    return S;
}

/* Σ (x − m)² and Σ g·(x − m)·r (g NULL: the first) */
static double rdev2(const float *x, int64_t n, float m) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) { float d = x[i] - m; a += d * d; }
        S += a;
    }
    return S;
}

static double rgdev(const float *g, const float *x, int64_t n, float m, float r) {
    double S = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t i1 = i0 + 256 < n ? i0 + 256 : n;
        float a = 0;
        #pragma omp simd reduction(+ : a)
        for (int64_t i = i0; i < i1; i++) a += g[i] * ((x[i] - m) * r);
        S += a;
    }
    return S;
}

/* geometry and parameters of one re-attention call, shared by forward and backward */
typedef struct {
    int64_t B, T, H, Dh, HD, C, TT, tkp;
    int norm, training, drop;
    float scale, p, ts;
    double eps;
    uint64_t seed, base;
} reattn_geom;

static vt_attn_head reattn_head(const reattn_geom *g, const float *xp, int64_t sb, int64_t ldx, int64_t b,
                                int64_t h) {
    const float *row0 = xp + b * sb + h * g->Dh;
    vt_attn_head hd = {.tq = g->T, .tk = g->T, .dh = g->Dh, .dv = g->Dh, .q = row0, .k = row0 + g->HD,
                       .v = row0 + 2 * g->HD, .ldq = ldx, .ldk = ldx, .ldv = ldx, .scale = g->scale,
                       .dropout_p = g->p, .seed = g->seed, .base = g->base,
                       .elem0 = (uint64_t)((b * g->H + h) * g->TT)};
    return hd;
}

/* A'[b] (H × T²) into dst: A[b] times image b's dropout multipliers (mult: tkp floats of room) */
static void reattn_dropped(const reattn_geom *g, const float *xp, int64_t sb, int64_t ldx, int64_t b,
                           const float *Ab, float *dst, float *mult) {
    for (int64_t h = 0; h < g->H; h++) {
        vt_attn_head hd = reattn_head(g, xp, sb, ldx, b, h);
        for (int64_t i = 0; i < g->T; i++) {
            vt_attn_dropout_row(&hd, i, mult);
            const float *a = Ab + h * g->TT + i * g->T;
            float *d = dst + h * g->TT + i * g->T;
            for (int64_t j = 0; j < g->T; j++) d[j] = a[j] * mult[j];
        }
    }
}

/* layer norm over the head axis of one image: x (H × T², rows TT apart) -> mean, rstd (T²) */
static void reattn_ln_stats(const float *x, int64_t H, int64_t TT, double eps, float *mean, float *rstd) {
    for (int64_t k = 0; k < TT; k++) mean[k] = 0.0f;
    for (int64_t h = 0; h < H; h++)
        for (int64_t k = 0; k < TT; k++) mean[k] += x[h * TT + k];
    for (int64_t k = 0; k < TT; k++) { mean[k] /= (float)H; rstd[k] = 0.0f; }
    for (int64_t h = 0; h < H; h++)
        for (int64_t k = 0; k < TT; k++) { float d = x[h * TT + k] - mean[k]; rstd[k] += d * d; }
    for (int64_t k = 0; k < TT; k++) rstd[k] = (float)(1.0 / sqrt((double)rstd[k] / (double)H + eps));
}

/* a float32 (n,) or (n, n) parameter, made contiguous (new ref in *out; NULL when p is NULL) */
static int reattn_param(vt_tensor *p, int nd, int64_t n, const char *what, vt_tensor **out) {
    *out = NULL;
    if (!p) return VT_OK;
    VT_TRY(vt_require_f32(p, "reattention", what));
    int64_t want[2] = {n, n};
    if (p->ndim != nd || p->shape[0] != n || (nd == 2 && p->shape[1] != n)) {
        char b1[128], b2[128];
        return vt_fail(VT_ESHAPE, "reattention: %s has shape %s, expected %s (heads = %lld)", what,
                       vt_shape_str(p->ndim, p->shape, b1, sizeof b1), vt_shape_str(nd, want, b2, sizeof b2),
                       (long long)n);
    }
    *out = vt_contiguous(p);
    return *out ? VT_OK : vt_last_code();
}

/* running_mean / running_var: float32 contiguous (H,), no grad, sharing no memory with the inputs */
static int reattn_running(const vt_ctx *c, int idx, int64_t H, const char *what) {
    const vt_tensor *r = c->in[idx];
    VT_TRY(vt_require_f32(r, "reattention", what));
    char b1[128];
    if (r->ndim != 1 || r->shape[0] != H)
        return vt_fail(VT_ESHAPE, "reattention: %s has shape %s, expected (%lld,) (one value per head)", what,
                       vt_shape_str(r->ndim, r->shape, b1, sizeof b1), (long long)H);
    if (!vt_is_contiguous(r)) return vt_fail(VT_EVALUE, "reattention: %s must be contiguous (updated in place)", what);
    if (r->requires_grad) return vt_fail(VT_ERUNTIME, "reattention: %s must not require grad (it is a buffer)", what);
    for (int i = 0; i < c->nin; i++) {
        const vt_tensor *o = c->in[i];
        if (i == idx || !o || o->storage != r->storage || !vt_numel(o)) continue;
        int64_t a0 = r->offset, a1 = r->offset + H - 1, b0 = o->offset, b1v = o->offset;
        for (int d = 0; d < o->ndim; d++) b1v += (o->shape[d] - 1) * o->strides[d];
        if (a0 <= b1v && b0 <= a1) return vt_fail(VT_EVALUE, "reattention: %s shares memory with argument %d", what, i);
    }
    return VT_OK;
}

/* inputs: qkv (B, T, 3·H·Dh), theta (H, H), theta_bias (H)?, norm_weight (H)?, norm_bias (H)?,
 * running_mean (H)?, running_var (H)?. Saves: qkv, A (pre-dropout softmax), Ã, Â, stats (2, H) for
 * batch or (2, B, T, T) for layer (mean, rstd; (2, 1) unused for none), Θ, γ (ones when absent),
 * the dropout draws. */
int vt_reattention_forward(vt_ctx *c) {
    const char *who = "reattention";
    vt_tensor *x = c->nin > 0 ? c->in[0] : NULL, *th = c->nin > 1 ? c->in[1] : NULL;
    vt_tensor *tb = c->nin > 2 ? c->in[2] : NULL, *w = c->nin > 3 ? c->in[3] : NULL, *bi = c->nin > 4 ? c->in[4] : NULL;
    vt_tensor *rm = c->nin > 5 ? c->in[5] : NULL, *rv = c->nin > 6 ? c->in[6] : NULL;
    VT_TRY(vt_require_f32(x, who, "qkv"));
    char buf[128];
    if (x->ndim != 3)
        return vt_fail(VT_ESHAPE, "reattention: qkv must be 3-d (B, T, 3*heads*head_dim), got shape %s",
                       vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    int64_t H = c->args->i[IARG(reattention, heads)], C = x->shape[2];
    if (H <= 0) return vt_fail(VT_EVALUE, "reattention: heads must be positive, got %lld", (long long)H);
    if (C == 0 || H > C / 3 || C % (3 * H))
        return vt_fail(VT_ESHAPE, "reattention: qkv's last dim %lld is not a positive multiple of 3*heads (heads = %lld, "
                       "shape %s)", (long long)C, (long long)H, vt_shape_str(x->ndim, x->shape, buf, sizeof buf));
    if (!th) return vt_fail(VT_EVALUE, "reattention: theta (the heads x heads mixing matrix) is required");
    reattn_geom g = {.B = x->shape[0], .T = x->shape[1], .H = H, .C = C};
    g.Dh = C / (3 * H);
    g.HD = H * g.Dh;
    g.TT = g.T * g.T;
    g.tkp = pad8(g.T);
    int64_t norm = c->args->i[IARG(reattention, norm)];
    if (norm < REATTN_NONE || norm > REATTN_LAYER)
        return vt_fail(VT_EVALUE, "reattention: norm must be 0 (none), 1 (batch) or 2 (layer), got %lld", (long long)norm);
    g.norm = (int)norm;
#define RA_I(name) c->args->i[IARG(reattention, name)]
#define RA_F(name) c->args->f[FARG(reattention, name)]
    g.training = RA_I(training) != 0;
    double scale = RA_I(default_scale) ? 1.0 / sqrt((double)g.Dh) : RA_F(scale), p = RA_F(dropout_p);
    double momentum = RA_F(momentum), eps = RA_F(eps), ts = RA_F(transform_scale);
    VT_TRY(check_dropout(who, p));
    if (!isfinite(scale)) return vt_fail(VT_EVALUE, "reattention: scale must be finite, got %g", scale);
    if (!isfinite(ts)) return vt_fail(VT_EVALUE, "reattention: transform scale must be finite, got %g", ts);
    if (!(eps >= 0) || !isfinite(eps)) return vt_fail(VT_EVALUE, "reattention: eps must be finite and >= 0, got %g", eps);
    if (!isfinite(momentum)) return vt_fail(VT_EVALUE, "reattention: momentum must be finite, got %g", momentum);
    g.scale = (float)scale;
    g.p = (float)p;
    g.drop = p > 0.0;
    g.ts = (float)ts;
    g.eps = eps;
    if (g.norm == REATTN_NONE && (w || bi))
        return vt_fail(VT_EVALUE, "reattention: norm_weight/norm_bias given but norm is none");
    if (g.norm != REATTN_BATCH && (rm || rv))
        return vt_fail(VT_EVALUE, "reattention: running statistics are only used by the batch norm");
    if ((rm == NULL) != (rv == NULL))
        return vt_fail(VT_EVALUE, "reattention: running_mean and running_var must both be given or both be None");
    if (g.norm == REATTN_BATCH && !g.training && !rm)
        return vt_fail(VT_EVALUE, "reattention: the batch norm needs running_mean and running_var when training is False");
    if (rm) {
        VT_TRY(reattn_running(c, 5, H, "running_mean"));
        VT_TRY(reattn_running(c, 6, H, "running_var"));
    }
    int64_t n = g.B * g.TT; /* values per head for the batch statistics */
    if (g.norm == REATTN_BATCH && g.training && n <= 1)
        return vt_fail(VT_EVALUE, "reattention: batch norm over the heads needs more than 1 value per head when "
                       "training, got B*T*T = %lld", (long long)n);
    vt_tensor *t[4] = {0}; /* theta, theta_bias, weight, bias (contiguous) */
    int st = reattn_param(th, 2, H, "theta", &t[0]);
    if (!st) st = reattn_param(tb, 1, H, "theta_bias", &t[1]);
    if (!st) st = reattn_param(w, 1, H, "norm_weight", &t[2]);
    if (!st) st = reattn_param(bi, 1, H, "norm_bias", &t[3]);
    vt_tensor *xc = NULL, *out = NULL, *A = NULL, *At = NULL, *Ah = NULL, *stats = NULL, *gam = NULL, *rng = NULL;
    double *part = NULL;
    scratch_set scr = {0};
    if (st) goto done;
    if (!(xc = unit_last(x))) goto fail;
    int64_t B = g.B, T = g.T, TT = g.TT, HD = g.HD;
    int64_t s4[4] = {B, H, T, T};
    if (!(out = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD})) || !(A = vt_empty(VT_FLOAT32, 4, s4)) ||
        !(At = vt_empty(VT_FLOAT32, 4, s4)) || !(Ah = vt_empty(VT_FLOAT32, 4, s4)))
        goto fail;
    if (g.norm == REATTN_LAYER) stats = vt_empty(VT_FLOAT32, 4, (int64_t[]){2, B, T, T});
    else stats = vt_empty(VT_FLOAT32, 2, (int64_t[]){2, g.norm == REATTN_BATCH ? H : 1});
    if (!stats || !(gam = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    for (int64_t k = 0; k < H; k++) vt_f32(gam)[k] = t[2] ? vt_f32(t[2])[k] : 1.0f;
    if (g.drop) {
        g.seed = vt_rng_get_seed();
        g.base = vt_rng_reserve(((uint64_t)(B * H * TT) + 3) / 4);
    }
    if (!(rng = rng_state(g.seed, g.base))) goto fail;
    if (!(part = malloc(sizeof(double) * (size_t)(2 * B * H + 1)))) { vt_fail(VT_ENOMEM, "reattention: out of memory"); goto fail; }
    int nt = team_size(B, B * H * TT * (2 * g.Dh + H));
    /* thread scratch: the padded map (T × tkp), packing room, a row of multipliers, A' (H × T²) */
    int64_t per = T * g.tkp + pack_floats(T, T, g.Dh, g.Dh) + g.tkp + 8 + (g.drop ? H * TT : 0);
    per = (per + 15) & ~(int64_t)15;
    if (B && T && (st = scratch_alloc(&scr, per, nt))) goto done;
    const float *xp = vt_f32(xc), *TH = vt_f32(t[0]), *TB = t[1] ? vt_f32(t[1]) : NULL;
    const float *GA = vt_f32(gam), *BE = t[3] ? vt_f32(t[3]) : NULL;
    float *ap = vt_f32(A), *atp = vt_f32(At), *ahp = vt_f32(Ah), *op = vt_f32(out), *sp = vt_f32(stats);
    int64_t sb = xc->strides[0], ldx = xc->strides[1];
    const attn_kernels *K = kern();
    /* 1. maps, dropout, head mixing; per-image Σ Ã of each head */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        if (!T) continue;
        float *s = scratch_mine(&scr), *aux = s + T * g.tkp, *mult = aux + pack_floats(T, T, g.Dh, g.Dh);
        float *ad = mult + g.tkp + 8;
        float *Ab = ap + b * H * TT, *Atb = atp + b * H * TT;
        for (int64_t h = 0; h < H; h++) {
            vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
            vt_attn_probs(&hd, s, g.tkp, aux);
            for (int64_t i = 0; i < T; i++) memcpy(Ab + h * TT + i * T, s + i * g.tkp, sizeof(float) * (size_t)T);
        }
        const float *src = Ab;
        if (g.drop) { reattn_dropped(&g, xp, sb, ldx, b, Ab, ad, mult); src = ad; }
        K->gemm(H, TT, H, 1.0f, TH, H, 1, src, TT, 0, NULL, Atb, TT); /* Ã[b] = Θ·A'[b] */
        for (int64_t h = 0; h < H; h++) {
            float *row = Atb + h * TT, bias = TB ? TB[h] : 0.0f;
            if (TB) for (int64_t k = 0; k < TT; k++) row[k] += bias;
            part[b * H + h] = rsum(row, TT);
        }
    }
    /* 2. batch statistics per head (two passes: mean, then Σ(Ã − μ)²), or the running ones */
    float *mu = sp, *rs = sp + (g.norm == REATTN_BATCH ? H : 0);
    if (g.norm == REATTN_BATCH && g.training) {
        for (int64_t h = 0; h < H; h++) {
            double s = 0;
            for (int64_t b = 0; b < B; b++) s += part[b * H + h];
            mu[h] = (float)(s / (double)n);
        }
        #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) part[B * H + b * H + h] = rdev2(atp + (b * H + h) * TT, TT, mu[h]);
        for (int64_t h = 0; h < H; h++) {
            double q = 0;
            for (int64_t b = 0; b < B; b++) q += part[B * H + b * H + h];
            double var = q / (double)n;
            rs[h] = (float)(1.0 / sqrt(var + eps));
            if (rm) {
                float *RM = vt_f32(rm), *RV = vt_f32(rv);
                RM[h] = (float)((1.0 - momentum) * RM[h] + momentum * (double)mu[h]);
                RV[h] = (float)((1.0 - momentum) * RV[h] + momentum * var * (double)n / (double)(n - 1));
            }
        }
    } else if (g.norm == REATTN_BATCH) {
        const float *RM = vt_f32(rm), *RV = vt_f32(rv);
        for (int64_t h = 0; h < H; h++) { mu[h] = RM[h]; rs[h] = (float)(1.0 / sqrt((double)RV[h] + eps)); }
    }
    /* 3. Â = ts·(γ·x̂ + β), O = Â·v per head */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        if (!T) continue;
        float *aux = scratch_mine(&scr) + T * g.tkp;
        const float *Atb = atp + b * H * TT;
        float *Ahb = ahp + b * H * TT;
        float *lm = sp + b * TT, *lr = sp + B * TT + b * TT;
        if (g.norm == REATTN_LAYER) reattn_ln_stats(Atb, H, TT, eps, lm, lr);
        for (int64_t h = 0; h < H; h++) {
            const float *xr = Atb + h * TT;
            float *yr = Ahb + h * TT, be = BE ? BE[h] : 0.0f;
            if (g.norm == REATTN_BATCH) {
                float a = g.ts * GA[h] * rs[h], m = mu[h], c0 = g.ts * be;
                for (int64_t k = 0; k < TT; k++) yr[k] = (xr[k] - m) * a + c0;
            } else if (g.norm == REATTN_LAYER) {
                float a = g.ts * GA[h], c0 = g.ts * be;
                for (int64_t k = 0; k < TT; k++) yr[k] = (xr[k] - lm[k]) * lr[k] * a + c0;
            } else {
                for (int64_t k = 0; k < TT; k++) yr[k] = xr[k] * g.ts;
            }
            vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
            vt_attn_apply(&hd, yr, T, op + b * T * HD + h * g.Dh, HD, aux);
        }
    }
    c->out[0] = out;
    c->nout = 1;
    out = NULL;
    if (RA_I(need_weights)) {
        vt_tensor_incref(Ah);
        c->out[c->nout++] = Ah;
    }
    if (RA_I(return_softmax)) { /* the softmax maps too (diagnostics) */
        vt_tensor_incref(A);
        c->out[c->nout++] = A;
    }
    if ((st = vt_save(c, xc)) || (st = vt_save(c, A)) || (st = vt_save(c, At)) || (st = vt_save(c, Ah)) ||
        (st = vt_save(c, stats)) || (st = vt_save(c, t[0])) || (st = vt_save(c, gam)) || (st = vt_save(c, rng)))
        goto done; /* outputs already belong to c: the dispatcher releases them */
    goto done;
fail:
    st = vt_last_code();
done:
    free(part);
    scratch_free(&scr);
    for (int k = 0; k < 4; k++) vt_tensor_decref(t[k]);
    vt_tensor_decref(xc); vt_tensor_decref(out); vt_tensor_decref(A); vt_tensor_decref(At);
    vt_tensor_decref(Ah); vt_tensor_decref(stats); vt_tensor_decref(gam); vt_tensor_decref(rng);
    return st;
#undef RA_I
#undef RA_F
}

/* Backward (SPEC §4.1), in reverse order of the forward:
 *   dÂ = dO_g·v_gᵀ (+ the gradient on the returned maps), dv_g = Â[b,g]ᵀ·dO_g; dy = ts·dÂ
 *   dβ_g = Σ dy, dγ_g = Σ dy·x̂; batch train: dÃ = γ·rstd/n·(n·dy − Σdy − x̂·Σ dy·x̂), eval: γ·rstd·dy;
 *   layer: dx̂ = γ·dy, dÃ = rstd·(dx̂ − mean_h dx̂ − x̂·mean_h(dx̂·x̂)); none: dÃ = dy
 *   dΘ[g,h] = Σ dÃ[b,g]·A'[b,h], dθ_g = Σ dÃ[b,g], dA'[b] = Θᵀ·dÃ[b], dA = dA'⊙mask/(1−p)
 *   then the softmax backward and dq, dk per head (vt_attn_probs_backward). */
int vt_reattention_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *A = n->saved[1], *At = n->saved[2], *Ah = n->saved[3], *stats = n->saved[4];
    vt_tensor *th = n->saved[5], *gam = n->saved[6], *rng = n->saved[7];
    unsigned want = n->needs_input_grad;
    int want_x = want & 1, want_th = want >> 1 & 1, want_tb = want >> 2 & 1, want_w = want >> 3 & 1, want_b = want >> 4 & 1;
#define RA_I(name) n->args.i[IARG(reattention, name)]
#define RA_F(name) n->args.f[FARG(reattention, name)]
    reattn_geom g = {.B = x->shape[0], .T = x->shape[1], .H = RA_I(heads), .C = x->shape[2]};
    g.Dh = g.C / (3 * g.H);
    g.HD = g.H * g.Dh;
    g.TT = g.T * g.T;
    g.tkp = pad8(g.T);
    g.norm = (int)RA_I(norm);
    g.training = RA_I(training) != 0;
    g.scale = (float)(RA_I(default_scale) ? 1.0 / sqrt((double)g.Dh) : RA_F(scale));
    g.p = (float)RA_F(dropout_p);
    g.drop = RA_F(dropout_p) > 0.0;
    g.ts = (float)RA_F(transform_scale);
    g.eps = RA_F(eps);
    g.seed = (uint64_t)vt_i64(rng)[0];
    g.base = (uint64_t)vt_i64(rng)[1];
    int64_t B = g.B, T = g.T, H = g.H, TT = g.TT, HD = g.HD, C = g.C;
    vt_tensor *go = NULL, *ga = NULL, *D = NULL, *dx = NULL, *dth = NULL, *dtb = NULL, *dw = NULL, *db = NULL;
    double *part = NULL;
    float *coef = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    /* outputs: out [, Â if need_weights] [, A if return_softmax]; gp: the gradient on the returned
     * softmax maps A */
    int ia = RA_I(need_weights) ? 1 : -1, ip = RA_I(return_softmax) ? (RA_I(need_weights) ? 2 : 1) : -1;
#undef RA_I
#undef RA_F
    vt_tensor *gpr = NULL;
    if ((gout[0] && !(go = vt_contiguous(gout[0]))) || (ia > 0 && gout[ia] && !(ga = vt_contiguous(gout[ia]))) ||
        (ip > 0 && gout[ip] && !(gpr = vt_contiguous(gout[ip]))))
        goto fail;
    int64_t s4[4] = {B, H, T, T};
    if (!(D = vt_empty(VT_FLOAT32, 4, s4))) goto fail;
    if (want_x && !(dx = vt_zeros(VT_FLOAT32, 3, x->shape))) goto fail;
    if (want_th && !(dth = vt_empty(VT_FLOAT32, 2, (int64_t[]){H, H}))) goto fail;
    if (want_tb && !(dtb = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    if (want_w && !(dw = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    if (want_b && !(db = vt_empty(VT_FLOAT32, 1, (int64_t[]){H}))) goto fail;
    /* per image: Σdy, Σdy·x̂ (2·H), Σ dÃ (H), dΘ (H·H) */
    int64_t pw = 3 * H + H * H;
    part = calloc((size_t)(B * pw + 1), sizeof(double));
    coef = malloc(sizeof(float) * (size_t)(3 * H + 1));
    if (!part || !coef) { vt_fail(VT_ENOMEM, "reattention backward: out of memory"); goto fail; }
    int nt = team_size(B, 2 * B * H * TT * (2 * g.Dh + H));
    int64_t per = T * g.tkp + pack_floats(T, T, g.Dh, g.Dh) + g.tkp + 8 + (g.drop ? H * TT : 0) + H * TT + 2 * TT;
    per = (per + 15) & ~(int64_t)15;
    if (B && T && (st = scratch_alloc(&scr, per, nt))) goto done;
    const float *xp = vt_f32(x), *ap = vt_f32(A), *atp = vt_f32(At), *ahp = vt_f32(Ah), *sp = vt_f32(stats);
    const float *TH = vt_f32(th), *GA = vt_f32(gam), *gop = go ? vt_f32(go) : NULL, *gap = ga ? vt_f32(ga) : NULL;
    float *Dp = vt_f32(D), *dxp = dx ? vt_f32(dx) : NULL;
    int64_t sb = x->strides[0], ldx = x->strides[1];
    const float *mu = sp, *rs = sp + (g.norm == REATTN_BATCH ? H : 0);
    const attn_kernels *K = kern();
    /* 1. dy (in D), dv; per-image Σdy, Σdy·x̂; the layer norm's dÃ (in place) */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        if (!T) continue;
        float *dm = scratch_mine(&scr), *aux = dm + T * g.tkp;
        float *e = aux + pack_floats(T, T, g.Dh, g.Dh) + g.tkp + 8 + (g.drop ? H * TT : 0), *t1 = e + H * TT, *t2 = t1 + TT;
        float *Db = Dp + b * H * TT;
        const float *Atb = atp + b * H * TT, *lm = sp + b * TT, *lr = sp + B * TT + b * TT;
        double *pb = part + b * pw;
        for (int64_t h = 0; h < H; h++) {
            vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
            float *dr = Db + h * TT;
            const float *gar = gap ? gap + (b * H + h) * TT : NULL;
            if (gop) {
                vt_attn_apply_backward(&hd, ahp + (b * H + h) * TT, T, gop + b * T * HD + h * g.Dh, HD, dm, g.tkp,
                                       dxp ? dxp + b * T * C + 2 * HD + h * g.Dh : NULL, C, aux);
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = 0; j < T; j++)
                        dr[i * T + j] = g.ts * (dm[i * g.tkp + j] + (gar ? gar[i * T + j] : 0.0f));
            } else {
                for (int64_t k = 0; k < TT; k++) dr[k] = gar ? g.ts * gar[k] : 0.0f;
            }
            if (g.norm == REATTN_BATCH) {
                pb[h] = rsum(dr, TT);
                pb[H + h] = rgdev(dr, Atb + h * TT, TT, mu[h], rs[h]);
            } else if (g.norm == REATTN_LAYER) {
                pb[h] = rsum(dr, TT);
                double s2 = 0;
                const float *xr = Atb + h * TT;
                for (int64_t k = 0; k < TT; k++) s2 += (double)(dr[k] * ((xr[k] - lm[k]) * lr[k]));
                pb[H + h] = s2;
            }
        }
        if (g.norm == REATTN_LAYER && (want_x | want_th | want_tb)) {
            /* t1 = mean_h dx̂, t2 = mean_h dx̂·x̂ at each position; e holds dx̂ = γ·dy */
            for (int64_t k = 0; k < TT; k++) t1[k] = t2[k] = 0.0f;
            for (int64_t h = 0; h < H; h++) {
                const float *dr = Db + h * TT, *xr = Atb + h * TT;
                float *er = e + h * TT;
                for (int64_t k = 0; k < TT; k++) {
                    er[k] = GA[h] * dr[k];
                    t1[k] += er[k];
                    t2[k] += er[k] * ((xr[k] - lm[k]) * lr[k]);
                }
            }
            for (int64_t h = 0; h < H; h++) {
                const float *xr = Atb + h * TT, *er = e + h * TT;
                float *dr = Db + h * TT;
                for (int64_t k = 0; k < TT; k++) {
                    float xh = (xr[k] - lm[k]) * lr[k];
                    dr[k] = lr[k] * (er[k] - t1[k] / (float)H - xh * t2[k] / (float)H);
                }
            }
        }
    }
    /* dγ, dβ; the batch norm's coefficients dÃ = A·dy + B·(Ã − μ) + D */
    double cnt = (double)(B * TT);
    for (int64_t h = 0; h < H; h++) {
        double sdy = 0, sdx = 0;
        for (int64_t b = 0; b < B; b++) { sdy += part[b * pw + h]; sdx += part[b * pw + H + h]; }
        if (dw) vt_f32(dw)[h] = (float)sdx;
        if (db) vt_f32(db)[h] = (float)sdy;
        if (g.norm == REATTN_BATCH) {
            double gr = (double)GA[h] * rs[h];
            coef[h] = (float)gr;
            coef[H + h] = g.training && cnt > 0 ? (float)(-gr * rs[h] * sdx / cnt) : 0.0f;
            coef[2 * H + h] = g.training && cnt > 0 ? (float)(-gr * sdy / cnt) : 0.0f;
        }
    }
    /* 2. dÃ (batch), dθ, dΘ, dA' = Θᵀ·dÃ, dropout, softmax backward, dq and dk */
    if (want_x | want_th | want_tb) {
        #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            if (!T) continue;
            float *aux = scratch_mine(&scr) + T * g.tkp, *mult = aux + pack_floats(T, T, g.Dh, g.Dh);
            float *ad = mult + g.tkp + 8, *e = ad + (g.drop ? H * TT : 0);
            float *Db = Dp + b * H * TT;
            const float *Ab = ap + b * H * TT, *Atb = atp + b * H * TT;
            double *pb = part + b * pw;
            if (g.norm == REATTN_BATCH)
                for (int64_t h = 0; h < H; h++) {
                    float *dr = Db + h * TT, a = coef[h], bb = coef[H + h], d = coef[2 * H + h], m = mu[h];
                    const float *xr = Atb + h * TT;
                    for (int64_t k = 0; k < TT; k++) dr[k] = dr[k] * a + (xr[k] - m) * bb + d;
                }
            const float *src = Ab;
            if (g.drop && want_th) { reattn_dropped(&g, xp, sb, ldx, b, Ab, ad, mult); src = ad; }
            for (int64_t h = 0; h < H; h++) {
                if (want_tb) pb[2 * H + h] = rsum(Db + h * TT, TT);
                if (want_th)
                    for (int64_t k = 0; k < H; k++) pb[3 * H + h * H + k] = rdot(Db + h * TT, src + k * TT, TT);
            }
            if (!want_x) continue;
            K->gemm(H, TT, H, 1.0f, TH, 1, H, Db, TT, 0, NULL, e, TT); /* dA'[b] = Θᵀ·dÃ[b] */
            for (int64_t h = 0; h < H; h++) {
                vt_attn_head hd = reattn_head(&g, xp, sb, ldx, b, h);
                float *er = e + h * TT;
                if (g.drop)
                    for (int64_t i = 0; i < T; i++) {
                        vt_attn_dropout_row(&hd, i, mult);
                        for (int64_t j = 0; j < T; j++) er[i * T + j] *= mult[j];
                    }
                if (gpr) {
                    const float *gr = vt_f32(gpr) + (b * H + h) * TT;
                    for (int64_t k = 0; k < TT; k++) er[k] += gr[k];
                }
                float *drow = dxp + b * T * C + h * g.Dh;
                vt_attn_probs_backward(&hd, Ab + h * TT, T, er, T, drow, C, drow + HD, C, aux);
            }
        }
        for (int64_t h = 0; h < H; h++) {
            double s = 0;
            for (int64_t b = 0; b < B; b++) s += part[b * pw + 2 * H + h];
            if (dtb) vt_f32(dtb)[h] = (float)s;
            for (int64_t k = 0; k < H && dth; k++) {
                double q = 0;
                for (int64_t b = 0; b < B; b++) q += part[b * pw + 3 * H + h * H + k];
                vt_f32(dth)[h * H + k] = (float)q;
            }
        }
    }
    gin[0] = dx;
    gin[1] = dth;
    gin[2] = dtb;
    gin[3] = dw;
    gin[4] = db;
    dx = dth = dtb = dw = db = NULL;
    goto done;
fail:
    st = vt_last_code();
done:
    free(part);
    free(coef);
    scratch_free(&scr);
    vt_tensor_decref(go); vt_tensor_decref(ga); vt_tensor_decref(gpr); vt_tensor_decref(D); vt_tensor_decref(dx);
    vt_tensor_decref(dth); vt_tensor_decref(dtb); vt_tensor_decref(dw); vt_tensor_decref(db);
    return st;
}

/* ---- attention_apply: O = M·v with given maps (DeepViT attention reuse, SPEC §4.3) -------------
 * qkv (B, T, 3·H·Dh) supplies v (its q and k are not read), maps M (B, H, T, T) come from another
 * block; O_h = M[b,h]·v_h, heads concatenated head-major. Backward: dv_h = M[b,h]ᵀ·dO_h into the v
 * part of a zero dqkv, dM[b,h] = dO_h·v_hᵀ (so the block that made M gets its gradient). */
int vt_attention_apply_forward(vt_ctx *c) {
    const char *who = "attention_apply";
    vt_tensor *x = c->nin > 0 ? c->in[0] : NULL, *m = c->nin > 1 ? c->in[1] : NULL;
    VT_TRY(vt_require_f32(x, who, "qkv"));
    VT_TRY(vt_require_f32(m, who, "maps"));
    char b1[128], b2[128];
    int64_t H = c->args->i[IARG(attention_apply, heads)];
    if (H <= 0) return vt_fail(VT_EVALUE, "attention_apply: heads must be positive, got %lld", (long long)H);
    if (x->ndim != 3 || x->shape[2] == 0 || H > x->shape[2] / 3 || x->shape[2] % (3 * H))
        return vt_fail(VT_ESHAPE, "attention_apply: qkv must be (B, T, 3*heads*head_dim) with heads = %lld, got %s",
                       (long long)H, vt_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int64_t B = x->shape[0], T = x->shape[1], Dh = x->shape[2] / (3 * H), HD = H * Dh;
    if (m->ndim != 4 || m->shape[0] != B || m->shape[1] != H || m->shape[2] != T || m->shape[3] != T)
        return vt_fail(VT_ESHAPE, "attention_apply: maps must be (B, heads, T, T) = (%lld, %lld, %lld, %lld) for qkv %s, "
                       "got %s", (long long)B, (long long)H, (long long)T, (long long)T,
                       vt_shape_str(x->ndim, x->shape, b1, sizeof b1), vt_shape_str(m->ndim, m->shape, b2, sizeof b2));
    vt_tensor *xc = unit_last(x), *mc = NULL, *out = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    if (!xc || !(mc = vt_contiguous(m)) || !(out = vt_empty(VT_FLOAT32, 3, (int64_t[]){B, T, HD}))) goto fail;
    int64_t pairs = B * H;
    int nt = team_size(pairs, pairs * T * T * Dh);
    if (pairs && T && (st = scratch_alloc(&scr, pack_floats(T, T, Dh, Dh) + 16, nt))) goto done;
    const float *xp = vt_f32(xc), *mp = vt_f32(mc);
    float *op = vt_f32(out);
    int64_t sb = xc->strides[0], ldx = xc->strides[1];
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t bh = 0; bh < pairs; bh++) {
        if (!T) continue;
        int64_t b = bh / H, h = bh % H;
        vt_attn_head hd = {.tq = T, .tk = T, .dh = Dh, .dv = Dh, .v = xp + b * sb + 2 * HD + h * Dh, .ldv = ldx};
        vt_attn_apply(&hd, mp + bh * T * T, T, op + b * T * HD + h * Dh, HD, scratch_mine(&scr));
    }
    c->out[0] = out;
    c->nout = 1;
    out = NULL;
    if ((st = vt_save(c, xc)) || (st = vt_save(c, mc))) goto done;
    goto done;
fail:
    st = vt_last_code();
done:
    scratch_free(&scr);
    vt_tensor_decref(xc); vt_tensor_decref(mc); vt_tensor_decref(out);
    return st;
}

int vt_attention_apply_backward(vt_node *n, vt_tensor **gout, vt_tensor **gin) {
    vt_tensor *x = n->saved[0], *m = n->saved[1];
    int64_t H = n->args.i[IARG(attention_apply, heads)], B = x->shape[0], T = x->shape[1], C = x->shape[2];
    int64_t Dh = C / (3 * H), HD = H * Dh;
    int want_x = n->needs_input_grad & 1, want_m = n->needs_input_grad >> 1 & 1;
    int64_t tkp = pad8(T);
    vt_tensor *g = gout[0] ? vt_contiguous(gout[0]) : NULL, *dx = NULL, *dm = NULL;
    scratch_set scr = {0};
    int st = VT_OK;
    if (!g) return gout[0] ? vt_last_code() : VT_OK; /* no gradient reached the output: none to pass */
    if (want_x && !(dx = vt_zeros(VT_FLOAT32, 3, x->shape))) goto fail;
    if (want_m && !(dm = vt_empty(VT_FLOAT32, 4, m->shape))) goto fail;
    int64_t pairs = B * H;
    int nt = team_size(pairs, 2 * pairs * T * T * Dh);
    if (pairs && T && (st = scratch_alloc(&scr, T * tkp + pack_floats(T, T, Dh, Dh) + 16, nt))) goto done;
    const float *xp = vt_f32(x), *mp = vt_f32(m), *gp = vt_f32(g);
    float *dxp = dx ? vt_f32(dx) : NULL, *dmp = dm ? vt_f32(dm) : NULL;
    int64_t sb = x->strides[0], ldx = x->strides[1];
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t bh = 0; bh < pairs; bh++) {
        if (!T) continue;
        int64_t b = bh / H, h = bh % H;
        float *s = scratch_mine(&scr), *aux = s + T * tkp;
        vt_attn_head hd = {.tq = T, .tk = T, .dh = Dh, .dv = Dh, .v = xp + b * sb + 2 * HD + h * Dh, .ldv = ldx};
        vt_attn_apply_backward(&hd, mp + bh * T * T, T, gp + b * T * HD + h * Dh, HD, s, tkp,
                               dxp ? dxp + b * T * C + 2 * HD + h * Dh : NULL, C, aux);
        if (dmp)
            for (int64_t i = 0; i < T; i++) memcpy(dmp + bh * T * T + i * T, s + i * tkp, sizeof(float) * (size_t)T);
    }
    gin[0] = dx;
    gin[1] = dm;
    dx = dm = NULL;
    goto done;
fail:
    st = vt_last_code();
done:
    scratch_free(&scr);
    vt_tensor_decref(g); vt_tensor_decref(dx); vt_tensor_decref(dm);
    return st;
}
