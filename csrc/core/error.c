#include <stdarg.h>
#include <stdio.h>
#include "error.h"

static _Thread_local char vt_msg[1024];
static _Thread_local int vt_code;

static void vt_set(int code, const char *fmt, va_list ap) {
    vsnprintf(vt_msg, sizeof vt_msg, fmt, ap);
    vt_code = code;
}

int vt_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vt_set(code, fmt, ap);
    va_end(ap);
    return code;
}

void *vt_fail_null(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vt_set(code, fmt, ap);
    va_end(ap);
    return NULL;
}

const char *vt_last_error(void) { return vt_msg; }
int vt_last_code(void) { return vt_code; }
void vt_clear_error(void) { vt_msg[0] = 0; vt_code = 0; }
