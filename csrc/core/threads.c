#include <omp.h>
#include "error.h"
#include "threads.h"

void openblas_set_num_threads(int n); /* OpenBLAS's own API (cblas.h declares it too) */

/* OpenMP's thread count (nthreads-var) belongs to the calling thread: omp_set_num_threads in one
 * Python thread leaves every other thread on the default (all cores). So the setting lives here,
 * process-wide, with a generation number; vt_threads_sync(), called by the binding before every C
 * call that may start a parallel region, re-applies it in a thread that has not seen the latest
 * generation (one thread-local compare when nothing changed). OpenBLAS's count is process-wide. */
static int g_threads;
static int g_generation; /* bumped by every vt_set_num_threads */
static _Thread_local int seen_generation;

int vt_set_num_threads(int n) {
    if (n < 1 || n > 4096) return vt_fail(VT_EVALUE, "set_num_threads: need 1 <= n <= 4096, got %d", n);
    __atomic_store_n(&g_threads, n, __ATOMIC_RELAXED);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    seen_generation = __atomic_add_fetch(&g_generation, 1, __ATOMIC_RELEASE);
    return VT_OK;
}

void vt_threads_sync(void) {
    int gen = __atomic_load_n(&g_generation, __ATOMIC_ACQUIRE);
    if (gen == seen_generation) return;
    omp_set_num_threads(__atomic_load_n(&g_threads, __ATOMIC_RELAXED));
    seen_generation = gen;
}

int vt_get_num_threads(void) {
    int n = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    return n ? n : omp_get_max_threads();
}

int vt_thread_omp_max_threads(void) { return omp_get_max_threads(); }
