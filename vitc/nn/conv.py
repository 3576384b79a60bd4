"""Conv2d and 2-d pooling."""
import math

import vitc as _v

from . import init
from .._checks import expect_int, expect_pair
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class Conv2d(Module):
    """2-d convolution (cross-correlation) of (N, C_in, H, W) inputs; weight (C_out, C_in/groups, kh, kw).

    Init as torch: weight and bias ~ U(±1/√fan_in), fan_in = C_in/groups·kh·kw.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        who = "Conv2d"
        self.in_channels = expect_int(in_channels, who, "in_channels", 1)
        self.out_channels = expect_int(out_channels, who, "out_channels", 1)
        self.groups = expect_int(groups, who, "groups", 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{who}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        self.kernel_size = expect_pair(kernel_size, who, "kernel_size", minimum=1)
        self.stride = expect_pair(stride, who, "stride", minimum=1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{who}: padding must be 'same', 'valid' or ints, got {padding!r}")
            self.padding = padding
        else:
            self.padding = expect_pair(padding, who, "padding", minimum=0)
        self.dilation = expect_pair(dilation, who, "dilation", minimum=1)
        self.weight = Parameter(_v.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = Parameter(_v.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if input.ndim != 4 or input.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(input.shape)}")
        return _v.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        who = type(self).__name__
        self.kernel_size = kernel_size if isinstance(kernel_size, int) else \
            expect_pair(kernel_size, who, "kernel_size", minimum=1)
        expect_pair(kernel_size, who, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else stride
        expect_pair(self.stride, who, "stride", minimum=1)
        self.padding = padding
        expect_pair(padding, who, "padding", minimum=0)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def forward(self, input):
        return _v.max_pool2d(input, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    def forward(self, input):
        return _v.avg_pool2d(input, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        expect_pair(output_size, "AdaptiveAvgPool2d", "output_size", minimum=1)

    def forward(self, input):
        return _v.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
