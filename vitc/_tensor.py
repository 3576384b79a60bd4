"""vitc.Tensor: the Python half of the tensor (the C half is vitc._C._TensorBase).

The C side owns data, shape, autograd state; this side adds dtype objects, repr, operators and
the PyTorch-named methods. Op families (vitc/_ops/*.py) attach their methods with `register`.
"""
import itertools
import numbers
import operator

import numpy as np

from . import _C
from ._checks import expect_tensor

_OPS = _C.ops


class dtype:
    """A vitc dtype (vitc.float32, vitc.int64, vitc.bool, vitc.bfloat16).

    bfloat16 is a storage dtype (optimizer moments, checkpoints): tensors of it can be created,
    copied, viewed and converted with ``.to()``/``.float()`` (bitwise as torch.bfloat16); compute
    ops raise TypeError naming the op. NumPy has no bfloat16, so ``.numpy()`` raises: use
    ``t.float().numpy()`` for the values or ``vitc.bfloat16_bits(t)`` for the uint16 bit patterns
    (``vitc.bfloat16_from_bits`` goes back). ``self.np`` of bfloat16 is uint16, the bits' type."""

    __slots__ = ("name", "code", "np", "is_floating_point")

    def __init__(self, name, code, np_dtype, is_float):
        self.name, self.code, self.np, self.is_floating_point = name, code, np.dtype(np_dtype), is_float

    def __repr__(self):
        return "vitc." + self.name

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))

    def __getattr__(self, attr):
        # reached only for attributes a vitc dtype lacks: NumPy-only code handed vitc tensors (e.g.
        # safetensors.numpy.save_file(model.state_dict()) reads .dtype.byteorder) gets told what to do
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"{self!r} is a vitc dtype, not a NumPy dtype (no attribute {attr!r}): code that "
                             "expects NumPy arrays needs them converted first, e.g. vitc.io.to_numpy(state_dict) "
                             "or t.numpy(); vitc.save(state_dict, path) writes safetensors directly")


float32 = dtype("float32", 0, np.float32, True)
int64 = dtype("int64", 1, np.int64, False)
bool_ = dtype("bool", 2, np.bool_, False)
bfloat16 = dtype("bfloat16", 3, np.uint16, True)
_DTYPES = (float32, int64, bool_, bfloat16)
_ALIASES = {"float32": float32, "float": float32, "int64": int64, "long": int64, "bool": bool_,
            "bfloat16": bfloat16}


def _dtype_by_name(name):
    return _ALIASES[name]


