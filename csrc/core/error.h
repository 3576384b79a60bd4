/* vitc core: errors are values. A failing C function stores a message in a thread-local buffer
 * with vt_fail() and returns its status (or NULL); the Python binding turns the status into the
 * matching exception (csrc/python/errors.c). No abort, no assert on user input. */
#ifndef VT_ERROR_H
#define VT_ERROR_H

typedef enum {
    VT_OK = 0,
    VT_ESHAPE,   /* ValueError: shapes, sizes, dims */
    VT_EVALUE,   /* ValueError: other argument values */
    VT_ETYPE,    /* TypeError: dtypes, argument kinds */
    VT_EINDEX,   /* IndexError (also a ValueError): out-of-range index */
    VT_ERUNTIME, /* RuntimeError: autograd misuse, state errors */
    VT_ENOMEM,   /* MemoryError */
} vt_status;

/* printf-style; returns `code` so callers can write `return vt_fail(...)` */
int vt_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* same, for functions returning a pointer: returns NULL */
void *vt_fail_null(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *vt_last_error(void);
int vt_last_code(void);
void vt_clear_error(void);

/* propagate a failing status */
#define VT_TRY(expr) do { int _st = (expr); if (_st) return _st; } while (0)

#endif
