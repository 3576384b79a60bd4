/* vitc python binding: the _C module. `call` runs any op of the table (csrc/ops/ops.def) by id:
 * call(op, tensors, ints, floats) with tensors a tuple of Tensor-or-None, ints and floats tuples
 * of numbers (or None). `op_args` maps each op to its named arguments (the row's ARGS), from
 * which vitc/_tensor.py's _call packs keywords into those tuples; the package's Python modules
 * give each op its PyTorch-style signature. */
#include "binding.h"
#include "../autograd/node.h"
#include "../autograd/profile.h"
#include "../autograd/saved.h"
#include "../core/amp.h"
#include "../core/rng.h"
#include "../kernels/cpu.h"
#include "../kernels/gemm_bf16.h"
#include "../core/threads.h"
#include "../ops/ops.h"

#define VTPY_GIL_RELEASE_MIN 4096 /* input elements */

static PyObject *py_call(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 2 || nargs > 4) return PyErr_Format(PyExc_TypeError, "call(op, tensors, ints=None, floats=None)");
    int op = (int)PyLong_AsLong(args[0]);
    if (op == -1 && PyErr_Occurred()) return NULL;
    if (op < 0 || op >= vt_nops) return PyErr_Format(PyExc_ValueError, "unknown op id %d", op);
    const char *name = vt_ops[op].name;
    vt_threads_sync(); /* this Python thread runs kernels with the process's thread count */
    PyObject *tens = args[1];
    if (!PyTuple_Check(tens)) return PyErr_Format(PyExc_TypeError, "%s: tensors must be a tuple", name);
    Py_ssize_t nin = PyTuple_GET_SIZE(tens);
    if (nin > VT_MAX_IN) return PyErr_Format(PyExc_ValueError, "%s: at most %d tensor arguments, got %zd", name, VT_MAX_IN, nin);
    vt_tensor *in[VT_MAX_IN];
    for (Py_ssize_t i = 0; i < nin; i++) {
        PyObject *o = PyTuple_GET_ITEM(tens, i);
        if (o == Py_None) { in[i] = NULL; continue; }
        if (!PyObject_TypeCheck(o, vtpy_TensorBase))
            return PyErr_Format(PyExc_TypeError, "%s: argument %zd must be a vitc.Tensor, not %.100s", name, i, Py_TYPE(o)->tp_name);
        if (!(in[i] = ((PyTensor *)o)->t)) return PyErr_Format(PyExc_RuntimeError, "%s: uninitialised tensor", name);
    }
    vt_args a;
    a.ni = a.nf = 0;
    for (int which = 0; which < 2; which++) {
        PyObject *seq = nargs > 2 + which ? args[2 + which] : Py_None;
        if (seq == Py_None) continue;
        if (!PyTuple_Check(seq)) return PyErr_Format(PyExc_TypeError, "%s: %s must be a tuple", name, which ? "floats" : "ints");
        Py_ssize_t n = PyTuple_GET_SIZE(seq);
        if (n > (which ? VT_MAX_FARGS : VT_MAX_IARGS)) return PyErr_Format(PyExc_ValueError, "%s: too many arguments", name);
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *o = PyTuple_GET_ITEM(seq, k);
            if (which == 0) {
                if (!PyLong_Check(o)) return PyErr_Format(PyExc_TypeError, "%s: expected an int, got %.100s", name, Py_TYPE(o)->tp_name);
                int overflow;
                a.i[k] = PyLong_AsLongLongAndOverflow(o, &overflow);
                if (overflow) return PyErr_Format(PyExc_ValueError, "%s: integer argument out of range", name);
                if (a.i[k] == -1 && PyErr_Occurred()) return NULL;
            } else {
                a.f[k] = PyFloat_AsDouble(o);
                if (a.f[k] == -1.0 && PyErr_Occurred()) {
                    PyErr_Clear();
                    return PyErr_Format(PyExc_TypeError, "%s: expected a number, got %.100s", name, Py_TYPE(o)->tp_name);
                }
            }
        }
        if (which == 0) a.ni = (int)n; else a.nf = (int)n;
    }
    vt_tensor *out[VT_MAX_OUT];
    int nout = 0, st;
    /* release the GIL for kernels long enough to be worth it (other Python threads, e.g. a
     * DataLoader's prefetch, run meanwhile); a few-element op keeps it: the release and
     * re-acquire would cost more than the kernel */
    int64_t work = 0;
    for (Py_ssize_t i = 0; i < nin; i++) if (in[i]) work += vt_numel(in[i]);
    if (work >= VTPY_GIL_RELEASE_MIN) {
        Py_BEGIN_ALLOW_THREADS
        st = vt_dispatch(op, (int)nin, in, &a, &nout, out);
        Py_END_ALLOW_THREADS
    } else {
        st = vt_dispatch(op, (int)nin, in, &a, &nout, out);
    }
    if (st) return vtpy_raise(st);
    if (nout == 1) return vtpy_wrap(out[0]);
    PyObject *tup = PyTuple_New(nout);
    if (!tup) { for (int k = 0; k < nout; k++) vt_tensor_decref(out[k]); return NULL; }
    for (int k = 0; k < nout; k++) {
        PyObject *o = vtpy_wrap(out[k]);
        if (!o) { for (int j = k + 1; j < nout; j++) vt_tensor_decref(out[j]); Py_DECREF(tup); return NULL; }
        PyTuple_SET_ITEM(tup, k, o);
    }
    return tup;
}

