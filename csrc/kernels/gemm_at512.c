/* vitc kernels: C = Aᵀ·B with A (k × m) and B (k × n) both stored row-major and long in K, on AVX-512:
 * the weight gradients dW = dYᵀ·X of every linear layer, K = batch·tokens (gemm.h).
 *
 * Why our own: these products have a small C (64…1536 on a side) and a K in the thousands, so each
 * element of A and B is used only n or m times and moving them is a real part of the work. gemm.c's
 * OpenBLAS path makes one-thread calls per chunk of C (its thread-count independence), and each call
 * packs the whole other operand again, A with a transposing copy: at 2 threads LV-ViT-Tiny's weight
 * gradients ran at 107–145 GFLOP/s (bench/gemm.py, Zen 4). Here:
 *   - C's rows are A's columns and C's columns B's, so both operands are read row by row: for each k,
 *     8 consecutive floats of A's row k (broadcast one at a time) times 32 of B's row k (two zmm) add
 *     into an 8×32 register tile (16 zmm accumulators) — no transposition anywhere;
 *   - per K block both are packed with plain vector copies, A into panels of 8 columns (kd × 8
 *     floats), B into strips of 32 (kd × 32), zero-padded: the narrower side whole (at most 256 KB,
 *     L2), the other one strip or panel at a time, each packed once; the first block writes the C
 *     tile, later ones add;
 *   - K is cut into a fixed number of parts (by K alone); a thread takes whole parts, so it packs only
 *     its own rows and waits for no other until the end, when the parts are added in order. A first
 *     version shared each packed block among the threads (a barrier per block) and scaled 1.65× from
 *     one thread to two, this way ~1.85× (192×64×6400).
 * Each element sums its parts in order, within a part k ascending, so the result does not depend on
 * the thread count. Goto & van de Geijn, "Anatomy of high-performance matrix multiplication" (2008)
 * for the blocking and packing; the outer-product tile on row-major operands is ours. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include "gemm_at512.h"
#include "cpu.h"
#include "../core/tensor.h"
#include "../core/threads.h"

#define MR 8        /* columns of A per panel: rows of the C tile */
#define NR 32       /* columns of B per strip: two zmm */
#define KC 384      /* K block at most */
#define RESIDENT 65536 /* floats of the resident side's packed K block at most (256 KB: L2) */
#define T512 __attribute__((target("avx512f,avx512vl,fma")))
#define AI512 static inline __attribute__((always_inline, target("avx512f,avx512vl,fma")))

typedef struct {
    int64_t m, n;
    const float *a; int64_t lda;
    const float *b; int64_t ldb;
    int64_t npanels, nstrips;       /* panels of MR columns of A, strips of NR columns of B */
    int64_t kc, sa, sb;             /* K block; floats from one packed panel (strip) to the next */
    int a_resident;                 /* the narrower side is packed whole per block, the other a unit at a time */
} at_job;

AI512 __mmask16 lanes(int64_t w) { return w >= 16 ? (__mmask16)0xFFFF : w <= 0 ? 0 : (__mmask16)((1u << w) - 1); }

/* rows [p0, p0 + kd) of A's panels [q0, q1) into dst (panel q at (q − q0)·sa), zero-padded; row by
 * row, so a row is read once for all the panels */
static T512 void pack_panels(const at_job *g, float *dst, int64_t p0, int64_t kd, int64_t q0, int64_t q1) {
    for (int64_t p = 0; p < kd; p++) {
        const float *ar = g->a + (p0 + p) * g->lda;
        for (int64_t q = q0; q < q1; q++) {
            int64_t w = g->m - q * MR;
            __m256 v = _mm256_maskz_loadu_ps((__mmask8)lanes(w < MR ? w : MR), ar + q * MR);
            _mm256_store_ps(dst + (q - q0) * g->sa + p * MR, v);
        }
    }
}

/* the same for B's strips [s0, s1) (strip s at (s − s0)·sb) */
static T512 void pack_strips(const at_job *g, float *dst, int64_t p0, int64_t kd, int64_t s0, int64_t s1) {
    for (int64_t p = 0; p < kd; p++) {
        const float *br = g->b + (p0 + p) * g->ldb;
        for (int64_t s = s0; s < s1; s++) {
            int64_t w = g->n - s * NR;
            float *d = dst + (s - s0) * g->sb + p * NR;
            _mm512_store_ps(d, _mm512_maskz_loadu_ps(lanes(w), br + s * NR));
            _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(lanes(w - 16), br + s * NR + 16));
        }
    }
}

/* C rows [0, R) × one strip (the lanes of m0, m1 valid) from a panel and a strip of kd packed rows:
 * C = acc (add 0) or C += acc (add 1) */
AI512 void tile(const int R, int64_t kd, const float *restrict ap, const float *restrict bp, float *restrict c,
                int64_t ldc, int add, __mmask16 m0, __mmask16 m1) {
    __m512 acc[MR][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kd; p++) {
        __m512 b0 = _mm512_load_ps(bp + p * NR), b1 = _mm512_load_ps(bp + p * NR + 16);
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(ap[p * MR + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *cp = c + r * ldc;
        for (int u = 0; u < 2; u++) {
            __mmask16 mk = u ? m1 : m0;
            __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, cp + 16 * u), acc[r][u]) : acc[r][u];
            _mm512_mask_storeu_ps(cp + 16 * u, mk, v);
        }
    }
}

