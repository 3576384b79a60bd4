/* vitc ops, attention: the SIMD kernels and the per-head functions of attention.h, on which every
 * attention op of this folder runs.
 *
 * Why own kernels instead of cblas_sgemm per head: ViT heads are small (T = 17 in the seed model,
 * 197 in DeiT; Dh = 64), so a BLAS call per product costs as much as its arithmetic, and calling
 * the pthread OpenBLAS from inside an OpenMP loop over heads would need its thread count switched
 * globally around every op. Here each OpenMP thread takes whole heads and runs register-tiled
 * loops on L1/L2-resident operands, reading q, k, v straight out of the packed projection.
 * Every reduction runs in a fixed order per element, so results do not depend on thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../../core/rng.h"
#include "../ops_util.h"
#include "../../core/vec8.h"
#include "attention.h"

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

/* all lanes <- max of the 8 lanes, by halving shuffles (a fixed order: deterministic; the sum's
 * twin, allsum8, is in vec8.h) */
AI v8 allmax8(const v8 *vp) {
    v8 v = *vp;
    v = max8(v, __builtin_shuffle(v, (v8i){4, 5, 6, 7, 0, 1, 2, 3}));
    v = max8(v, __builtin_shuffle(v, (v8i){2, 3, 0, 1, 6, 7, 4, 5}));
    return max8(v, __builtin_shuffle(v, (v8i){1, 0, 3, 2, 5, 4, 7, 6}));
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
 * the sum, or through the scan below when nothing else is finite. With stats, row i's max and
 * 1/Σ (or, for a row with no finite entry, -inf and the fill value) go to stats[2i], stats[2i+1]:
 * enough for softmax_known_rows to rebuild the row in one pass, bitwise. */
AI void softmax_rows_body(float *s, int64_t rows, int64_t n, int64_t ld, float *stats) {
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
            if (stats) { stats[2 * i] = -INFINITY; stats[2 * i + 1] = fill; }
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
        if (stats) { stats[2 * i] = vm[0]; stats[2 * i + 1] = inv[0]; }
    }
}

/* the softmax of rows whose max and 1/Σ softmax_rows_body already found (stats as it wrote them):
 * the same exp8(s − max)·(1/Σ) per element, so the same bits, in one pass instead of three, as
 * flash attention's backward rebuilds P from saved row statistics (Dao et al. 2022, arXiv
 * 2205.14135, Alg. 4; they keep the log-sum-exp, here max and 1/Σ are kept to stay bitwise) */
AI void softmax_known_rows_body(float *s, int64_t rows, int64_t n, int64_t ld, const float *stats) {
    for (int64_t i = 0; i < rows; i++, s += ld) {
        float mx = stats[2 * i], inv_s = stats[2 * i + 1];
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < n; j++) s[j] = inv_s;
            continue;
        }
        v8 vm = bc8(mx), inv = bc8(inv_s);
        for (int64_t j = 0; j < n; j += 8) {
            v8 d = ld8(s + j) - vm, e = exp8(&d);
            st8(s + j, e * inv);
        }
    }
}

/* softmax backward of each row, in place: dp <- p⊙(dp − Σ dp⊙p) over the first n columns */
AI void dsoftmax_rows_body(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, int64_t n) {
    for (int64_t i = 0; i < rows; i++, p += ldp, dp += lddp) {
        v8 acc = bc8(0.0f);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) acc += ld8(p + j) * ld8(dp + j);
        if (j < n) { /* one more chunk, lane l holding column n − 8 + l and zeros below column j: a scalar
                      * tail would round as the compiler chose to vectorise it (GCC 12: some products
                      * unfused), which the AVX-512 build (kernels512.c) could not follow */
            v8 pt = bc8(0.0f), dt = pt;
            if (n >= 8) {
                pt = ld8(p + n - 8);
                dt = ld8(dp + n - 8);
            } else
                for (int64_t t = 0; t < n; t++) { pt[8 - n + t] = p[t]; dt[8 - n + t] = dp[t]; }
            v8i top = (v8i){0, 1, 2, 3, 4, 5, 6, 7} >= (v8i){0} + (int32_t)(8 - (n - j));
            acc += sel8(top, pt, bc8(0.0f)) * sel8(top, dt, bc8(0.0f));
        }
        float dot = allsum8(&acc)[0];
        v8 vd = bc8(dot);
        for (j = 0; j + 8 <= n; j += 8) st8(dp + j, ld8(p + j) * (ld8(dp + j) - vd));
        for (; j < n; j++) dp[j] = p[j] * (dp[j] - dot);
    }
}

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
    static attr void softmax_rows_##suffix(float *s, int64_t rows, int64_t n, int64_t ld, float *stats) {    \
        softmax_rows_body(s, rows, n, ld, stats);                                                             \
    }                                                                                                         \
    static attr void softmax_known_rows_##suffix(float *s, int64_t rows, int64_t n, int64_t ld,               \
                                                 const float *stats) {                                        \
        softmax_known_rows_body(s, rows, n, ld, stats);                                                       \
    }                                                                                                         \
    static attr void dsoftmax_rows_##suffix(const float *p, int64_t ldp, float *dp, int64_t lddp, int64_t rows, \
                                            int64_t n) {                                                      \
        dsoftmax_rows_body(p, ldp, dp, lddp, rows, n);                                                        \
    }                                                                                                         \
    static const attn_kernels kernels_##suffix = {gemm_##suffix, pack_bt_##suffix, softmax_rows_##suffix,       \
                                                  softmax_known_rows_##suffix, dsoftmax_rows_##suffix, NULL, NULL};

