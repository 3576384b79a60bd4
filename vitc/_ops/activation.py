"""Activations (csrc/ops/activation.c): tanh, sigmoid, relu, leaky_relu, silu, gelu, softmax,
log_softmax, dropout and drop_path, with PyTorch's (torch / torch.nn.functional / timm) names,
signatures and semantics. `inplace=` is accepted for signature compatibility; the result is
always a new tensor (use the return value)."""
import numbers

__all__ = ['tanh', 'sigmoid', 'relu', 'leaky_relu', 'silu', 'gelu', 'softmax', 'log_softmax', 'dropout',
           'drop_path']

from .._checks import expect_probability, expect_tensor
from .._tensor import _call, register, float32, as_dtype


def tanh(input):
    expect_tensor(input, "tanh")
    return _call("tanh", (input,))


def sigmoid(input):
    expect_tensor(input, "sigmoid")
    return _call("sigmoid", (input,))


def relu(input, inplace=False):
    expect_tensor(input, "relu")
    return _call("relu", (input,))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    expect_tensor(input, "leaky_relu")
    if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {type(negative_slope).__name__}")
    return _call("leaky_relu", (input,), None, (float(negative_slope),))


def silu(input, inplace=False):
    expect_tensor(input, "silu")
    return _call("silu", (input,))


_GELU = {"none": 0, "tanh": 1}


def gelu(input, approximate="none"):
    """x·Φ(x) (approximate='none', exact erf form) or its tanh approximation ('tanh'), SPEC §1.5."""
    expect_tensor(input, "gelu")
    if approximate not in _GELU:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _call("gelu", (input,), (_GELU[approximate],))


def _dim(dim, who):
    if dim is None:
        raise TypeError(f"{who}: dim must be given (implicit dim choice is deprecated in PyTorch)")
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{who}: dim must be an int, got {dim!r}")
    return int(dim)


def _softmax(op, input, dim, dtype):
    expect_tensor(input, op)
    if dtype is not None and as_dtype(dtype) is not float32:
        raise TypeError(f"{op}: only dtype float32 is supported, got {dtype!r}")
    return _call(op, (input,), (_dim(dim, op),))


def softmax(input, dim=None, dtype=None):
    """exp(x)/Σexp(x) over dim (max-subtracted)."""
    return _softmax("softmax", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None):
    """x − log Σexp(x) over dim (max-subtracted)."""
    return _softmax("log_softmax", input, dim, dtype)


def dropout(input, p=0.5, training=True, inplace=False):
    """Inverted dropout: each element kept with probability 1−p and scaled by 1/(1−p); p = 1 gives
    zeros. The mask comes from the counter RNG (vitc.manual_seed). With training=False or p=0 the
    input itself is returned, as in PyTorch."""
    expect_tensor(input, "dropout")
    p = expect_probability(p, "dropout")
    if not training or p == 0.0:
        return input
    return _call("dropout", (input,), None, (p,))


def drop_path(input, p=0.0, training=False, scale_by_keep=True):
    """Stochastic depth (timm's drop_path, SPEC §3.7): each sample along dim 0 is zeroed with
    probability p, kept ones scaled by 1/(1−p) (scale_by_keep). Identity (the input itself) when
    not training or p = 0."""
    expect_tensor(input, "drop_path")
    p = expect_probability(p, "drop_path")
    if not training or p == 0.0:
        return input
    return _call("drop_path", (input,), (int(bool(scale_by_keep)),), (p,))


register("tanh", tanh)
register("sigmoid", sigmoid)
register("relu", relu)
register("softmax", softmax)
register("log_softmax", log_softmax)
