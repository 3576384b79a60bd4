#include <omp.h>
#include "error.h"
#include "threads.h"

void openblas_set_num_threads(int n); /* OpenBLAS's own API (cblas.h declares it too) */

static int g_threads;

int vt_set_num_threads(int n) {
    if (n < 1 || n > 4096) return vt_fail(VT_EVALUE, "set_num_threads: need 1 <= n <= 4096, got %d", n);
    g_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return VT_OK;
}

int vt_get_num_threads(void) { return g_threads ? g_threads : omp_get_max_threads(); }
