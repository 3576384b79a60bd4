"""Training losses beyond torch.nn's: DeiT's classification and distillation losses
(arXiv 2012.12877 eqs. 2 and 3; facebookresearch/deit losses.py).

H(z, y) = −Σ_k y_k·log softmax(z)_k, mean over the batch.

- ``LabelSmoothingCrossEntropy(ε)``: int labels, y = (1−ε)·onehot + ε/K on every class (timm, the code
  that ran for DeiT; not the paper's ε/(K−1) on the other classes).
- ``SoftTargetCrossEntropy()``: float targets (B, K), e.g. Mixup/CutMix's mixed labels.
- ``soft_distillation(z_s, z_t, τ)`` = τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)), summed and divided by
  B·K ('element_mean', facebookresearch/deit losses.py) or by B ('batchmean', lucidrains/vit-pytorch).
- ``hard_distillation(z_s, z_t)`` = CE(z_s, argmax z_t), the teacher's label not smoothed.
- ``DistillationLoss(base, teacher, type, alpha, tau)``: (1−α)·base(z_cls, y) + α·distill(z_dist, z_t).

Everything is composed from the C ops (log_softmax, kl_div, cross_entropy, argmax).
"""
import contextlib
import numbers
import sys

import numpy as np

import vitc as _v

from .nn.module import Module

__all__ = ["LabelSmoothingCrossEntropy", "SoftTargetCrossEntropy", "soft_distillation", "hard_distillation",
           "DistillationLoss", "DISTILLATION_TYPES", "KL_REDUCTIONS"]

DISTILLATION_TYPES = ("none", "soft", "hard")
KL_REDUCTIONS = ("element_mean", "batchmean")


def _logits(z, who, what="input"):
    if not isinstance(z, _v.Tensor):
        raise TypeError(f"{who}: {what} must be a vitc.Tensor, got {type(z).__name__}")
    if z.ndim != 2 or z.dtype is not _v.float32:
        raise ValueError(f"{who}: {what} must be float32 logits of shape (B, K), got {z.dtype!r} {tuple(z.shape)}")
    return z


def _same_shape(z_s, z_t, who):
    if tuple(z_s.shape) != tuple(z_t.shape):
        raise ValueError(f"{who}: teacher logits have shape {tuple(z_t.shape)} but the student's have "
                         f"{tuple(z_s.shape)} (batch and number of classes must agree)")


def _tau(tau, who):
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"{who}: tau must be a float, got {type(tau).__name__}")
    if not (tau > 0 and np.isfinite(tau)):
        raise ValueError(f"{who}: tau (the temperature) must be > 0, got {tau}")
    return float(tau)


class LabelSmoothingCrossEntropy(Module):
    """Cross-entropy against int64 labels (B,) smoothed to (1−ε)·onehot + ε/K (timm's
    loss/cross_entropy.py LabelSmoothingCrossEntropy): forward(input (B, K) float32 logits, target) ->
    the mean over the batch, a 0-d Tensor. smoothing ε defaults to 0.1 (DeiT's recipe)."""

    def __init__(self, smoothing=0.1):
        super().__init__()
        if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"LabelSmoothingCrossEntropy: smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = float(smoothing)

    def forward(self, input, target):
        who = "LabelSmoothingCrossEntropy"
        _logits(input, who)
        if not isinstance(target, _v.Tensor) or target.dtype is not _v.int64:
            raise TypeError(f"{who}: target must be an int64 vitc.Tensor of class indices (for mixed float targets "
                            f"use SoftTargetCrossEntropy), got {getattr(target, 'dtype', type(target).__name__)!r}")
        return _v.cross_entropy(input, target, label_smoothing=self.smoothing)

    def extra_repr(self):
        return f"smoothing={self.smoothing}"


class SoftTargetCrossEntropy(Module):
    """−Σ_k y_k log softmax(z)_k, mean over the batch, for logits z and float32 targets y, both (B, K)
    (timm's loss/cross_entropy.py SoftTargetCrossEntropy; e.g. Mixup/CutMix's mixed labels)."""

    def forward(self, input, target):
        who = "SoftTargetCrossEntropy"
        _logits(input, who)
        if not isinstance(target, _v.Tensor) or target.dtype is not _v.float32:
            raise TypeError(f"{who}: target must be float32 class probabilities, got "
                            f"{getattr(target, 'dtype', type(target).__name__)!r}")
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(f"{who}: target shape {tuple(target.shape)} != input shape {tuple(input.shape)}")
        return _v.cross_entropy(input, target)


