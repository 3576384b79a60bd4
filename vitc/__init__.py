"""vitc: Vision Transformers on the CPU — a C core with autograd behind a PyTorch-style API."""
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
