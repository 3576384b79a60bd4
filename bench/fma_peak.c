/* The machine's float FMA ceiling: every thread runs 12 independent chains of vector FMAs (enough to
 * cover the FMA latency on the cores we have seen), nothing else; GFLOP/s = 2 · lanes · FMAs / time.
 * The ceiling a GEMM could reach, against which bench/suite.py's "% of sgemm peak" (OpenBLAS's own
 * 2048³ product) can be read. Run by hand, never as a test:
 *
 *     gcc -O2 -fopenmp bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak 2
 *
 * Prints the best of 5 runs for 256-bit (AVX2+FMA) and, where the CPU has it, 512-bit (AVX-512F)
 * vectors, at the thread count given (default 2). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define ITERS 100000000L
#define CHAINS(T, SET, FMA)                                                                          \
    T a0 = SET(0.0f), a1 = SET(1.0f), a2 = SET(2.0f), a3 = SET(3.0f), a4 = SET(4.0f), a5 = SET(5.0f); \
    T a6 = SET(6.0f), a7 = SET(7.0f), a8 = SET(8.0f), a9 = SET(9.0f), a10 = SET(10.0f), a11 = SET(11.0f); \
    const T m = SET(0.999999f), c = SET(1e-7f);                                                       \
    for (long it = 0; it < ITERS; it++) {                                                             \
        a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);               \
        a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);               \
        a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);           \
    }                                                                                                 \
    T s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                                \
    sink += s[0]

/* run<bits>(threads): the chains on T vectors of `lanes` floats, compiled for `isa`; GFLOP/s */
#define RUNNER(name, isa, T, SET, FMA, lanes)                                                         \
    __attribute__((target(isa))) static double name(int threads) {                                   \
        float sink = 0.0f;                                                                            \
        double t0 = omp_get_wtime();                                                                  \
        _Pragma("omp parallel num_threads(threads) reduction(+ : sink)") { CHAINS(T, SET, FMA); }    \
        double t = omp_get_wtime() - t0;                                                              \
        if (sink == 12345.0f) puts(""); /* keeps the chains live */                                   \
        return 2.0 * (lanes) * 12 * (double)ITERS * threads / t / 1e9;                                \
    }
RUNNER(run256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
RUNNER(run512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1) threads = 1;
    double b256 = 0, b512 = 0;
    for (int r = 0; r < 5; r++) {
        double g = run256(threads);
        if (g > b256) b256 = g;
        if (__builtin_cpu_supports("avx512f") && (g = run512(threads)) > b512) b512 = g;
    }
    printf("FMA peak, %d thread(s), best of 5: 256-bit %.1f GFLOP/s", threads, b256);
    if (b512 > 0) printf(", 512-bit %.1f GFLOP/s", b512);
    printf("\n");
    return 0;
}