def soft_distillation(student_logits, teacher_logits, tau=3.0, reduction="element_mean"):
    """τ²·KL(p_t ‖ p_s), p = softmax(z/τ), student and teacher logits both (B, K); a 0-d Tensor:
    Σ p_t (log p_t − log p_s) over batch and classes, ÷(B·K)
    ('element_mean', DeiT's code) or ÷B ('batchmean'). Gradient flows to the student only."""
    who = "soft_distillation"
    _logits(student_logits, who, "student_logits")
    _logits(teacher_logits, who, "teacher_logits")
    _same_shape(student_logits, teacher_logits, who)
    tau = _tau(tau, who)
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {KL_REDUCTIONS}, got {reduction!r}")
    b, k = student_logits.shape
    log_ps = _v.log_softmax(student_logits * (1.0 / tau), 1)
    log_pt = _v.log_softmax(teacher_logits.detach() * (1.0 / tau), 1)
    kl = _v.kl_div(log_ps, log_pt, reduction="sum", log_target=True)
    count = b * k if reduction == "element_mean" else b
    # an empty batch is a mean over nothing: NaN, as kl_div's own means and PyTorch's tensor division give
    return kl * (tau * tau / count if count else float("nan"))


def hard_distillation(student_logits, teacher_logits):
    """Cross-entropy of the student's logits (B, K) against the argmax of the teacher's (B, K) (first index
    on ties), no smoothing (DeiT's hard distillation, arXiv 2012.12877 eq. 3); a 0-d Tensor."""
    who = "hard_distillation"
    _logits(student_logits, who, "student_logits")
    _logits(teacher_logits, who, "teacher_logits")
    _same_shape(student_logits, teacher_logits, who)
    return _v.cross_entropy(student_logits, _v.argmax(teacher_logits.detach(), 1))


def _torch_module(obj):
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(obj, torch.nn.Module) else None


class DistillationLoss(Module):
    """DeiT's loss (Touvron et al., arXiv 2012.12877, eqs. 2 and 3; facebookresearch/deit losses.py), called as
    ``loss(inputs, outputs, labels)``:

    - outputs: the student's (logits_cls, logits_dist) (a DeiT in training mode), or one logits
      tensor (a model without distillation token distils through its class head);
    - base_criterion(logits_cls, labels): e.g. LabelSmoothingCrossEntropy or, with mixed labels,
      SoftTargetCrossEntropy;
    - teacher: a vitc Module, a torch.nn.Module (fed ``inputs`` through NumPy) or any callable
      ``teacher(inputs) -> logits`` (vitc Tensor, NumPy array or torch tensor). It runs under no_grad,
      in eval mode when it has ``.eval()``, on the same (augmented, mixed) inputs as the student;
    - distillation_type 'none' (base loss only), 'soft' (τ²·KL, kl_reduction) or 'hard' (teacher argmax);
    - alpha: the distillation weight λ, in [0, 1]; None = the paper's values, 0.1 for 'soft' (§6) and
      0.5 for 'hard' (eq. 3's ½·CE + ½·CE). tau: the soft temperature, > 0 (paper 3.0).
    """

    def __init__(self, base_criterion, teacher=None, distillation_type="none", alpha=None, tau=3.0,
                 kl_reduction="element_mean"):
        super().__init__()
        who = "DistillationLoss"
        if not callable(base_criterion):
            raise TypeError(f"{who}: base_criterion must be callable, got {type(base_criterion).__name__}")
        if distillation_type not in DISTILLATION_TYPES:
            raise ValueError(f"{who}: distillation_type must be one of {DISTILLATION_TYPES}, got {distillation_type!r}")
        if distillation_type != "none" and teacher is None:
            raise ValueError(f"{who}: distillation_type={distillation_type!r} needs a teacher")
        if teacher is not None and not callable(teacher):
            raise TypeError(f"{who}: teacher must be a model or a callable returning logits, "
                            f"got {type(teacher).__name__}")
        if alpha is None:
            alpha = {"none": 0.0, "soft": 0.1, "hard": 0.5}[distillation_type]
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"{who}: alpha must be a float, got {type(alpha).__name__}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{who}: alpha (the distillation weight λ) must be in [0, 1], got {alpha}")
        if kl_reduction not in KL_REDUCTIONS:
            raise ValueError(f"{who}: kl_reduction must be one of {KL_REDUCTIONS}, got {kl_reduction!r}")
        self.base_criterion = base_criterion
        # kept out of the Module tree: the teacher's parameters are not the student loss's
        object.__setattr__(self, "teacher", teacher)
        self.distillation_type = distillation_type
        self.alpha, self.tau, self.kl_reduction = float(alpha), _tau(tau, who), kl_reduction

    def teacher_logits(self, inputs):
        """The teacher's logits for ``inputs`` as a float32 vitc Tensor (B, K), without gradient."""
        t = self.teacher
        if callable(getattr(t, "eval", None)):
            t.eval()
        torch = _torch_module(t)
        if torch is not None:
            with torch.no_grad():
                z = t(torch.from_numpy(np.ascontiguousarray(inputs.detach().numpy())))
        else:
            with _v.no_grad():
                z = t(inputs)
        if isinstance(z, _v.Tensor):
            return z.detach()
        if hasattr(z, "detach"):  # a torch tensor from a plain callable
            z = z.detach()
        if hasattr(z, "cpu"):
            z = z.cpu()
        try:
            arr = np.ascontiguousarray(np.asarray(z), dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"DistillationLoss: the teacher returned a {type(z).__name__}, not logits") from e
        return _v.from_numpy(arr)

    def forward(self, inputs, outputs, labels):
        who = "DistillationLoss"
        if isinstance(outputs, (tuple, list)):
            if len(outputs) != 2:
                raise ValueError(f"{who}: outputs must be logits or (logits_cls, logits_dist), "
                                 f"got {len(outputs)} items")
            z_cls, z_dist = outputs
        else:
            z_cls = z_dist = outputs
        _logits(z_cls, who, "logits_cls")
        _logits(z_dist, who, "logits_dist")
        base = self.base_criterion(z_cls, labels)
        if self.distillation_type == "none":
            return base
        if not isinstance(inputs, _v.Tensor):
            raise TypeError(f"{who}: inputs must be the student's input vitc.Tensor, got {type(inputs).__name__}")
        z_t = self.teacher_logits(inputs)
        if z_t.ndim != 2 or tuple(z_t.shape) != tuple(z_dist.shape):
            raise ValueError(f"{who}: the teacher's output has shape {tuple(z_t.shape)} but the student's logits have "
                             f"{tuple(z_dist.shape)}: teacher and student must have the same batch and number of "
                             f"classes")
        if self.distillation_type == "soft":
            dist = soft_distillation(z_dist, z_t, self.tau, self.kl_reduction)
        else:
            dist = hard_distillation(z_dist, z_t)
        return base * (1.0 - self.alpha) + dist * self.alpha

    def extra_repr(self):
        return (f"distillation_type={self.distillation_type!r}, alpha={self.alpha}, tau={self.tau}, "
                f"kl_reduction={self.kl_reduction!r}")


