"""Activations (csrc/ops/activation.c): tanh, sigmoid, relu, leaky_relu, silu, gelu, softmax,
log_softmax, dropout and drop_path, with PyTorch's (torch / torch.nn.functional / timm) names,
signatures and semantics. `inplace=` is accepted for signature compatibility; the result is
always a new tensor (use the return value)."""
import numbers

__all__ = ['tanh', 'sigmoid', 'relu', 'leaky_relu', 'silu', 'gelu', 'softmax', 'log_softmax', 'dropout',
           'drop_path']

from .._tensor import Tensor, _call, register, float32, as_dtype


def _check(input, who):
    if not isinstance(input, Tensor):
        raise TypeError(f"{who}: expected a Tensor, got {type(input).__name__}")


def tanh(input):
    _check(input, "tanh")
    return _call("tanh", (input,))


def sigmoid(input):
    _check(input, "sigmoid")
    return _call("sigmoid", (input,))


def relu(input, inplace=False):
    _check(input, "relu")
    return _call("relu", (input,))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    _check(input, "leaky_relu")
    if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {type(negative_slope).__name__}")
    return _call("leaky_relu", (input,), negative_slope=float(negative_slope))


def silu(input, inplace=False):
    _check(input, "silu")
    return _call("silu", (input,))


_GELU = {"none": 0, "tanh": 1}


def gelu(input, approximate="none"):
    """x·Φ(x) (approximate='none', exact erf form) or its tanh approximation ('tanh'), as torch.nn.functional.gelu."""
    _check(input, "gelu")
    if approximate not in _GELU:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _call("gelu", (input,), approximate=_GELU[approximate])


def _dim(dim, who):
    if dim is None:
        raise TypeError(f"{who}: dim must be given (implicit dim choice is deprecated in PyTorch)")
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{who}: dim must be an int, got {dim!r}")
    return int(dim)


def _softmax(op, input, dim, dtype):
    _check(input, op)
    if dtype is not None and as_dtype(dtype) is not float32:
        raise TypeError(f"{op}: only dtype float32 is supported, got {dtype!r}")
    return _call(op, (input,), dim=_dim(dim, op))


def softmax(input, dim=None, dtype=None):
    """exp(x)/Σexp(x) over dim (max-subtracted)."""
    return _softmax("softmax", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None):
    """x − log Σexp(x) over dim (max-subtracted)."""
    return _softmax("log_softmax", input, dim, dtype)


def _prob(p, who):
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"{who}: p must be a number, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who} probability has to be between 0 and 1, but got {p}")
    return p


def dropout(input, p=0.5, training=True, inplace=False):
    """Inverted dropout: each element kept with probability 1−p and scaled by 1/(1−p); p = 1 gives
    zeros. The mask comes from the counter RNG (vitc.manual_seed). With training=False or p=0 the
    input itself is returned, as in PyTorch."""
    _check(input, "dropout")
    p = _prob(p, "dropout")
    if not training or p == 0.0:
        return input
    return _call("dropout", (input,), p=p)


def drop_path(input, p=0.0, training=False, scale_by_keep=True):
    """Stochastic depth (timm's drop_path, huggingface/pytorch-image-models:timm/layers/drop.py): each
    sample along dim 0 is zeroed with probability p, kept ones scaled by 1/(1−p) (scale_by_keep).
    Identity (the input itself) when not training or p = 0."""
    _check(input, "drop_path")
    p = _prob(p, "drop_path")
    if not training or p == 0.0:
        return input
    return _call("drop_path", (input,), scale_by_keep=int(bool(scale_by_keep)), p=p)


register("tanh", tanh)
register("sigmoid", sigmoid)
register("relu", relu)
register("softmax", softmax)
register("log_softmax", log_softmax)
