/* vitc ops: GCC vector types of 8 floats for the hand-written kernels (attention/kernels.c, gemm.c).
 * A kernel body is written once on these types and compiled twice: with AVX2+FMA (one ymm per
 * vector, a*b+c contracted to FMA) and for the baseline x86-64 (two xmm per vector); bodies are
 * always_inline (AI) so each ISA wrapper gets its own instruction selection, and
 * vt_use_avx2_kernels() (ops_util.h) picks the wrapper at run time. */
#ifndef VT_VEC8_H
#define VT_VEC8_H
#include <stdint.h>

#define AI static inline __attribute__((always_inline))
/* the vector helpers are always inlined, so their vector-by-value signatures never form an ABI */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));

AI v8 ld8(const float *p) { return *(const v8u *)p; }
#define st8(p, x) (*(v8u *)(p) = (x))
/* a shuffle, not {x, x, ...}: GCC 12 builds the initializer lane by lane under target("avx2") */
AI v8 bc8(float x) { return __builtin_shuffle((v8){x}, (v8i){0}); }
#define sel8(m, a, b) ((v8)(((v8i)(a) & (m)) | ((v8i)(b) & ~(m)))) /* m ? a : b */
#define max8(a, b) sel8((b) > (a), (b), (a))

#endif
