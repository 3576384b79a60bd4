"""What the C-backed batch augmentations (Mixup, RandomErasing, RandAugment) share: where their
Philox counters come from, argument checks, and NumPy <-> vitc.Tensor at the boundary.

The C core is imported on first use, so ``vitc.data`` still loads where it is not built yet."""
import numbers
import threading

import numpy as np

__all__ = ["CounterStream"]


def core():
    """(vitc._C, vitc._ops.augment, vitc.Tensor, vitc.from_numpy), imported on first use."""
    from .. import _C
    from .._ops import augment
    from .._tensor import Tensor, from_numpy
    return _C, augment, Tensor, from_numpy


class CounterStream:
    """The random counters of one augmentation object.

    ``seed=None``: every call reserves its block from vitc's global counter RNG, so
    ``vitc.manual_seed(s)`` makes a run repeat exactly. ``seed=int``: a private stream (seed,
    offset), advanced by every call and independent of the global generator. A
    ``numpy.random.Generator`` passed to a call (as ``DataLoader`` passes its per-epoch transform
    rng) keys that call instead: seed = one 63-bit draw from it, offset 0.
    """

    def __init__(self, seed):
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
                raise ValueError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
            seed = int(seed)
        self.seed = seed
        self.offset = 0
        self._lock = threading.Lock()

    def take(self, n, rng=None):
        """(seed, first counter) of a fresh block of n counters."""
        if rng is not None:
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
            return int(rng.integers(0, 2**63)), 0
        if self.seed is None:
            _C = core()[0]
            return _C.rng_reserve(int(n))
        with self._lock:
            base = self.offset
            self.offset += int(n)
        return self.seed, base


def number(value, name, lo=None, hi=None, lo_open=False):
    """A float checked against [lo, hi] (or (lo, hi] with lo_open); TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if v != v or (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise ValueError(f"{name} must be in {'(' if lo_open else '['}{lo_s}, {hi_s}], got {value!r}")
    return v


def integer(value, name, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in {lo}..{'' if hi is None else hi}, got {value}")
    return int(value)


def to_tensor(a, np_dtype, who, what):
    """(tensor, was_numpy): a vitc Tensor as is, a NumPy array of dtype np_dtype wrapped (zero-copy
    when C-contiguous). Other dtypes are refused rather than converted silently."""
    _C, _aug, Tensor, from_numpy = core()
    if isinstance(a, Tensor):
        return a, False
    if isinstance(a, np.ndarray):
        if a.dtype != np_dtype and not (np.dtype(np_dtype).kind == "i" and a.dtype.kind in "iu"):
            raise TypeError(f"{who}: {what} must be {np.dtype(np_dtype)}, got {a.dtype}")
        return from_numpy(np.ascontiguousarray(a, dtype=np_dtype)), True
    raise TypeError(f"{who}: {what} must be a vitc.Tensor or a numpy.ndarray, got {type(a).__name__}")
