/* vitc kernels: bf16 GEMM for vitc.autocast, C = alpha·op(A)·op(B) + beta·C with A and B rounded to
 * bfloat16 and the products accumulated in f32 (gemm_bf16.h).
 *
 * Why our own: Debian's OpenBLAS 0.3.21 exports no sbgemm. The AVX512-BF16 instruction VDPBF16PS
 * (Intel SDM vol. 2, "VDPBF16PS") multiplies 16 pairs of bf16 and adds both products of each pair
 * into one f32 lane: 32 multiply-adds per instruction where VFMADD231PS does 16, so on Zen 4 (one
 * 512-bit FMA per cycle per core) it doubles the peak. The layout follows the f32 kernel (gemm.c,
 * after Goto & van de Geijn 2008), with k taken two at a time:
 *   - op(B) is packed once per product into strips of 32 columns: for each pair (k, k+1), 32
 *     32-bit words holding (B[k][j], B[k+1][j]) as bf16 (the low half k), in blocks of KCP pairs
 *     (a strip block is KCP·128 bytes, 48 KB: L2-resident while the rows stream past);
 *   - op(A) is packed per register tile (MR rows × one K block, 18 KB on the stack, L1), as the
 *     word (A[i][k], A[i][k+1]) that each VDPBF16PS broadcasts;
 *   - 12×32 register tile: 24 zmm accumulators + 2 B vectors of the 32 registers;
 *   - OpenMP over (row block, strip group) tasks; per element the sum runs k ascending, block by
 *     block, so the result does not depend on the thread count.
 * Conversions round to nearest even exactly as core/bf16.h (and torch.bfloat16) do, in integer
 * arithmetic, so subnormal inputs are kept; VDPBF16PS itself treats subnormal inputs and outputs as
 * zero (SDM: DAZ and FTZ regardless of MXCSR), below any tolerance a bf16 product is held to.
 *
 * Without AVX512-BF16 (or VITC_ISA=baseline, or vt_bf16_gemm_force_fallback) the same numbers come
 * from rounding A and B into f32 copies and running the f32 GEMM on them: bf16·bf16 products are
 * exact in f32, so the two paths differ only in the order of the f32 additions. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "gemm_bf16.h"
#include "cpu.h"
#include "../core/amp.h"
#include "../core/bf16.h"
#include "../core/tensor.h"
#include "../core/threads.h"

#define NR 32    /* columns per strip: two zmm of f32 accumulators */
#define MR 12    /* rows per register tile */
#define KCP 384  /* k pairs per K block */
#define MC 96    /* rows of A per task */
#define SG 4     /* strips per task: 4 · 48 KB of packed B stay in L2 while a row block passes */

#define T512 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define AI512 static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16")))

/* ---- which path, and the fallback's guard ---------------------------------------------------- */

static int force_fallback;
static __thread int in_fallback; /* this thread is inside the fallback's f32 call */

void vt_bf16_gemm_force_fallback(int on) { __atomic_store_n(&force_fallback, on ? 1 : 0, __ATOMIC_RELAXED); }

int vt_bf16_gemm_native(void) { return vt_cpu_has_avx512bf16() && !__atomic_load_n(&force_fallback, __ATOMIC_RELAXED); }

int vt_bf16_gemm_wanted(void) { return vt_amp_bf16() && !in_fallback; }

static float round_bf16(float x) { return vt_bf16_to_f32(vt_f32_to_bf16(x)); }

/* the word (lo, hi) as two bf16, lo in the low half: what VDPBF16PS pairs with B's word */
static uint32_t pair_word(float lo, float hi) { return (uint32_t)vt_f32_to_bf16(lo) | (uint32_t)vt_f32_to_bf16(hi) << 16; }

/* ---- conversions (AVX-512): bf16 of each f32 lane, rounded as vt_f32_to_bf16, in the high half -- */

AI512 __m512i rne_high(__m512 x) {
    __m512i b = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC00000));
}

