"""The transformer feed-forward layer as one op (csrc/ops/ffn.c): Linear → GELU → Linear that saves
only the pre-activation for backward (the GELU output is recomputed), so a ViT step keeps one
(tokens × hidden) activation per block instead of two."""
from .._checks import expect_tensor
from .._tensor import _call
from .activation import _GELU  # approximate= names -> the op's integer argument, as gelu

__all__ = ['linear_gelu_linear']


def linear_gelu_linear(input, weight1, bias1, weight2, bias2, approximate="none"):
    """linear(gelu(linear(input, weight1, bias1), approximate), weight2, bias2), one autograd node."""
    for t, n in ((input, "input"), (weight1, "weight1"), (weight2, "weight2")):
        expect_tensor(t, "linear_gelu_linear", n)
    for t, n in ((bias1, "bias1"), (bias2, "bias2")):
        expect_tensor(t, "linear_gelu_linear", n, optional=True)
    if approximate not in _GELU:
        raise ValueError(f"linear_gelu_linear: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _call("linear_gelu_linear", (input, weight1, bias1, weight2, bias2), (_GELU[approximate],))
