/* vitc python binding: _TensorBase, the C half of vitc.Tensor (the Python half, vitc/tensor.py,
 * adds operators and methods). Holds one reference to a vt_tensor; see core/tensor.h rule 5. */
#include "binding.h"
#include "../autograd/node.h"
#include "../core/bf16.h"
#include "../core/threads.h"
#include "../ops/ops.h"

PyTypeObject *vtpy_TensorBase;
PyObject *vtpy_TensorClass;

PyObject *vtpy_wrap(vt_tensor *t) {
    if (!t) return vtpy_raise(vt_last_code());
    if (t->pyobj) {
        PyObject *o = t->pyobj;
        Py_INCREF(o);
        vt_tensor_decref(t); /* the wrapper already owns one */
        return o;
    }
    PyTypeObject *cls = (PyTypeObject *)(vtpy_TensorClass ? vtpy_TensorClass : (PyObject *)vtpy_TensorBase);
    PyTensor *self = (PyTensor *)cls->tp_alloc(cls, 0);
    if (!self) { vt_tensor_decref(t); return NULL; }
    self->t = t;
    t->pyobj = self;
    return (PyObject *)self;
}

vt_tensor *vtpy_unwrap(PyObject *o, const char *what) {
    if (!PyObject_TypeCheck(o, vtpy_TensorBase)) {
        PyErr_Format(PyExc_TypeError, "%s must be a vitc.Tensor, not %.100s", what, Py_TYPE(o)->tp_name);
        return NULL;
    }
    vt_tensor *t = ((PyTensor *)o)->t;
    if (!t) { PyErr_Format(PyExc_RuntimeError, "%s is an uninitialised tensor", what); return NULL; }
    return t;
}

