"""Loss modules (the math is in the loss op family, vitc.cross_entropy etc.)."""
import vitc as _v

from .._checks import expect_int, expect_number
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss", "KLDivLoss", "BCEWithLogitsLoss", "SigmoidCrossEntropyLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(r, who):
    if r not in _REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {_REDUCTIONS}, got {r!r}")
    return r


class CrossEntropyLoss(Module):
    """Cross-entropy of logits (N, C) against int64 class indices (N,) or soft targets (N, C).

    label_smoothing ε mixes the target with the uniform distribution: (1−ε)·y + ε/C (PyTorch's label_smoothing;
    DeiT uses ε = 0.1).
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        if weight is not None and not isinstance(weight, _v.Tensor):
            raise TypeError(f"CrossEntropyLoss: weight must be a vitc.Tensor of class weights or None, "
                            f"got {type(weight).__name__}")
        self.register_buffer("weight", weight)
        self.ignore_index = expect_int(ignore_index, "CrossEntropyLoss", "ignore_index")
        self.reduction = _reduction(reduction, "CrossEntropyLoss")
        self.label_smoothing = expect_number(label_smoothing, "CrossEntropyLoss", "label_smoothing", 0.0, 1.0)

    def forward(self, input, target):
        return _v.cross_entropy(input, target, weight=self.weight, reduction=self.reduction,
                                label_smoothing=self.label_smoothing, ignore_index=self.ignore_index)

    def extra_repr(self):
        s = f"reduction={self.reduction!r}"
        if self.label_smoothing:
            s += f", label_smoothing={self.label_smoothing}"
        return s


class MSELoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = _reduction(reduction, "MSELoss")

    def forward(self, input, target):
        return _v.mse_loss(input, target, reduction=self.reduction)


class KLDivLoss(Module):
    """KL(target ‖ exp(input)) with input log-probabilities (torch.nn.KLDivLoss semantics)."""

    def __init__(self, reduction="mean", log_target=False):
        super().__init__()
        if reduction not in _REDUCTIONS + ("batchmean",):
            raise ValueError(f"KLDivLoss: reduction must be 'mean', 'batchmean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self.log_target = bool(log_target)

    def forward(self, input, target):
        return _v.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class BCEWithLogitsLoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = _reduction(reduction, "BCEWithLogitsLoss")

    def forward(self, input, target):
        return _v.binary_cross_entropy_with_logits(input, target, reduction=self.reduction)


class SigmoidCrossEntropyLoss(Module):
    """Sigmoid cross-entropy of big_vision (utils.sigmoid_xent, the loss of Scaling ViT, arXiv 2106.04560):
    per-class binary cross-entropy summed over the classes and averaged over the batch, i.e.
    BCEWithLogitsLoss(reduction='sum') / N rather than its 'mean' (which also divides by K).
    target: float32 (N, K) multi-label or soft labels, or int64 class indices (N,) taken as one-hot."""

    def forward(self, input, target):
        return _v.sigmoid_cross_entropy(input, target)
