/* vitc python binding: shared declarations. The binding parses arguments, releases the GIL around
 * C calls and turns vt_status codes into exceptions; it does no math. */
#ifndef VTPY_BINDING_H
#define VTPY_BINDING_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../core/tensor.h"

typedef struct {
    PyObject_HEAD
    vt_tensor *t; /* owned */
} PyTensor;

extern PyTypeObject *vtpy_TensorBase; /* the C base type (heap type) */
extern PyObject *vtpy_TensorClass;    /* vitc.Tensor, registered by the package at import */
extern PyObject *vtpy_IndexError;     /* vitc's IndexError (IndexError and ValueError) */
extern PyObject *vtpy_OutOfMemoryError; /* MemoryError and RuntimeError, like torch's OOM */

/* the Python object for t, stealing the reference to t; NULL (exception set) if t is NULL */
PyObject *vtpy_wrap(vt_tensor *t);
/* t of a Python tensor (borrowed) or NULL with TypeError naming `what` */
vt_tensor *vtpy_unwrap(PyObject *o, const char *what);
/* raise the exception for the last C error; returns NULL */
PyObject *vtpy_raise(int status);

int vtpy_tensor_type_init(PyObject *module);
int vtpy_numpy_init(void);
PyObject *vtpy_to_numpy(PyObject *self, PyObject *unused);
PyObject *vtpy_from_numpy(PyObject *module, PyObject *arr);
PyObject *vtpy_bits_numpy(PyObject *module, PyObject *t);   /* bfloat16 tensor -> zero-copy uint16 view */
PyObject *vtpy_from_bits(PyObject *module, PyObject *arr);  /* uint16 array -> bfloat16 tensor (from_numpy rules) */
/* gradient hooks and inference mode (hooks.c) */
void vtpy_hooks_init(void);
int vtpy_restore_hook_error(void); /* 1: a hook's exception is set again (Tensor.backward raises it) */
PyObject *vtpy_grad_hooks(PyObject *m, PyObject *t);
PyObject *vtpy_set_grad_hooks(PyObject *m, PyObject *args);
PyObject *vtpy_set_inference_mode(PyObject *m, PyObject *on);
PyObject *vtpy_is_inference_mode(PyObject *m, PyObject *unused);
PyObject *vtpy_wrap_new(vt_tensor *t); /* vtpy_wrap for a factory's new tensor (marked under inference mode) */
/* a shape from a tuple/list of ints; returns ndim or -1 with an exception */
int vtpy_parse_shape(PyObject *seq, int64_t *shape, const char *who);

#endif