def as_dtype(d):
    """A vitc dtype from a vitc dtype, a NumPy dtype/type or a name; TypeError otherwise."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d in _ALIASES:
        return _ALIASES[d]
    try:
        nd = np.dtype(d)
    except TypeError:
        nd = None
    for t in (float32, int64, bool_):  # bfloat16's uint16 is its bits' type, not a NumPy equivalent
        if nd is not None and nd == t.np:
            return t
    raise TypeError(f"unsupported dtype {d!r}: vitc has float32, int64, bool and bfloat16")


def _getter(names):
    """kwargs -> the tuple of kwargs[name] for names, in order (KeyError when one is missing)."""
    if not names:
        return lambda kw: ()
    if len(names) == 1:
        name = names[0]
        return lambda kw: (kw[name],)
    return operator.itemgetter(*names)


class _OpSignature:
    """One op's arguments as its row in csrc/ops/*.def declares them (_C.op_args: entries kind:name,
    kind t tensor, t? tensor or None, t* any number of tensors, i int, i* int list, f float)."""

    __slots__ = ("op", "id", "tensors", "variadic", "ints", "int_list", "floats", "nargs", "_ints", "_floats")

    def __init__(self, op, spec):
        self.op, self.id = op, _OPS[op]
        self.tensors, self.ints, self.floats = [], [], []
        self.variadic = self.int_list = None
        for entry in spec.split():
            kind, _, name = entry.partition(":")
            if (self.variadic and kind.startswith("t")) or (self.int_list and kind.startswith("i")):
                raise RuntimeError(f"{op}: argument '{name}' follows a variable-length list of its kind")
            if kind in ("t", "t?"):
                self.tensors.append(name)
            elif kind == "t*":
                self.variadic = name
            elif kind == "i":
                self.ints.append(name)
            elif kind == "i*":
                self.int_list = name
            elif kind == "f":
                self.floats.append(name)
            else:
                raise RuntimeError(f"{op}: unknown argument kind {kind!r} in {spec!r}")
        self.nargs = len(self.ints) + len(self.floats) + (self.int_list is not None)
        self._ints, self._floats = _getter(self.ints), _getter(self.floats)

    def names(self):
        return self.ints + ([self.int_list] if self.int_list else []) + self.floats

    def argument_error(self, kwargs):
        missing = [n for n in self.names() if n not in kwargs]
        extra = sorted(set(kwargs) - set(self.names()))
        parts = [f"{what} argument{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"
                 for what, names in (("missing", missing), ("unexpected", extra)) if names]
        return TypeError(f"{self.op}: {'; '.join(parts)} (it takes {', '.join(self.names()) or 'no arguments'})")


_SIGNATURES = {op: _OpSignature(op, spec) for op, spec in _C.op_args.items()}


def _call(op, tensors, **kwargs):
    """Run op `op` of the C table on the tensors (a tuple, None for an absent optional tensor), its
    non-tensor arguments given by name as its row declares them; packs them into the int and float
    tuples _C.call takes. TypeError naming the op and the argument when one is missing or unknown,
    or when the number of tensors is not the row's."""
    sig = _SIGNATURES[op]
    n = len(tensors)
    if n != len(sig.tensors) and not (sig.variadic and n >= len(sig.tensors)):
        want = f"at least {len(sig.tensors)}" if sig.variadic else str(len(sig.tensors))
        names = ", ".join(sig.tensors + ([sig.variadic + "..."] if sig.variadic else []))
        raise TypeError(f"{op}: expected {want} tensor arguments ({names}), got {n}")
    if len(kwargs) != sig.nargs:
        raise sig.argument_error(kwargs)
    try:
        ints = sig._ints(kwargs)
        if sig.int_list:
            ints = ints + tuple(kwargs[sig.int_list])
        floats = sig._floats(kwargs)
    except KeyError:
        raise sig.argument_error(kwargs) from None
    return _C.call(sig.id, tensors, ints, floats)


