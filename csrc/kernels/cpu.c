#include <stdlib.h>
#include <string.h>
#include "cpu.h"

int vt_use_avx2_kernels(void) {
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *isa = getenv("VITC_ISA");
        r = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !(isa && !strcmp(isa, "baseline"));
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

int vt_cpu_has_avx512bf16(void) {
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *isa = getenv("VITC_ISA");
        r = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512bf16") && !(isa && !strcmp(isa, "baseline"));
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

int vt_use_avx512_kernels(void) {
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *isa = getenv("VITC_ISA");
        r = vt_use_avx2_kernels() && __builtin_cpu_supports("avx512f") && !(isa && !strcmp(isa, "avx2"));
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}