/* lane i: the word (lo[i], hi[i]) */
AI512 __m512i pair_words(__m512 lo, __m512 hi) {
    return _mm512_or_si512(_mm512_srli_epi32(rne_high(lo), 16),
                           _mm512_and_si512(rne_high(hi), _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* npairs words from consecutive floats src[0..nk) (zeros past nk): a plain row's k pairs */
AI512 void row_words(const float *src, int64_t nk, int64_t npairs, uint32_t *dst) {
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    int64_t q = 0;
    for (; q + 16 <= npairs && 2 * q + 32 <= nk; q += 16) {
        __m512i r0 = rne_high(_mm512_loadu_ps(src + 2 * q)), r1 = rne_high(_mm512_loadu_ps(src + 2 * q + 16));
        _mm512_storeu_si512(dst + q, _mm512_permutex2var_epi16(r0, odd, r1));
    }
    for (; q < npairs; q++)
        dst[q] = pair_word(2 * q < nk ? src[2 * q] : 0.0f, 2 * q + 1 < nk ? src[2 * q + 1] : 0.0f);
}

static __mmask16 lanes(int64_t valid) { return valid >= 16 ? 0xFFFF : valid <= 0 ? 0 : (__mmask16)((1u << valid) - 1); }

/* ---- packing ----------------------------------------------------------------------------------- */

/* op(B) (k × n; element (p, j) at b[p·ldb + j], or b[j·ldb + p] when transb) */
typedef struct { int transb; const float *b; int64_t ldb, k, n, k2, ns; uint32_t *pb; } packed_b;

static uint32_t *strip_block(const packed_b *P, int64_t kp0, int64_t kpd, int64_t s) {
    return P->pb + kp0 * P->ns * NR + s * kpd * NR;
}

/* columns 16h..16h+15 of strip s, pairs [kp0, kp0 + kpd); columns past n are zeros */
AI512 void pack_b_half(const packed_b *P, int64_t kp0, int64_t kpd, int64_t s, int h) {
    uint32_t *d = strip_block(P, kp0, kpd, s) + 16 * h;
    int64_t j0 = NR * s + 16 * h, k = P->k;
    __mmask16 cm = lanes(P->n - j0);
    if (!P->transb) {
        for (int64_t q = 0; q < kpd; q++) {
            int64_t p = 2 * (kp0 + q);
            __m512 lo = _mm512_maskz_loadu_ps(cm, P->b + p * P->ldb + j0);
            __m512 hi = p + 1 < k ? _mm512_maskz_loadu_ps(cm, P->b + (p + 1) * P->ldb + j0) : _mm512_setzero_ps();
            _mm512_storeu_si512(d + q * NR, pair_words(lo, hi));
        }
        return;
    }
    uint32_t w[KCP];
    for (int jj = 0; jj < 16; jj++) {
        int64_t j = j0 + jj;
        if (j < P->n) row_words(P->b + j * P->ldb + 2 * kp0, k - 2 * kp0, kpd, w);
        else memset(w, 0, sizeof(uint32_t) * (size_t)kpd);
        for (int64_t q = 0; q < kpd; q++) d[q * NR + jj] = w[q];
    }
}

static T512 void pack_b_strip(const packed_b *P, int64_t s, int h0, int h1) {
    for (int64_t kp0 = 0; kp0 < P->k2; kp0 += KCP) {
        int64_t kpd = P->k2 - kp0 < KCP ? P->k2 - kp0 : KCP;
        for (int h = h0; h < h1; h++) pack_b_half(P, kp0, kpd, s, h);
    }
}

/* R rows of op(A) from row i, pairs [kp0, kp0 + kpd), into t: plain A as t[r·KCP + q],
 * transposed A as t[q·MR + r]; *sar, *saq get the strides the tile reads with */
AI512 void pack_a_tile(int transa, const float *a, int64_t lda, int64_t k, int64_t i, int R, int64_t kp0,
                       int64_t kpd, uint32_t *t, int64_t *sar, int64_t *saq) {
    if (!transa) {
        for (int r = 0; r < R; r++) row_words(a + (i + r) * lda + 2 * kp0, k - 2 * kp0, kpd, t + r * KCP);
        *sar = KCP, *saq = 1;
        return;
    }
    __mmask16 rm = lanes(R);
    for (int64_t q = 0; q < kpd; q++) {
        int64_t p = 2 * (kp0 + q);
        __m512 lo = _mm512_maskz_loadu_ps(rm, a + p * lda + i);
        __m512 hi = p + 1 < k ? _mm512_maskz_loadu_ps(rm, a + (p + 1) * lda + i) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(t + q * MR, rm, pair_words(lo, hi));
    }
    *sar = 1, *saq = MR;
}

/* a transposed A's rows [i, i + R), R <= MC, pairs [kp0, kp0 + kpd), into t[q·MC + r]: each pair of
 * stored rows is read R floats at a time (a tile's 12 would touch a new cache line per k) */
AI512 void pack_a_block_t(const float *a, int64_t lda, int64_t k, int64_t i, int64_t R, int64_t kp0, int64_t kpd,
                          uint32_t *t) {
    for (int64_t q = 0; q < kpd; q++) {
        int64_t p = 2 * (kp0 + q);
        const float *lo = a + p * lda + i, *hi = lo + lda;
        for (int64_t r = 0; r < R; r += 16) {
            __mmask16 rm = lanes(R - r);
            __m512 h = p + 1 < k ? _mm512_maskz_loadu_ps(rm, hi + r) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(t + q * MC + r, rm, pair_words(_mm512_maskz_loadu_ps(rm, lo + r), h));
        }
    }
}

/* ---- the register tile ------------------------------------------------------------------------- */

/* C (R × w, w <= 32) from kpd pairs: mode 0 C = alpha·acc, 1 C += alpha·acc, 2 C = alpha·acc + beta·C */
AI512 void tile(const int R, int64_t kpd, const uint32_t *at, int64_t sar, int64_t saq, const uint32_t *bp, float *c,
                int64_t ldc, float alpha, float beta, int mode, int64_t w) {
    __m512 acc[MR][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kpd; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + q * NR), b1 = (__m512bh)_mm512_loadu_si512(bp + q * NR + 16);
        for (int r = 0; r < R; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)at[r * sar + q * saq]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m[2] = {lanes(w), lanes(w - 16)};
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 2; u++) {
            float *cp = c + r * ldc + 16 * u;
            __m512 v = mode == 0 ? _mm512_mul_ps(acc[r][u], va)
                     : mode == 1 ? _mm512_fmadd_ps(acc[r][u], va, _mm512_maskz_loadu_ps(m[u], cp))
                                 : _mm512_fmadd_ps(acc[r][u], va, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m[u], cp)));
            _mm512_mask_storeu_ps(cp, m[u], v);
        }
}