class Tensor(_C._TensorBase):
    """A strided view on refcounted storage, float32, int64 or bool, with reverse-mode autograd."""

    __slots__ = ()
    __array_priority__ = 1000  # numpy scalars defer to our operators

    @property
    def dtype(self):
        return _DTYPES[self._dtype_code]

    @property
    def grad_fn(self):
        name = self._grad_fn_name  # op name of the recorded node, e.g. "matmulBackward"
        if name is None:
            return None
        return "".join(p[:1].upper() + p[1:] for p in name[:-8].strip("_").split("_")) + "Backward0"

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, value):
        _C.set_data(self, value)

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    @property
    def is_floating_point_(self):
        return self.dtype.is_floating_point

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def size(self, dim=None):
        if dim is None:
            return self.shape
        return self.shape[_shape_dim(dim, self.ndim)]

    def dim(self):
        return self.ndim

    def stride(self, dim=None):
        if dim is None:
            return self._strides
        return self._strides[_shape_dim(dim, self.ndim)]

    def element_size(self):
        return self.dtype.np.itemsize

    def storage_offset(self):
        return self._offset

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype is float32 or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __hash__(self):
        return id(self)

    def __repr__(self):
        arr = self.detach().float().numpy() if self.dtype is bfloat16 else self.detach().numpy()
        body = np.array2string(arr, separator=", ", threshold=1000, edgeitems=3, prefix="tensor(",
                               formatter=_float_formatter(arr) if arr.dtype == np.float32 else None)
        extras = []
        if self.dtype is not float32:
            extras.append(f"dtype={self.dtype!r}")
        if arr.size == 0 and self.ndim != 1:
            extras.append(f"size={self.shape}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__

    def __reduce_ex__(self, proto):
        if self.dtype is bfloat16:
            return (bfloat16_from_bits, (bfloat16_bits(self.detach()).copy(),))
        arr = self.detach().numpy().copy()
        return (_rebuild, (arr, self.requires_grad))

    def __deepcopy__(self, memo):
        t = clone_detached(self)
        t.requires_grad = self.requires_grad
        return t

    def __array__(self, dtype=None, copy=None):
        a = self.detach().numpy()
        return a.astype(dtype) if dtype is not None else a

    def tolist(self):
        t = self.detach()
        return (t.float() if t.dtype is bfloat16 else t).numpy().tolist()

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    def register_hook(self, hook):
        """Call hook(grad) with this tensor's gradient during each backward (torch.Tensor.register_hook).

        hook may return None or a replacement gradient (a float32 tensor of the same shape), which
        flows on instead: into .grad for a leaf (hooks run once per backward, on the summed gradient,
        before it is added), to the ops that made this tensor otherwise. An exception raised by a hook
        stops the backward and is raised by backward(). Returns a handle whose remove() unregisters it.
        """
        if not callable(hook):
            raise TypeError(f"register_hook: hook must be callable, got {type(hook).__name__}")
        hooks = _C._grad_hooks(self)
        if hooks is None:
            hooks = {}
            _C._set_grad_hooks(self, hooks)  # RuntimeError when self does not require grad
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def is_inference(self):
        """Whether this tensor was made under vitc.inference_mode()."""
        return self._is_inference

    def _refuse_inference_write(self, who):
        if self._is_inference and not _C._is_inference_mode_enabled():
            raise RuntimeError(f"{who}: in-place update to an inference tensor (made under vitc.inference_mode()) "
                               "outside inference mode is not allowed; use t.clone()")

    def zero_(self):
        return self.fill_(0.0)

    def fill_(self, value):
        self._refuse_inference_write("fill_")
        return _call("fill_", (self,), value=float(value))

    def copy_(self, src):
        self._refuse_inference_write("copy_")
        return _call("copy_", (self, _as_tensor(src, self.dtype)))

    def to(self, dtype_or_device=None, dtype=None, copy=False):
        d = dtype if dtype is not None else dtype_or_device
        if d is None or d == "cpu":
            return self
        d = as_dtype(d)
        if d is self.dtype and not copy:
            return self
        return _call("to_dtype", (self,), dtype=d.code)

    def float(self):
        return self.to(float32)

    def long(self):
        return self.to(int64)

    def bool(self):
        return self.to(bool_)

    def cpu(self):
        return self


class RemovableHandle:
    """What register_hook (tensor or module hooks) returns: remove() unregisters the hook; also a
    context manager that removes it on exit."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(self._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _float_formatter(arr):
    """PyTorch's print rules: integers as '1.', else 4 decimals, scientific for wide ranges."""
    finite = np.abs(arr[np.isfinite(arr)]).astype(np.float64)
    nz = finite[finite != 0]
    if finite.size and np.all(finite == np.round(finite)):
        fmt = "{:.0f}."
        if nz.size and (nz.max() / nz.min() > 1000.0 or nz.max() > 1e8):
            fmt = "{:.4e}"
    elif nz.size and (nz.max() / nz.min() > 1000.0 or nz.max() > 1e8 or nz.min() < 1e-4):
        fmt = "{:.4e}"
    else:
        fmt = "{:.4f}"
    width = max((len(fmt.format(v)) for v in arr.ravel()[:2000]), default=1)
    return {"float_kind": lambda v: fmt.format(v).rjust(width)}


def _rebuild(arr, requires_grad):
    t = from_numpy(arr)
    t.requires_grad = requires_grad
    return t


def _shape_dim(dim, ndim):
    """_wrap_dim for size(dim)/stride(dim): a 0-d tensor has no dimension to index (torch's rule), where
    reductions accept dim 0 / -1 on it"""
    if ndim == 0 and isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        raise _C.IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    return _wrap_dim(dim, ndim)


def _wrap_dim(dim, ndim):
    n = max(ndim, 1)
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -n <= dim < n:
        raise _C.IndexError(f"dim {dim} out of range for a {ndim}-d tensor")
    return dim + n if dim < 0 else dim


def register(name, fn):
    """Attach fn as Tensor.<name> (op families call this for their methods)."""
    setattr(Tensor, name, fn)


_C._set_tensor_class(Tensor)


# ---- creation -----------------------------------------------------------------------------

def from_numpy(arr):
    """A tensor sharing arr's memory (C-contiguous writeable float32/int64/bool); others are copied.

    Read-only arrays (np.frombuffer over bytes, np.memmap(mode="r")) are copied, so in-place ops on
    the tensor can never write into read-only memory; later changes to such an array's memory are
    not seen by the tensor."""
    return _C.from_numpy(arr)


def bfloat16_bits(t):
    """The uint16 bit patterns of a bfloat16 tensor as a NumPy array sharing its memory."""
    expect_tensor(t, "bfloat16_bits", "t")
    return _C.bits_numpy(t)


def bfloat16_from_bits(arr):
    """A bfloat16 tensor over a uint16 NumPy array of bit patterns (shared under from_numpy's rules)."""
    return _C.from_bits(arr)


def _size_args(size, who):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{who}: sizes must be ints, got {type(s).__name__}")
    return tuple(int(s) for s in size)


def _finish(t, requires_grad):
    if requires_grad:
        t.requires_grad = True
    return t


def empty(*size, dtype=None, requires_grad=False):
    return _finish(_C.empty(_size_args(size, "empty"), as_dtype(dtype or float32).code), requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    if not isinstance(fill_value, numbers.Number):
        raise TypeError(f"full: fill_value must be a number, got {type(fill_value).__name__}")
    if dtype is None:
        dtype = bool_ if isinstance(fill_value, bool) else int64 if isinstance(fill_value, numbers.Integral) else float32
    if not isinstance(size, (numbers.Integral, tuple, list)) or isinstance(size, bool):
        raise TypeError(f"full: size must be an int or a tuple of ints, got {type(size).__name__}")
    return _finish(_C.full(_size_args((size,) if isinstance(size, numbers.Integral) else size, "full"),
                           as_dtype(dtype).code, float(fill_value)), requires_grad)


def zeros(*size, dtype=None, requires_grad=False):
    return _finish(_C.full(_size_args(size, "zeros"), as_dtype(dtype or float32).code, 0.0), requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    return _finish(_C.full(_size_args(size, "ones"), as_dtype(dtype or float32).code, 1.0), requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    expect_tensor(t, "zeros_like")
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    expect_tensor(t, "ones_like")
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    expect_tensor(t, "full_like")
    return full(t.shape, fill_value, dtype=dtype or t.dtype, requires_grad=requires_grad)


def rand(*size, requires_grad=False):
    """Uniform [0, 1) from the counter RNG (vitc.manual_seed)."""
    return _finish(_C.random(_size_args(size, "rand"), 0), requires_grad)


def randn(*size, requires_grad=False):
    """Standard normal from the counter RNG (vitc.manual_seed)."""
    return _finish(_C.random(_size_args(size, "randn"), 1), requires_grad)


def rand_like(t):
    expect_tensor(t, "rand_like")
    return rand(t.shape)


def randn_like(t):
    expect_tensor(t, "randn_like")
    return randn(t.shape)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    for v in (start, end, step):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"arange: expected numbers, got {type(v).__name__}")
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if not all(isinstance(v, numbers.Integral) or np.isfinite(v) for v in (start, end, step)):
        raise ValueError(f"arange: start, end and step must be finite, got {start}, {end}, {step}")
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if ints else float32
    dtype = as_dtype(dtype)
    if dtype is bfloat16:
        return _finish(arange(start, end, step, dtype=float32).to(bfloat16), requires_grad)
    try:
        n = max(0, int(np.ceil((end - start) / step)))
    except OverflowError:  # ints whose quotient no float holds
        raise ValueError(f"arange: {start} to {end} in steps of {step} is too many elements") from None
    out = _C.empty((n,), dtype.code)  # the core refuses sizes beyond memory before any work
    view, chunk = out.numpy(), 1 << 20
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        view[i:i + m] = start + step * np.arange(i, i + m, dtype=np.float64)
    return _finish(out, requires_grad)


def tensor(data, dtype=None, requires_grad=False):
    """A new tensor holding a copy of data (nested lists, numbers, NumPy arrays or tensors)."""
    if isinstance(data, Tensor) and data.dtype is bfloat16 and dtype is None:
        dtype = bfloat16
    if dtype is not None and as_dtype(dtype) is bfloat16:  # via float32, rounded to nearest even
        src = data.detach().float() if isinstance(data, Tensor) else tensor(data, float32)
        return _finish(src.to(bfloat16, copy=True), requires_grad)
    if isinstance(data, Tensor) and data.dtype is bfloat16:
        data = data.detach().float()
    if isinstance(data, Tensor):
        arr = data.detach().numpy()
    else:
        try:
            arr = np.array(data)
        except (ValueError, TypeError) as e:
            raise TypeError(f"tensor: cannot convert {type(data).__name__} to a tensor ({e})") from None
    if dtype is None:
        if arr.dtype.kind == "b":
            dtype = bool_
        elif arr.dtype.kind in "iu":
            dtype = int64
        elif arr.dtype.kind == "f" or arr.size == 0:
            dtype = float32
        else:
            raise TypeError(f"tensor: unsupported data of NumPy dtype {arr.dtype}")
    dtype = as_dtype(dtype)
    if arr.dtype.kind not in "biuf" and arr.size:
        raise TypeError(f"tensor: unsupported data of NumPy dtype {arr.dtype}")
    arr = np.array(arr, dtype=dtype.np, order="C", copy=True)
    return _finish(from_numpy(arr), requires_grad)


def clone_detached(t):
    return from_numpy(np.array(t.detach().numpy(), order="C", copy=True))


def _as_tensor(x, dtype_hint=None):
    """Tensor from a tensor, number or array (numbers take dtype_hint or float32)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number):
        return full((), x, dtype=dtype_hint or (float32 if not isinstance(x, numbers.Integral) else int64))
    return tensor(x)


# ---- grad mode ----------------------------------------------------------------------------

class _GradMode:
    _on = None

    def __enter__(self):
        self._prev = _C.set_grad_enabled(self._on)
        return self

    def __exit__(self, *exc):
        _C.set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with self.__class__():
                return fn(*a, **k)

        return wrapper


class no_grad(_GradMode):
    """Context manager / decorator: ops inside record no autograd graph."""
    _on = False


class enable_grad(_GradMode):
    """Context manager / decorator: turn recording back on inside a no_grad block."""
    _on = True


class set_grad_enabled(_GradMode):
    def __init__(self, mode):
        self._on = bool(mode)
        self._prev = _C.set_grad_enabled(self._on)

    def __enter__(self):
        return self

    def __call__(self, fn):
        raise TypeError("set_grad_enabled is not a decorator")


def is_grad_enabled():
    return _C.is_grad_enabled()


class inference_mode:
    """Context manager / decorator (torch.inference_mode): no autograd graph is recorded, and tensors
    made inside are inference tensors (``t.is_inference()``): outside the block they may not be saved
    for a backward (an op that needs one to compute gradients raises RuntimeError), be written in
    place, or be set to require grad; ``t.clone()`` outside gives a normal copy. Views of normal
    tensors made inside stay normal. ``inference_mode(False)`` does nothing (as torch)."""

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def __enter__(self):
        if self.mode:
            self._prev = (_C.set_grad_enabled(False), _C._set_inference_mode(True))
        return self

    def __exit__(self, *exc):
        if self.mode:
            _C._set_inference_mode(self._prev[1])
            _C.set_grad_enabled(self._prev[0])
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with inference_mode(self.mode):
                return fn(*a, **k)

        return wrapper


def is_inference_mode_enabled():
    return _C._is_inference_mode_enabled()
