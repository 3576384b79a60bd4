"""Matrix products: matmul (torch.matmul semantics), bmm, mm, linear."""
from .._tensor import Tensor, _call, expect_tensor, register

__all__ = ['matmul', 'bmm', 'mm', 'linear']


def matmul(input, other):
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError("matmul: expected two Tensors")
    return _call("matmul", (input, other))


def bmm(input, mat2):
    expect_tensor(input, "bmm"), expect_tensor(mat2, "bmm", "mat2")
    if input.ndim != 3 or mat2.ndim != 3:
        raise ValueError(f"bmm: expected 3-d tensors, got {input.ndim}-d and {mat2.ndim}-d")
    if input.shape[0] != mat2.shape[0]:
        raise ValueError(f"bmm: batch sizes differ ({input.shape[0]} and {mat2.shape[0]})")
    return matmul(input, mat2)


def mm(input, mat2):
    expect_tensor(input, "mm"), expect_tensor(mat2, "mm", "mat2")
    if input.ndim != 2 or mat2.ndim != 2:
        raise ValueError(f"mm: expected 2-d tensors, got {input.ndim}-d and {mat2.ndim}-d")
    return matmul(input, mat2)


def linear(input, weight, bias=None):
    """y = input·weightᵀ + bias, weight (out_features, in_features) as in PyTorch."""
    for t, n in ((input, "input"), (weight, "weight")):
        expect_tensor(t, "linear", n)
    expect_tensor(bias, "linear", "bias", optional=True)
    return _call("linear", (input, weight, bias))


register("matmul", matmul)
register("bmm", bmm)
register("mm", mm)
register("__matmul__", matmul)
register("__rmatmul__", lambda self, other: matmul(other, self))
