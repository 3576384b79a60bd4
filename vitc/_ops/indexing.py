"""Indexing: Tensor.__getitem__/__setitem__ with PyTorch's semantics, gather, index_select,
masked_select, nonzero.

A key is applied in two steps. Basic components (ints, slices with positive steps, None,
Ellipsis) become one `slice` view (ints select and drop their dim) plus a reshape for new axes.
Advanced components (int64 tensors / lists of ints, bool masks) then pick positions from the dims
they cover with one `index_select` over that block of dims, addressed by a linear index (a mask's
row-major nonzero positions; several index tensors are raveled together). Like NumPy and PyTorch,
the advanced result dims replace the indexed dims in place when those dims are adjacent, and go
first otherwise. __setitem__ walks the same plan and writes with `copy_`/`fill_` (views) or
`index_put_` (advanced), only where no autograd graph can see the write.
"""
import numbers

import numpy as np

__all__ = ['gather', 'index_select', 'masked_select', 'nonzero', 'take_along_dim']

from .._checks import expect_tensor
from .. import _C
from .._tensor import Tensor, _call, register, int64, bool_, float32, full, from_numpy, is_grad_enabled, no_grad, \
    clone_detached, tensor as _tensor
from .shape import reshape, expand, broadcast_shapes, _wrap_dim

_IndexError = _C.IndexError


def _type_error(k):
    return TypeError("only integers, slices (`:`), ellipsis (`...`), None, bool or int64 tensors and lists of ints are "
                     f"valid indices (got {type(k).__name__})")


def _component(k):
    """One key component as int / slice / None / Ellipsis / bool / ('idx', int64 tensor) /
    ('mask', bool tensor)."""
    if k is None or k is Ellipsis or isinstance(k, slice):
        return k
    if isinstance(k, (bool, np.bool_)):
        return bool(k)
    if isinstance(k, numbers.Integral):
        return int(k)
    if isinstance(k, Tensor):
        if k.dtype is bool_:
            return bool(k.item()) if k.ndim == 0 else ("mask", k)
        if k.dtype is int64:
            return int(k.item()) if k.ndim == 0 else ("idx", k)
        raise TypeError(f"tensors used as indices must be int64 or bool tensors, got {k.dtype!r}")
    if isinstance(k, (list, tuple, np.ndarray)):
        try:
            arr = np.asarray(k)
        except ValueError:
            raise _type_error(k) from None
        if arr.dtype == np.bool_:
            return ("mask", from_numpy(np.ascontiguousarray(arr))) if arr.ndim else bool(arr)
        if arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind == "f"):
            t = from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
            return int(arr) if arr.ndim == 0 else ("idx", t)
        raise _type_error(k)
    if hasattr(k, "__index__") and not isinstance(k, numbers.Number):
        return int(k.__index__())
    raise _type_error(k)


