"""Parameter initialisation (torch.nn.init names and formulas), drawing from vitc's counter RNG.

Every function fills its tensor in place (under no_grad) and returns it. Draws come from
``vitc.rand`` / ``vitc.randn``, so ``vitc.manual_seed`` makes initialisation reproducible.
"""
import math
import numbers

import numpy as np

from .._checks import expect_tensor
from .._tensor import from_numpy, no_grad, rand, randn

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]


def _expect_float_tensor(tensor, who):
    expect_tensor(tensor, who, "tensor")
    if not tensor.is_floating_point():
        raise TypeError(f"{who}: expected a float32 tensor, got {tensor.dtype!r}")


def _number(v, name, who):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{who}: {name} must be a number, got {type(v).__name__}")
    return float(v)


def _fill(tensor, arr):
    with no_grad():
        tensor.copy_(from_numpy(np.require(arr, dtype=np.float32, requirements="C")))
    return tensor


def calculate_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _number(param, "param", "calculate_gain")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fans(tensor, who):
    if tensor.ndim < 2:
        raise ValueError(f"{who}: fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions (shape {tuple(tensor.shape)})")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    _expect_float_tensor(tensor, "uniform_")
    a, b = _number(a, "a", "uniform_"), _number(b, "b", "uniform_")
    if a > b:
        raise ValueError(f"uniform_: expects a <= b, got a={a}, b={b}")
    u = rand(*tensor.shape).numpy()
    return _fill(tensor, a + (b - a) * u.astype(np.float64))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std²)."""
    _expect_float_tensor(tensor, "normal_")
    mean, std = _number(mean, "mean", "normal_"), _number(std, "std", "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    z = randn(*tensor.shape).numpy()
    return _fill(tensor, mean + std * z.astype(np.float64))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill with N(mean, std²) restricted to [a, b] (absolute bounds, as torch and timm).

    Drawn by rejection: out-of-range values are redrawn. (With timm's std 0.02 and bounds ±2 no
    value is ever out of range.)
    """
    _expect_float_tensor(tensor, "trunc_normal_")
    mean, std = _number(mean, "mean", "trunc_normal_"), _number(std, "std", "trunc_normal_")
    a, b = _number(a, "a", "trunc_normal_"), _number(b, "b", "trunc_normal_")
    if std < 0:
        raise ValueError(f"trunc_normal_: std must be >= 0, got {std}")
    if not a < b:
        raise ValueError(f"trunc_normal_: expects a < b, got a={a}, b={b}")
    n = tensor.numel()
    if std == 0:
        if not a <= mean <= b:
            raise ValueError(f"trunc_normal_: mean {mean} outside [{a}, {b}] with std 0")
        return _fill(tensor, np.full(tensor.shape, mean))
    # probability mass inside [a, b]; refuse bounds so far in a tail that rejection cannot work
    mass = 0.5 * (math.erf((b - mean) / (std * math.sqrt(2))) - math.erf((a - mean) / (std * math.sqrt(2))))
    if mass < 1e-3:
        raise ValueError(f"trunc_normal_: [{a}, {b}] holds only {mass:.2g} of N({mean}, {std}²); "
                         "bounds too far in the tail")
    out = mean + std * randn(n).numpy().astype(np.float64)
    bad = (out < a) | (out > b)
    while bad.any():
        k = int(bad.sum())
        out[bad] = mean + std * randn(k).numpy().astype(np.float64)
        bad = (out < a) | (out > b)
    return _fill(tensor, out.reshape(tensor.shape))


def constant_(tensor, val):
    _expect_float_tensor(tensor, "constant_")
    with no_grad():
        tensor.fill_(_number(val, "val", "constant_"))
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """U(±gain·√(6/(fan_in+fan_out))) (Glorot & Bengio 2010)."""
    _expect_float_tensor(tensor, "xavier_uniform_")
    fan_in, fan_out = _fans(tensor, "xavier_uniform_")
    bound = _number(gain, "gain", "xavier_uniform_") * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    _expect_float_tensor(tensor, "xavier_normal_")
    fan_in, fan_out = _fans(tensor, "xavier_normal_")
    return normal_(tensor, 0.0, _number(gain, "gain", "xavier_normal_") * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity, who):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{who}: mode {mode!r} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _fans(tensor, who)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"{who}: cannot initialise an empty tensor (fan is 0)")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(±gain·√(3/fan)) (He et al. 2015); a=√5 gives nn.Linear's default U(±1/√fan_in)."""
    _expect_float_tensor(tensor, "kaiming_uniform_")
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    _expect_float_tensor(tensor, "kaiming_normal_")
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_"))
