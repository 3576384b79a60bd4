/* vitc kernels: sgemm, C = alpha·op(A)·op(B) + beta·C (row-major, BLAS argument order), the GEMM
 * under every matmul, linear and convolution (vt_k_gemm, gemm.h).
 *
 * Why our own: ViT GEMMs are thin (K = 64…768, one side 64…1536), where a general BLAS spends
 * much of its time around the arithmetic, in zeroing C before accumulating (beta = 0) and in
 * packing. Products with a plain A and K <= 1536 run here (own_gemm_wins, measured by
 * bench/gemm.py against the OpenBLAS 0.3.21 Zen kernels); the rest still go to OpenBLAS. Here:
 *   - B is packed once per K block into strips of 16 columns (kc × 16 floats, 24 KB for kc = 384:
 *     L1-resident while a block of A rows streams past it), zero-padded to a multiple of 8;
 *   - A is never packed: the 6×16 register tile reads it as broadcast scalars (any strides work,
 *     but a transposed A touches a new cache line per k, which is why those stay on BLAS);
 *   - the first K block writes C (alpha·AB, or + beta·C), later blocks add: no zeroing pass;
 *   - OpenMP over (row block, strip group) tasks; inside an enclosing parallel region (conv's
 *     per-image GEMMs) the call runs on its own thread.
 * Accumulation order per element is fixed (k ascending within a block, blocks in order), so the
 * result does not depend on the thread count. Goto & van de Geijn, "Anatomy of high-performance
 * matrix multiplication" (2008) for the blocking; the tile is ours. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <cblas.h>
#include "gemm.h"
#include "gemm_at512.h"
#include "gemm_bf16.h"
#include "cpu.h"
#include "../core/tensor.h"
#include "../core/threads.h"

#include "../core/vec8.h"

#define KC 384   /* K block: a 16-column strip of B is KC·64 bytes */
#define MC 96    /* rows of A per task: MC·KC·4 bytes of A stay in L2 across the strips */
#define SG 8     /* strips (of 16 columns) per task */

/* R×(8·NV) tile of C from A (any strides) and one packed strip (kd rows of 8·NV floats).
 * mode 0: C = alpha·acc; 1: C += alpha·acc; 2: C = alpha·acc + beta·C; 3: C = bias + alpha·acc (bias
 * a row of w floats: the bits of mode 1 on a C filled with the bias first). mul non-NULL (the last K
 * block only): the value stored is then multiplied by mul's element (rows ldm apart), the bits of
 * C ⊙= M after the product. w < 8·NV: only the first
 * w columns are written (the padded last strip). */
AI void tile(const int R, const int NV, int64_t kd, const float *restrict a, int64_t sar, int64_t sak,
             const float *restrict bp, float *restrict c, int64_t ldc, float alpha, float beta, int mode, int64_t w,
             const float *restrict bias, const float *restrict mul, int64_t ldm) {
    v8 acc[6][2];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = bc8(0.0f);
    for (int64_t kk = 0; kk < kd; kk++) {
        const float *bk = bp + kk * 8 * NV, *ak = a + kk * sak;
        v8 bv[2];
        for (int u = 0; u < NV; u++) bv[u] = ld8(bk + 8 * u);
        for (int r = 0; r < R; r++) {
            v8 ar = bc8(ak[r * sar]);
            for (int u = 0; u < NV; u++) acc[r][u] += ar * bv[u];
        }
    }
    v8 va = bc8(alpha), vb = bc8(beta);
    if (w == 8 * NV) {
        for (int r = 0; r < R; r++)
            for (int u = 0; u < NV; u++) {
                float *cp = c + r * ldc + 8 * u;
                v8 v = acc[r][u] * va;
                v8 x = mode == 0 ? v : mode == 1 ? ld8(cp) + v : mode == 3 ? ld8(bias + 8 * u) + v : v + vb * ld8(cp);
                st8(cp, mul ? x * ld8(mul + r * ldm + 8 * u) : x);
            }
        return;
    }
    for (int r = 0; r < R; r++) {
        float t[16] = {0};
        for (int u = 0; u < NV; u++) st8(t + 8 * u, acc[r][u] * va);
        float *cp = c + r * ldc;
        for (int64_t j = 0; j < w; j++) {
            float x = mode == 0 ? t[j] : mode == 1 ? cp[j] + t[j] : mode == 3 ? bias[j] + t[j] : t[j] + beta * cp[j];
            cp[j] = mul ? x * mul[r * ldm + j] : x;
        }
    }
}

