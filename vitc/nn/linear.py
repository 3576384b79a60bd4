"""Linear, Identity, Flatten."""
import math

import vitc as _v

from . import init
from .module import Module
from .parameter import Parameter
from .._checks import expect_int

__all__ = ["Linear", "Identity", "Flatten"]


class Identity(Module):
    """Returns its input (any extra constructor arguments are ignored, as torch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x·Wᵀ + b, W (out_features, in_features).

    Init as torch.nn.Linear: kaiming_uniform_(a=√5), i.e. W, b ~ U(±1/√in_features).
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = expect_int(in_features, "Linear", "in_features", minimum=0)
        self.out_features = expect_int(out_features, "Linear", "out_features", minimum=0)
        self.weight = Parameter(_v.empty(out_features, in_features))
        if bias:
            self.bias = Parameter(_v.empty(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.in_features == 0 or self.out_features == 0:
            init.zeros_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)
            return
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): input's last dimension must be "
                             f"{self.in_features}, got input of shape {tuple(input.shape)}")
        return _v.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flatten dims start_dim..end_dim (default: all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = expect_int(start_dim, "Flatten", "start_dim")
        self.end_dim = expect_int(end_dim, "Flatten", "end_dim")

    def forward(self, input):
        return _v.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
