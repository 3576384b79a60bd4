"""ModelEma: an exponential moving average of a model's weights, with timm's ModelEmaV3 semantics
(huggingface/pytorch-image-models, timm/utils/model_ema.py).

``module`` is a deep copy of the model in eval mode. ``update(model, step)`` moves every floating
state_dict entry (parameters and float buffers such as BatchNorm's running statistics) towards the
model's by ``ema ← lerp(ema, model, 1 − decay)`` and copies the integer ones (``num_batches_tracked``);
``exclude_buffers=True`` lerps only the parameters and copies every buffer. No autograd graph is
recorded (the update runs under no_grad with the in-place ops of vitc/_ops/inplace.py).
"""
import copy
import numbers

from .._tensor import no_grad
from ..nn.module import Module

__all__ = ["ModelEma"]


def _real(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"ModelEma: {name} must be a number, got {type(v).__name__}")
    return float(v)


class ModelEma(Module):
    """EMA of ``model``'s weights (timm.utils.ModelEmaV3).

    decay: the EMA decay (each update keeps ``decay`` of the average); min_decay: the floor of the
    warmed-up decay; update_after_step: updates up to this step copy the weights;
    use_warmup (alias ``warmup``): the decay grows as ``1 − (1 + t/warmup_gamma)^−warmup_power``
    (capped at ``decay``), t = step − update_after_step − 1; exclude_buffers: copy buffers instead
    of averaging them.

    ``get_decay(step)``: ``decay`` when step is None; 0 (a copy) while t ≤ 0; the warmed-up decay
    with use_warmup. ``update(model, step=None)`` applies one update; ``set(model)`` copies the
    model's state; calling the EMA runs ``module``.
    """

    def __init__(self, model, decay=0.9999, min_decay=0.0, update_after_step=0, use_warmup=False, warmup_gamma=1.0,
                 warmup_power=2 / 3, exclude_buffers=False, *, warmup=None):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"ModelEma: model must be a vitc.nn.Module, got {type(model).__name__}")
        self.decay = _real(decay, "decay")
        self.min_decay = _real(min_decay, "min_decay")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"ModelEma: decay must be in [0, 1], got {decay}")
        if isinstance(update_after_step, bool) or not isinstance(update_after_step, numbers.Integral):
            raise TypeError(f"ModelEma: update_after_step must be an int, got {type(update_after_step).__name__}")
        self.update_after_step = int(update_after_step)
        self.use_warmup = bool(use_warmup if warmup is None else warmup)
        self.warmup_gamma = _real(warmup_gamma, "warmup_gamma")
        self.warmup_power = _real(warmup_power, "warmup_power")
        if self.use_warmup and not self.warmup_gamma > 0:
            raise ValueError(f"ModelEma: warmup_gamma must be > 0, got {warmup_gamma}")
        self.exclude_buffers = bool(exclude_buffers)
        self.module = copy.deepcopy(model)
        self.module.eval()

    def get_decay(self, step=None):
        """The decay of the update at ``step`` (timm's ModelEmaV3.get_decay)."""
        if step is None:
            return self.decay
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"ModelEma: step must be an int or None, got {type(step).__name__}")
        t = max(0, int(step) - self.update_after_step - 1)
        if t <= 0:
            return 0.0
        if not self.use_warmup:
            return self.decay
        d = 1 - (1 + t / self.warmup_gamma) ** -self.warmup_power
        return max(min(d, self.decay), self.min_decay)

    def _pairs(self, model, what):
        if not isinstance(model, Module):
            raise TypeError(f"ModelEma.{what}: model must be a vitc.nn.Module, got {type(model).__name__}")
        own, other = self.module.state_dict(), model.state_dict()
        if list(own) != list(other):
            missing = [k for k in own if k not in other][:3]
            extra = [k for k in other if k not in own][:3]
            raise ValueError(f"ModelEma.{what}: the model's state_dict keys differ from the EMA's "
                             f"(missing {missing}, unexpected {extra})")
        for k, v in own.items():
            if tuple(v.shape) != tuple(other[k].shape):
                raise ValueError(f"ModelEma.{what}: {k} has shape {tuple(other[k].shape)}, the EMA's {tuple(v.shape)}")
        return own, other

    def update(self, model, step=None):
        """One EMA step towards ``model`` (same architecture as the copy)."""
        weight = 1.0 - self.get_decay(step)
        own, other = self._pairs(model, "update")
        params = {k for k, _ in self.module.named_parameters()} if self.exclude_buffers else None
        with no_grad():
            for k, ema_v in own.items():
                model_v = other[k]
                if ema_v.is_floating_point() and (params is None or k in params):
                    ema_v.lerp_(model_v.to(ema_v.dtype), weight)
                else:
                    ema_v.copy_(model_v)

    def set(self, model):
        """Copy the model's state into the EMA."""
        own, other = self._pairs(model, "set")
        with no_grad():
            for k, v in own.items():
                v.copy_(other[k])

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
