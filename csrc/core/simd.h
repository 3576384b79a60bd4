/* vitc core: runtime CPU dispatch. The default build is portable x86-64 (no -march=native);
 * functions marked VT_SIMD_CLONES are compiled three times (x86-64-v4: AVX-512; x86-64-v3: AVX2 +
 * FMA; baseline) and the loader picks the best for the running CPU once (GCC target_clones +
 * ifunc). Mark the row kernels that hold the hot loops; loops inside OpenMP regions should call
 * such a function.
 * Why ISA levels: a bare "avx2" clone has no FMA, so every a·b + c of the polynomials in
 * kernels/fastmath.h is two instructions and two roundings; "arch=haswell"-style CPU models are
 * only picked on Intel cores. The levels need GCC 12; older GCCs get avx2 + fma.
 * Define VT_NO_SIMD_CLONES to build the portable code path alone. */
#ifndef VT_SIMD_H
#define VT_SIMD_H
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VT_NO_SIMD_CLONES) && __GNUC__ >= 12
#define VT_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VT_NO_SIMD_CLONES)
#define VT_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VT_SIMD_CLONES
#endif
#endif
