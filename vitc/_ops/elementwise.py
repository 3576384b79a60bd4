"""Elementwise ops: broadcasting arithmetic, unary math, comparisons, where/masked_fill."""
import numbers

__all__ = ['add', 'sub', 'mul', 'div', 'pow', 'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'square', 'clamp', 'clip', 'where', 'masked_fill', 'eq', 'ne', 'lt', 'le', 'gt', 'ge']

from .. import _C
from .._tensor import Tensor, _call, float32, register, tensor as _tensor, bool_


def _t(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) or hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        return _tensor(x, dtype=float32 if not isinstance(x, bool) else bool_)
    raise TypeError(f"expected a Tensor or a number, got {type(x).__name__}")


def _promote(a, b):
    """Mixed dtypes compute in float32 (PyTorch's promotion for our three dtypes)."""
    if a.dtype is not b.dtype:
        if a.dtype is not float32 and b.dtype is float32:
            a = a.to(float32)
        elif b.dtype is not float32 and a.dtype is float32:
            b = b.to(float32)
    return a, b


def _is_scalar(x):
    return isinstance(x, numbers.Number) and not isinstance(x, bool) or isinstance(x, bool)


def add(input, other, alpha=1):
    if _is_scalar(other) and isinstance(input, Tensor):
        return _call("add_scalar", (input,), other=float(other) * alpha)
    if _is_scalar(input) and isinstance(other, Tensor):
        return add(other * alpha, input) if alpha != 1 else _call("add_scalar", (other,), other=float(input))
    a, b = _promote(_t(input), _t(other))
    if alpha != 1:
        b = mul(b, alpha)
    return _call("add", (a, b))


def sub(input, other, alpha=1):
    if _is_scalar(other) and isinstance(input, Tensor):
        return _call("add_scalar", (input,), other=-float(other) * alpha)
    if _is_scalar(input) and isinstance(other, Tensor):
        return add(neg(other) if alpha == 1 else mul(other, -alpha), input)
    a, b = _promote(_t(input), _t(other))
    if alpha != 1:
        b = mul(b, alpha)
    return _call("sub", (a, b))


def mul(input, other):
    if _is_scalar(other) and isinstance(input, Tensor):
        return _call("mul_scalar", (input,), other=float(other))
    if _is_scalar(input) and isinstance(other, Tensor):
        return _call("mul_scalar", (other,), other=float(input))
    return _call("mul", _promote(_t(input), _t(other)))


def div(input, other):
    if _is_scalar(input) and isinstance(other, Tensor):
        return mul(pow(other, -1.0), input)
    return _call("div", _promote(_t(input), _t(other)))


def pow(input, exponent):
    if _is_scalar(exponent) and isinstance(input, Tensor):
        return _call("pow_scalar", (input,), exponent=float(exponent))
    if _is_scalar(input) and isinstance(exponent, Tensor):
        return _call("rpow_scalar", (exponent,), base=float(input))
    return _call("pow", _promote(_t(input), _t(exponent)))


def _unary(name):
    def fn(input):
        return _call(name, (_t(input),))
    fn.__name__ = name
    fn.__doc__ = f"elementwise {name}"
    return fn


neg = _unary("neg")
exp = _unary("exp")
log = _unary("log")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
abs = _unary("abs")


def square(input):
    return mul(input, input)


def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: at least one of min or max must be given")
    for v, n in ((min, "min"), (max, "max")):
        if v is not None and not isinstance(v, numbers.Real):
            raise TypeError(f"clamp: {n} must be a number, got {type(v).__name__}")
    return _call("clamp", (input,), has_min=int(min is not None), has_max=int(max is not None),
                 min=float(min if min is not None else 0), max=float(max if max is not None else 0))


clip = clamp


def where(condition, input, other):
    if not isinstance(condition, Tensor):
        raise TypeError("where: condition must be a bool Tensor")
    if condition.dtype is not bool_:
        condition = condition.bool()
    a, b = _promote(_t(input), _t(other))
    return _call("where", (condition, a, b))


def masked_fill(input, mask, value):
    if not isinstance(mask, Tensor):
        raise TypeError("masked_fill: mask must be a bool Tensor")
    if isinstance(value, Tensor):
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"masked_fill: value must be a number, got {type(value).__name__}")
    return _call("masked_fill", (input, mask if mask.dtype is bool_ else mask.bool()), value=float(value))


_CMP = {"eq": 0, "ne": 1, "lt": 2, "le": 3, "gt": 4, "ge": 5}


def _compare(name):
    def fn(input, other):
        if _is_scalar(other) and isinstance(input, Tensor):
            return _call("cmp_scalar", (input,), kind=_CMP[name], other=float(other))
        a, b = _t(input), _t(other)
        if a.dtype is not b.dtype:
            a, b = _promote(a, b)
        return _call(name, (a, b))
    fn.__name__ = name
    return fn


eq, ne, lt, le, gt, ge = (_compare(n) for n in ("eq", "ne", "lt", "le", "gt", "ge"))


for _name, _fn in dict(add=add, sub=sub, mul=mul, div=div, pow=pow, neg=neg, exp=exp, log=log, sqrt=sqrt,
                       rsqrt=rsqrt, abs=abs, square=square, clamp=clamp, clip=clip, masked_fill=masked_fill,
                       eq=eq, ne=ne, lt=lt, le=le, gt=gt, ge=ge).items():
    register(_name, _fn)


def _tensor_operator(name, general):
    """self <op> other for a Tensor self: two tensors of one dtype go straight to the C op (what
    `general` would do after its checks), anything else takes the general path. This is the
    per-op Python overhead that bench/ops.py measures; it costs a few attribute reads."""
    op, call = _C.ops[name], _C.call

    def fn(self, other):
        if isinstance(other, Tensor) and self._dtype_code == other._dtype_code:
            return call(op, (self, other))
        return general(self, other)
    fn.__name__ = f"__{name}__"
    return fn


register("__add__", _tensor_operator("add", add))
register("__radd__", lambda self, other: add(other, self))
register("__sub__", _tensor_operator("sub", sub))
register("__rsub__", lambda self, other: sub(other, self))
register("__mul__", _tensor_operator("mul", mul))
register("__rmul__", lambda self, other: mul(other, self))
register("__truediv__", _tensor_operator("div", div))
register("__rtruediv__", lambda self, other: div(other, self))
register("__pow__", pow)
register("__rpow__", lambda self, other: pow(other, self))
register("__neg__", neg)
register("__abs__", abs)
register("__eq__", eq)
register("__ne__", ne)
register("__lt__", lt)
register("__le__", le)
register("__gt__", gt)
register("__ge__", ge)
register("where", lambda self, condition, other: where(condition, self, other))
from . import inplace  # noqa: E402,F401  (registers the in-place methods, which use the ops above)