/* rows [0, m) of A against one strip: 6-row tiles, then the remainder */
AI void strip_rows(const int RM, const int NV, int64_t m, int64_t kd, const float *a, int64_t sar, int64_t sak,
                   const float *bp, float *c, int64_t ldc, float alpha, float beta, int mode, int64_t w,
                   const float *bias, const float *mul, int64_t ldm) {
    int64_t i = 0;
    for (; i + RM <= m; i += RM) tile(RM, NV, kd, a + i * sar, sar, sak, bp, c + i * ldc, ldc, alpha, beta, mode, w, bias, mul ? mul + i * ldm : NULL, ldm);
    switch (m - i) {
#define REM(R) case R: if (R < RM) tile(R, NV, kd, a + i * sar, sar, sak, bp, c + i * ldc, ldc, alpha, beta, mode, w, bias, mul ? mul + i * ldm : NULL, ldm); break;
        REM(1) REM(2) REM(3) REM(4) REM(5)
#undef REM
        default: break;
    }
}

/* B block (kd × n, element (p, j) at b[p·sbk + j·sbn]) into strips of 16 columns (the last may be
 * 8 wide), zero-padded to a multiple of 8 columns; strips [s0, s1) */
AI void pack_strips(int64_t kd, int64_t n, const float *b, int64_t sbk, int64_t sbn, float *dst, int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; s++) {
        int64_t j0 = 16 * s, wd = n - j0 > 8 ? 16 : 8, valid = n - j0 < wd ? n - j0 : wd;
        float *d = dst + j0 * kd;
        if (sbn == 1 && valid == wd) {
            for (int64_t p = 0; p < kd; p++) memcpy(d + p * wd, b + p * sbk + j0, sizeof(float) * (size_t)wd);
        } else {
            for (int64_t p = 0; p < kd; p++) {
                int64_t j = 0;
                for (; j < valid; j++) d[p * wd + j] = b[p * sbk + (j0 + j) * sbn];
                for (; j < wd; j++) d[p * wd + j] = 0.0f;
            }
        }
    }
}

typedef struct {
    int64_t m, n, k;
    const float *a; int64_t sar, sak;
    const float *b; int64_t sbk, sbn;
    float alpha, beta;
    float *c; int64_t ldc;
    const float *bias;      /* non-NULL: the first K block writes C = bias (per column) + alpha·AB */
    const float *mul; int64_t ldm; /* non-NULL: the last K block stores C ⊙ M (M m × n, rows ldm apart) */
    float *pk;              /* packed B block: ceil(n/16)·16 × KC floats */
    int64_t nstrips, mblocks, sgroups;
} gemm_job;

AI void job_block(const int RM, const gemm_job *g, int64_t p0, int64_t kd, int64_t task) {
    int64_t mb = task / g->sgroups, sgi = task % g->sgroups;
    int64_t i0 = mb * MC, mm = g->m - i0 < MC ? g->m - i0 : MC;
    int64_t s0 = sgi * SG, s1 = s0 + SG < g->nstrips ? s0 + SG : g->nstrips;
    int mode = p0 > 0 ? 1 : g->bias ? 3 : g->beta == 0.0f ? 0 : g->beta == 1.0f ? 1 : 2;
    const float *a = g->a + i0 * g->sar + p0 * g->sak;
    for (int64_t s = s0; s < s1; s++) {
        int64_t j0 = 16 * s, wd = g->n - j0 > 8 ? 16 : 8, valid = g->n - j0 < wd ? g->n - j0 : wd;
        const float *bp = g->pk + j0 * kd;
        float *c = g->c + i0 * g->ldc + j0;
        const float *bias = g->bias ? g->bias + j0 : NULL;
        const float *mul = g->mul && p0 + kd >= g->k ? g->mul + i0 * g->ldm + j0 : NULL;
        if (wd == 16)
            strip_rows(RM, 2, mm, kd, a, g->sar, g->sak, bp, c, g->ldc, g->alpha, g->beta, mode, valid, bias, mul, g->ldm);
        else strip_rows(RM, 1, mm, kd, a, g->sar, g->sak, bp, c, g->ldc, g->alpha, g->beta, mode, valid, bias, mul, g->ldm);
    }
}

