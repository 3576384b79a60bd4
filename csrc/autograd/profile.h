/* vitc profiler: wall time of every forward, backward and gradient accumulation the engine runs,
 * recorded only on the thread that started it (vt_profile_start), the way torch.profiler records
 * a training loop's ops. Off, it costs one thread-local test per op.
 * Ownership: the event buffer belongs to the profiling thread until vt_profile_stop hands it to
 * the caller, who frees it with free(). */
#ifndef VT_PROFILE_H
#define VT_PROFILE_H
#include <stdint.h>
#include "../core/tensor.h"

enum { VT_PROF_FORWARD, VT_PROF_BACKWARD, VT_PROF_ACCUMULATE };

typedef struct vt_prof_event {
    int op;       /* row of ops.def; for VT_PROF_ACCUMULATE the op whose input gradient was summed */
    int phase;    /* VT_PROF_* */
    int ndim;     /* first input's shape (forward, backward) or the gradient's (accumulate) */
    int64_t shape[VT_MAX_DIMS];
    int64_t ns;   /* wall time */
} vt_prof_event;

int vt_profile_start(void);                             /* error if this thread already profiles */
int vt_profile_stop(vt_prof_event **events, int64_t *n); /* error if it does not */
int vt_profiling(void);
int64_t vt_prof_now(void);                              /* monotonic ns */
void vt_prof_record(int op, int phase, int ndim, const int64_t *shape, int64_t t0);
#endif