int vtpy_parse_shape(PyObject *seq, int64_t *shape, const char *who) {
    PyObject *fast = PySequence_Fast(seq, "shape must be a sequence of ints");
    if (!fast) { PyErr_Clear(); PyErr_Format(PyExc_TypeError, "%s: shape must be a tuple of ints", who); return -1; }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > VT_MAX_DIMS) { Py_DECREF(fast); PyErr_Format(PyExc_ValueError, "%s: %zd dimensions, at most %d supported", who, n, VT_MAX_DIMS); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyLong_Check(o)) { Py_DECREF(fast); PyErr_Format(PyExc_TypeError, "%s: shape entries must be ints, got %.100s", who, Py_TYPE(o)->tp_name); return -1; }
        int overflow;
        shape[i] = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) { Py_DECREF(fast); PyErr_Format(PyExc_ValueError, "%s: size out of range", who); return -1; }
    }
    Py_DECREF(fast);
    if (vt_check_shape((int)n, shape, who)) { vtpy_raise(vt_last_code()); return -1; }
    return (int)n;
}

static int parse_dtype(PyObject *o, vt_dtype *dt) {
    long v = PyLong_AsLong(o);
    if ((v == -1 && PyErr_Occurred()) || v < 0 || v >= VT_NDTYPES) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "dtype must be vitc.float32, vitc.int64, vitc.bool or vitc.bfloat16");
        return -1;
    }
    *dt = (vt_dtype)v;
    return 0;
}

/* _C.full(shape, dtype_code, value) */
static PyObject *py_full(PyObject *m, PyObject *args) {
    PyObject *shp, *dto;
    double v;
    if (!PyArg_ParseTuple(args, "OOd:full", &shp, &dto, &v)) return NULL;
    int64_t shape[VT_MAX_DIMS];
    vt_dtype dt;
    int nd = vtpy_parse_shape(shp, shape, "full");
    if (nd < 0 || parse_dtype(dto, &dt)) return NULL;
    vt_tensor *t;
    vt_threads_sync();
    Py_BEGIN_ALLOW_THREADS
    t = vt_full(dt, nd, shape, v);
    Py_END_ALLOW_THREADS
    return vtpy_wrap_new(t);
}

/* _C.empty(shape, dtype_code) */
static PyObject *py_empty(PyObject *m, PyObject *args) {
    PyObject *shp, *dto;
    if (!PyArg_ParseTuple(args, "OO:empty", &shp, &dto)) return NULL;
    int64_t shape[VT_MAX_DIMS];
    vt_dtype dt;
    int nd = vtpy_parse_shape(shp, shape, "empty");
    if (nd < 0 || parse_dtype(dto, &dt)) return NULL;
    return vtpy_wrap_new(vt_empty(dt, nd, shape));
}

