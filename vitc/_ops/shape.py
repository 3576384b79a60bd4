"""Shape ops: reshape/view/flatten, permute/transpose, contiguous."""
import numbers

__all__ = ['reshape', 'view', 'flatten', 'permute', 'transpose', 't', 'contiguous']

from .._tensor import Tensor, _call, expect_tensor, register, _wrap_dim


def _shape_arg(shape, who):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{who}: sizes must be ints, got {type(s).__name__}")
    return tuple(int(s) for s in shape)


def _infer(shape, numel, who):
    if shape.count(-1) > 1:
        raise ValueError(f"{who}: only one dimension can be inferred")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or numel % known:
            raise ValueError(f"{who}: shape {shape} is invalid for input of {numel} elements")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    return shape


def reshape(input, *shape):
    expect_tensor(input, "reshape")
    shape = _infer(_shape_arg(shape, "reshape"), input.numel(), "reshape")
    return _call("reshape", (input,), shape)


def view(input, *shape):
    expect_tensor(input, "view")
    """Like reshape but refuses to copy (PyTorch's view contract)."""
    shape = _infer(_shape_arg(shape, "view"), input.numel(), "view")
    out = _call("reshape", (input,), shape)
    if input.numel() and out.data_ptr() != input.data_ptr():
        raise RuntimeError(f"view: shape {shape} is not compatible with the input's strides; use reshape()")
    return out


def flatten(input, start_dim=0, end_dim=-1):
    expect_tensor(input, "flatten")
    if input.ndim == 0:
        return reshape(input, 1)
    s, e = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    if s > e:
        raise ValueError("flatten: start_dim must not come after end_dim")
    n = 1
    for d in input.shape[s:e + 1]:
        n *= d
    return reshape(input, input.shape[:s] + (n,) + input.shape[e + 1:])


def permute(input, *dims):
    expect_tensor(input, "permute")
    dims = _shape_arg(dims, "permute")
    if len(dims) != input.ndim:
        raise ValueError(f"permute: {len(dims)} dims given for a {input.ndim}-d tensor")
    return _call("permute", (input,), dims)


def transpose(input, dim0, dim1):
    expect_tensor(input, "transpose")
    n = input.ndim
    if n == 0:
        return input
    d0, d1 = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return _call("permute", (input,), tuple(perm))


def t(input):
    expect_tensor(input, "t")
    if input.ndim > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dims, got {input.ndim}")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def contiguous(input):
    expect_tensor(input, "contiguous")
    return input if input.is_contiguous() else _call("contiguous", (input,))


for _name, _fn in dict(reshape=reshape, view=view, flatten=flatten, permute=permute, transpose=transpose,
                       t=t, contiguous=contiguous).items():
    register(_name, _fn)