static T512 void tile_rows(int R, int64_t kpd, const uint32_t *at, int64_t sar, int64_t saq, const uint32_t *bp,
                           float *c, int64_t ldc, float alpha, float beta, int mode, int64_t w) {
    switch (R) {
#define CASE(n) case n: tile(n, kpd, at, sar, saq, bp, c, ldc, alpha, beta, mode, w); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
        default: break;
    }
}

/* rows [i0, i1) of C against strips [s0, s1), every K block: for each block and each MR-row tile,
 * A's tile is packed once and meets each strip */
typedef struct {
    int transa; const float *a; int64_t lda, m;
    const packed_b *B;
    float alpha, beta; float *c; int64_t ldc;
} bf16_job;

/* blk (MC·KCP words, a transposed A only; NULL: packed per tile) */
static T512 void rows_strips(const bf16_job *g, int64_t i0, int64_t i1, int64_t s0, int64_t s1, uint32_t *blk) {
    const packed_b *P = g->B;
    uint32_t at[MR * KCP] __attribute__((aligned(64)));
    for (int64_t kp0 = 0; kp0 < P->k2; kp0 += KCP) {
        int64_t kpd = P->k2 - kp0 < KCP ? P->k2 - kp0 : KCP, sar = 1, saq = MC;
        int mode = kp0 > 0 ? 1 : g->beta == 0.0f ? 0 : g->beta == 1.0f ? 1 : 2;
        if (blk) pack_a_block_t(g->a, g->lda, P->k, i0, i1 - i0, kp0, kpd, blk);
        for (int64_t i = i0; i < i1; i += MR) {
            int R = i1 - i < MR ? (int)(i1 - i) : MR;
            const uint32_t *ap = blk ? blk + (i - i0) : at;
            if (!blk) pack_a_tile(g->transa, g->a, g->lda, P->k, i, R, kp0, kpd, at, &sar, &saq);
            for (int64_t s = s0; s < s1; s++)
                tile_rows(R, kpd, ap, sar, saq, strip_block(P, kp0, kpd, s), g->c + i * g->ldc + NR * s, g->ldc,
                          g->alpha, g->beta, mode, P->n - NR * s);
        }
    }
}

