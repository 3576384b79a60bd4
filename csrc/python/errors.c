/* vitc python binding: C status -> Python exception */
#include "binding.h"

PyObject *vtpy_IndexError;
PyObject *vtpy_OutOfMemoryError;

PyObject *vtpy_raise(int status) {
    const char *msg = vt_last_error();
    if (!msg[0]) msg = "unknown error in the vitc core";
    PyObject *type;
    switch (status) {
    case VT_ESHAPE:
    case VT_EVALUE: type = PyExc_ValueError; break;
    case VT_ETYPE: type = PyExc_TypeError; break;
    case VT_EINDEX: type = vtpy_IndexError; break;
    case VT_ENOMEM: type = vtpy_OutOfMemoryError; break;
    default: type = PyExc_RuntimeError; break;
    }
    PyErr_SetString(type, msg);
    vt_clear_error();
    return NULL;
}