typedef struct {
    void (*pack)(const gemm_job *g, int64_t p0, int64_t kd, int64_t s);
    void (*block)(const gemm_job *g, int64_t p0, int64_t kd, int64_t task);
} gemm_kernels;

/* the kernels are compiled per ISA; the OpenMP region stays outside them (GCC outlines a
 * parallel region into a function of its own, which would not inherit a target attribute) */
#define ISA_VARIANT(suffix, attr, RM)                                                                  \
    static attr void pack_##suffix(const gemm_job *g, int64_t p0, int64_t kd, int64_t s) {              \
        pack_strips(kd, g->n, g->b + p0 * g->sbk, g->sbk, g->sbn, g->pk, s, s + 1);                     \
    }                                                                                                  \
    static attr void block_##suffix(const gemm_job *g, int64_t p0, int64_t kd, int64_t t) {            \
        job_block(RM, g, p0, kd, t);                                                                   \
    }                                                                                                  \
    static const gemm_kernels kernels_##suffix = {pack_##suffix, block_##suffix};

/* 6×16 tiles: 12 ymm accumulators + 2 B vectors + 1 broadcast fit AVX2's 16 registers; the
 * baseline build splits each vector in two xmm and takes 3-row tiles */
ISA_VARIANT(avx2, __attribute__((target("avx2,fma"))), 6)
ISA_VARIANT(base, , 3)

/* which path a product takes: AUTO asks own_gemm_wins; VITC_GEMM=blas / own (read at the first
 * product) or vt_gemm_set_mode send every product to OpenBLAS / to our kernel, so the paths are
 * compared in one build and one process (bench/gemm.py, bench/gemm_step.py, tests) */
static int gemm_mode_now = -1;

void vt_gemm_set_mode(int mode) { __atomic_store_n(&gemm_mode_now, mode, __ATOMIC_RELAXED); }

static int gemm_mode(void) {
    int r = __atomic_load_n(&gemm_mode_now, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *e = getenv("VITC_GEMM");
        r = e && !strcmp(e, "blas") ? VT_GEMM_BLAS : e && !strcmp(e, "own") ? VT_GEMM_OWN : VT_GEMM_AUTO;
        __atomic_store_n(&gemm_mode_now, r, __ATOMIC_RELAXED);
    }
    return r;
}

static const gemm_kernels *pick(void) { return vt_use_avx2_kernels() ? &kernels_avx2 : &kernels_base; }

static void gemm_run(const gemm_kernels *kn, const gemm_job *g, int nt) {
    int64_t tasks = g->mblocks * g->sgroups;
    #pragma omp parallel num_threads(nt) if (nt > 1)
    for (int64_t p0 = 0; p0 < g->k; p0 += KC) {
        int64_t kd = g->k - p0 < KC ? g->k - p0 : KC;
        #pragma omp for schedule(static)
        for (int64_t s = 0; s < g->nstrips; s++) kn->pack(g, p0, kd, s);
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) kn->block(g, p0, kd, t);
    }
}

/* which GEMMs run here, from measurements (bench/gemm.py per product; whole train steps A/B in
 * one process with vitc._C._gemm_mode, bench/gemm_step.py): a plain A, K <= 1536, and at least
 * 65536 multiply-adds. That is every product of the seed ViT's forward and all its input
 * gradients (the whole train step ~4.5 % faster at 1 and 2 threads with K <= 512; the K = 1536 qkv
 * input gradient then measured 1.21× / 1.11× OpenBLAS at 2 / 1 threads). Transposed A (weight
 * gradients) loses to BLAS's packed panels on this kernel (with AVX-512 they go to gemm_at512.c): a trial packing A into 6-row panels made the seed
 * step ~9 % slower, and one with A's rows as the vector operand, op(B) packed in 6-wide panels per
 * task and Cᵀ tiles stored transposed, ran at 0.4–0.8× OpenBLAS per product; both were dropped.
 * Tiny products lose too. DeiT-Tiny's forward and input-gradient products (m·n·k >= 2.3e8) were
 * kept on OpenBLAS by an upper bound of 2e8 until measured: at 2 threads on a Zen 4 (AVX-512)
 * they run 185-195 GFLOP/s here against 168-184 in OpenBLAS (bench/gemm.py), and the DeiT-Tiny
 * step A/B (bench/ab.py --model deit) read 0.925× the time with the bound removed. */