AI512 void tile_rows(const at_job *g, int64_t q, int64_t s, int64_t kd, const float *ap, const float *bp, float *c,
                    int64_t ldc, int add) {
    int64_t w = g->n - s * NR, rows = g->m - q * MR;
    __mmask16 m0 = lanes(w), m1 = lanes(w - 16);
    float *cq = c + q * MR * ldc + s * NR;
    if (rows >= MR) tile(MR, kd, ap, bp, cq, ldc, add, m0, m1);
    else switch (rows) { /* the last panel's valid rows */
#define REM(R) case R: tile(R, kd, ap, bp, cq, ldc, add, m0, m1); break;
        REM(1) REM(2) REM(3) REM(4) REM(5) REM(6) REM(7)
#undef REM
    }
}

/* c (m × n, ldc) = A[k0, k1)ᵀ·B[k0, k1) on the calling thread, in K blocks of at most g->kc rows,
 * equal in size. Per block the narrower side is packed whole (res: L2) and the other one panel or
 * strip at a time (unit: L1), so each element is packed once and the scratch stays small. */
static T512 void part_product(const at_job *g, int64_t k0, int64_t k1, float *c, int64_t ldc, float *res,
                              float *unit) {
    int64_t blocks = (k1 - k0 + g->kc - 1) / g->kc;
    int64_t nres = g->a_resident ? g->npanels : g->nstrips, nunit = g->a_resident ? g->nstrips : g->npanels;
    for (int64_t bi = 0; bi < blocks; bi++) {
        int64_t p0 = k0 + (k1 - k0) * bi / blocks, kd = k0 + (k1 - k0) * (bi + 1) / blocks - p0;
        if (g->a_resident) pack_panels(g, res, p0, kd, 0, nres);
        else pack_strips(g, res, p0, kd, 0, nres);
        for (int64_t u = 0; u < nunit; u++) {
            if (g->a_resident) pack_strips(g, unit, p0, kd, u, u + 1);
            else pack_panels(g, unit, p0, kd, u, u + 1);
            if (u + 1 < nunit) /* the next unit's rows towards L2 while this one's tiles run: a unit's
                                * rows are a stride apart, and packing them waited on every load */
                for (int64_t p = 0; p < kd; p++) {
                    const float *next = g->a_resident ? g->b + (p0 + p) * g->ldb + (u + 1) * NR
                                                      : g->a + (p0 + p) * g->lda + (u + 1) * MR;
                    _mm_prefetch((const char *)next, _MM_HINT_T1);
                    if (g->a_resident) _mm_prefetch((const char *)(next + 16), _MM_HINT_T1); /* a strip's 2nd line */
                }
            for (int64_t v = 0; v < nres; v++) {
                if (g->a_resident) tile_rows(g, v, u, kd, res + v * g->sa, unit, c, ldc, bi > 0);
                else tile_rows(g, u, v, kd, unit, res + v * g->sb, c, ldc, bi > 0);
            }
        }
    }
}

int vt_gemm_at512_wanted(int64_t m, int64_t n, int64_t k) {
    return vt_use_avx512_kernels() && k >= 256 && (double)m * (double)n * (double)k >= 1e6;
}

/* K is cut into 4 equal parts (2 below K = 1024, 1 below 512), a rule of the shape alone: part 0 is
 * written into C, the others into scratch, then C += part 1, += part 2, ... in order. Threads take
 * whole parts, so each packs only its own rows and none waits for another until the end; the sums
 * are the same at any thread count (more than 4 threads leave the rest idle here). */
static int64_t parts_of(int64_t k) { return k >= 1024 ? 4 : k >= 512 ? 2 : 1; }

int vt_gemm_at512(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                  int64_t ldc) {
    at_job g = {.m = m, .n = n, .a = a, .lda = lda, .b = b, .ldb = ldb,
                .npanels = (m + MR - 1) / MR, .nstrips = (n + NR - 1) / NR, .a_resident = m <= n};
    int64_t parts = parts_of(k), longest = (k + parts - 1) / parts;
    int64_t width = g.a_resident ? g.npanels * MR : g.nstrips * NR, kc = RESIDENT / width;
    g.kc = kc > KC ? KC : kc < 64 ? 64 : kc;
    if (g.kc > longest) g.kc = longest;
    /* a cache line past kc rows: at kc·MR·4 = 3·4096 bytes apart the panels a row is packed into
     * all began in one L1 set, and packing ran at a fraction of its speed */
    g.sa = (g.kc * MR + 16 + 15) / 16 * 16; /* and whole zmm, so every buffer stays 64-byte aligned */
    g.sb = g.kc * NR + 32;
    size_t res = (size_t)(g.a_resident ? g.npanels * g.sa : g.nstrips * g.sb), unit = (size_t)(g.a_resident ? g.sb : g.sa);
    size_t pack = res + unit, part_c = (size_t)(m * n);
    size_t bytes = sizeof(float) * ((size_t)parts * pack + (size_t)(parts - 1) * part_c);
    float *scratch = vt_alloc(bytes);
    if (!scratch) return vt_last_code();
    float *partial = scratch + parts * pack; /* parts 1.. as m × n, contiguous */
    int nt = omp_in_parallel() ? 1 : vt_get_num_threads();
    if (nt > parts) nt = (int)parts;
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < parts; i++) {
        float *r = scratch + i * pack, *u = r + res;
        int64_t k0 = k * i / parts, k1 = k * (i + 1) / parts;
        if (i == 0) part_product(&g, k0, k1, c, ldc, r, u);
        else part_product(&g, k0, k1, partial + (i - 1) * part_c, n, r, u);
    }
    for (int64_t i = 1; i < parts; i++) {
        const float *t = partial + (i - 1) * part_c;
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++) c[r * ldc + j] += t[r * n + j];
    }
    vt_free(scratch, bytes);
    return VT_OK;
}
