"""bf16 mixed precision on the CPU: ``vitc.autocast``, as ``torch.autocast('cpu', torch.bfloat16)``.

Inside ``with vitc.autocast('cpu', dtype=vitc.bfloat16):`` every GEMM (linear, matmul/bmm,
convolution, the fused FFN and the qkv / output projections of attention) takes its inputs rounded
to bfloat16 (round to nearest even) and accumulates the exact products in float32; its output is
float32. Everything else stays float32: LayerNorm, softmax and the attention scores/weighted sums
(vitc's fused attention kernels, not GEMMs), GELU, losses, gradients, the optimizer and the master
weights. Tensors never change dtype, so no casts appear in user code or in the graph.

Where the CPU has AVX512-BF16 the products run on VDPBF16PS (csrc/kernels/gemm_bf16.c); elsewhere,
or with ``VITC_ISA=baseline``, the same rounding feeds the float32 GEMM: the same numbers up to
the order of the float32 additions (``vitc.amp.bf16_kernel()`` says which runs).

Backward: an op recorded inside autocast runs its backward products in bf16 too, wherever
``.backward()`` is called (each graph node keeps the precision of its forward), as torch's
autocast ops do through their bf16 saved inputs. Ops recorded outside run float32 backwards.

The switch is process-wide, like ``vitc.set_num_threads``, not per Python thread as torch's: the
GEMMs read it on OpenMP worker threads too. Do not run autocast and float32 work in concurrent
Python threads.
"""
import functools

from . import _C
from ._tensor import bfloat16


def is_autocast_enabled(device_type="cpu"):
    """Whether GEMMs run in bf16 now (inside an enabled ``vitc.autocast``)."""
    _check_device(device_type)
    return _C._autocast_bf16(None)


def bf16_kernel():
    """Which kernel autocast's GEMMs run on: 'avx512bf16' or 'fallback'."""
    return _C._bf16_gemm_kernel(None)


def _check_device(device_type):
    if device_type != "cpu":
        raise ValueError(f"vitc.autocast: device_type must be 'cpu' (vitc runs on the CPU), got {device_type!r}")


class autocast:
    """Context manager / decorator: GEMMs in bf16 with float32 accumulation (see the module doc).

    ``autocast(device_type='cpu', dtype=vitc.bfloat16, enabled=True)``; ``enabled=False`` inside an
    enabled block turns it off for its body. The previous state comes back on exit, exceptions
    included."""

    def __init__(self, device_type="cpu", dtype=bfloat16, enabled=True):
        _check_device(device_type)
        if dtype is None:
            dtype = bfloat16
        if dtype is not bfloat16:
            raise ValueError(f"vitc.autocast: dtype must be vitc.bfloat16 (the only lower precision vitc "
                             f"computes in), got {dtype!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"vitc.autocast: enabled must be a bool, got {type(enabled).__name__}")
        self.device_type, self.fast_dtype, self.enabled = device_type, dtype, enabled
        self._prev = []

    def __enter__(self):
        self._prev.append(_C._autocast_bf16(self.enabled))
        return self

    def __exit__(self, *exc):
        _C._autocast_bf16(self._prev.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with autocast(self.device_type, self.fast_dtype, self.enabled):
                return fn(*a, **k)

        return wrapper
