/* vitc core: one knob for both thread pools. GEMMs run on OpenBLAS's threads, every other kernel
 * on OpenMP's; vt_set_num_threads sets both so two pools never oversubscribe the cores. */
#ifndef VT_THREADS_H
#define VT_THREADS_H
int vt_set_num_threads(int n);
int vt_get_num_threads(void);
#endif