static int own_gemm_wins(int transa, int64_t m, int64_t n, int64_t k) {
    double mnk = (double)m * (double)n * (double)k;
    return !transa && k <= 1536 && mnk >= 65536.0;
}

static void blas_call(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)(lda > 0 ? lda : 1), b,
                (blasint)(ldb > 0 ? ldb : 1), beta, c, (blasint)(ldc > 0 ? ldc : 1));
}

/* Thread-count independence: OpenBLAS picks its algorithm from the size of each call and from its
 * thread count. Its threaded driver (level3_thread.c) halves a K remainder between GEMM_Q and
 * 2·GEMM_Q as (r+1)/2, its one-thread driver (level3.c) rounds the half up to a multiple of
 * GEMM_UNROLL_M (OpenBLAS 0.3.21 driver/level3/); and its SkylakeX/Cooperlake build may take a
 * small-matrix kernel for M·N·K <= 10^6 (kernel/x86_64/sgemm_small_kernel_permit_skylakex.c), so
 * cutting C into chunks whose size follows the thread count still changed bits. The same product
 * thus summed K differently at 1 and 2 threads (the weight gradients of every ViT layer,
 * K = batch·tokens). Here OpenBLAS only runs one-thread calls, and C is cut, over the larger of
 * M and N (never K), into chunks of BLAS_CHUNK, a fixed width independent of the thread count: every thread count makes the same calls on the same
 * chunks, so each element gets the same sum. The threads share out the chunks. OpenBLAS's OpenMP
 * build (the one linked here) runs single-threaded inside an active parallel region or when the
 * caller's OpenMP thread count is 1 (an ICV of the calling thread, set around the one-thread path). */
#define BLAS_CHUNK 128

/* the chunk width for a C side of len: BLAS_CHUNK, but a weight gradient (Aᵀ·B with a long K) is
 * cut into an even number of chunks of equal width (rounded up to 16), each at most DW_CHUNK wide, so
 * that two threads share them evenly: the seed ViT's FFN weight gradients (128×64 and 64×128,
 * K = 1700) ran as one call on one thread (bench/gemm.py "seed fc1 dW": 0.31 -> 0.21 ms at 2
 * threads), DeiT-Tiny's mirrored qkv weight gradient (192×576) as 5 chunks, 3 on one thread. Why wide
 * chunks: every chunk is a BLAS call that packs the whole other operand (K × the C side not cut)
 * again, and with K in the thousands that packing is a real part of a narrow chunk's work. Chunks of
 * at most 128 columns (the earlier rule) against at most 384, alternated call by call in one process
 * (2 threads, Zen 4): DeiT-Tiny's fc1 / qkv / fc2 weight gradients (K = 6304) 0.92 / 0.91 / 0.94 of
 * the time, LV-ViT-small-MNIST's FFN ones (288×96 and 96×288, K = 6400: 4 calls of 80 columns → 2
 * of 144) 0.91 / 0.90, the seed ViT's qkv 0.97 and its proj (64×512, K = 1700) 1.02; 256 and 768
 * read within 2 % of 384. A function of the shape only, so the bits stay thread-independent; other
 * products keep their chunks (and bits). */
#define DW_CHUNK 384
static int64_t blas_chunk(int transa, int transb, int64_t len, int64_t k) {
    if (!transa || transb || k < 512 || len <= 32) return BLAS_CHUNK;
    int64_t pieces = (len + DW_CHUNK - 1) / DW_CHUNK;
    pieces += pieces & 1;
    return ((len + pieces - 1) / pieces + 15) / 16 * 16;
}

static int blas_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
        return vt_fail(VT_ESHAPE, "matmul: a dimension exceeds the BLAS integer range");
    int split_m = m >= n;
    int64_t len = split_m ? m : n, chunk = blas_chunk(transa, transb, len, k), pieces = (len + chunk - 1) / chunk;
    int nt = omp_in_parallel() ? 1 : vt_get_num_threads();
    if (nt > pieces) nt = (int)pieces;
    int outer = omp_get_max_threads();
    if (nt < 2) omp_set_num_threads(1); /* OpenBLAS's OpenMP build follows the caller's thread count */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t p = 0; p < pieces; p++) {
        int64_t s = p * chunk, w = len - s < chunk ? len - s : chunk;
        if (split_m) /* rows s.. of op(A) and C */
            blas_call(transa, transb, w, n, k, alpha, transa ? a + s : a + s * lda, lda, b, ldb, beta, c + s * ldc, ldc);
        else /* columns s.. of op(B) and C */
            blas_call(transa, transb, m, w, k, alpha, a, lda, transb ? b + s * ldb : b + s, ldb, beta, c + s, ldc);
    }
    if (nt < 2) omp_set_num_threads(outer);
    return VT_OK;
}

