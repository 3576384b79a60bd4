"""In-place tensor methods with PyTorch's names and semantics: add_, sub_, mul_, div_, lerp_, clamp_,
the operators +=, -=, *=, /=, and clone() / detach_().

Each computes its result with the out-of-place op and writes it into the tensor with copy_, so it
inherits copy_'s rules (the other operand broadcasts into the tensor, never the tensor into a larger
shape; expanded, stride-0 destinations are refused; an operand overlapping the destination is read
before the write) and bumps the storage's version counter, so a tensor saved for backward and then
modified makes that backward raise.

Autograd, as PyTorch: in grad mode an in-place op on a leaf that requires grad is refused; on any other
tensor, when the tensor or the operand requires grad, the op is recorded: the result is computed from a
clone of the tensor (so the recorded node never reads the overwritten memory), written in, and the
tensor takes the result's history (vt_set_history in csrc/autograd/engine.c). vitc does not track
views, so it refuses to record an in-place op on a tensor whose memory another tensor uses (a view, or
a tensor saved for backward); PyTorch rewrites the views' histories instead. Under no_grad nothing is
recorded and parameters may be updated in place (an EMA: ``p.mul_(d).add_(q, alpha=1 - d)``).
"""
import numbers

from .. import _C
from .._tensor import Tensor, float32, no_grad, register
from . import elementwise as _ew


def _apply(self, who, compute, other=None):
    """self ← compute(x) in place, x self (or a clone of it when the op is recorded); returns self."""
    needs_graph = _C.is_grad_enabled() and (self.requires_grad or (isinstance(other, Tensor) and other.requires_grad))
    if needs_graph:
        if self.requires_grad and self.is_leaf:
            raise RuntimeError(f"{who}: a leaf Variable that requires grad is being used in an in-place operation.")
        if _C._shares_memory(self):
            raise RuntimeError(f"{who}: cannot record an in-place operation on a tensor whose memory another tensor "
                               f"uses (a view of it, or a copy saved for backward): vitc does not track views; "
                               f"use the out-of-place form (x = x {who.strip('_')} ...)")
        result = compute(self.clone())
    else:
        with no_grad():
            result = compute(self)
    if tuple(result.shape) != tuple(self.shape):
        raise RuntimeError(f"{who}: output with shape {list(self.shape)} doesn't match the broadcast shape "
                           f"{list(result.shape)}")
    if result.dtype is not self.dtype and self.dtype is not float32:
        raise RuntimeError(f"{who}: result type {result.dtype.name} can't be cast to the desired output type "
                           f"{self.dtype.name}")
    with no_grad():
        self.copy_(result)
    if needs_graph:
        _C._set_history(self, result)
    return self


def _operand(other, self, x):
    """other, or the clone x when other is self (x.mul_(x) must not read the memory it overwrites)"""
    return x if other is self else other


def add_(self, other, *, alpha=1):
    return _apply(self, "add_", lambda x: _ew.add(x, _operand(other, self, x), alpha=alpha), other)


def sub_(self, other, *, alpha=1):
    return _apply(self, "sub_", lambda x: _ew.sub(x, _operand(other, self, x), alpha=alpha), other)


def mul_(self, other):
    return _apply(self, "mul_", lambda x: _ew.mul(x, _operand(other, self, x)), other)


def div_(self, other):
    return _apply(self, "div_", lambda x: _ew.div(x, _operand(other, self, x)), other)


def lerp_(self, end, weight):
    """self + weight·(end − self) (torch.lerp; weight a number or a tensor; a number ≥ 0.5 takes torch's
    end − (end − self)·(1 − weight))."""
    if not isinstance(end, Tensor):
        raise TypeError(f"lerp_: end must be a vitc.Tensor, got {type(end).__name__}")
    if not isinstance(weight, (Tensor, numbers.Real)) or isinstance(weight, bool):
        raise TypeError(f"lerp_: weight must be a number or a vitc.Tensor, got {type(weight).__name__}")
    grad_operand = end if end.requires_grad or not isinstance(weight, Tensor) else weight
    if not isinstance(weight, Tensor) and weight >= 0.5:
        # torch's second branch for large weights, end − (end − self)·(1 − weight): exact at weight 1
        # (aten/src/ATen/native/Lerp.h, lerp)
        return _apply(self, "lerp_", lambda x: _ew.sub(_operand(end, self, x),
                                                       _ew.mul(_ew.sub(_operand(end, self, x), x), 1.0 - weight)),
                      grad_operand)
    return _apply(self, "lerp_", lambda x: _ew.add(x, _ew.mul(_ew.sub(_operand(end, self, x), x),
                                                              _operand(weight, self, x))), grad_operand)


def clamp_(self, min=None, max=None):
    return _apply(self, "clamp_", lambda x: _ew.clamp(x, min, max))


def clone(self):
    """A copy with its own memory that stays in the graph (gradients flow back to self)."""
    return self.to(self.dtype, copy=True)


def detach_(self):
    """Take self out of the graph in place: no grad_fn, requires_grad False; returns self."""
    _C._set_history(self, None)
    return self


for _name, _fn in dict(add_=add_, sub_=sub_, mul_=mul_, div_=div_, lerp_=lerp_, clamp_=clamp_, clip_=clamp_,
                       clone=clone, detach_=detach_, __iadd__=add_, __isub__=sub_, __imul__=mul_,
                       __itruediv__=div_).items():
    register(_name, _fn)
