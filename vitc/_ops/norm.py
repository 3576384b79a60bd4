"""Normalisation: layer_norm, batch_norm and token_batch_norm (csrc/ops/norm.c).

Names, signatures and semantics of torch.nn.functional. batch_norm and token_batch_norm update
running_mean / running_var in place when training (float32 contiguous (C,) buffers without grad).
"""
import numbers

__all__ = ['layer_norm', 'batch_norm', 'token_batch_norm']

from .._checks import expect_number, expect_tensor
from .._tensor import _call


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last len(normalized_shape) dims: γ·(x−μ)/√(σ²+ε) + β (biased σ²)."""
    expect_tensor(input, "layer_norm")
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (int(normalized_shape),)
    if not isinstance(normalized_shape, (tuple, list)) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in normalized_shape):
        raise TypeError(f"layer_norm: normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}")
    if len(normalized_shape) == 0:
        raise ValueError("layer_norm: normalized_shape must not be empty")
    ns = tuple(int(s) for s in normalized_shape)
    expect_tensor(weight, "layer_norm", "weight", optional=True)
    expect_tensor(bias, "layer_norm", "bias", optional=True)
    eps = expect_number(eps, "layer_norm", "eps")
    return _call("layer_norm", (input, weight, bias), normalized_shape=ns, eps=eps)


def _bn_call(op, input, running_mean, running_var, weight, bias, training, momentum, eps):
    expect_tensor(input, op)
    for t, what in ((running_mean, "running_mean"), (running_var, "running_var"), (weight, "weight"),
                    (bias, "bias")):
        expect_tensor(t, op, what, optional=True)
    momentum = expect_number(momentum, op, "momentum")
    eps = expect_number(eps, op, "eps")
    return _call(op, (input, running_mean, running_var, weight, bias), training=int(bool(training)), momentum=momentum,
                 eps=eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """BatchNorm over dim 1 of (N, C, ...) (torch.nn.functional.batch_norm).

    training: batch statistics (biased variance) normalise, and running_mean/running_var (if not None)
    are updated in place: r ← (1−momentum)·r + momentum·stat, with the unbiased variance. Eval: the
    running statistics normalise.
    """
    return _bn_call("batch_norm", input, running_mean, running_var, weight, bias, training, momentum, eps)


def token_batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                     eps=1e-5):
    """BatchNorm1d(F) over the features of x (B, T, F): the same as
    batch_norm(x.transpose(1, 2), ...).transpose(1, 2), statistics per feature over the B·T tokens,
    computed without materialising the transposes (the per-feature token BatchNorm of
    anindyahepth/BatchNorm_in_Transformers_CV:model/vitbn.py)."""
    return _bn_call("token_batch_norm", input, running_mean, running_var, weight, bias, training, momentum, eps)
