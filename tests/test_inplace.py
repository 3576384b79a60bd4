"""In-place tensor methods (add_, sub_, mul_, div_, lerp_, clamp_, +=, -=, *=, /=, clone, detach_) against
PyTorch: values, broadcasting, the errors torch raises, version counters, autograd through in-place ops
on non-leaf tensors, and an EMA of parameters written in place."""
import numpy as np
import pytest
import torch

import vitc
from vitc import nn
from opcheck import assert_close, check_allocation_failures

RNG = np.random.default_rng(25)


def _a(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _pair(arr):
    return vitc.from_numpy(arr.copy()), torch.from_numpy(arr.copy())


CASES = [
    ("add_", lambda t, o: t.add_(o)), ("add_alpha", lambda t, o: t.add_(o, alpha=-0.25)),
    ("sub_", lambda t, o: t.sub_(o)), ("sub_alpha", lambda t, o: t.sub_(o, alpha=3)),
    ("mul_", lambda t, o: t.mul_(o)), ("div_", lambda t, o: t.div_(o)),
    ("lerp_", lambda t, o: t.lerp_(o, 0.3)), ("lerp_hi", lambda t, o: t.lerp_(o, 0.8)),
]


@pytest.mark.parametrize("name,op", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("other_shape", [(3, 4), (4,), (1, 4), (3, 1)])
def test_values_and_broadcast_match_torch(name, op, other_shape):
    x, o = _a(3, 4), _a(*other_shape) + (3.0 if name == "div_" else 0.0)
    (vx, tx), (vo, to) = _pair(x), _pair(o)
    if name.startswith("lerp") and other_shape != (3, 4):
        to = to.expand(3, 4)  # torch.lerp_ wants end of self's shape or broadcastable; keep it the same
    ptr = vx.data_ptr()
    out = op(vx, vo)
    op(tx, to)
    assert out is vx and vx.data_ptr() == ptr  # in place: same object, same memory
    assert_close(vx.numpy(), tx.numpy(), 1e-6, 1e-6, name)


def test_scalars_operators_and_clamp():
    x = _a(5, 3)
    vx, tx = _pair(x)
    ident = vx
    vx += 1.5
    vx -= 0.25
    vx *= 0.5
    vx /= 4.0
    tx += 1.5
    tx -= 0.25
    tx *= 0.5
    tx /= 4.0
    assert vx is ident  # `p *= 0.5` writes into p instead of rebinding the name
    np.testing.assert_array_equal(vx.numpy(), tx.numpy())
    for kw in (dict(min=-0.1), dict(max=0.05), dict(min=-0.1, max=0.05)):
        a, b = _pair(x)
        a.clamp_(**kw)
        b.clamp_(**kw)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="at least one of min or max"):
        vx.clamp_()


def test_errors_where_torch_raises():
    for lib in (vitc, torch):
        p = lib.ones(3, requires_grad=True)
        for write in (lambda: p.mul_(2), lambda: p.add_(1), lambda: p.clamp_(0, 1), lambda: p.lerp_(lib.zeros(3), 0.5)):
            with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
                write()
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            p *= 2  # noqa: F841  (the operator too)
        small = lib.ones(4)
        with pytest.raises(RuntimeError, match=r"doesn't match the broadcast shape \[3, 4\]"):
            small.add_(lib.ones(3, 4))
        expanded = lib.zeros(1, 3).expand(2, 3)
        with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
            expanded.mul_(2.0)


def test_no_grad_updates_leaves_and_an_ema_written_in_place():
    torch.manual_seed(0)
    vitc.manual_seed(0)
    model, ema = nn.Linear(4, 3), nn.Linear(4, 3)
    tmodel, tema = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    with vitc.no_grad(), torch.no_grad():
        for a, b, c, d in zip(model.parameters(), ema.parameters(), tmodel.parameters(), tema.parameters()):
            c.copy_(torch.from_numpy(a.detach().numpy().copy()))
            d.copy_(torch.from_numpy(b.detach().numpy().copy()))
    before = [p.detach().numpy().copy() for p in ema.parameters()]
    decay = 0.9
    for step in range(3):
        with vitc.no_grad(), torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (step + 1))
            for p in tmodel.parameters():
                p.add_(0.1 * (step + 1))
            for e, p in zip(ema.parameters(), model.parameters()):
                if step == 0:
                    e *= decay
                    e += p * (1 - decay)
                else:
                    e.mul_(decay).add_(p, alpha=1 - decay)
            for e, p in zip(tema.parameters(), tmodel.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
    for e, te, b in zip(ema.parameters(), tema.parameters(), before):
        assert isinstance(e, nn.Parameter) and e.requires_grad
        assert not np.array_equal(e.detach().numpy(), b)  # the update reached the parameter
        assert_close(e.detach().numpy(), te.detach().numpy(), 1e-6, 1e-6, "ema")


def test_version_check_fires_when_a_saved_tensor_is_modified():
    for lib in (vitc, torch):
        a = lib.ones(3)
        w = lib.ones(3, requires_grad=True)
        y = (a * w).sum()          # mul saves a for w's gradient
        a.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()
        a = lib.ones(3)
        y = (a * w).sum()
        with lib.no_grad():
            a += 1                  # under no_grad too: the bytes changed
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def _graph(lib, x0, w0):
    x = lib.tensor(x0, requires_grad=True)
    w = lib.tensor(w0, requires_grad=True)
    h = x * 2.0 + 1.0
    h.mul_(w)
    h.add_(x, alpha=0.5)
    h.sub_(w.sum())
    h.div_(w + 3.0)
    h.clamp_(-0.5, 0.7)
    h.lerp_(x * x, 0.25)
    h *= x
    acc = lib.zeros(3)
    acc += h                        # a plain tensor joins the graph
    acc.retain_grad()
    acc.mul_(3.0)                   # retain_grad moves with the tensor, as in torch
    (acc * lib.tensor([1.0, -2.0, 0.5])).sum().backward()
    return h, acc, x.grad, w.grad


def test_autograd_through_in_place_ops_on_non_leaves():
    x0, w0 = [0.3, -0.8, 1.2], [0.5, 1.5, -0.7]
    vh, vacc, vgx, vgw = _graph(vitc, x0, w0)
    th, tacc, tgx, tgw = _graph(torch, x0, w0)
    assert_close(vh.detach().numpy(), th.detach().numpy(), 1e-6, 1e-6, "value")
    assert_close(vgx.numpy(), tgx.numpy(), 1e-5, 1e-6, "x.grad")
    assert_close(vgw.numpy(), tgw.numpy(), 1e-5, 1e-6, "w.grad")
    assert_close(vacc.grad.numpy(), tacc.grad.numpy(), 0, 0, "acc.grad (retained)")
    assert vacc.requires_grad and not vacc.is_leaf


def test_other_is_self():
    # h.mul_(h) reads the clone, not the memory it overwrites (torch's mul_ fails at backward here, so the
    # reference is the out-of-place h * h)
    x = vitc.tensor([0.5, -1.0, 2.0], requires_grad=True)
    h = x * 3.0
    h.mul_(h)
    h.sum().backward()
    tx = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    th = tx * 3.0
    (th * th).sum().backward()
    assert_close(h.detach().numpy(), (th * th).detach().numpy(), 0, 0, "value")
    assert_close(x.grad.numpy(), tx.grad.numpy(), 1e-6, 0, "grad")


def test_recording_refuses_memory_shared_with_a_view():
    # vitc does not track views, so it refuses where torch would rewrite the view's history
    x = vitc.ones(4, requires_grad=True)
    h = x * 2.0
    view = h[:2]
    with pytest.raises(RuntimeError, match="memory another tensor uses"):
        h.mul_(3.0)
    del view
    h.mul_(3.0)
    h.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(4, 6.0, np.float32))


