/* vitc python binding: zero-copy exchange with NumPy (core/tensor.h rules 3 and 6) */
#define NPY_NO_DEPRECATED_API NPY_1_20_API_VERSION
#include "binding.h"
#include <numpy/arrayobject.h>

int vtpy_numpy_init(void) {
    import_array1(-1);
    return 0;
}

/* bfloat16 tensors are exchanged as their uint16 bit patterns, and only through the explicit
 * bits functions: NumPy has no bfloat16, and a uint16 array from .numpy() would pass for integers */
static int npy_type_of(vt_dtype dt) {
    return dt == VT_FLOAT32 ? NPY_FLOAT32 : dt == VT_INT64 ? NPY_INT64 : dt == VT_BFLOAT16 ? NPY_UINT16 : NPY_BOOL;
}

static PyObject *to_numpy(PyObject *self, int bits) {
    vt_tensor *t = vtpy_unwrap(self, "self");
    if (!t) return NULL;
    if (!bits && t->dtype == VT_BFLOAT16)
        return PyErr_Format(PyExc_TypeError, "numpy(): NumPy has no bfloat16; use t.float().numpy() for the values "
                            "or vitc.bfloat16_bits(t) for the raw uint16 bit patterns");
    if (bits && t->dtype != VT_BFLOAT16)
        return PyErr_Format(PyExc_TypeError, "bfloat16_bits: expected a bfloat16 tensor, got %s", vt_dtype_name(t->dtype));
    if (t->requires_grad) {
        PyErr_SetString(PyExc_RuntimeError, "Can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()");
        return NULL;
    }
    npy_intp dims[VT_MAX_DIMS], strides[VT_MAX_DIMS];
    npy_intp es = (npy_intp)vt_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) { dims[i] = t->shape[i]; strides[i] = t->strides[i] * es; }
    void *data = (char *)t->storage->data + t->offset * es;
    PyObject *arr = PyArray_New(&PyArray_Type, t->ndim, dims, npy_type_of(t->dtype), strides, data, 0,
                                NPY_ARRAY_WRITEABLE | NPY_ARRAY_ALIGNED, NULL);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, self) < 0) { Py_DECREF(arr); return NULL; } /* steals self */
    return arr;
}

PyObject *vtpy_to_numpy(PyObject *self, PyObject *unused) { return to_numpy(self, 0); }
PyObject *vtpy_bits_numpy(PyObject *module, PyObject *t) { return to_numpy(t, 1); }

/* storage release for NumPy-owned memory: may run on any thread, with or without the GIL */
static void release_array(void *owner) {
    PyGILState_STATE s = PyGILState_Ensure();
    Py_DECREF((PyObject *)owner);
    PyGILState_Release(s);
}

static PyObject *from_array(PyObject *obj, int bits) {
    if (!PyArray_Check(obj))
        return PyErr_Format(PyExc_TypeError, "%s expects a numpy.ndarray, got %.100s",
                            bits ? "bfloat16_from_bits" : "from_numpy", Py_TYPE(obj)->tp_name);
    PyArrayObject *arr = (PyArrayObject *)obj;
    int type = PyArray_TYPE(arr);
    vt_dtype dt;
    if (bits) {
        if (type != NPY_UINT16)
            return PyErr_Format(PyExc_TypeError, "bfloat16_from_bits expects a uint16 array of bit patterns, got %c%d",
                                PyArray_DESCR(arr)->kind, (int)PyDataType_ELSIZE(PyArray_DESCR(arr)));
        dt = VT_BFLOAT16;
    } else if (type == NPY_FLOAT32) dt = VT_FLOAT32;
    else if (type == NPY_INT64 || (type == NPY_LONGLONG && sizeof(long long) == 8)) dt = VT_INT64;
    else if (type == NPY_BOOL) dt = VT_BOOL;
    else {
        PyArray_Descr *d = PyArray_DESCR(arr);
        return PyErr_Format(PyExc_TypeError, "from_numpy: unsupported dtype %c%d; vitc supports float32, int64 and bool "
                            "(convert with arr.astype(np.float32))", d->kind, (int)PyDataType_ELSIZE(d));
    }
    int nd = PyArray_NDIM(arr);
    if (nd > VT_MAX_DIMS) return PyErr_Format(PyExc_ValueError, "from_numpy: %d dimensions, at most %d supported", nd, VT_MAX_DIMS);
    int64_t shape[VT_MAX_DIMS];
    for (int i = 0; i < nd; i++) shape[i] = PyArray_DIM(arr, i);
    /* zero-copy only for aligned, native-order, C-contiguous, writeable arrays; anything else is
     * copied. A read-only array (np.frombuffer over bytes, a mode='r' memmap) is copied because
     * every in-place op (copy_, fill_, optimizer steps, running statistics) writes into a tensor's
     * storage: writing into a read-only mapping is a SIGSEGV, into bytes a silent corruption. */
    PyArrayObject *src = arr;
    int flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_WRITEABLE;
    if (!PyArray_CHKFLAGS(arr, flags) || !PyArray_ISNOTSWAPPED(arr)) {
        src = (PyArrayObject *)PyArray_FromAny(obj, PyArray_DescrFromType(npy_type_of(dt)), 0, 0,
                                               NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_ENSURECOPY, NULL);
        if (!src) return NULL;
    } else {
        Py_INCREF(src);
    }
    vt_tensor *t = vt_wrap_foreign(dt, nd, shape, PyArray_DATA(src), release_array, src);
    if (!t) { Py_DECREF(src); return vtpy_raise(vt_last_code()); }
    return vtpy_wrap_new(t); /* the storage now owns the reference to src */
}

PyObject *vtpy_from_numpy(PyObject *module, PyObject *obj) { return from_array(obj, 0); }
PyObject *vtpy_from_bits(PyObject *module, PyObject *obj) { return from_array(obj, 1); }
