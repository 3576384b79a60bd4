#include "amp.h"

/* process-wide, not per thread: the GEMMs read it on OpenMP worker threads too (conv's per-image
 * products, the packed-panel rows), which never see a thread-local set on the Python thread */
static int amp_bf16;

int vt_amp_bf16(void) { return __atomic_load_n(&amp_bf16, __ATOMIC_RELAXED); }

int vt_amp_set_bf16(int on) { return __atomic_exchange_n(&amp_bf16, on ? 1 : 0, __ATOMIC_RELAXED); }
