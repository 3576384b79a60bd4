"""vitc.plan: how much memory and time one training step of a ViT configuration takes on this
machine, predicted before running it.

    import vitc.plan
    p = vitc.plan.plan("vit_scaling_B_16", batch=32, optimizer="adafactor", threads=2)
    print(p)                        # the breakdown: parameters, gradients, optimizer state,
                                    # saved activations by op, backward transient; time by op
    p.peak_bytes, p.step_seconds, p.fits("8GiB")

``vitc.plan(...)`` (the module called) is the same as ``vitc.plan.plan(...)``.
Command line: ``python -m vitc.plan --model NAME --batch N [--optimizer adam] [--threads 2]
[--memory-cap 8GiB]``. Peak memory is counted from what each op saves for backward (vitc.plan.memory);
step time from the op-level FLOPs and a per-machine calibration cached under ~/.cache/vitc
(vitc.plan.calibration, vitc.plan.timing).
"""
import sys as _sys
import types as _types

from .calibration import cache_path, calibrate, load_calibration, machine_key
from .config import ModelConfig, resolve_config
from .guard import check_training_fits
from .memory import OPTIMIZERS, block_bytes, memory_breakdown, optimizer_state_bytes
from .planner import Plan, available_memory, format_bytes, parse_bytes, plan
from .timing import time_breakdown

__all__ = ["plan", "Plan", "ModelConfig", "resolve_config", "OPTIMIZERS", "optimizer_state_bytes", "block_bytes",
           "memory_breakdown", "time_breakdown", "calibrate", "load_calibration", "cache_path", "machine_key",
           "parse_bytes", "format_bytes", "available_memory", "check_training_fits"]


class _CallableModule(_types.ModuleType):
    """Lets ``vitc.plan(...)`` stand for ``vitc.plan.plan(...)`` while vitc.plan stays a package
    (a module's class may be replaced by a ModuleType subclass, Python >= 3.5)."""

    def __call__(self, *args, **kwargs):
        return plan(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