def _index_plan(t, key):
    """(x, adv): x a view of t after the basic components (kept full dims for the advanced ones,
    possibly permuted); adv None, or (q, k, lin, wrap, B): dims [q, q+k) of x are addressed by the
    1-d int64 linear index lin (negatives wrap when wrap), whose positions form result dims B."""
    comps = [_component(k) for k in (key if isinstance(key, tuple) else (key,))]
    if sum(c is Ellipsis for c in comps) > 1:
        raise _IndexError("an index can only have a single ellipsis ('...')")

    def consumed(c):
        if c is None or c is Ellipsis or isinstance(c, bool):
            return 0
        return c[1].ndim if isinstance(c, tuple) and c[0] == "mask" else 1

    used = sum(consumed(c) for c in comps)
    nd, shape = t.ndim, t.shape
    if used > nd:
        raise _IndexError(f"too many indices for tensor of dimension {nd}")
    if Ellipsis in comps:
        i = comps.index(Ellipsis)
        comps[i:i + 1] = [slice(None)] * (nd - used)
    else:
        comps += [slice(None)] * (nd - used)

    args, vdims, adv = [], [], []  # slice args per dim of t; tags of the view's dims; advanced parts
    identity, d = True, 0
    for c in comps:
        if c is None or c is True:
            vdims.append("new")
        elif c is False:
            vdims.append("empty")
        elif isinstance(c, int):
            size = shape[d]
            if not -size <= c < size:
                raise _IndexError(f"index {c} is out of bounds for dimension {d} with size {size}")
            args += (c + size if c < 0 else c, 0, 0)
            identity = False
            d += 1
        elif isinstance(c, slice):
            size = shape[d]
            if c.step is not None and _slice_int(c.step) <= 0:
                raise ValueError("slice step must be positive" if _slice_int(c.step) < 0 else "slice step cannot be zero")
            start, stop, step = slice(*(None if v is None else _slice_int(v) for v in (c.start, c.stop, c.step))).indices(size)
            length = len(range(start, stop, step))
            args += (start if length else 0, length, step)
            if length != size or (size > 1 and step != 1):
                identity = False
            vdims.append("b")
            d += 1
        else:
            kind, ix = c
            k = ix.ndim if kind == "mask" else 1
            if kind == "mask" and ix.shape != shape[d:d + k]:
                raise _IndexError(f"the shape of the mask {ix.shape} at index {d} does not match the shape of the "
                                  f"indexed tensor {shape} at that index")
            adv.append((kind, ix, len(vdims), k))
            for j in range(k):
                args += (0, shape[d + j], 1)
                vdims.append("a")
            d += k
    x = t
    if not identity or not adv:
        x = _call("slice", (t,), tuple(args))
    if "new" in vdims or "empty" in vdims:
        it = iter(x.shape)
        x = reshape(x, tuple(1 if v in ("new", "empty") else next(it) for v in vdims))
        if "empty" in vdims:
            x = _call("slice", (x,), tuple(a for v, s in zip(vdims, x.shape) for a in ((0, 0, 1) if v == "empty" else (0, s, 1))))
    if not adv:
        return x, None

    if len(adv) == 1:
        kind, ix, p, k = adv[0]
        if kind == "mask":
            lin = _call("nonzero", (ix,), (1,))
            return x, (p, k, lin, 0, (lin.shape[0],))
        lin = ix if ix.ndim == 1 else reshape(ix, (-1,))
        return x, (p, 1, lin, 1, ix.shape)

    # several advanced parts: ravel their (broadcast) coordinates into one linear index
    dims, arrays = [], []
    for kind, ix, p, k in adv:
        dims += range(p, p + k)
        if kind == "mask":
            coords = _call("nonzero", (ix,), (0,)).numpy()
            arrays += [coords[:, j] for j in range(k)]
        else:
            a = ix.numpy()
            size = x.shape[p]
            if a.size and (a.min() < -size or a.max() >= size):
                bad = a[(a < -size) | (a >= size)].flat[0]
                raise _IndexError(f"index {bad} is out of bounds for dimension {p} with size {size}")
            arrays.append(np.where(a < 0, a + size, a))
    try:
        arrays = np.broadcast_arrays(*arrays)
    except ValueError:
        raise _IndexError("shape mismatch: indexing tensors could not be broadcast together with shapes "
                          + " ".join(str(list(a.shape)) for a in arrays)) from None
    B = arrays[0].shape
    lin = np.ravel_multi_index([a.reshape(-1) for a in arrays], [x.shape[i] for i in dims]) if arrays[0].size \
        else np.zeros(0, np.int64)
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    q = dims[0] if adjacent else 0
    rest = [i for i in range(x.ndim) if i not in dims]
    order = rest[:q] + dims + rest[q:]
    if order != list(range(x.ndim)):
        x = _call("permute", (x,), tuple(order))
    return x, (q, len(dims), from_numpy(np.ascontiguousarray(lin, dtype=np.int64)), 0, B)


def _slice_int(v):
    if isinstance(v, Tensor):
        if v.dtype is float32 or v.numel() != 1:
            raise TypeError("slice indices must be integers or single-element integer tensors")
        return int(v.item())
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"slice indices must be integers or None, got {type(v).__name__}")
    return v.__index__()


def getitem(self, key):
    x, adv = _index_plan(self, key)
    if adv is None:
        return x
    q, k, lin, wrap, B = adv
    out = _call("index_select", (x, lin), (q, k, wrap))
    if len(B) != 1:
        out = reshape(out, out.shape[:q] + tuple(B) + out.shape[q + 1:])
    return out


def _base_ptr(t):
    return t.data_ptr() - t.storage_offset() * t.element_size()


