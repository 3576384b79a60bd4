"""Reductions over dims with keepdim (sum, mean, ...)."""
import numbers

__all__ = ['sum', 'mean']

from .._tensor import Tensor, _call, register, float32


def _dims(dim):
    if dim is None:
        return ()
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        return (int(dim),)
    if isinstance(dim, (tuple, list)) and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dim):
        return tuple(int(d) for d in dim)
    raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")


def _reduce_args(dim, keepdim):
    d = _dims(dim)
    return (int(bool(keepdim)), len(d)) + d


def sum(input, dim=None, keepdim=False, dtype=None):
    if not isinstance(input, Tensor):
        raise TypeError(f"sum: expected a Tensor, got {type(input).__name__}")
    if input.dtype is not float32:
        input = input.to(float32)
        out = _call("sum", (input,), _reduce_args(dim, keepdim))
        return out.long() if dtype is None else out.to(dtype)
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        return _call("sum", (input,), (int(bool(keepdim)), 0))
    return _call("sum", (input,), _reduce_args(dim, keepdim))


def mean(input, dim=None, keepdim=False):
    if not isinstance(input, Tensor):
        raise TypeError(f"mean: expected a Tensor, got {type(input).__name__}")
    if input.dtype is not float32:
        raise TypeError(f"mean: input dtype should be float32, got {input.dtype!r}")
    return _call("mean", (input,), _reduce_args(dim, keepdim))


register("sum", sum)
register("mean", mean)
