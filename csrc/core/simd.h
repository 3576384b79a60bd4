/* vitc core: runtime CPU dispatch. The default build is portable x86-64 (no -march=native);
 * functions marked VT_SIMD_CLONES are compiled three times (AVX-512, AVX2+FMA, baseline) and the
 * loader picks the best for the running CPU once (GCC target_clones + ifunc). Mark the row
 * kernels that hold the hot loops; loops inside OpenMP regions should call such a function. */
#ifndef VT_SIMD_H
#define VT_SIMD_H
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VT_NO_SIMD_CLONES)
#define VT_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VT_SIMD_CLONES
#endif
#endif