/* _C.random(shape, kind): kind 0 uniform [0,1), 1 standard normal; from the counter RNG */
static PyObject *py_random(PyObject *m, PyObject *args) {
    PyObject *shp;
    int kind;
    if (!PyArg_ParseTuple(args, "Oi:random", &shp, &kind)) return NULL;
    int64_t shape[VT_MAX_DIMS];
    int nd = vtpy_parse_shape(shp, shape, "random");
    if (nd < 0) return NULL;
    vt_tensor *t = vt_empty(VT_FLOAT32, nd, shape);
    if (!t) return vtpy_raise(vt_last_code());
    vt_threads_sync();
    Py_BEGIN_ALLOW_THREADS
    vt_rng_fill(vt_f32(t), vt_numel(t), kind);
    Py_END_ALLOW_THREADS
    return vtpy_wrap_new(t);
}

static PyObject *py_manual_seed(PyObject *m, PyObject *arg) {
    unsigned long long s = PyLong_AsUnsignedLongLongMask(arg);
    if (PyErr_Occurred()) return NULL;
    vt_rng_seed(s);
    Py_RETURN_NONE;
}
static PyObject *py_rng_state(PyObject *m, PyObject *u) {
    uint64_t seed, offset;
    vt_rng_get_state(&seed, &offset);
    return Py_BuildValue("(KK)", (unsigned long long)seed, (unsigned long long)offset);
}
static PyObject *py_set_rng_state(PyObject *m, PyObject *args) {
    unsigned long long s, o;
    if (!PyArg_ParseTuple(args, "KK:set_rng_state", &s, &o)) return NULL;
    vt_rng_set_state(s, o);
    Py_RETURN_NONE;
}
/* reserve n counters of the RNG: returns (seed, base) for ops that take explicit draws */
static PyObject *py_rng_reserve(PyObject *m, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "rng_reserve: n must be >= 0");
    uint64_t seed, base = vt_rng_reserve_seeded((uint64_t)n, &seed);
    return Py_BuildValue("(KK)", (unsigned long long)seed, (unsigned long long)base);
}

static PyObject *py_set_num_threads(PyObject *m, PyObject *arg) {
    if (!PyLong_Check(arg)) return PyErr_Format(PyExc_TypeError, "set_num_threads expects an int, got %.100s", Py_TYPE(arg)->tp_name);
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (overflow || n < 1 || n > 4096) return PyErr_Format(PyExc_ValueError, "set_num_threads: need 1 <= n <= 4096");
    if (vt_set_num_threads((int)n)) return vtpy_raise(vt_last_code());
    Py_RETURN_NONE;
}
static PyObject *py_get_num_threads(PyObject *m, PyObject *u) { return PyLong_FromLong(vt_get_num_threads()); }
/* OpenMP's team size for this thread as it stands (no sync): tests check that ops applied the
 * process-wide setting in a thread that never called set_num_threads */
static PyObject *py_omp_max_threads(PyObject *m, PyObject *u) { return PyLong_FromLong(vt_thread_omp_max_threads()); }

static PyObject *py_set_grad_enabled(PyObject *m, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    int prev = vt_grad_enabled();
    vt_set_grad_enabled(on);
    return PyBool_FromLong(prev);
}
static PyObject *py_is_grad_enabled(PyObject *m, PyObject *u) { return PyBool_FromLong(vt_grad_enabled()); }

static PyObject *py_set_tensor_class(PyObject *m, PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, vtpy_TensorBase))
        return PyErr_Format(PyExc_TypeError, "expected a subclass of _TensorBase");
    Py_INCREF(cls);
    Py_XSETREF(vtpy_TensorClass, cls);
    Py_RETURN_NONE;
}

/* _C.make_subclass(cls, tensor, requires_grad): a new cls object over an alias of tensor's
 * data (how Parameter wraps data without a copy) */
static PyObject *py_make_subclass(PyObject *m, PyObject *args) {
    PyObject *cls, *src;
    int rg;
    if (!PyArg_ParseTuple(args, "OOp:make_subclass", &cls, &src, &rg)) return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, vtpy_TensorBase))
        return PyErr_Format(PyExc_TypeError, "make_subclass: expected a Tensor subclass");
    vt_tensor *t = vtpy_unwrap(src, "data");
    if (!t) return NULL;
    if (rg && t->dtype != VT_FLOAT32) return PyErr_Format(PyExc_RuntimeError, "only float32 tensors can require gradients");
    vt_tensor *a = vt_alias(t);
    if (!a) return vtpy_raise(vt_last_code());
    a->requires_grad = rg;
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyTensor *self = (PyTensor *)tp->tp_alloc(tp, 0);
    if (!self) { vt_tensor_decref(a); return NULL; }
    self->t = a;
    a->pyobj = self;
    return (PyObject *)self;
}

