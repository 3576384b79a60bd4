"""vitc: Vision Transformers on the CPU — a C core with autograd behind a PyTorch-style API."""
from . import _C
from ._tensor import (Tensor, dtype, float32, int64, bool_ as bool, as_dtype, from_numpy, tensor, empty, zeros,
                      ones, full, zeros_like, ones_like, full_like, rand, randn, rand_like, randn_like, arange,
                      no_grad, enable_grad, set_grad_enabled, is_grad_enabled)
from ._ops.elementwise import (add, sub, mul, div, pow, neg, exp, log, sqrt, rsqrt, abs, square, clamp, clip,
                               where, masked_fill, eq, ne, lt, le, gt, ge)
from ._ops.reduce import sum, mean
from ._ops.blas import matmul, bmm, mm, linear
from ._ops.shape import reshape, view, flatten, permute, transpose, t, contiguous

float = float32
long = int64
IndexError = _C.IndexError


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


__version__ = "0.1.0"
