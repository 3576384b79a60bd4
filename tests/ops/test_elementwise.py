"""Elementwise ops against PyTorch, forward and backward, plus finite differences."""
import numpy as np
import pytest
import torch

import vitc
from opcheck import check_op, rand

BINARY = [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
]
SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((1,), (2, 3)), ((), (3, 2)), ((0, 3), (3,)),
          ((2, 1, 4), (3, 1))]


@pytest.mark.parametrize("name,fn", BINARY)
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_binary_broadcast(name, fn, sa, sb):
    a, b = rand(*sa), rand(*sb)
    if name == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)
    check_op(fn, fn, [a, b])


@pytest.mark.parametrize("name,fn", BINARY)
def test_binary_noncontiguous(name, fn):
    a, b = rand(5, 3), rand(5, 3) + 2.0
    check_op(fn, fn, [a, b], noncontig=True)


def test_pow_tensor():
    a, b = rand(3, 4, low=0.5, high=2.0), rand(4, low=-2, high=2)
    check_op(lambda x, y: x ** y, lambda x, y: x ** y, [a, b], grad_rtol=1e-4)


@pytest.mark.parametrize("c", [2.0, 0.5, -1.0, 3.0, 0.0])
def test_pow_scalar(c):
    a = rand(4, 5, low=0.2, high=2.0)
    check_op(lambda x: x ** c, lambda x: x ** c, [a])


def test_scalar_ops():
    a = rand(3, 4)
    for f in (lambda x: x + 2.5, lambda x: 2.5 + x, lambda x: x - 1.5, lambda x: 1.5 - x, lambda x: x * 3.0,
              lambda x: 3.0 * x, lambda x: x / 4.0, lambda x: 2.0 ** x, lambda x: -x):
        check_op(f, f, [a])
    b = rand(3, 4, low=0.5, high=2)
    check_op(lambda x: 2.0 / x, lambda x: 2.0 / x, [b])


UNARY = [
    ("exp", vitc.exp, torch.exp, (-2, 2)),
    ("log", vitc.log, torch.log, (0.1, 3)),
    ("sqrt", vitc.sqrt, torch.sqrt, (0.1, 3)),
    ("rsqrt", vitc.rsqrt, torch.rsqrt, (0.2, 3)),
    ("abs", vitc.abs, torch.abs, (-2, 2)),
    ("neg", vitc.neg, torch.neg, (-2, 2)),
    ("square", vitc.square, torch.square, (-2, 2)),
]


@pytest.mark.parametrize("name,vf,tf,rng", UNARY)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (), (0, 2)])
def test_unary(name, vf, tf, rng, shape):
    check_op(vf, tf, [rand(*shape, low=rng[0], high=rng[1])])


@pytest.mark.parametrize("name,vf,tf,rng", UNARY)
def test_unary_noncontiguous(name, vf, tf, rng):
    check_op(vf, tf, [rand(4, 6, low=rng[0], high=rng[1])], noncontig=True)


def test_unary_large_parallel():
    a = rand(300, 1000)
    check_op(vitc.exp, torch.exp, [a], fd=False)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (None, 0.2), (-0.1, None)])
def test_clamp(lo, hi):
    a = rand(5, 6)
    check_op(lambda x: vitc.clamp(x, lo, hi), lambda x: torch.clamp(x, lo, hi), [a], fd=False)


def test_clamp_requires_bound():
    with pytest.raises(ValueError):
        vitc.clamp(vitc.ones(2))


def test_where_and_masked_fill():
    a, b = rand(3, 4), rand(4)
    cond = rand(3, 4) > 0
    check_op(lambda c, x, y: vitc.where(c, x, y), lambda c, x, y: torch.where(c, x, y), [cond, a, b])
    m = rand(1, 4) > 0
    check_op(lambda x, mk: x.masked_fill(mk, -1e9), lambda x, mk: x.masked_fill(mk, -1e9), [a, m])


def test_masked_fill_bad_mask():
    with pytest.raises(ValueError, match="masked_fill"):
        vitc.zeros(2, 3).masked_fill(vitc.ones(4, dtype=vitc.bool), 0.0)
    with pytest.raises(TypeError):
        vitc.zeros(2, 3).masked_fill(vitc.ones(3), "x")


@pytest.mark.parametrize("op", ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"])
def test_comparisons(op):
    a = np.round(rand(4, 5) * 2) / 2
    b = np.round(rand(5) * 2) / 2
    va, vb = vitc.from_numpy(a), vitc.from_numpy(b)
    np.testing.assert_array_equal(getattr(va, op)(vb).numpy(), getattr(a, op)(b))
    np.testing.assert_array_equal(getattr(va, op)(0.5).numpy(), getattr(a, op)(0.5))
    ia, ib = np.arange(6).reshape(2, 3), np.array([0, 4, 2])
    np.testing.assert_array_equal(getattr(vitc.from_numpy(ia), op)(vitc.from_numpy(ib)).numpy(), getattr(ia, op)(ib))


def test_accuracy_idiom():
    pred = vitc.tensor([1, 2, 3, 4])
    y = vitc.tensor([1, 0, 3, 0])
    assert (pred == y).sum().item() == 2


def test_broadcast_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        vitc.ones(3, 4) + vitc.ones(5)


def test_int_arithmetic_is_a_type_error():
    with pytest.raises(TypeError):
        vitc.exp(vitc.arange(3))


def test_inplace_on_leaf_requiring_grad_is_refused():
    w = vitc.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w.zero_()
    with vitc.no_grad():
        w.fill_(2.0)
    assert w.numpy().tolist() == [2.0, 2.0, 2.0] if not w.requires_grad else w.detach().numpy().tolist() == [2.0] * 3