static int pack_b_init(packed_b *P, int transb, int64_t k, int64_t n, const float *b, int64_t ldb, size_t *bytes) {
    *P = (packed_b){.transb = transb, .b = b, .ldb = ldb, .k = k, .n = n, .k2 = (k + 1) / 2, .ns = (n + NR - 1) / NR};
    *bytes = sizeof(uint32_t) * (size_t)(P->k2 * P->ns * NR);
    return (P->pb = vt_alloc(*bytes)) ? VT_OK : vt_last_code();
}

/* ---- the fallback: rounded f32 copies, the f32 GEMM ------------------------------------------- */

/* rows × cols at src (rows ld apart) rounded to bf16 values into dst (contiguous) */
static void round_copy(const float *src, int64_t rows, int64_t cols, int64_t ld, float *dst) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) dst[r * cols + j] = round_bf16(src[r * ld + j]);
}

static int gemm_fallback(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                         int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    int64_t ar = transa ? k : m, ac = transa ? m : k, br = transb ? n : k, bcl = transb ? k : n;
    size_t abytes = sizeof(float) * (size_t)(ar * ac), bbytes = sizeof(float) * (size_t)(br * bcl);
    float *ra = vt_alloc(abytes), *rb = ra ? vt_alloc(bbytes) : NULL;
    int st = VT_OK;
    if (!ra || !rb) st = vt_last_code();
    else {
        round_copy(a, ar, ac, lda, ra);
        round_copy(b, br, bcl, ldb, rb);
        in_fallback = 1;
        st = vt_k_gemm(transa, transb, m, n, k, alpha, ra, ac, rb, bcl, beta, c, ldc);
        in_fallback = 0;
    }
    if (rb) vt_free(rb, bbytes);
    if (ra) vt_free(ra, abytes);
    return st;
}

/* ---- vt_k_gemm in bf16 ------------------------------------------------------------------------- */

static T512 void run_task(const bf16_job *g, int64_t t, int64_t sgroups, uint32_t *blk) {
    int64_t mb = t / sgroups, sgi = t % sgroups, ns = g->B->ns;
    int64_t i0 = mb * MC, i1 = i0 + MC < g->m ? i0 + MC : g->m, s0 = sgi * SG, s1 = s0 + SG < ns ? s0 + SG : ns;
    rows_strips(g, i0, i1, s0, s1, blk);
}

int vt_k_gemm_bf16(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (!vt_bf16_gemm_native()) return gemm_fallback(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    packed_b P;
    size_t bytes;
    int st = pack_b_init(&P, transb, k, n, b, ldb, &bytes);
    if (st) return st;
    bf16_job g = {.transa = transa, .a = a, .lda = lda, .m = m, .B = &P, .alpha = alpha, .beta = beta, .c = c,
                  .ldc = ldc};
    int64_t sgroups = (P.ns + SG - 1) / SG, tasks = (m + MC - 1) / MC * sgroups;
    double flops = 2.0 * (double)m * (double)n * (double)k;
    int nt = omp_in_parallel() || flops < 2e6 ? 1 : vt_get_num_threads();
    if (nt > tasks) nt = (int)tasks;
    size_t blk_bytes = transa ? sizeof(uint32_t) * MC * KCP * (size_t)nt : 0; /* one A block per thread */
    uint32_t *blk = transa ? vt_alloc(blk_bytes) : NULL;
    if (transa && !blk) { vt_free(P.pb, bytes); return vt_last_code(); }
    /* the OpenMP region stays outside the target-attributed functions (gemm.c says why) */
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        #pragma omp for schedule(static)
        for (int64_t s = 0; s < P.ns; s++) pack_b_strip(&P, s, 0, 2);
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) run_task(&g, t, sgroups, blk ? blk + (size_t)omp_get_thread_num() * MC * KCP : NULL);
    }
    if (blk) vt_free(blk, blk_bytes);
    vt_free(P.pb, bytes);
    return VT_OK;
}