static void tensor_dealloc(PyObject *self) {
    PyTensor *p = (PyTensor *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tp->tp_clear(self);
    if (p->t) {
        p->t->pyobj = NULL;
        vt_tensor *t = p->t;
        p->t = NULL;
        vt_tensor_decref(t);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* subclasses (Parameter) may have a __dict__; let the GC see it */
static int tensor_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    PyObject **dictptr = _PyObject_GetDictPtr(self);
    if (dictptr && *dictptr) Py_VISIT(*dictptr);
    return 0;
}
static int tensor_clear(PyObject *self) {
    PyObject **dictptr = _PyObject_GetDictPtr(self);
    if (dictptr && *dictptr) Py_CLEAR(*dictptr);
    return 0;
}

#define SELF_T(self) (((PyTensor *)(self))->t)
#define CHECK_INIT(self) if (!SELF_T(self)) { PyErr_SetString(PyExc_RuntimeError, "uninitialised tensor"); return NULL; }

static PyObject *get_shape(PyObject *self, void *c) {
    CHECK_INIT(self);
    vt_tensor *t = SELF_T(self);
    PyObject *tup = PyTuple_New(t->ndim);
    for (int i = 0; tup && i < t->ndim; i++) PyTuple_SET_ITEM(tup, i, PyLong_FromLongLong(t->shape[i]));
    return tup;
}
static PyObject *get_strides(PyObject *self, void *c) {
    CHECK_INIT(self);
    vt_tensor *t = SELF_T(self);
    PyObject *tup = PyTuple_New(t->ndim);
    for (int i = 0; tup && i < t->ndim; i++) PyTuple_SET_ITEM(tup, i, PyLong_FromLongLong(t->strides[i]));
    return tup;
}
static PyObject *get_ndim(PyObject *self, void *c) { CHECK_INIT(self); return PyLong_FromLong(SELF_T(self)->ndim); }
static PyObject *get_dtype_code(PyObject *self, void *c) { CHECK_INIT(self); return PyLong_FromLong(SELF_T(self)->dtype); }
static PyObject *get_offset(PyObject *self, void *c) { CHECK_INIT(self); return PyLong_FromLongLong(SELF_T(self)->offset); }
static PyObject *get_requires_grad(PyObject *self, void *c) { CHECK_INIT(self); return PyBool_FromLong(SELF_T(self)->requires_grad); }
static PyObject *get_is_leaf(PyObject *self, void *c) { CHECK_INIT(self); return PyBool_FromLong(SELF_T(self)->grad_fn == NULL); }
static PyObject *get_retains_grad(PyObject *self, void *c) { CHECK_INIT(self); return PyBool_FromLong(SELF_T(self)->retains_grad && SELF_T(self)->grad_fn); }

static int set_requires_grad(PyObject *self, PyObject *v, void *c) {
    vt_tensor *t = SELF_T(self);
    if (!t || !v) { PyErr_SetString(PyExc_TypeError, "can't delete requires_grad"); return -1; }
    int on = PyObject_IsTrue(v);
    if (on < 0) return -1;
    if (t->grad_fn) {
        if (on) return 0;
        PyErr_SetString(PyExc_RuntimeError, "you can only change requires_grad flags of leaf variables; use detach() for a non-leaf");
        return -1;
    }
    if (on && t->storage->is_inference && !vt_inference_mode()) {
        PyErr_SetString(PyExc_RuntimeError, "Setting requires_grad=True on an inference tensor (made under "
                        "vitc.inference_mode()) outside inference mode is not allowed; use t.clone()");
        return -1;
    }
    if (on && t->dtype != VT_FLOAT32) {
        PyErr_Format(PyExc_RuntimeError, "only float32 tensors can require gradients (this one is %s)", vt_dtype_name(t->dtype));
        return -1;
    }
    t->requires_grad = on;
    return 0;
}

static PyObject *get_grad(PyObject *self, void *c) {
    CHECK_INIT(self);
    vt_tensor *g = SELF_T(self)->grad;
    if (!g) Py_RETURN_NONE;
    vt_tensor_incref(g);
    return vtpy_wrap(g);
}
/* t.grad = g (stealing g) under the engine's leaf lock: a backward in another thread may be adding
 * into the old one; it is dropped after the lock (its release may need the GIL we hold) */
static void set_grad_locked(vt_tensor *t, vt_tensor *g) {
    vt_leaf_grad_lock();
    vt_tensor *old = t->grad;
    t->grad = g;
    vt_leaf_grad_unlock();
    vt_tensor_decref(old);
}

static int set_grad(PyObject *self, PyObject *v, void *c) {
    vt_tensor *t = SELF_T(self);
    if (!t) return -1;
    if (!v || v == Py_None) { set_grad_locked(t, NULL); return 0; }
    vt_tensor *g = vtpy_unwrap(v, "grad");
    if (!g) return -1;
    if (!vt_same_shape(g, t) || g->dtype != t->dtype) {
        char b1[128], b2[128];
        PyErr_Format(PyExc_ValueError, "assigned grad has shape %s (%s), tensor has shape %s (%s)",
                     vt_shape_str(g->ndim, g->shape, b1, sizeof b1), vt_dtype_name(g->dtype),
                     vt_shape_str(t->ndim, t->shape, b2, sizeof b2), vt_dtype_name(t->dtype));
        return -1;
    }
    vt_tensor *gc = vt_is_contiguous(g) ? (vt_tensor_incref(g), g) : vt_clone(g);
    if (!gc) { vtpy_raise(vt_last_code()); return -1; }
    set_grad_locked(t, gc);
    return 0;
}

static PyObject *get_grad_fn(PyObject *self, void *c) {
    CHECK_INIT(self);
    vt_node *n = SELF_T(self)->grad_fn;
    if (!n) Py_RETURN_NONE;
    return PyUnicode_FromFormat("%sBackward", vt_ops[n->op].name);
}

static PyObject *t_numel(PyObject *self, PyObject *u) { CHECK_INIT(self); return PyLong_FromLongLong(vt_numel(SELF_T(self))); }
static PyObject *t_is_contiguous(PyObject *self, PyObject *u) { CHECK_INIT(self); return PyBool_FromLong(vt_is_contiguous(SELF_T(self))); }
static PyObject *t_data_ptr(PyObject *self, PyObject *u) {
    CHECK_INIT(self);
    vt_tensor *t = SELF_T(self);
    return PyLong_FromVoidPtr((char *)t->storage->data + t->offset * (int64_t)vt_dtype_size(t->dtype));
}

static PyObject *t_item(PyObject *self, PyObject *u) {
    CHECK_INIT(self);
    vt_tensor *t = SELF_T(self);
    if (vt_numel(t) != 1)
        return PyErr_Format(PyExc_ValueError, "a Tensor with %lld elements cannot be converted to a Python number", (long long)vt_numel(t));
    if (t->dtype == VT_FLOAT32) return PyFloat_FromDouble(*vt_f32(t));
    if (t->dtype == VT_INT64) return PyLong_FromLongLong(*vt_i64(t));
    if (t->dtype == VT_BFLOAT16) return PyFloat_FromDouble(vt_bf16_to_f32(*vt_bf16(t)));
    return PyBool_FromLong(*vt_u8(t));
}

static PyObject *t_detach(PyObject *self, PyObject *u) {
    CHECK_INIT(self);
    return vtpy_wrap(vt_alias(SELF_T(self)));
}

static PyObject *t_retain_grad(PyObject *self, PyObject *u) {
    CHECK_INIT(self);
    if (vt_retain_grad(SELF_T(self))) return vtpy_raise(vt_last_code());
    Py_RETURN_NONE;
}

static PyObject *t_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"gradient", "retain_graph", NULL};
    PyObject *g = Py_None;
    int retain = 0;
    CHECK_INIT(self);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Op:backward", kwlist, &g, &retain)) return NULL;
    vt_tensor *gt = NULL;
    if (g != Py_None && !(gt = vtpy_unwrap(g, "gradient"))) return NULL;
    vt_tensor *t = SELF_T(self);
    int st;
    vt_threads_sync();
    Py_BEGIN_ALLOW_THREADS
    st = vt_backward(t, gt, retain);
    Py_END_ALLOW_THREADS
    if (st) return vtpy_restore_hook_error() ? NULL : vtpy_raise(st);
    Py_RETURN_NONE;
}

