"""vitc: Vision Transformers on the CPU — a C core with autograd behind a PyTorch-style API."""
import os as _os

# GEMMs run on OpenBLAS's threads, other kernels on OpenMP's: two pools spinning on few cores
# slow each other down (measured 2x on 2 cores), so idle OpenMP threads sleep instead of spinning
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _C  # noqa: E402
from ._tensor import (Tensor, dtype, float32, int64, bool_ as bool, as_dtype, from_numpy, tensor, empty, zeros,
                      ones, full, zeros_like, ones_like, full_like, rand, randn, rand_like, randn_like, arange,
                      no_grad, enable_grad, set_grad_enabled, is_grad_enabled)
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


from . import data, nn, optim, models, losses, profiler  # noqa: E402,F401  (vitc.train is imported on use)

__version__ = "0.1.0"