/* C = alpha·Aᵀ·B (beta = 0; A stored k×m, B k×n) as its mirror Cᵀ = Bᵀ·A into scratch, then
 * transposed into C. With m >= 3n (a weight gradient dYᵀ·X whose layer widens: qkv, fc1) OpenBLAS
 * 0.3.21 runs the mirror faster, transposed copy included. Measured interleaved in one process,
 * plain against mirrored: the seed qkv weight gradient 1.15× / 1.32× at 1 / 2 threads, DeiT-Tiny's
 * qkv and fc1 1.06–1.11×; the narrowing ones, m < n, lose 7–19 % mirrored, so they stay as they are
 * (bench/gemm.py's "OpenBLAS / auto" column shows it too, with ~10 % noise on same-path rows). */
static int mirror_wins(int transa, int transb, int64_t m, int64_t n, int64_t k, float beta) {
    return transa && !transb && beta == 0.0f && m >= 3 * n && (double)m * (double)n * (double)k >= 1e6;
}

static int blas_gemm_mirrored(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                              const float *b, int64_t ldb, float *c, int64_t ldc) {
    size_t bytes = sizeof(float) * (size_t)m * (size_t)n;
    float *t = vt_alloc(bytes);
    if (!t) return vt_last_code();
    int st = blas_gemm(1, 0, n, m, k, alpha, b, ldb, a, lda, 0.0f, t, m);
    if (!st) {
        /* C (m×n) <- tᵀ, in 32×32 blocks so both sides stay in L1 */
        int nt = omp_in_parallel() ? 1 : vt_get_num_threads();
        #pragma omp parallel for num_threads(nt) if (nt > 1 && m * n >= 65536) schedule(static)
        for (int64_t i0 = 0; i0 < m; i0 += 32)
            for (int64_t j0 = 0; j0 < n; j0 += 32) {
                int64_t i1 = i0 + 32 < m ? i0 + 32 : m, j1 = j0 + 32 < n ? j0 + 32 : n;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++) c[i * ldc + j] = t[j * m + i];
            }
    }
    vt_free(t, bytes);
    return st;
}

/* the one dispatch rule of VT_GEMM_AUTO, also reported by vt_gemm_auto_path. Weight gradients
 * (Aᵀ·B, K long) go to gemm_at512.c where the AVX-512 kernels run; elsewhere to OpenBLAS. */
enum { PATH_BLAS, PATH_OWN, PATH_MIRRORED, PATH_AT512 };

static int at512_form(int transa, int transb, float alpha, float beta) {
    return transa && !transb && alpha == 1.0f && beta == 0.0f;
}

static int own_at512(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    return at512_form(transa, transb, alpha, beta) && vt_gemm_at512_wanted(m, n, k);
}

static int auto_path(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    if (own_gemm_wins(transa, m, n, k)) return PATH_OWN;
    if (own_at512(transa, transb, m, n, k, alpha, beta)) return PATH_AT512;
    return mirror_wins(transa, transb, m, n, k, beta) ? PATH_MIRRORED : PATH_BLAS;
}

/* the path taken now: a forced mode, else AUTO's rule ("own" sends every Aᵀ·B to gemm_at512.c where
 * its kernels run, whatever the size) */
static int path_now(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    int mode = gemm_mode();
    if (mode == VT_GEMM_OWN)
        return at512_form(transa, transb, alpha, beta) && vt_use_avx512_kernels() ? PATH_AT512 : PATH_OWN;
    return mode == VT_GEMM_BLAS ? PATH_BLAS : auto_path(transa, transb, m, n, k, alpha, beta);
}

int vt_gemm_auto_path(int transa, int64_t m, int64_t n, int64_t k) { return auto_path(transa, 0, m, n, k, 1.0f, 0.0f); }

int vt_gemm_path_now(int transa, int64_t m, int64_t n, int64_t k) { return path_now(transa, 0, m, n, k, 1.0f, 0.0f); }

