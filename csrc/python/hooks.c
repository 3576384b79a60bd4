/* vitc python binding: gradient hooks (Tensor.register_hook) and inference mode.
 * A tensor's hooks are a Python dict {handle id: callable} that vitc/_tensor.py fills; autograd keeps
 * it as an opaque object (autograd/node.h) and calls run_hooks during backward, which may be on a
 * thread that released the GIL: it takes the GIL itself. An exception raised by a hook is kept for
 * this thread and re-raised by Tensor.backward (vtpy_restore_hook_error). */
#include "binding.h"
#include "../autograd/node.h"

static _Thread_local PyObject *hook_exc_type, *hook_exc_value, *hook_exc_tb;

/* keep the Python exception now set for Tensor.backward; returns the status that stops the pass */
static int keep_error(void) {
    Py_XDECREF(hook_exc_type);
    Py_XDECREF(hook_exc_value);
    Py_XDECREF(hook_exc_tb);
    PyErr_Fetch(&hook_exc_type, &hook_exc_value, &hook_exc_tb);
    return vt_fail(VT_ERUNTIME, "a gradient hook raised an exception");
}

int vtpy_restore_hook_error(void) {
    if (!hook_exc_type) return 0;
    PyErr_Restore(hook_exc_type, hook_exc_value, hook_exc_tb);
    hook_exc_type = hook_exc_value = hook_exc_tb = NULL;
    vt_clear_error();
    return 1;
}

/* a hook's return value: None keeps *grad; a float32 tensor of the same shape replaces it */
static int take_result(PyObject *fn, PyObject *r, vt_tensor **grad) {
    if (r == Py_None) return 0;
    vt_tensor *t = PyObject_TypeCheck(r, vtpy_TensorBase) ? ((PyTensor *)r)->t : NULL;
    if (!t) {
        PyErr_Format(PyExc_TypeError, "gradient hook %R returned %.100s; expected None or a vitc.Tensor", fn,
                     Py_TYPE(r)->tp_name);
        return -1;
    }
    if (!vt_same_shape(t, *grad) || t->dtype != VT_FLOAT32) {
        char b1[128], b2[128];
        PyErr_Format(PyExc_RuntimeError, "gradient hook %R returned a %s tensor of shape %s; the gradient is float32 "
                     "of shape %s", fn, vt_dtype_name(t->dtype), vt_shape_str(t->ndim, t->shape, b1, sizeof b1),
                     vt_shape_str((*grad)->ndim, (*grad)->shape, b2, sizeof b2));
        return -1;
    }
    /* the engine keeps gradients without history; a private copy when the layout is not plain */
    vt_tensor *g = vt_is_contiguous(t) ? vt_alias(t) : vt_clone(t);
    if (!g) { vtpy_raise(vt_last_code()); return -1; }
    vt_tensor_decref(*grad);
    *grad = g;
    return 0;
}

static int run_hooks(void *hooks, vt_tensor **grad) {
    PyGILState_STATE gs = PyGILState_Ensure();
    int st = VT_OK;
    PyObject *fns = PyDict_Values((PyObject *)hooks); /* a snapshot: a hook may remove itself */
    for (Py_ssize_t i = 0; fns && i < PyList_GET_SIZE(fns); i++) {
        PyObject *fn = PyList_GET_ITEM(fns, i);
        vt_tensor_incref(*grad);
        PyObject *g = vtpy_wrap(*grad);
        PyObject *r = g ? PyObject_CallOneArg(fn, g) : NULL;
        Py_XDECREF(g);
        int bad = !r || take_result(fn, r, grad) < 0;
        Py_XDECREF(r);
        if (bad) break;
    }
    if (!fns || PyErr_Occurred()) st = keep_error();
    Py_XDECREF(fns);
    PyGILState_Release(gs);
    return st;
}

static void release_hooks(void *hooks) {
    PyGILState_STATE gs = PyGILState_Ensure();
    Py_DECREF((PyObject *)hooks);
    PyGILState_Release(gs);
}

void vtpy_hooks_init(void) { vt_set_hook_functions(run_hooks, release_hooks); }

/* _grad_hooks(t): t's hook dict or None */
PyObject *vtpy_grad_hooks(PyObject *m, PyObject *arg) {
    vt_tensor *t = vtpy_unwrap(arg, "tensor");
    if (!t) return NULL;
    PyObject *h = *vt_hooks_slot(t);
    return Py_NewRef(h ? h : Py_None);
}

/* _set_grad_hooks(t, dict): keep dict as t's hooks (replacing any) */
PyObject *vtpy_set_grad_hooks(PyObject *m, PyObject *args) {
    PyObject *o, *d;
    if (!PyArg_ParseTuple(args, "OO!:_set_grad_hooks", &o, &PyDict_Type, &d)) return NULL;
    vt_tensor *t = vtpy_unwrap(o, "tensor");
    if (!t) return NULL;
    if (!t->requires_grad)
        return PyErr_Format(PyExc_RuntimeError, "cannot register a hook on a tensor that doesn't require gradient");
    void **slot = vt_hooks_slot(t), *old = *slot;
    *slot = Py_NewRef(d);
    vt_hooks_drop(old);
    Py_RETURN_NONE;
}

PyObject *vtpy_set_inference_mode(PyObject *m, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    int prev = vt_inference_mode();
    vt_set_inference_mode(on);
    return PyBool_FromLong(prev);
}

PyObject *vtpy_is_inference_mode(PyObject *m, PyObject *u) { return PyBool_FromLong(vt_inference_mode()); }

/* a tensor a factory made now: an inference tensor under inference mode */
PyObject *vtpy_wrap_new(vt_tensor *t) {
    if (t && vt_inference_mode()) t->storage->is_inference = 1;
    return vtpy_wrap(t);
}