/* 6×16 tile: 12 ymm accumulators + 2 B vectors + 1 broadcast fit AVX2's 16 registers; the
 * baseline build splits each vector in two xmm, so it takes 3-row tiles. */
ISA_VARIANTS(avx2, __attribute__((target("avx2,fma"))), 6)
ISA_VARIANTS(base, , 3)

/* AVX-512: the row kernels of kernels512.c, same bits as the AVX2 ones; the products stay AVX2 */
static const attn_kernels kernels_avx512 = {gemm_avx2, pack_bt_avx2, vt_attn_softmax_rows_avx512,
                                            vt_attn_softmax_known_rows_avx512, vt_attn_dsoftmax_rows_avx512,
                                            vt_attn_probs_fused_avx512, vt_attn_dscores_fused_avx512};

const attn_kernels *vt_attn_kernels(void) {
    return vt_use_avx512_kernels() ? &kernels_avx512 : vt_use_avx2_kernels() ? &kernels_avx2 : &kernels_base;
}
static const attn_kernels *kern(void) { return vt_attn_kernels(); }

/* ---- one head ------------------------------------------------------------------------------- */

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
    if (K->probs_fused && !h->causal && !h->mask_keep && !h->mask_add &&
        K->probs_fused(tq, tk, h->dh, h->scale, h->q, h->ldq, scratch, p, ldp, h->stats_out, h->stats_in))
        return;
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
    if (h->stats_in) K->softmax_known_rows(p, tq, tkp, ldp, h->stats_in);
    else K->softmax_rows(p, tq, tkp, ldp, h->stats_out);
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

/* dq = dS·k·scale, dk = dSᵀ·q·scale (either NULL to skip) */
static void scores_backward(const attn_kernels *K, const vt_attn_head *h, const float *ds, int64_t ldds, float *dq,
                            int64_t lddq, float *dk, int64_t lddk, float *scratch) {
    if (dq) K->gemm(h->tq, h->dh, h->tk, h->scale, ds, ldds, 1, h->k, h->ldk, 0, scratch, dq, lddq);
    if (dk) K->gemm(h->tk, h->dh, h->tq, h->scale, ds, 1, ldds, h->q, h->ldq, 0, scratch, dk, lddk);
}

void vt_attn_probs_backward(const vt_attn_head *h, const float *p, int64_t ldp, float *dp, int64_t lddp,
                            float *dq, int64_t lddq, float *dk, int64_t lddk, float *scratch) {
    const attn_kernels *K = kern();
    K->dsoftmax_rows(p, ldp, dp, lddp, h->tq, h->tk);
    scores_backward(K, h, dp, lddp, dq, lddq, dk, lddk, scratch);
}

/* dS straight from dout where nothing stands between dP and the softmax backward (no dropout, no
 * gradient on the returned map) and the ISA has the fused kernel: ds and dv as apply_backward then
 * probs_backward's softmax step give them, bitwise. 0 when not taken (nothing written). */
static int fused_dscores(const vt_attn_head *h, const float *p, int64_t ldp, const float *dout, int64_t lddo,
                         float *ds, int64_t ldds, float *dv, int64_t lddv, float *scratch) {
    const attn_kernels *K = kern();
    if (!K->dscores_fused || !vt_attn_fused_keys(h->tk)) return 0;
    K->pack_bt(h->tk, h->dv, h->v, h->ldv, pad8(h->tk), scratch);
    K->dscores_fused(h->tq, h->tk, h->dv, dout, lddo, scratch, p, ldp, ds, ldds);
    if (dv) K->gemm(h->tk, h->dv, h->tq, 1.0f, p, 1, ldp, dout, lddo, 0, scratch, dv, lddv);
    return 1;
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
                           float *dv, int64_t lddv, float *dmask, int64_t lddm, float *o, int64_t ldo, float *scratch) {
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
    if (o) vt_attn_apply(h, map, ldmap, o, ldo, aux); /* the forward's product, same operands */
    if (dout && !drop && !gp && (dq || dk || dmask) && fused_dscores(h, p, ldp, dout, lddo, dp, tkp, dv, lddv, aux)) {
        scores_backward(kern(), h, dp, tkp, dq, lddq, dk, lddk, aux);
    } else {
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
    }
    if (dmask)
        for (int64_t i = 0; i < tq; i++) memcpy(dmask + i * lddm, dp + i * tkp, sizeof(float) * (size_t)tk);
}