/* the product C = alpha·op(A)·op(B) + beta·C for our kernel (bias and mul unset) */
static gemm_job job_of(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                       int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    return (gemm_job){.m = m, .n = n, .k = k, .a = a, .sar = transa ? 1 : lda, .sak = transa ? lda : 1, .b = b,
                      .sbk = transb ? 1 : ldb, .sbn = transb ? ldb : 1, .alpha = alpha, .beta = beta, .c = c,
                      .ldc = ldc};
}

/* rows [0, m) of C (ldc) set to the n floats of bias; threaded unless inside a parallel region */
static void fill_rows(int64_t m, int64_t n, const float *bias, float *c, int64_t ldc) {
    int nt = omp_in_parallel() ? 1 : vt_get_num_threads();
    #pragma omp parallel for num_threads(nt) if (nt > 1 && m * n > 65536) schedule(static)
    for (int64_t r = 0; r < m; r++) memcpy(c + r * ldc, bias, sizeof(float) * (size_t)n);
}

/* our kernel on the product g describes (m, n, k, operands, alpha, beta, c, bias set) */
static int own_gemm(gemm_job *g) {
    g->nstrips = (g->n + 15) / 16;
    g->mblocks = (g->m + MC - 1) / MC;
    g->sgroups = (g->nstrips + SG - 1) / SG;
    int64_t kc = g->k < KC ? g->k : KC;
    size_t pk_bytes = sizeof(float) * (size_t)(g->nstrips * 16) * (size_t)kc;
    if (!(g->pk = vt_alloc(pk_bytes))) return vt_last_code();
    double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k;
    int nt = omp_in_parallel() || flops < 2e6 ? 1 : vt_get_num_threads();
    int64_t tasks = g->mblocks * g->sgroups;
    if (nt > tasks) nt = (int)tasks;
    gemm_run(pick(), g, nt < 1 ? 1 : nt);
    vt_free(g->pk, pk_bytes);
    return VT_OK;
}