/* _C.set_data(dst, src): make dst view src's storage (Parameter.data = ...); same shape & dtype */
static PyObject *py_set_data(PyObject *m, PyObject *args) {
    PyObject *d, *s;
    if (!PyArg_ParseTuple(args, "OO:set_data", &d, &s)) return NULL;
    vt_tensor *dst = vtpy_unwrap(d, "tensor"), *src = vtpy_unwrap(s, "data");
    if (!dst || !src) return NULL;
    if (dst->dtype != src->dtype)
        return PyErr_Format(PyExc_TypeError, "Tensor.data = ...: the new data is %s but the tensor is %s (a vitc tensor "
                            "keeps its dtype; convert the data first)", vt_dtype_name(src->dtype), vt_dtype_name(dst->dtype));
    __atomic_add_fetch(&src->storage->refcount, 1, __ATOMIC_RELAXED);
    vt_storage_decref(dst->storage);
    dst->storage = src->storage;
    dst->offset = src->offset;
    dst->ndim = src->ndim;
    memcpy(dst->shape, src->shape, sizeof dst->shape);
    memcpy(dst->strides, src->strides, sizeof dst->strides);
    Py_RETURN_NONE;
}

/* _set_history(dst, src or None): dst takes src's autograd history (vt_set_history) */
static PyObject *py_set_history(PyObject *m, PyObject *args) {
    PyObject *d, *s;
    if (!PyArg_ParseTuple(args, "OO:_set_history", &d, &s)) return NULL;
    vt_tensor *dst = vtpy_unwrap(d, "tensor"), *src = s == Py_None ? NULL : vtpy_unwrap(s, "source");
    if (!dst || (s != Py_None && !src)) return NULL;
    vt_set_history(dst, src);
    Py_RETURN_NONE;
}
/* _shares_memory(t): whether another tensor (a view, or a tensor saved for backward) uses t's storage */
static PyObject *py_shares_memory(PyObject *m, PyObject *arg) {
    vt_tensor *t = vtpy_unwrap(arg, "tensor");
    if (!t) return NULL;
    return PyBool_FromLong(__atomic_load_n(&t->storage->refcount, __ATOMIC_RELAXED) > 1);
}

/* _saved_tensors(t): [(op, slot, storage id, the tensor's own bytes, its storage's
 * allocator block bytes, is_input_leaf)] for every
 * tensor the tape behind t keeps for backward (vitc.profiler.saved_tensors sums them); a slot rebuilt
 * at backward instead of kept has storage id 0 and no bytes */
static int saved_row(void *ud, int op, int slot, const vt_tensor *t, int is_leaf) {
    size_t nb = t ? t->storage->nbytes : 0, own = t ? (size_t)vt_numel(t) * vt_dtype_size(t->dtype) : 0;
    size_t block = !t ? 0 : t->storage->release ? nb : vt_alloc_block_size(nb);
    PyObject *row = Py_BuildValue("(siKnni)", vt_ops[op].name, slot, (unsigned long long)(uintptr_t)(t ? t->storage : NULL),
                                  (Py_ssize_t)own, (Py_ssize_t)block, is_leaf);
    if (!row) return VT_ERUNTIME;
    int bad = PyList_Append((PyObject *)ud, row);
    Py_DECREF(row);
    return bad ? VT_ERUNTIME : VT_OK;
}
static PyObject *py_saved_tensors(PyObject *m, PyObject *arg) {
    vt_tensor *t = vtpy_unwrap(arg, "tensor");
    if (!t) return NULL;
    PyObject *rows = PyList_New(0);
    if (!rows) return NULL;
    int st = vt_saved_walk(t, saved_row, rows);
    if (st) {
        Py_DECREF(rows);
        return PyErr_Occurred() ? NULL : vtpy_raise(st);
    }
    return rows;
}

