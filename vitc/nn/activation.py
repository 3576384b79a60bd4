"""Activation modules: GELU, ReLU, Tanh, Sigmoid, Softmax, LogSoftmax."""
import vitc as _v

from .._checks import expect_int
from .module import Module

__all__ = ["GELU", "ReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax"]


class GELU(Module):
    """x·Φ(x) (approximate='none', torch's default) or the tanh form (approximate='tanh')."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return _v.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace  # accepted for PyTorch code; vitc always returns a new tensor

    def forward(self, input):
        return _v.relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    def forward(self, input):
        return _v.tanh(input)


class Sigmoid(Module):
    def forward(self, input):
        return _v.sigmoid(input)


class Softmax(Module):
    """Softmax over ``dim`` (default -1; torch's implicit-dim rule is deprecated there too)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = -1 if dim is None else expect_int(dim, "Softmax", "dim")

    def forward(self, input):
        return _v.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, input):
        return _v.log_softmax(input, self.dim)
