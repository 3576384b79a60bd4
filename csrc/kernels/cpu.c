#include <stdlib.h>
#include <string.h>
#include "cpu.h"

/* VITC_ISA names this level (a forced lower build) */
static int isa_forced(const char *level) {
    const char *isa = getenv("VITC_ISA");
    return isa && !strcmp(isa, level);
}

/* probe() once per process, kept in *slot (-1 until then) */
static int once(int *slot, int (*probe)(void)) {
    int r = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (r < 0) {
        r = probe();
        __atomic_store_n(slot, r, __ATOMIC_RELAXED);
    }
    return r;
}

static int probe_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !isa_forced("baseline");
}
static int probe_avx512bf16(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16") && !isa_forced("baseline");
}
static int probe_avx512(void) {
    return vt_use_avx2_kernels() && __builtin_cpu_supports("avx512f") && !isa_forced("avx2");
}

int vt_use_avx2_kernels(void) {
    static int v = -1;
    return once(&v, probe_avx2);
}

int vt_cpu_has_avx512bf16(void) {
    static int v = -1;
    return once(&v, probe_avx512bf16);
}

int vt_use_avx512_kernels(void) {
    static int v = -1;
    return once(&v, probe_avx512);
}