static PyObject *py_alloc_fail_after(PyObject *m, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    vt_alloc_fail_after(n);
    Py_RETURN_NONE;
}
static PyObject *py_alloc_stats(PyObject *m, PyObject *u) {
    int64_t live, cached, peak;
    vt_alloc_stats(&live, &cached, &peak);
    return Py_BuildValue("{s:L,s:L,s:L}", "live", (long long)live, "cached", (long long)cached, "peak", (long long)peak);
}
static PyObject *py_memory_stats(PyObject *m, PyObject *u) {
    int64_t live, cached, peak, max_live, cap, min_bytes;
    double fraction;
    vt_alloc_counts c;
    vt_alloc_stats(&live, &cached, &peak);
    vt_alloc_policy(&c, &max_live, &cap, &min_bytes, &fraction);
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:d,s:L,s:L,s:L,s:L,s:L,s:L}", "live_bytes", (long long)live,
                         "peak_bytes", (long long)peak, "max_live_bytes", (long long)max_live, "cached_bytes",
                         (long long)cached, "cache_limit_bytes", (long long)cap, "cache_min_bytes", (long long)min_bytes,
                         "cache_fraction", fraction, "cached_blocks", (long long)c.cached_blocks, "allocs",
                         (long long)c.allocs, "frees", (long long)c.frees, "cache_hits", (long long)c.cache_hits,
                         "system_allocs", (long long)c.system_allocs, "released", (long long)c.released);
}
static PyObject *py_set_cache_limit(PyObject *m, PyObject *args) {
    long long min_bytes;
    double fraction;
    if (!PyArg_ParseTuple(args, "Ld:set_cache_limit", &min_bytes, &fraction)) return NULL;
    if (vt_alloc_set_cache_limit(min_bytes, fraction)) return vtpy_raise(vt_last_code());
    Py_RETURN_NONE;
}
static PyObject *py_block_size(PyObject *m, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "_block_size: n must be >= 0");
    return PyLong_FromSize_t(vt_alloc_block_size((size_t)n));
}
static PyObject *py_reset_peak(PyObject *m, PyObject *u) { vt_alloc_reset_peak(); Py_RETURN_NONE; }
static PyObject *py_empty_cache(PyObject *m, PyObject *u) { vt_alloc_clear_cache(); Py_RETURN_NONE; }
static PyObject *py_gemm_mode(PyObject *m, PyObject *arg) {
    static const char *names[] = {"auto", "blas", "own"};
    const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    for (int i = 0; s && i < 3; i++)
        if (!strcmp(s, names[i])) {
            vt_gemm_set_mode(i);
            Py_RETURN_NONE;
        }
    if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "_gemm_mode: expected 'auto', 'blas' or 'own', got %R", arg);
    return NULL;
}

/* vitc.autocast's switch (core/amp.h) and which bf16 kernel runs (kernels/gemm_bf16.h) */
static PyObject *py_autocast_bf16(PyObject *m, PyObject *arg) {
    if (arg == Py_None) return PyBool_FromLong(vt_amp_bf16());
    int on = PyObject_IsTrue(arg);
    return on < 0 ? NULL : PyBool_FromLong(vt_amp_set_bf16(on));
}
static PyObject *py_bf16_gemm_kernel(PyObject *m, PyObject *arg) {
    const char *s = arg == Py_None ? "" : PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (s && (!strcmp(s, "auto") || !strcmp(s, "fallback"))) vt_bf16_gemm_force_fallback(s[0] == 'f');
    else if (!s || *s) return PyErr_Format(PyExc_ValueError, "_bf16_gemm_kernel: expected None, 'auto' or 'fallback', got %R", arg);
    return PyUnicode_FromString(vt_bf16_gemm_native() ? "avx512bf16" : "fallback");
}

/* which build of the attention kernels runs (kernels/cpu.h), for the tests */
static PyObject *py_attn_kernel_isa(PyObject *m, PyObject *unused) {
    return PyUnicode_FromString(vt_use_avx512_kernels() ? "avx512" : vt_use_avx2_kernels() ? "avx2" : "baseline");
}

static PyObject *py_gemm_auto_path(PyObject *m, PyObject *args) {
    int transa;
    long long mm, n, k;
    if (!PyArg_ParseTuple(args, "pLLL:_gemm_auto_path", &transa, &mm, &n, &k)) return NULL;
    static const char *names[] = {"blas", "own", "blas-mirrored", "own-at512"};
    return PyUnicode_FromString(names[vt_gemm_auto_path(transa, mm, n, k)]);
}