def setitem(self, key, value):
    """self[key] = value in place (value broadcast); refused where autograd could see the write."""
    if is_grad_enabled() and (self.requires_grad or (isinstance(value, Tensor) and value.requires_grad)):
        raise RuntimeError("a tensor that requires grad is being used in an in-place operation (__setitem__); "
                           "wrap it in vitc.no_grad()")
    if isinstance(value, Tensor):
        if value.dtype is not self.dtype:
            value = value.to(self.dtype)
        elif value.numel() and self.numel() and _base_ptr(value) == _base_ptr(self):
            value = clone_detached(value)  # reading what we overwrite: copy first
    elif isinstance(value, numbers.Number):
        value = full((), value, dtype=self.dtype)
    elif isinstance(value, (list, tuple, np.ndarray)):
        value = _tensor(value, dtype=self.dtype)
    else:
        raise TypeError(f"can't assign a {type(value).__name__} to a vitc.Tensor")
    with no_grad():
        x, adv = _index_plan(self, key)
        if adv is None:
            while value.ndim > x.ndim and value.shape[0] == 1:  # PyTorch drops leading 1s of the value
                value = reshape(value, value.shape[1:])
            if value.ndim == 0:
                x.fill_(value.item())
            else:
                x.copy_(value)
            return
        q, k, lin, wrap, B = adv
        outer, inner = x.shape[:q], x.shape[q + k:]
        if len(B) != 1:
            target = outer + tuple(B) + inner
            while value.ndim > len(target) and value.shape[0] == 1:
                value = reshape(value, value.shape[1:])
            value = reshape(expand(value, target), outer + (lin.shape[0],) + inner)
        while value.ndim > len(outer) + 1 + len(inner) and value.shape[0] == 1:
            value = reshape(value, value.shape[1:])
        _call("index_put_", (x, lin, value), (q, k, wrap))


# ---- functions ------------------------------------------------------------------------------

def _index_arg(index, who):
    if isinstance(index, (list, tuple)):
        index = _tensor(index, dtype=int64)
    expect_tensor(index, who, "index")
    if index.dtype is not int64:
        raise TypeError(f"{who}: index must be an int64 tensor, got {index.dtype!r}")
    return index


def gather(input, dim, index, *, sparse_grad=False):
    """out[i][j][k] = input[index[i][j][k]][j][k] for dim 0 (torch.gather); index int64 of input's ndim."""
    expect_tensor(input, "gather", "input")
    index = _index_arg(index, "gather")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"gather: dim must be an int, got {type(dim).__name__}")
    return _call("gather", (input, index), (int(dim),))


def take_along_dim(input, indices, dim):
    """gather with the index broadcast against input outside dim (torch.take_along_dim)."""
    expect_tensor(input, "take_along_dim", "input")
    indices = _index_arg(indices, "take_along_dim")
    d = _wrap_dim(dim, input.ndim)
    if indices.ndim != input.ndim:
        raise ValueError(f"take_along_dim: indices have {indices.ndim} dims, input has {input.ndim}")
    shp = broadcast_shapes(tuple(1 if i == d else s for i, s in enumerate(input.shape)),
                           tuple(1 if i == d else s for i, s in enumerate(indices.shape)))
    x = expand(input, tuple(input.shape[d] if i == d else s for i, s in enumerate(shp)))
    ix = expand(indices, tuple(indices.shape[d] if i == d else s for i, s in enumerate(shp)))
    return _call("gather", (x, ix), (d,))


def index_select(input, dim, index):
    """input's entries at positions index (1-d int64) along dim; gradients of repeated indices add."""
    expect_tensor(input, "index_select", "input")
    index = _index_arg(index, "index_select")
    if input.ndim == 0:
        d = _wrap_dim(dim, 0)
        return reshape(_call("index_select", (reshape(input, (1,)), index), (d, 1, 0)), ())
    return _call("index_select", (input, index), (_wrap_dim(dim, input.ndim), 1, 0))


def masked_select(input, mask):
    """The elements of input where mask (broadcast together) is true, as a 1-d tensor."""
    expect_tensor(input, "masked_select", "input")
    expect_tensor(mask, "masked_select", "mask")
    if mask.dtype is not bool_:
        raise TypeError(f"masked_select: mask must be a bool tensor, got {mask.dtype!r}")
    shape = broadcast_shapes(input.shape, mask.shape) or (1,)
    x = expand(input, shape) if input.shape != shape else input
    m = expand(mask, shape) if mask.shape != shape else mask
    lin = _call("nonzero", (m,), (1,))
    return _call("index_select", (x, lin), (0, len(shape), 0))


def nonzero(input, *, as_tuple=False):
    """Indices of nonzero elements: (n, ndim) int64, or a tuple of ndim 1-d tensors."""
    expect_tensor(input, "nonzero", "input")
    m = input if input.dtype is bool_ else input != 0
    out = _call("nonzero", (m,), (0,))
    if as_tuple:
        if input.ndim == 0:
            return (_call("nonzero", (m,), (1,)),)
        return tuple(out[:, j] for j in range(input.ndim))
    return out


register("__getitem__", getitem)
register("__setitem__", setitem)
for _name, _fn in dict(gather=gather, index_select=index_select, masked_select=masked_select, nonzero=nonzero,
                       take_along_dim=take_along_dim).items():
    register(_name, _fn)
