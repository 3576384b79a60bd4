"""Argument checks for vitc's Python layer, one wording for one mistake.

Every check takes ``(value, who, name)``: ``who`` is the function or class that was called, ``name``
the argument. A wrong type raises TypeError, a wrong value ValueError, both worded
``"<who>: <name> must be ..., got ..."``; each check returns the value converted (``int``, ``float``,
a pair of ints) so callers can write ``x = expect_int(x, who, "x")``.
"""
import math
import numbers
import os

__all__ = ["is_torch_tensor", "type_name", "expect_tensor", "expect_int", "expect_number", "expect_probability",
           "expect_pair", "expect_finite", "expect_size", "expect_fits_memory", "MAX_ELEMENTS"]

MAX_ELEMENTS = 1 << 40  # the most elements one tensor may hold (VT_MAX_NUMEL, csrc/core/tensor.c)

_Tensor = None


def _tensor_class():
    global _Tensor
    if _Tensor is None:  # looked up on first use: vitc._tensor imports this module
        from ._tensor import Tensor
        _Tensor = Tensor
    return _Tensor


def is_torch_tensor(x):
    """True for a torch.Tensor, checked without importing torch."""
    return any(c.__module__ == "torch" and c.__name__ == "Tensor" for c in type(x).__mro__)


def type_name(x):
    """The name of x's type for an error message; a torch tensor says so and how to convert it."""
    if is_torch_tensor(x):
        return ("a torch.Tensor (convert it with vitc.from_numpy(t.detach().cpu().numpy()) "
                "or vitc.tensor(t.tolist()))")
    if type(x).__module__ == "numpy" and type(x).__name__ == "ndarray":
        return "a numpy.ndarray (wrap it with vitc.from_numpy(a))"
    return type(x).__name__


def expect_tensor(x, who, name="input", optional=False):
    """x if it is a vitc.Tensor (or None when ``optional``)."""
    if optional and x is None:
        return x
    if not isinstance(x, _Tensor or _tensor_class()):
        kind = "a vitc.Tensor or None" if optional else "a vitc.Tensor"
        raise TypeError(f"{who}: {name} must be {kind}, got {type_name(x)}")
    return x


def _minimum_words(minimum):
    return {0: "non-negative", 1: "positive"}.get(minimum, f">= {minimum}")


def expect_int(v, who, name, minimum=None):
    """int(v) for an integer that is not a bool, at least ``minimum`` when given."""
    if type(v) is not int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{who}: {name} must be an int, got {type(v).__name__}")
        v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{who}: {name} must be {_minimum_words(minimum)}, got {v}")
    return v


def expect_size(v, who, name, minimum=1):
    """expect_int for a size (a width, a count of blocks): at least ``minimum`` and at most MAX_ELEMENTS, so an
    absurd size is refused here, naming the argument, instead of hanging or failing deep inside a tensor."""
    v = expect_int(v, who, name, minimum)
    if v > MAX_ELEMENTS:
        raise ValueError(f"{who}: {name} must be at most 2^40 (vitc's bound on any size or element count), got {v}")
    return v


def _ram_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf: no limit known
        return None


def expect_fits_memory(count, who, what, itemsize=4):
    """Refuses, before anything is allocated, a model whose ``count`` values (``itemsize`` bytes each) would
    not fit in this machine's RAM; ``what`` names the arguments that set the count."""
    ram = _ram_bytes()
    if ram is not None and count * itemsize > ram:
        raise ValueError(f"{who}: {what} need {count:.3g} parameters ({count * itemsize / 2**30:.3g} GiB), more than "
                         f"this machine's {ram / 2**30:.3g} GiB of RAM")
    return count


def expect_number(v, who, name, lo=None, hi=None):
    """float(v) for a real number that is not a bool, inside [lo, hi] when bounds are given."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{who}: {name} must be a number, got {type(v).__name__}")
    v = float(v)
    if (lo is not None and not v >= lo) or (hi is not None and not v <= hi):  # NaN fails both
        span = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{who}: {name} must be in {span}, got {v}")
    return v


def expect_finite(v, who, name, lo=None, hi=None):
    """expect_number that also refuses inf and NaN (a schedule's factors, rates and step counts)."""
    if not math.isfinite(expect_number(v, who, name)):
        raise ValueError(f"{who}: {name} must be a finite number, got {v}")
    return expect_number(v, who, name, lo, hi)


def expect_probability(p, who, name="p"):
    """float(p) for a number in [0, 1] (dropout rates, mixing probabilities)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{who}: {name} must be a number, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{who}: {name} must be a probability between 0 and 1, got {p}")
    return p


def expect_pair(v, who, name, minimum=None, single_ok=False):
    """An int or a pair of ints -> (a, b), each at least ``minimum`` when given. ``single_ok`` also
    takes a one-element sequence as (a, a) (the functional ops accept it, as PyTorch's do)."""
    if isinstance(v, (tuple, list)):
        if single_ok and len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
        return expect_int(v[0], who, name, minimum), expect_int(v[1], who, name, minimum)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
    v = expect_int(v, who, name, minimum)
    return v, v