static PyObject *py_profiler_start(PyObject *m, PyObject *u) {
    int st = vt_profile_start();
    if (st) return vtpy_raise(st);
    Py_RETURN_NONE;
}
/* [(op name, phase, shape, ns)], phase 0 forward, 1 backward, 2 gradient accumulation */
static PyObject *py_profiler_stop(PyObject *m, PyObject *u) {
    vt_prof_event *ev;
    int64_t n;
    int st = vt_profile_stop(&ev, &n);
    if (st) return vtpy_raise(st);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (int64_t j = 0; list && j < n; j++) {
        PyObject *shape = PyTuple_New(ev[j].ndim);
        for (int d = 0; shape && d < ev[j].ndim; d++) {
            PyObject *v = PyLong_FromLongLong((long long)ev[j].shape[d]);
            if (!v) { Py_CLEAR(shape); break; }
            PyTuple_SET_ITEM(shape, d, v);
        }
        PyObject *row = shape ? Py_BuildValue("(siNL)", vt_ops[ev[j].op].name, ev[j].phase, shape, (long long)ev[j].ns) : NULL;
        if (!row) { Py_CLEAR(list); break; }
        PyList_SET_ITEM(list, (Py_ssize_t)j, row);
    }
    free(ev);
    return list;
}

static PyMethodDef module_methods[] = {
    {"call", (PyCFunction)(void (*)(void))py_call, METH_FASTCALL, "call(op, tensors, ints=None, floats=None)"},
    {"from_numpy", vtpy_from_numpy, METH_O, "zero-copy tensor over a C-contiguous float32/int64/bool array"},
    {"bits_numpy", vtpy_bits_numpy, METH_O, "zero-copy uint16 view of a bfloat16 tensor's bits"},
    {"from_bits", vtpy_from_bits, METH_O, "bfloat16 tensor over a uint16 array of bit patterns (from_numpy rules)"},
    {"full", py_full, METH_VARARGS, "full(shape, dtype_code, value)"},
    {"empty", py_empty, METH_VARARGS, "empty(shape, dtype_code)"},
    {"random", py_random, METH_VARARGS, "random(shape, kind): 0 uniform, 1 normal"},
    {"manual_seed", py_manual_seed, METH_O, "seed the counter RNG (offset reset to 0)"},
    {"get_rng_state", py_rng_state, METH_NOARGS, "(seed, offset)"},
    {"set_rng_state", py_set_rng_state, METH_VARARGS, "set_rng_state(seed, offset)"},
    {"rng_reserve", py_rng_reserve, METH_O, "reserve n counters: (seed, base)"},
    {"set_num_threads", py_set_num_threads, METH_O, "threads for OpenBLAS and OpenMP"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "current thread count"},
    {"_omp_max_threads", py_omp_max_threads, METH_NOARGS, "this thread's OpenMP thread count, unsynced (tests)"},
    {"set_grad_enabled", py_set_grad_enabled, METH_O, "turn recording on/off; returns the previous state"},
    {"is_grad_enabled", py_is_grad_enabled, METH_NOARGS, "whether ops are recorded"},
    {"_set_tensor_class", py_set_tensor_class, METH_O, "register vitc.Tensor"},
    {"make_subclass", py_make_subclass, METH_VARARGS, "make_subclass(cls, tensor, requires_grad)"},
    {"set_data", py_set_data, METH_VARARGS, "set_data(dst, src)"},
    {"_set_history", py_set_history, METH_VARARGS, "_set_history(dst, src or None): dst takes src's autograd history"},
    {"_shares_memory", py_shares_memory, METH_O, "whether another tensor uses this tensor's storage"},
    {"_grad_hooks", vtpy_grad_hooks, METH_O, "the tensor's gradient-hook dict or None"},
    {"_set_grad_hooks", vtpy_set_grad_hooks, METH_VARARGS, "_set_grad_hooks(t, dict): the tensor's gradient hooks"},
    {"_set_inference_mode", vtpy_set_inference_mode, METH_O, "turn inference mode on/off; returns the previous state"},
    {"_is_inference_mode_enabled", vtpy_is_inference_mode, METH_NOARGS, "whether inference mode is on"},
    {"_alloc_fail_after", py_alloc_fail_after, METH_O, "fail the n-th next allocation (tests)"},
    {"alloc_stats", py_alloc_stats, METH_NOARGS, "allocator bytes: live, cached, peak"},
    {"_profiler_start", py_profiler_start, METH_NOARGS, "record op times on this thread (vitc.profiler)"},
    {"_profiler_stop", py_profiler_stop, METH_NOARGS, "stop recording: [(op, phase, shape, ns)]"},
    {"reset_peak", py_reset_peak, METH_NOARGS, "set the allocator's peak to its live bytes"},
    {"_saved_tensors", py_saved_tensors, METH_O, "the tape's saved tensors behind t (vitc.profiler.saved_tensors)"},
    {"memory_stats", py_memory_stats, METH_NOARGS, "the allocator's bytes, cache policy and counts (a dict)"},
    {"set_cache_limit", py_set_cache_limit, METH_VARARGS, "set_cache_limit(min_bytes, fraction): cache cap = max(min_bytes, fraction x max live)"},
    {"_block_size", py_block_size, METH_O, "the size class an n-byte request is served from"},
    {"empty_cache", py_empty_cache, METH_NOARGS, "free the allocator's cached blocks"},
    {"_gemm_auto_path", py_gemm_auto_path, METH_VARARGS, "(transa, m, n, k) -> 'own' | 'blas' | 'blas-mirrored' | 'own-at512': the default path"},
    {"_autocast_bf16", py_autocast_bf16, METH_O, "set vitc.autocast's bf16 GEMM flag (None: only read it); returns the previous one"},
    {"_attn_kernel_isa", py_attn_kernel_isa, METH_NOARGS, "() -> the attention kernels' build: 'avx512' | 'avx2' | 'baseline'"},
    {"_bf16_gemm_kernel", py_bf16_gemm_kernel, METH_O, "None | 'auto' | 'fallback' -> the bf16 kernel now: 'avx512bf16' | 'fallback'"},
    {"_gemm_mode", py_gemm_mode, METH_O, "'auto' | 'blas' | 'own': which path every GEMM takes (benchmarks, tests)"},
    {NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "vitc._C", "vitc C core", -1, module_methods};

PyMODINIT_FUNC PyInit__C(void) {
    vt_ops_install();
    vtpy_hooks_init();
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (vtpy_numpy_init() < 0 || vtpy_tensor_type_init(m) < 0) goto fail;
    vtpy_IndexError = PyErr_NewException("vitc.IndexError", PyTuple_Pack(2, PyExc_IndexError, PyExc_ValueError), NULL);
    if (!vtpy_IndexError) goto fail;
    Py_INCREF(vtpy_IndexError);
    PyModule_AddObject(m, "IndexError", vtpy_IndexError);
    vtpy_OutOfMemoryError = PyErr_NewException("vitc.OutOfMemoryError", PyTuple_Pack(2, PyExc_MemoryError, PyExc_RuntimeError), NULL);
    if (!vtpy_OutOfMemoryError) goto fail;
    Py_INCREF(vtpy_OutOfMemoryError);
    PyModule_AddObject(m, "OutOfMemoryError", vtpy_OutOfMemoryError);
    PyObject *ops = PyDict_New();
    if (!ops) goto fail;
    for (int i = 0; i < vt_nops; i++) {
        PyObject *v = PyLong_FromLong(i);
        PyDict_SetItemString(ops, vt_ops[i].name, v);
        Py_DECREF(v);
    }
    PyModule_AddObject(m, "ops", ops);
    /* op name -> its argument spec (vt_op_args, ops.h): how vitc/_tensor.py packs keywords */
    PyObject *specs = PyDict_New();
    if (!specs) goto fail;
    for (int i = 0; i < vt_nops; i++) {
        PyObject *v = PyUnicode_FromString(vt_op_args[i]);
        if (!v || PyDict_SetItemString(specs, vt_ops[i].name, v) < 0) { Py_XDECREF(v); Py_DECREF(specs); goto fail; }
        Py_DECREF(v);
    }
    PyModule_AddObject(m, "op_args", specs);
    PyModule_AddIntConstant(m, "MAX_DIMS", VT_MAX_DIMS);
    PyModule_AddIntConstant(m, "MAX_IN", VT_MAX_IN);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
