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


@pytest.mark.parametrize("rows,hidden", [(0, 16), (4, 0), (0, 0)])
def test_zero_size_rows_or_hidden(rows, hidden):
    """no rows or no hidden units: empty or zero outputs and gradients, as torch's three ops"""
    x0, w10, b10 = np.ones((rows, 8), np.float32), np.ones((hidden, 8), np.float32), np.ones(hidden, np.float32)
    w20, b20 = np.ones((3, hidden), np.float32), np.ones(3, np.float32)
    vs = [vitc.from_numpy(a).requires_grad_() for a in (x0, w10, b10, w20, b20)]
    ts = [torch.from_numpy(a).requires_grad_() for a in (x0, w10, b10, w20, b20)]
    y, ty = vitc.linear_gelu_linear(*vs), _torch_ffn("none")(*ts)
    (y * 2.0).sum().backward()
    (ty * 2.0).sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), ty.detach().numpy())
    for a, ta in zip(vs, ts):
        np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())


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


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("approximate,biases,strided,grads", [
    ("none", True, False, "all"), ("tanh", False, False, "all"), ("none", True, True, "all"),
    ("none", True, False, "x"), ("none", True, False, "x,b2"), ("tanh", True, False, "w1"), ("none", True, False, "b1")])
def test_row_blocks_equal_the_three_ops(threads, approximate, biases, strided, grads):
    """the seed ViT's FFN takes ffn.c's row-block plan (both products on the own kernel): same bits
    as linear → gelu → linear, forward and every gradient, at 1700 rows (not a multiple of the
    96-row block)"""
    assert vitc._C._gemm_auto_path(False, 1700, 128, 64) == "own"
    assert vitc._C._gemm_auto_path(False, 1700, 64, 128) == "own"
    prev = vitc.get_num_threads()
    vitc.set_num_threads(threads)
    try:
        rng = np.random.default_rng(3)
        arr = lambda *s: rng.standard_normal(s).astype(np.float32)
        x0 = vitc.from_numpy(arr(100, 17, 64) if not strided else arr(17, 100, 64))
        want = {"x", "w1", "b1", "w2", "b2"} if grads == "all" else set(grads.split(","))
        x = (x0 if not strided else x0.transpose(0, 1)).detach().requires_grad_("x" in want)
        params = [vitc.from_numpy(arr(128, 64) * 0.1), vitc.from_numpy(arr(128)) if biases else None,
                  vitc.from_numpy(arr(64, 128) * 0.1), vitc.from_numpy(arr(64)) if biases else None]
        params = [p.requires_grad_(name in want) if p is not None else None
                  for p, name in zip(params, ("w1", "b1", "w2", "b2"))]
        g = vitc.from_numpy(arr(100, 17, 64))
        leaves = [t for t in [x] + params if t is not None and t.requires_grad]

        def run(fn):
            for t in leaves:
                t.grad = None
            y = fn()
            y.backward(g)
            return [y.detach().numpy()] + [t.grad.numpy().copy() for t in leaves]

        w1, b1, w2, b2 = params
        fused = run(lambda: vitc.linear_gelu_linear(x, w1, b1, w2, b2, approximate=approximate))
        plain = run(lambda: vitc.nn.functional.linear(
            vitc.nn.functional.gelu(vitc.nn.functional.linear(x, w1, b1), approximate=approximate), w2, b2))
        for a, b in zip(fused, plain):
            np.testing.assert_array_equal(a, b)
    finally:
        vitc.set_num_threads(prev)


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


@pytest.mark.parametrize("grads", ["all", "w2"])
def test_backward_holds_two_hidden_tensors(grads):
    """GELU(h) and GELU'(h) come from one pass, but the second layer's weight gradients are taken
    before da exists: at most two (rows × hidden) tensors are alive in backward, as with the
    separate ops (h, saved, not counted)"""
    rows, d, h = 256, 32, 512
    x = vitc.from_numpy(rand(rows, d))
    params = [vitc.from_numpy(a) for a in (rand(h, d), rand(h), rand(d, h), rand(d))]
    x.requires_grad = grads == "all"
    for p, name in zip(params, ("w1", "b1", "w2", "b2")):
        p.requires_grad = grads == "all" or name == grads
    y = vitc.linear_gelu_linear(x, *params)
    g = vitc.from_numpy(rand(rows, d))
    before = vitc._C.alloc_stats()["live"]
    vitc._C.reset_peak()
    y.backward(g)
    extra = vitc._C.alloc_stats()["peak"] - before
    hidden = 4 * rows * h
    assert hidden <= extra <= 2 * hidden + 4 * (rows * d + 2 * h * d + h + d) + 4096, (extra, hidden)


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
    with pytest.raises(TypeError, match="weight2 must be a vitc.Tensor"):
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


@pytest.mark.parametrize("grads", ["all", "x,b2"])
def test_allocation_failures_row_blocks(grads):
    """the row-block plan (seed ViT shape) frees everything on every failed allocation"""
    assert vitc._C._gemm_auto_path(False, 1700, 128, 64) == "own"
    names = ("x", "w1", "b1", "w2", "b2")
    shapes = ((100, 17, 64), (128, 64), (128,), (64, 128), (64,))
    ts = [vitc.from_numpy(rand(*s)) for s in shapes]
    for t, name in zip(ts, names):
        t.requires_grad = grads == "all" or name in grads.split(",")

    def run():
        vitc.linear_gelu_linear(*ts).sum().backward()
    check_allocation_failures(run, attempts=80, min_failures=5)


@pytest.mark.parametrize("hidden", [45, 200])
def test_gelu_factor_applied_in_the_gemm_store(hidden):
    """dh = (dy·w2) ⊙ GELU'(h) is one GEMM that multiplies as it stores (gemm.c, vt_k_gemm_mul):
    bitwise the separate ops' gradients, over full and part-valid column strips of the own kernel"""
    r = np.random.default_rng(hidden)
    x = vitc.from_numpy(r.standard_normal((700, 64)).astype(np.float32)).requires_grad_()
    w1, b1 = (vitc.from_numpy(r.standard_normal(s).astype(np.float32) * 0.2).requires_grad_() for s in ((hidden, 64), (hidden,)))
    w2, b2 = (vitc.from_numpy(r.standard_normal(s).astype(np.float32) * 0.2).requires_grad_() for s in ((64, hidden), (64,)))
    assert vitc._C._gemm_auto_path(False, 700, hidden, 64) == "own"
    g = vitc.from_numpy(r.standard_normal((700, 64)).astype(np.float32))
    outs = []
    for fn in (lambda: vitc.linear_gelu_linear(x, w1, b1, w2, b2),
               lambda: vitc.linear(vitc.gelu(vitc.linear(x, w1, b1)), w2, b2)):
        for t in (x, w1, b1, w2, b2):
            t.grad = None
        fn().backward(g)
        outs.append([t.grad.numpy().copy() for t in (x, w1, b1)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
