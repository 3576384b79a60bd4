"""Mixup and CutMix on a batch, with smoothed soft targets (timm/data/mixup.py, mode 'batch').

Zhang et al., "mixup: Beyond Empirical Risk Minimization" (arXiv 1710.09412); Yun et al., "CutMix"
(arXiv 1905.04899); semantics of timm's ``timm.data.Mixup`` (huggingface/pytorch-image-models,
data/mixup.py). The mixing runs in C (csrc/ops/augment.c), λ ~ Beta(α, α) from vitc's counter RNG.
"""
import numpy as np

from ._counters import CounterStream, core, integer, number, to_tensor

__all__ = ["Mixup"]


class Mixup:
    """``x_mixed, y_soft = mixup(x, y)``: Mixup or CutMix of sample b with sample B−1−b.

    With probability ``prob`` the batch (mode ``'batch'``) or each sample (``'elem'``) is mixed:
    CutMix with probability ``switch_prob`` when both alphas are > 0, else Mixup, λ ~ Beta(α, α).
    Mixup: x̃ = λx + (1−λ)x_flip. CutMix: a box of side ⌊H√(1−λ)⌋ × ⌊W√(1−λ)⌋ around a uniform
    centre, clipped to the image, comes from x_flip, and λ becomes 1 − box area / (H·W)
    (``correct_lam``). Targets: ỹ = λ·s(y) + (1−λ)·s(y_flip), s(y) the one-hot smoothed by ε
    (1 − ε + ε/K on the label, ε/K elsewhere); each row sums to one.

    x: float32 (B, C, H, W), y: int64 (B,), B even (DataLoader(drop_last=True) avoids an odd last
    batch); vitc Tensors or NumPy arrays (the result has
    the input's kind). ``seed``: see ``CounterStream`` (None = vitc's global RNG). As a
    ``DataLoader(transform=mixup)`` it is called ``mixup(x, y, rng)`` with the epoch's generator.
    ``last_params`` holds the draws of the last call: a (B, 10) array of applied, cutmix, λ drawn,
    λ used, cy, cx, y0, y1, x0, x1. Set ``mixup_enabled = False`` to pass batches through with
    smoothed one-hot targets (as timm's training loop does to switch mixing off). Defaults are
    DeiT's recipe (arXiv 2012.12877, Table 9); timm's are mixup_alpha=1.0, cutmix_alpha=0.0.
    """

    def __init__(self, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                 correct_lam=True, label_smoothing=0.1, num_classes=None, seed=None):
        self.mixup_alpha = number(mixup_alpha, "Mixup: mixup_alpha", 0.0)
        self.cutmix_alpha = number(cutmix_alpha, "Mixup: cutmix_alpha", 0.0)
        if self.mixup_alpha == 0.0 and self.cutmix_alpha == 0.0:
            raise ValueError("Mixup: one of mixup_alpha and cutmix_alpha must be > 0")
        if not np.isfinite(self.mixup_alpha) or not np.isfinite(self.cutmix_alpha):
            raise ValueError("Mixup: mixup_alpha and cutmix_alpha must be finite")
        self.mix_prob = number(prob, "Mixup: prob", 0.0, 1.0)
        self.switch_prob = number(switch_prob, "Mixup: switch_prob", 0.0, 1.0)
        if mode not in ("batch", "elem"):
            raise ValueError(f"Mixup: mode must be 'batch' or 'elem', got {mode!r}")
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.label_smoothing = number(label_smoothing, "Mixup: label_smoothing", 0.0, 1.0)
        if num_classes is None:
            raise TypeError("Mixup: num_classes is required (the width of the soft targets)")
        self.num_classes = integer(num_classes, "Mixup: num_classes", 1)
        self.mixup_enabled = True
        self.stream = CounterStream(seed)
        self.last_params = None

    def __call__(self, x, y, rng=None):
        xt, x_np = to_tensor(x, np.float32, "Mixup", "x")
        yt, _ = to_tensor(y, np.int64, "Mixup", "y")
        if xt.ndim != 4:
            raise ValueError(f"Mixup: x must have shape (B, C, H, W), got {tuple(xt.shape)}")
        aug = core()[1]
        b = xt.shape[0]
        seed, offset = self.stream.take(aug.mixup_counters(b, self.mode), rng)
        prob = self.mix_prob if self.mixup_enabled else 0.0
        xm, ys, params = aug.mixup(xt, yt, seed, offset, num_classes=self.num_classes, mixup_alpha=self.mixup_alpha,
                                   cutmix_alpha=self.cutmix_alpha, prob=prob, switch_prob=self.switch_prob,
                                   mode=self.mode, correct_lam=self.correct_lam,
                                   label_smoothing=self.label_smoothing)
        self.last_params = params.numpy()
        if x_np:
            return xm.numpy(), ys.numpy()
        return xm, ys

    def __repr__(self):
        return (f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.mix_prob}, "
                f"switch_prob={self.switch_prob}, mode={self.mode!r}, correct_lam={self.correct_lam}, "
                f"label_smoothing={self.label_smoothing}, num_classes={self.num_classes}, seed={self.stream.seed})")
