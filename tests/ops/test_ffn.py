"""linear_gelu_linear (csrc/ops/ffn.c): the fused feed-forward layer against torch's
linear → gelu → linear, forward and every gradient, with finite differences; bad input; and the
reason it exists, one saved (rows × hidden) activation instead of two."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import vitc
from opcheck import check_allocation_failures, check_op, rand


def _torch_ffn(approximate):
    return lambda x, w1, b1, w2, b2: TF.linear(TF.gelu(TF.linear(x, w1, b1), approximate=approximate), w2, b2)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("xshape,hidden,dout", [((5, 8), 16, 8), ((2, 7, 12), 48, 10), ((3, 1, 4), 1, 2)])
def test_matches_torch(approximate, xshape, hidden, dout):
    d = xshape[-1]
    inputs = [rand(*xshape, low=-2, high=2), rand(hidden, d), rand(hidden), rand(dout, hidden), rand(dout)]
    check_op(lambda *a: vitc.linear_gelu_linear(*a, approximate=approximate), _torch_ffn(approximate), inputs)


def test_without_biases_and_strided_weights():
    inputs = [rand(4, 6, low=-2, high=2), rand(6, 9), rand(9, 5)]  # weights given transposed below
    check_op(lambda x, w1, w2: vitc.linear_gelu_linear(x, w1.t(), None, w2.t(), None),
             lambda x, w1, w2: TF.linear(TF.gelu(TF.linear(x, w1.t())), w2.t()), inputs)


def test_some_inputs_frozen():
    # only x needs a gradient (frozen layer): the weight GEMMs are skipped, dx still exact
    inputs = [rand(6, 8), rand(16, 8), rand(16), rand(8, 16), rand(8)]
    check_op(vitc.linear_gelu_linear, _torch_ffn("none"), inputs, grad_inputs=[0])
    check_op(vitc.linear_gelu_linear, _torch_ffn("none"), inputs, grad_inputs=[3, 4])


def test_large_parallel_rows():
    inputs = [rand(32, 197, 24), rand(96, 24), rand(96), rand(24, 96), rand(24)]
    check_op(vitc.linear_gelu_linear, _torch_ffn("none"), inputs, rtol=1e-4, atol=1e-5, grad_rtol=2e-4,
             grad_atol=2e-4, fd=False)


def test_saves_one_hidden_activation():
    rows, d, h = 256, 32, 512
    x = vitc.from_numpy(rand(rows, d))
    params = [vitc.from_numpy(a) for a in (rand(h, d), rand(h), rand(d, h), rand(d))]
    for p in params:
        p.requires_grad = True
    w1, b1, w2, b2 = params

    def held(fn):
        before = vitc._C.alloc_stats()["live"]
        y = fn()
        return vitc._C.alloc_stats()["live"] - before - 4 * y.numel(), y

    fused, y1 = held(lambda: vitc.linear_gelu_linear(x, w1, b1, w2, b2))
    unfused, y2 = held(lambda: vitc.linear(vitc.gelu(vitc.linear(x, w1, b1)), w2, b2))
    np.testing.assert_allclose(y1.detach().numpy(), y2.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert fused == 4 * rows * h and unfused == 2 * 4 * rows * h, (fused, unfused)


def test_bad_input():
    x, w1, b1, w2, b2 = (vitc.from_numpy(a) for a in (rand(3, 4), rand(8, 4), rand(8), rand(4, 8), rand(4)))
    with pytest.raises(ValueError, match=r"w2 has 7 input features but w1 makes 8"):
        vitc.linear_gelu_linear(x, w1, b1, vitc.from_numpy(rand(4, 7)), b2)
    with pytest.raises(ValueError, match="input's last dim is 5"):
        vitc.linear_gelu_linear(vitc.from_numpy(rand(3, 5)), w1, b1, w2, b2)
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        vitc.linear_gelu_linear(x, w1, vitc.from_numpy(rand(3)), w2, b2)
    with pytest.raises(ValueError, match="approximate must be"):
        vitc.linear_gelu_linear(x, w1, b1, w2, b2, approximate="erf")
    with pytest.raises(TypeError, match="weight2 must be a Tensor"):
        vitc.linear_gelu_linear(x, w1, b1, None, b2)
    with pytest.raises(TypeError, match="float32"):
        vitc.linear_gelu_linear(vitc.from_numpy(np.ones((3, 4), np.int64)), w1, b1, w2, b2)


def test_allocation_failures():
    x, w1, b1, w2, b2 = (vitc.from_numpy(a) for a in (rand(6, 8), rand(16, 8), rand(16), rand(8, 16), rand(8)))
    for t in (x, w1, b1, w2, b2):
        t.requires_grad = True

    def run():
        vitc.linear_gelu_linear(x, w1, b1, w2, b2).sum().backward()
    check_allocation_failures(run, attempts=60)
