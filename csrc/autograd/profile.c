/* vitc profiler: see profile.h */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "profile.h"
#include "../core/error.h"

typedef struct { vt_prof_event *v; int64_t n, cap; int on, lost; } prof_buf;
static _Thread_local prof_buf prof;

int vt_profiling(void) { return prof.on; }

int64_t vt_prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int vt_profile_start(void) {
    if (prof.on) return vt_fail(VT_ERUNTIME, "profiler: already running on this thread");
    memset(&prof, 0, sizeof prof);
    prof.on = 1;
    return VT_OK;
}

int vt_profile_stop(vt_prof_event **events, int64_t *n) {
    if (!prof.on) return vt_fail(VT_ERUNTIME, "profiler: not running on this thread");
    int lost = prof.lost;
    *events = prof.v;
    *n = prof.n;
    memset(&prof, 0, sizeof prof);
    if (lost) { /* an event could not be stored: say so rather than hand back a partial timeline */
        free(*events);
        *events = NULL;
        *n = 0;
        return vt_fail(VT_ENOMEM, "profiler: out of memory recording events");
    }
    return VT_OK;
}

void vt_prof_record(int op, int phase, int ndim, const int64_t *shape, int64_t t0) {
    int64_t t1 = vt_prof_now();
    if (prof.n == prof.cap) {
        int64_t cap = prof.cap ? 2 * prof.cap : 1024;
        vt_prof_event *v = realloc(prof.v, sizeof *v * (size_t)cap);
        if (!v) { prof.lost = 1; return; }
        prof.v = v;
        prof.cap = cap;
    }
    vt_prof_event *e = &prof.v[prof.n++];
    memset(e, 0, sizeof *e);
    e->op = op;
    e->phase = phase;
    e->ndim = ndim < 0 ? 0 : ndim > VT_MAX_DIMS ? VT_MAX_DIMS : ndim;
    if (shape) memcpy(e->shape, shape, sizeof(int64_t) * (size_t)e->ndim);
    e->ns = t1 - t0;
}
