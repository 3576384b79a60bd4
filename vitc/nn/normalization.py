"""LayerNorm, BatchNorm1d/2d (torch.nn semantics) and TokenBatchNorm (the ViT+BatchNorm article's
Batch_Norm, anindyahepth/BatchNorm_in_Transformers_CV; docs/choices.md)."""
import numbers

import numpy as np

import vitc as _v

from . import init
from .._checks import expect_int, expect_number
from .module import Module
from .parameter import Parameter

__all__ = ["LayerNorm", "BatchNorm1d", "BatchNorm2d", "TokenBatchNorm"]


class LayerNorm(Module):
    """Normalise over the last len(normalized_shape) dims (biased variance), then γ⊙x̂ + β."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise TypeError(f"LayerNorm: normalized_shape must be an int or a non-empty tuple of ints, "
                            f"got {normalized_shape!r}")
        self.normalized_shape = tuple(expect_int(s, "LayerNorm", "normalized_shape", 1) for s in normalized_shape)
        self.eps = expect_number(eps, "LayerNorm", "eps", lo=0.0)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(_v.ones(*self.normalized_shape))
            if bias:
                self.bias = Parameter(_v.zeros(*self.normalized_shape))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        k = len(self.normalized_shape)
        if input.ndim < k or tuple(input.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape}: input of shape {tuple(input.shape)} does not end "
                             f"with {self.normalized_shape}")
        return _v.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class _NormBase(Module):
    """Per-feature affine parameters and running statistics shared by the batch norms."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        who = type(self).__name__
        self.num_features = expect_int(num_features, who, "num_features", 1)
        self.eps = expect_number(eps, who, "eps", lo=0.0)
        self.momentum = None if momentum is None else expect_number(momentum, who, "momentum", lo=0.0, hi=1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(_v.ones(num_features))
            self.bias = Parameter(_v.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", _v.zeros(num_features))
            self.register_buffer("running_var", _v.ones(num_features))
            self.register_buffer("num_batches_tracked", _v.zeros((), dtype=_v.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            with _v.no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _factor(self):
        """(use batch statistics?, running-average factor) with torch's rules."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            nbt = self.num_batches_tracked.numpy()
            np.add(nbt, 1, out=nbt)  # in place: the buffer is shared with state_dict()
            factor = 1.0 / float(nbt) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        return use_batch, factor

    def _stats(self):
        # running stats are updated only when they exist and are tracked
        track = not self.training or self.track_running_stats
        return (self.running_mean, self.running_var) if track else (None, None)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    _ndims = ()

    def forward(self, input):
        if input.ndim not in self._ndims:
            want = " or ".join(f"{d}D" for d in self._ndims)
            raise ValueError(f"{type(self).__name__}: expected {want} input (got {input.ndim}D input)")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): input of shape {tuple(input.shape)} has "
                             f"{input.shape[1]} channels in dim 1")
        use_batch, factor = self._factor()
        rm, rv = self._stats()
        return _v.batch_norm(input, rm, rv, self.weight, self.bias, use_batch, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch norm over dim 1 of (N, C) or (N, C, L) inputs; running stats for eval."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over the channels of (N, C, H, W) inputs."""
    _ndims = (4,)


class TokenBatchNorm(_NormBase):
    """The article's Batch_Norm (anindyahepth/BatchNorm_in_Transformers_CV, model/vitbn.py):
    x (B, T, F) normalised per feature F over all B·T tokens.

    Equals BatchNorm1d(F) applied to x.transpose(1, 2), without the two transposes.
    """

    def forward(self, input):
        if input.ndim != 3 or input.shape[2] != self.num_features:
            raise ValueError(f"TokenBatchNorm({self.num_features}): expected input of shape (B, T, "
                             f"{self.num_features}), got {tuple(input.shape)}")
        if self.training and input.shape[0] * input.shape[1] == 1:
            # checked before _factor() so a rejected call leaves num_batches_tracked untouched
            raise ValueError(f"TokenBatchNorm({self.num_features}): expected more than 1 value per channel when "
                             f"training, got input of shape {tuple(input.shape)}")
        use_batch, factor = self._factor()
        rm, rv = self._stats()
        return _v.token_batch_norm(input, rm, rv, self.weight, self.bias, use_batch, factor, self.eps)
