"""Reductions over dims with keepdim: sum, mean, var, std, max/min, amax/amin, argmax/argmin,
logsumexp (csrc/ops/reduce.c). Names, signatures and semantics follow PyTorch."""
import collections
import numbers

__all__ = ['sum', 'mean', 'var', 'std', 'max', 'min', 'amax', 'amin', 'argmax', 'argmin', 'logsumexp']

from .._checks import expect_tensor
from .._tensor import Tensor, _call, bfloat16, float32, register

# what torch.max(x, dim) returns: a named tuple (values, indices)
_MaxResult = collections.namedtuple("max", ["values", "indices"])
_MinResult = collections.namedtuple("min", ["values", "indices"])


def _is_int(d):
    return isinstance(d, numbers.Integral) and not isinstance(d, bool)


def _dims(dim):
    if dim is None:
        return ()
    if _is_int(dim):
        return (int(dim),)
    if isinstance(dim, (tuple, list)) and all(_is_int(d) for d in dim):
        return tuple(int(d) for d in dim)
    raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")




def _one_dim(dim, who):
    if not _is_int(dim):
        raise TypeError(f"{who}: dim must be an int, got {dim!r}")
    return int(dim)


def sum(input, dim=None, keepdim=False, dtype=None):
    """Sum over dim (an int or tuple; None or () = all dims). Integer/bool inputs sum to int64."""
    expect_tensor(input, "sum")
    if input.dtype is bfloat16:  # a storage dtype: the int64 rule below is for integer and bool inputs
        raise TypeError("sum: does not accept bfloat16; convert with .float() first")
    if input.dtype is not float32:
        input = input.to(float32)
        out = _call("sum", (input,), keepdim=int(bool(keepdim)), dims=_dims(dim))
        return out.long() if dtype is None else out.to(dtype)
    return _call("sum", (input,), keepdim=int(bool(keepdim)), dims=_dims(dim))


def mean(input, dim=None, keepdim=False):
    """Mean over dim (an int or tuple; None or () = all dims); NaN for an empty reduction."""
    expect_tensor(input, "mean")
    if input.dtype is not float32:
        raise TypeError(f"mean: input dtype should be float32, got {input.dtype!r}")
    return _call("mean", (input,), keepdim=int(bool(keepdim)), dims=_dims(dim))


def _correction(who, unbiased, correction):
    if unbiased is not None and correction is not None:
        raise TypeError(f"{who}: give either unbiased or correction, not both")
    if correction is not None:
        if not isinstance(correction, numbers.Real) or isinstance(correction, bool):
            raise TypeError(f"{who}: correction must be a number, got {type(correction).__name__}")
        return float(correction)
    if unbiased is None:
        return 1.0
    if not isinstance(unbiased, bool):
        raise TypeError(f"{who}: unbiased must be a bool, got {type(unbiased).__name__}")
    return 1.0 if unbiased else 0.0


def _var_like(op, input, dim, unbiased, keepdim, correction):
    expect_tensor(input, op)
    if isinstance(dim, bool):  # torch.var(x, False): the second positional is `unbiased`
        dim, unbiased = None, dim
    return _call(op, (input,), keepdim=int(bool(keepdim)), dims=_dims(dim),
                 correction=_correction(op, unbiased, correction))


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Σ(x − mean)² / (n − correction) over dim; correction 1 (unbiased) by default."""
    return _var_like("var", input, dim, unbiased, keepdim, correction)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Square root of var (same arguments); its gradient is 0 where std is 0, as in PyTorch."""
    return _var_like("std", input, dim, unbiased, keepdim, correction)


def _extreme(op, result, input, dim, keepdim):
    expect_tensor(input, op)
    if dim is None:
        if keepdim:
            raise TypeError(f"{op}: keepdim needs a dim")
        return _call(op, (input,))
    if isinstance(dim, Tensor):
        raise TypeError(f"{op}(input, other) is not supported: compare with vitc.where(a > b, a, b)")
    values, indices = _call(op + "_dim", (input,), keepdim=int(bool(keepdim)), dims=(_one_dim(dim, op),))
    return result(values, indices)


def max(input, dim=None, keepdim=False):
    """max(x): the largest element (0-d; the gradient is shared among ties). max(x, dim): a named
    tuple (values, indices) with the first index of the max (NaN counts as the max)."""
    return _extreme("max", _MaxResult, input, dim, keepdim)


def min(input, dim=None, keepdim=False):
    """min(x): the smallest element (0-d). min(x, dim): a named tuple (values, indices)."""
    return _extreme("min", _MinResult, input, dim, keepdim)


def amax(input, dim=(), keepdim=False):
    """Max over dim (an int or tuple; () = all); the gradient is shared evenly among ties."""
    expect_tensor(input, "amax")
    return _call("amax", (input,), keepdim=int(bool(keepdim)), dims=_dims(dim))


def amin(input, dim=(), keepdim=False):
    """Min over dim (an int or tuple; () = all); the gradient is shared evenly among ties."""
    expect_tensor(input, "amin")
    return _call("amin", (input,), keepdim=int(bool(keepdim)), dims=_dims(dim))


def _arg(op, input, dim, keepdim):
    expect_tensor(input, op)
    if dim is None:
        return _call(op, (input,), keepdim=int(bool(keepdim)), dims=())
    return _call(op, (input,), keepdim=int(bool(keepdim)), dims=(_one_dim(dim, op),))


def argmax(input, dim=None, keepdim=False):
    """int64 index of the first max along dim, or into the flattened tensor when dim is None."""
    return _arg("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    """int64 index of the first min along dim, or into the flattened tensor when dim is None."""
    return _arg("argmin", input, dim, keepdim)


def logsumexp(input, dim, keepdim=False):
    """log Σ exp(x) over dim (an int or tuple), computed stably (max-shifted)."""
    expect_tensor(input, "logsumexp")
    return _call("logsumexp", (input,), keepdim=int(bool(keepdim)), dims=_dims(dim))


for _name in __all__:
    register(_name, globals()[_name])
