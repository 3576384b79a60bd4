/* vitc core: GCC vector types of 8 floats for the hand-written kernels (kernels/gemm.c, the attention
 * kernels, core/tensor.c's transposing copy).
 * A kernel body is written once on these types and compiled twice: with AVX2+FMA (one ymm per
 * vector, a*b+c contracted to FMA) and for the baseline x86-64 (two xmm per vector); bodies are
 * always_inline (AI) so each ISA wrapper gets its own instruction selection, and
 * vt_use_avx2_kernels() (cpu.h) picks the wrapper at run time. */
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

/* all lanes <- the sum of the 8 lanes by halving shuffles, lane 0 = ((v0+v4) + (v2+v6)) + ((v1+v5) +
 * (v3+v7)): one fixed order (deterministic) for every kernel that folds 8 lanes */
AI v8 allsum8(const v8 *vp) {
    v8 v = *vp;
    v = v + __builtin_shuffle(v, (v8i){4, 5, 6, 7, 0, 1, 2, 3});
    v = v + __builtin_shuffle(v, (v8i){2, 3, 0, 1, 6, 7, 4, 5});
    return v + __builtin_shuffle(v, (v8i){1, 0, 3, 2, 5, 4, 7, 6});
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

#endif