def test_overlapping_operand_is_read_before_the_write():
    # x[1:] += x[:-1]: vitc reads the operand through a temporary, as copy_ does (numpy's out-of-place
    # value); torch refuses this partial overlap
    base = np.arange(6, dtype=np.float32)
    x = vitc.from_numpy(base.copy())
    x[1:].add_(x[:-1])
    np.testing.assert_array_equal(x.numpy(), np.concatenate([[0], base[1:] + base[:-1]]))


def test_clone_and_detach_():
    for lib in (vitc, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        c = x.clone()
        assert c.requires_grad and not c.is_leaf and c.data_ptr() != x.data_ptr()
        with lib.no_grad():
            c.mul_(10.0)
        assert x.detach().numpy().tolist() == [1.0, 2.0, 3.0]
        (c * lib.tensor([1.0, 2.0, 3.0])).sum().backward()
        assert x.grad.numpy().tolist() == [1.0, 2.0, 3.0]
        h = x * 2
        assert h.detach_() is h and h.grad_fn is None and not h.requires_grad and h.is_leaf
        h.mul_(2.0)  # now an ordinary tensor: in place is fine
        leaf = lib.ones(2, requires_grad=True)
        leaf.detach_()
        assert not leaf.requires_grad
        ints = lib.tensor([1, 2])
        assert ints.clone().dtype == ints.dtype and ints.clone().tolist() == [1, 2]


def _inplace_workload():
    x = vitc.ones(4, requires_grad=True)
    h = x * 2.0
    h.mul_(x).add_(1.0)
    h.detach_()
    g = x * 3.0
    g.lerp_(x, 0.5)
    acc = vitc.zeros(4)
    acc += g
    acc.sum().backward()


def test_no_leaks_and_allocation_failures():
    # the history a tensor takes over or drops is released exactly once; a failed step leaves nothing behind
    check_allocation_failures(_inplace_workload, attempts=120)
