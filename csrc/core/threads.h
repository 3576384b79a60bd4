/* vitc core: one knob for both thread pools. GEMMs run on OpenBLAS's threads, every other kernel
 * on OpenMP's; vt_set_num_threads sets both so two pools never oversubscribe the cores. The
 * setting is per process: vt_threads_sync() applies it to the calling thread (threads.c). */
#ifndef VT_THREADS_H
#define VT_THREADS_H
int vt_set_num_threads(int n);
int vt_get_num_threads(void);
void vt_threads_sync(void);             /* before any C call from a thread that may run kernels */
int vt_thread_omp_max_threads(void);    /* this thread's OpenMP team size now, unsynced (tests) */
#endif
