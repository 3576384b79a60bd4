"""vitc: Vision Transformers on the CPU — a C core with autograd behind a PyTorch-style API."""
import numbers as _numbers
import os as _os

# Idle OpenMP threads sleep (PASSIVE) rather than spin for libgomp's default ~300000 rounds: with
# the pthread OpenBLAS (VITC_BLAS=pthread) two pools spinning on few cores slowed each other 2x.
# But a wake-up per parallel region costs the seed ViT's step, hundreds of short regions, a few
# ms, so they first spin briefly (GOMP_SPINCOUNT, which overrides PASSIVE's zero): seed step at
# 2 threads 2.5-4 % faster than pure PASSIVE (bench/ab.py "" "GOMP_SPINCOUNT=20000", 30 rounds of
# 5, both side orders: 0.971 and 1/1.039; 12 rounds: 0.973 and 1/1.006), 100000 no better.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("GOMP_SPINCOUNT", "20000")

from . import _C  # noqa: E402
from ._tensor import (Tensor, dtype, float32, int64, bool_ as bool, bfloat16, bfloat16_bits, bfloat16_from_bits,
                      as_dtype, from_numpy, tensor, empty, zeros,
                      ones, full, zeros_like, ones_like, full_like, rand, randn, rand_like, randn_like, arange,
                      no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode,
                      is_inference_mode_enabled)
# one module per op family (csrc/ops/<family>.c); each exports its PyTorch-named functions
from ._ops.elementwise import *  # noqa: F401,F403
from ._ops.reduce import *  # noqa: F401,F403
from ._ops.blas import *  # noqa: F401,F403
from ._ops.shape import *  # noqa: F401,F403
from ._ops.indexing import *  # noqa: F401,F403
from ._ops.activation import *  # noqa: F401,F403
from ._ops.norm import *  # noqa: F401,F403
from ._ops.conv import *  # noqa: F401,F403
from ._ops.loss import *  # noqa: F401,F403
from ._ops.attention import *  # noqa: F401,F403
from ._ops.ffn import *  # noqa: F401,F403
from ._ops.optim_ops import *  # noqa: F401,F403
from ._ops.roi_align import *  # noqa: F401,F403
from ._recompute import get_recompute, recompute, set_recompute  # noqa: E402
from .amp import autocast, is_autocast_enabled  # noqa: E402

float = float32
long = int64
IndexError = _C.IndexError
OutOfMemoryError = _C.OutOfMemoryError


def manual_seed(seed):
    """Seed vitc's counter-based RNG (offset back to 0): same seed, same draws, any thread count."""
    if not isinstance(seed, int) or isinstance(seed, type(True)):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    _C.manual_seed(seed & 0xFFFFFFFFFFFFFFFF)


def set_num_threads(n):
    """Threads for both OpenBLAS (GEMMs) and OpenMP (every other kernel)."""
    _C.set_num_threads(n)


def get_num_threads():
    return _C.get_num_threads()


def memory_stats():
    """The caching allocator's state (csrc/core/alloc.c), a dict of ints (cache_fraction a float):
    live_bytes (held by tensors now), peak_bytes (highest live since reset_peak_memory_stats),
    max_live_bytes (highest live ever), cached_bytes / cached_blocks (freed, kept for reuse),
    cache_limit_bytes = max(cache_min_bytes, cache_fraction * max_live_bytes) (the cache never
    holds more), and counts: allocs, frees, cache_hits, system_allocs, released (blocks returned
    to the system). Sizes are block sizes: a request is rounded up to its size class (at most
    12.5 % more; powers of two exact)."""
    return _C.memory_stats()


def empty_cache():
    """Return every cached block to the system (live tensors are untouched)."""
    _C.empty_cache()


def reset_peak_memory_stats():
    """peak_bytes <- live_bytes, to measure the peak of one region."""
    _C.reset_peak()


def set_cache_limit(min_bytes=None, fraction=None):
    """Bound the allocator's cache: it keeps at most max(min_bytes, fraction * max_live_bytes) bytes
    of freed blocks (defaults 64 MiB and 1.5: csrc/core/alloc.c says why); blocks past that go back
    to the system. The cache is trimmed to the new limit at once. None keeps a setting;
    set_cache_limit(0, 0) turns caching off."""
    s = _C.memory_stats()
    min_bytes = s["cache_min_bytes"] if min_bytes is None else min_bytes
    fraction = s["cache_fraction"] if fraction is None else fraction
    if not isinstance(min_bytes, int) or isinstance(min_bytes, type(True)):
        raise TypeError(f"set_cache_limit: min_bytes must be an int, got {type(min_bytes).__name__}")
    if not isinstance(fraction, _numbers.Real) or isinstance(fraction, type(True)):
        raise TypeError(f"set_cache_limit: fraction must be a number, got {type(fraction).__name__}")
    _C.set_cache_limit(min_bytes, fraction)


from . import data, nn, optim, models, losses, profiler  # noqa: E402,F401

# Subpackages that are not needed to build and train a model load on first use (`vitc.train`,
# `vitc.io`, ...; PEP 562 module __getattr__): together they add ~10 % to `import vitc`, and
# vitc.distributed must not pull in MPI before it is asked for. vitc.save / vitc.load live in vitc.io.
_LAZY_SUBMODULES = ("io", "train", "diagnostics", "eval", "search", "distributed", "experiments", "oversmoothing",
                    "utils", "plan")
_FROM_IO = ("save", "load")


def __getattr__(name):
    import importlib

    if name in _LAZY_SUBMODULES:
        return importlib.import_module("." + name, __name__)  # the import also sets vitc.<name>
    if name in _FROM_IO:
        return getattr(importlib.import_module(".io", __name__), name)
    raise AttributeError(f"module 'vitc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | set(_FROM_IO))


__version__ = "0.1.0"
