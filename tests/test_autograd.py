"""Autograd semantics: accumulation, graph freeing, retain_grad, grad modes, detach, errors."""
import gc

import numpy as np
import pytest
import torch

import vitc


def leaf(*shape, seed=0):
    t = vitc.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    t.requires_grad = True
    return t


def test_grads_accumulate_across_backward_calls():
    x = leaf(3)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5, 5, 5])


def test_second_backward_through_freed_graph_raises():
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy(), rtol=1e-6)


def test_inplace_write_to_a_saved_tensor_is_detected():
    """PyTorch's version counter: backward refuses a saved tensor rewritten in place since the forward."""
    x = leaf(3, 4)
    y = x.sigmoid()  # saves its output
    z = (y * 2).sum()
    with vitc.no_grad():
        y.fill_(0.5)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: saved tensor 0 of sigmoid, shape \(3, 4\)"):
        z.backward()
    a, b = leaf(2, 3, seed=1), leaf(3, 2, seed=2)
    w = a.matmul(b)
    with vitc.no_grad():
        b[0] = 1.0  # a view's write bumps the version of the whole storage
    with pytest.raises(RuntimeError, match="inplace"):
        w.sum().backward()
    # writes to tensors the graph did not save, or before the forward, are fine
    c = leaf(4, seed=3)
    with vitc.no_grad():
        c.fill_(2.0)
    d = (c * 3).sum()
    other = vitc.zeros(4)
    other.copy_(vitc.ones(4))
    d.backward()
    np.testing.assert_allclose(c.grad.numpy(), [3, 3, 3, 3])


def test_optimizer_step_between_forward_and_backward_is_detected():
    from vitc import nn, optim
    m = nn.Linear(4, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    loss = m(vitc.randn(5, 4)).pow(2).sum()
    loss.backward(retain_graph=True)
    opt.step()  # rewrites the weight that linear saved
    with pytest.raises(RuntimeError, match="saved tensor 1 of linear"):
        loss.backward()
    opt.zero_grad()
    m(vitc.randn(5, 4)).pow(2).sum().backward()  # a fresh forward after the step is fine
    opt.step()


def test_backward_needs_scalar_or_gradient():
    x = leaf(2, 3)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    y.backward(vitc.ones(2, 3))
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(vitc.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        vitc.ones(2).sum().backward()


def test_no_grad_and_enable_grad():
    x = leaf(3)
    with vitc.no_grad():
        y = x * 2
        assert not y.requires_grad and y.grad_fn is None
        with vitc.enable_grad():
            z = x * 2
            assert z.requires_grad
    assert vitc.is_grad_enabled()

    @vitc.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad
    with vitc.set_grad_enabled(False):
        assert not (x * 1).requires_grad
    assert vitc.is_grad_enabled()


def test_detach_shares_data_and_stops_gradient():
    x = leaf(3)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), d.numpy(), rtol=1e-6)


def test_retain_grad_on_intermediate():
    x = leaf(4)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.detach().numpy(), rtol=1e-6)
    assert (x * 2).grad is None


def test_leaf_flags():
    x = leaf(2)
    y = x * 2
    assert x.is_leaf and not y.is_leaf
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
    with pytest.raises(RuntimeError, match="float32"):
        vitc.arange(3).requires_grad = True


def test_diamond_graph_matches_torch():
    a = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    x = vitc.from_numpy(a.copy()); x.requires_grad = True
    tx = torch.from_numpy(a.copy()).requires_grad_()
    for lib, t in ((vitc, x), (torch, tx)):
        h = t * 2
        out = (h * h + h.exp() * t - h / (t * t + 1)).sum()
        out.backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_deep_chain_does_not_overflow():
    x = leaf(8)
    h = x
    for _ in range(20000):
        h = h * 1.0
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones(8))
    del h
    gc.collect()


def test_graph_freed_when_outputs_die():
    vitc._C.empty_cache()
    x = leaf(256, 256)
    base = vitc._C.alloc_stats()["live"]
    for _ in range(5):
        y = (x * 2).exp().sum()
        del y
    gc.collect()
    assert vitc._C.alloc_stats()["live"] <= base + 4096


def test_grad_setter_and_none():
    x = leaf(3)
    x.grad = vitc.ones(3)
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 2, 2])
    x.grad = None
    assert x.grad is None
    with pytest.raises(ValueError):
        x.grad = vitc.ones(4)


def test_parameter_like_subclass_keeps_identity():
    class P(vitc.Tensor):
        pass

    p = vitc._C.make_subclass(P, vitc.ones(3), True)
    assert isinstance(p, P) and p.requires_grad
    y = (p * 2).sum()
    y.backward()
    assert isinstance(p.grad, vitc.Tensor)


def test_failed_allocation_raises_memory_error_and_recovers():
    # fail each of the first allocations of a small graph in turn: a MemoryError, never a crash
    x = leaf(16, 16)
    for n in range(12):
        vitc._C._alloc_fail_after(n)
        try:
            y = ((x * 2).exp() @ x).sum()
            y.backward()
        except MemoryError:
            pass
        finally:
            vitc._C._alloc_fail_after(-1)
    x.grad = None
    ((x * 2).exp() @ x).sum().backward()
    assert x.grad is not None