int vt_k_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m < 0 || n < 0 || k < 0) return vt_fail(VT_ESHAPE, "gemm: negative size (%lld, %lld, %lld)", (long long)m,
                                                (long long)n, (long long)k);
    if (m == 0 || n == 0) return VT_OK;
    if (k == 0 || alpha == 0.0f) { /* C = beta·C (beta = 0 writes zeros, as BLAS) */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return VT_OK;
    }
    if (vt_bf16_gemm_wanted()) return vt_k_gemm_bf16(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    int path = path_now(transa, transb, m, n, k, alpha, beta);
    if (path == PATH_AT512) return vt_gemm_at512(m, n, k, a, lda, b, ldb, c, ldc);
    if (path == PATH_MIRRORED) return blas_gemm_mirrored(m, n, k, alpha, a, lda, b, ldb, c, ldc);
    if (path == PATH_BLAS) return blas_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    gemm_job g = job_of(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return own_gemm(&g);
}

/* C = A·op(B) + bias (bias: n floats added to every row; A plain, k >= 1), the bits of filling C's
 * rows with the bias and then vt_k_gemm(beta = 1): our kernel adds the bias in the first K block's
 * store instead of a pass over C beforehand */
int vt_k_gemm_bias(int transb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                   int64_t ldb, const float *bias, float *c, int64_t ldc) {
    if (m > 0 && n > 0 && k > 0 && !vt_bf16_gemm_wanted() && path_now(0, transb, m, n, k, 1.0f, 1.0f) == PATH_OWN) {
        gemm_job g = job_of(0, transb, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
        g.bias = bias;
        return own_gemm(&g);
    }
    fill_rows(m, n, bias, c, ldc);
    return vt_k_gemm(0, transb, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
}

/* C = (A·op(B)) ⊙ M (A plain; M m × n, rows ldm apart), bitwise vt_k_gemm then C ⊙= M: our kernel
 * multiplies as it stores the last K block, instead of a pass over C afterwards */
int vt_k_gemm_mul(int transb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                  int64_t ldb, const float *mul, int64_t ldm, float *c, int64_t ldc) {
    if (m > 0 && n > 0 && k > 0 && !vt_bf16_gemm_wanted() && path_now(0, transb, m, n, k, 1.0f, 0.0f) == PATH_OWN) {
        gemm_job g = job_of(0, transb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
        g.mul = mul;
        g.ldm = ldm;
        return own_gemm(&g);
    }
    int st = vt_k_gemm(0, transb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    if (st) return st;
    int nt = omp_in_parallel() ? 1 : vt_get_num_threads();
    #pragma omp parallel for num_threads(nt) if (nt > 1 && m * n > 65536) schedule(static)
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) c[r * ldc + j] *= mul[r * ldm + j];
    return VT_OK;
}

/* ---- one packed B for many small products on the calling thread ----------------------------- */
/* attention/packed.c's fused projection multiplies each image's T rows by the same W or Wᵀ: packing it
 * once per op instead of once per image keeps the per-image products at the big kernel's speed.
 * The panel holds every K block of op(B) one after another, each in vt_k_gemm's strip layout, and
 * a rows call walks them as vt_k_gemm does (first block writes, later ones add): the same bits. */
int vt_gemm_panel_init(vt_gemm_panel *pn, int transb, int64_t k, int64_t n, const float *b, int64_t ldb) {
    memset(pn, 0, sizeof *pn);
    if (k < 1 || n < 1)
        return vt_fail(VT_ESHAPE, "gemm panel: k and n must be positive, got k = %lld, n = %lld", (long long)k,
                       (long long)n);
    if (vt_bf16_gemm_wanted()) return vt_bf16_panel_init(pn, transb, k, n, b, ldb);
    int64_t nstrips = (n + 15) / 16;
    size_t bytes = sizeof(float) * (size_t)(nstrips * 16 * k);
    float *p = vt_alloc(bytes);
    if (!p) return vt_last_code();
    *pn = (vt_gemm_panel){.p = p, .b = b, .k = k, .n = n, .nstrips = nstrips, .sbk = transb ? 1 : ldb,
                          .sbn = transb ? ldb : 1, .bytes = bytes};
    return VT_OK;
}

static gemm_job panel_job(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, float beta, float *c,
                          int64_t ldc) {
    return (gemm_job){.m = m, .n = pn->n, .k = pn->k, .a = a, .sar = lda, .sak = 1, .b = pn->b, .sbk = pn->sbk,
                      .sbn = pn->sbn, .alpha = 1.0f, .beta = beta, .c = c, .ldc = ldc, .nstrips = pn->nstrips,
                      .mblocks = (m + MC - 1) / MC, .sgroups = (pn->nstrips + SG - 1) / SG};
}

/* strip s of every K block */
void vt_gemm_panel_pack(const vt_gemm_panel *pn, int64_t s) {
    if (pn->bf && vt_bf16_panel_pack(pn, s)) return;
    gemm_job g = panel_job(pn, 0, NULL, 0, 0.0f, NULL, 0);
    const gemm_kernels *kn = pick();
    for (int64_t p0 = 0; p0 < pn->k; p0 += KC) {
        g.pk = pn->p + pn->nstrips * 16 * p0;
        kn->pack(&g, p0, pn->k - p0 < KC ? pn->k - p0 : KC, s);
    }
}

static void panel_walk(const vt_gemm_panel *pn, gemm_job *g) {
    const gemm_kernels *kn = pick();
    for (int64_t p0 = 0; p0 < pn->k; p0 += KC) {
        g->pk = pn->p + pn->nstrips * 16 * p0;
        for (int64_t t = 0; t < g->mblocks * g->sgroups; t++) kn->block(g, p0, pn->k - p0 < KC ? pn->k - p0 : KC, t);
    }
}

void vt_gemm_panel_rows(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, float beta, float *c,
                        int64_t ldc) {
    if (pn->bf && vt_bf16_panel_rows(pn, m, a, lda, beta, c, ldc)) return;
    gemm_job g = panel_job(pn, m, a, lda, beta, c, ldc);
    panel_walk(pn, &g);
}

void vt_gemm_panel_linear(const vt_gemm_panel *pn, int64_t m, const float *a, int64_t lda, const float *bias,
                          float *y) {
    if (bias && !pn->bf) { /* the bias added in the first K block's store (tile mode 3) */
        gemm_job g = panel_job(pn, m, a, lda, 1.0f, y, pn->n);
        g.bias = bias;
        panel_walk(pn, &g);
        return;
    }
    if (bias) fill_rows(m, pn->n, bias, y, pn->n);
    vt_gemm_panel_rows(pn, m, a, lda, bias ? 1.0f : 0.0f, y, pn->n);
}

void vt_gemm_panel_free(vt_gemm_panel *pn) {
    if (pn->bf) vt_bf16_panel_free(pn);
    if (pn->p) vt_free(pn->p, pn->bytes);
    pn->p = NULL;
}