__all__.append("TokenLabelingLoss")


class TokenLabelingLoss(Module):
    """Token labeling loss (Jiang et al., arXiv 2104.10858 eq. 4; zihangJiang/TokenLabeling
    tlt/loss/cross_entropy.py `TokenLabelCrossEntropy`):

        L = cls_weight·H(z_cls, ŷ_cls) + β·(1/(B·N))·Σ_b Σ_i H(z_i^b, y_i^b)

    forward(output, target, token_target=None): output is a model's training TokenLabelingOutput
    (cls_logits (B, K), token_logits (B, N, K), lam); target the class label, float32 (B, K) or int64 (B,)
    (made one-hot, smoothed by ``smoothing`` ε/K on every class); token_target float32 (B, N, K), or None:
    then every token takes the un-mixed class label. With MixToken (lam < 1) the class target becomes
    ŷ = λ·y_b + (1−λ)·y_{B−1−b}; the token logits come back already aligned with their own images.
    β (beta) 0.5 is the paper's; the official code and the released checkpoints use 1.0.

    With a distillation token (models.DeiT with aux_head=True) output also carries dist_logits; the
    class term is then split between the two heads as DeiT's hard distillation splits it (arXiv
    2012.12877 eq. 3 with weights ½, ½): ½·H(z_cls, ŷ) + ½·H(z_dist, ŷ_dist), ŷ_dist from
    ``dist_target`` (same forms as target, e.g. the teacher's pooled label when target is the ground
    truth), else ŷ; MixToken mixes ŷ_dist like ŷ.
    """

    def __init__(self, beta=0.5, cls_weight=1.0, smoothing=0.0):
        super().__init__()
        who = "TokenLabelingLoss"
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not (beta >= 0 and np.isfinite(beta)):
            raise ValueError(f"{who}: beta (the token loss weight) must be a finite number >= 0, got {beta!r}")
        if isinstance(cls_weight, bool) or not isinstance(cls_weight, numbers.Real) or not cls_weight >= 0:
            raise ValueError(f"{who}: cls_weight must be a number >= 0, got {cls_weight!r}")
        if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"{who}: smoothing must be in [0, 1), got {smoothing!r}")
        self.beta, self.cls_weight, self.smoothing = float(beta), float(cls_weight), float(smoothing)

    def _class_target(self, target, b, k):
        who = "TokenLabelingLoss"
        if not isinstance(target, _v.Tensor):
            raise TypeError(f"{who}: target must be a vitc.Tensor, got {type(target).__name__}")
        if target.dtype is _v.int64:
            if tuple(target.shape) != (b,):
                raise ValueError(f"{who}: int64 target must have shape ({b},), got {tuple(target.shape)}")
            y = np.full((b, k), self.smoothing / k, np.float32)
            labels = target.numpy()
            if labels.min() < 0 or labels.max() >= k:
                raise ValueError(f"{who}: class labels must be in [0, {k}), got [{labels.min()}, {labels.max()}]")
            y[np.arange(b), labels] += np.float32(1.0 - self.smoothing)
            return _v.from_numpy(y)
        if target.dtype is not _v.float32 or tuple(target.shape) != (b, k):
            raise ValueError(f"{who}: target must be float32 ({b}, {k}) or int64 ({b},), got {target.dtype!r} "
                             f"{tuple(target.shape)}")
        return target.detach()

    def forward(self, output, target, token_target=None, dist_target=None):
        who = "TokenLabelingLoss"
        if not (isinstance(output, tuple) and len(output) in (3, 4)):
            raise TypeError(f"{who}: output must be the (cls_logits, token_logits, lam[, dist_logits]) a model with "
                            f"aux_head=True returns in training, got {type(output).__name__}")
        z_cls, z_tok, lam = output[:3]
        z_dist = output[3] if len(output) == 4 else None
        if dist_target is not None and z_dist is None:
            raise ValueError(f"{who}: dist_target was given but the output has no dist_logits (no distillation token)")
        _logits(z_cls, who, "cls_logits")
        b, k = z_cls.shape
        if not isinstance(z_tok, _v.Tensor) or z_tok.ndim != 3 or z_tok.shape[0] != b or z_tok.shape[2] != k:
            raise ValueError(f"{who}: token_logits must be (B={b}, N, K={k}), got "
                             f"{tuple(getattr(z_tok, 'shape', ()))}")
        n = z_tok.shape[1]
        y_cls = self._class_target(target, b, k)
        if token_target is None:
            y_tok = _v.unsqueeze(y_cls, 1).expand(b, n, k)
        else:
            if not isinstance(token_target, _v.Tensor) or token_target.dtype is not _v.float32 or \
                    tuple(token_target.shape) != (b, n, k):
                raise ValueError(f"{who}: token_target must be float32 ({b}, {n}, {k}) (one soft label per token), "
                                 f"got {getattr(token_target, 'dtype', None)!r} "
                                 f"{tuple(getattr(token_target, 'shape', ()))}")
            y_tok = token_target.detach()
        lam = float(lam)

        def mixed(y):  # MixToken's class target (reference: lam·y + (1−lam)·y.flip(0))
            return y * lam + _v.flip(y, 0) * (1.0 - lam) if lam < 1.0 else y
        if z_dist is None:
            loss = _v.cross_entropy(z_cls, mixed(y_cls)) * self.cls_weight
        else:
            _logits(z_dist, who, "dist_logits")
            if tuple(z_dist.shape) != (b, k):
                raise ValueError(f"{who}: dist_logits must be ({b}, {k}) like cls_logits, got {tuple(z_dist.shape)}")
            y_dist = y_cls if dist_target is None else self._class_target(dist_target, b, k)
            loss = (_v.cross_entropy(z_cls, mixed(y_cls)) + _v.cross_entropy(z_dist, mixed(y_dist))) * \
                (0.5 * self.cls_weight)
        if self.beta > 0:
            loss = loss + _v.cross_entropy(z_tok.reshape(b * n, k), y_tok.reshape(b * n, k)) * self.beta
        return loss

    def extra_repr(self):
        return f"beta={self.beta}, cls_weight={self.cls_weight}, smoothing={self.smoothing}"


# ---- sigmoid cross-entropy (Scaling ViT, arXiv 2106.04560; big_vision utils.py sigmoid_xent) ----------------
# One fused C op (csrc/ops/loss.c); the module form is vitc.nn.SigmoidCrossEntropyLoss.
from ._ops.loss import sigmoid_cross_entropy  # noqa: E402

__all__ += ["sigmoid_cross_entropy"]


# the losses against over-smoothing (Gong et al. 2021) live in their own module
from .oversmoothing import cosine_penalty, patch_contrastive_loss, patch_mixing_loss, region_mixing_loss  # noqa: E402,F401

__all__ += ["cosine_penalty", "patch_contrastive_loss", "patch_mixing_loss", "region_mixing_loss"]