static PyObject *get_is_inference(PyObject *self, void *c) { CHECK_INIT(self); return PyBool_FromLong(SELF_T(self)->storage->is_inference); }

static PyGetSetDef tensor_getset[] = {
    {"shape", get_shape, NULL, "the sizes, a tuple", NULL},
    {"_strides", get_strides, NULL, "strides in elements", NULL},
    {"ndim", get_ndim, NULL, "number of dimensions", NULL},
    {"_dtype_code", get_dtype_code, NULL, "0 float32, 1 int64, 2 bool, 3 bfloat16", NULL},
    {"_offset", get_offset, NULL, "storage offset in elements", NULL},
    {"requires_grad", get_requires_grad, set_requires_grad, "whether gradients flow to this tensor", NULL},
    {"is_leaf", get_is_leaf, NULL, "True when no op made this tensor", NULL},
    {"retains_grad", get_retains_grad, NULL, "True after retain_grad() on a non-leaf", NULL},
    {"grad", get_grad, set_grad, "accumulated gradient or None", NULL},
    {"_grad_fn_name", get_grad_fn, NULL, "name of the op that made this tensor, or None", NULL},
    {"_is_inference", get_is_inference, NULL, "made under inference mode", NULL},
    {NULL},
};

static PyMethodDef tensor_methods[] = {
    {"numel", t_numel, METH_NOARGS, "number of elements"},
    {"is_contiguous", t_is_contiguous, METH_NOARGS, "row-major without gaps"},
    {"data_ptr", t_data_ptr, METH_NOARGS, "address of the first element"},
    {"item", t_item, METH_NOARGS, "the value of a one-element tensor"},
    {"detach", t_detach, METH_NOARGS, "the same data without autograd history"},
    {"retain_grad", t_retain_grad, METH_NOARGS, "keep .grad of a non-leaf after backward"},
    {"backward", (PyCFunction)(void (*)(void))t_backward, METH_VARARGS | METH_KEYWORDS,
     "backward(gradient=None, retain_graph=False): accumulate gradients into leaves"},
    {"numpy", vtpy_to_numpy, METH_NOARGS, "a zero-copy NumPy view; the array keeps the tensor alive"},
    {NULL},
};

static PyObject *tensor_new_base(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyErr_SetString(PyExc_TypeError, "create tensors with vitc.tensor(), vitc.zeros(), vitc.from_numpy() ...");
    return NULL;
}

static PyType_Slot tensor_slots[] = {
    {Py_tp_dealloc, tensor_dealloc},
    {Py_tp_traverse, tensor_traverse},
    {Py_tp_clear, tensor_clear},
    {Py_tp_getset, tensor_getset},
    {Py_tp_methods, tensor_methods},
    {Py_tp_new, tensor_new_base},
    {Py_tp_doc, "C base of vitc.Tensor"},
    {0, NULL},
};

static PyType_Spec tensor_spec = {
    "vitc._C._TensorBase", sizeof(PyTensor), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, tensor_slots,
};

int vtpy_tensor_type_init(PyObject *module) {
    vtpy_TensorBase = (PyTypeObject *)PyType_FromSpec(&tensor_spec);
    if (!vtpy_TensorBase) return -1;
    Py_INCREF(vtpy_TensorBase);
    return PyModule_AddObject(module, "_TensorBase", (PyObject *)vtpy_TensorBase);
}