/* ---- packed panels ----------------------------------------------------------------------------- */

/* native: op(B) packed in bf16 here (the f32 panel is never allocated); fallback: op(B) rounded
 * into a k × n f32 copy that gemm.c's f32 panel packs and multiplies */
#define FALLBACK_ROW 8192 /* floats: the longest row (K) the fallback panel rounds on the stack */

typedef struct { int native; packed_b B; size_t bytes; float *copy; size_t copy_bytes; } bf16_panel;

int vt_bf16_panel_init(vt_gemm_panel *pn, int transb, int64_t k, int64_t n, const float *b, int64_t ldb) {
    bf16_panel *bp = calloc(1, sizeof *bp);
    if (!bp) return vt_fail(VT_ENOMEM, "gemm panel: out of memory");
    int st;
    if ((bp->native = vt_bf16_gemm_native())) {
        memset(pn, 0, sizeof *pn);
        if ((st = pack_b_init(&bp->B, transb, k, n, b, ldb, &bp->bytes))) { free(bp); return st; }
        pn->b = b, pn->k = k, pn->n = n, pn->nstrips = (n + 15) / 16;
        pn->sbk = transb ? 1 : ldb, pn->sbn = transb ? ldb : 1;
    } else if (k > FALLBACK_ROW) {
        free(bp);
        return vt_fail(VT_EVALUE, "autocast: this CPU has no AVX512-BF16 and the bf16 fallback's packed panel "
                       "takes K <= %d, got K = %lld", FALLBACK_ROW, (long long)k);
    } else {
        bp->copy_bytes = sizeof(float) * (size_t)(k * n);
        if (!(bp->copy = vt_alloc(bp->copy_bytes))) { free(bp); return vt_last_code(); }
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < n; j++) bp->copy[p * n + j] = round_bf16(transb ? b[j * ldb + p] : b[p * ldb + j]);
        in_fallback = 1;
        st = vt_gemm_panel_init(pn, 0, k, n, bp->copy, n);
        in_fallback = 0;
        if (st) { vt_free(bp->copy, bp->copy_bytes); free(bp); return st; }
    }
    pn->bf = bp;
    return VT_OK;
}

/* gemm.h's strip s is 16 columns: half s % 2 of our 32-column strip s / 2 (both halves for the last
 * strip when the count is odd, so its padding is zeroed) */
int vt_bf16_panel_pack(const vt_gemm_panel *pn, int64_t s) {
    const bf16_panel *bp = pn->bf;
    if (!bp->native) return 0;
    int h = (int)(s & 1);
    pack_b_strip(&bp->B, s / 2, h, h == 0 && s == pn->nstrips - 1 ? 2 : h + 1);
    return 1;
}

int vt_bf16_panel_rows(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, float beta, float *c,
                       int64_t ldc) {
    const bf16_panel *bp = pn->bf;
    if (in_fallback || m <= 0) return m <= 0;
    if (bp->native) {
        bf16_job g = {.transa = 0, .a = a, .lda = lda, .m = m, .B = &bp->B, .alpha = 1.0f, .beta = beta, .c = c,
                      .ldc = ldc};
        rows_strips(&g, 0, m, 0, bp->B.ns, NULL);
        return 1;
    }
    /* fallback: A's rows rounded, a block at a time, through the f32 panel (rows has no status to
     * fail with, so the copy is a stack block; init refused K > FALLBACK_ROW) */
    float t[FALLBACK_ROW];
    int64_t k = pn->k, rows = FALLBACK_ROW / k;
    in_fallback = 1;
    for (int64_t r0 = 0; r0 < m; r0 += rows) {
        int64_t mr = m - r0 < rows ? m - r0 : rows;
        round_copy(a + r0 * lda, mr, k, lda, t);
        vt_gemm_panel_rows(pn, mr, t, k, beta, c + r0 * ldc, ldc);
    }
    in_fallback = 0;
    return 1;
}

void vt_bf16_panel_free(vt_gemm_panel *pn) {
    bf16_panel *bp = pn->bf;
    if (bp->native) vt_free(bp->B.pb, bp->bytes);
    else vt_free(bp->copy, bp->copy_bytes);
    free(bp);
    pn->bf = NULL;
}
