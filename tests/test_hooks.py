"""Tensor.register_hook, module full backward (pre) hooks and inference_mode against torch: hooks see
the same gradients, replacements change the gradients the same way, removal works, errors match."""
import gc

import numpy as np
import pytest
import torch

import vitc
from vitc import nn

A = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
W = np.array([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.6]], np.float32)


def _graph(lib, x, w, hooks):
    """loss = sum(tanh(x·w)²) + sum(x·3) with hooks registered on the tensors named in hooks."""
    seen = {}

    def record(name, fn):
        def hook(g):
            seen.setdefault(name, []).append(np.array(g.detach().numpy() if lib is torch else g.numpy()))
            return fn(g) if fn else None
        return hook

    h = lib.matmul(x, w)
    t = lib.tanh(h)
    tensors = dict(x=x, w=w, h=h, t=t)
    handles = {name: tensors[name].register_hook(record(name, fn)) for name, fn in hooks.items()}
    loss = (t * t).sum() + (x * 3.0).sum()
    return loss, seen, handles


def _leaves(lib):
    if lib is torch:
        return torch.tensor(A, requires_grad=True), torch.tensor(W, requires_grad=True)
    return vitc.tensor(A, requires_grad=True), vitc.tensor(W, requires_grad=True)


HOOK_CASES = {
    "observe": dict(x=None, w=None, h=None, t=None),
    "scale-nonleaf": dict(h=lambda g: g * 2.0, t=None),
    "replace-leaf": dict(x=lambda g: g * 0.0 + 1.0, w=lambda g: g * -1.0),
    "chain-on-one-tensor": dict(t=lambda g: g + 1.0),
}


@pytest.mark.parametrize("name", HOOK_CASES)
def test_tensor_hooks_match_torch(name):
    got = {}
    for lib in (vitc, torch):
        x, w = _leaves(lib)
        loss, seen, _ = _graph(lib, x, w, HOOK_CASES[name])
        loss.backward()
        got[lib] = seen, (x.grad.numpy(), w.grad.numpy())
    (sv, gv), (st, gt) = got[vitc], got[torch]
    assert sorted(sv) == sorted(st)
    for k in st:
        assert len(sv[k]) == len(st[k]) == 1  # a leaf used twice (x) still sees one summed gradient
        np.testing.assert_allclose(sv[k][0], st[k][0], rtol=1e-5, atol=1e-6, err_msg=k)
    for a, b in zip(gv, gt):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_two_hooks_on_one_tensor_run_in_order_and_remove():
    x = vitc.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    h1 = x.register_hook(lambda g: (calls.append("a"), g * 2.0)[1])
    h2 = x.register_hook(lambda g: calls.append(("b", g.numpy().tolist())))
    (x * 1.0).sum().backward()
    assert calls == ["a", ("b", [2.0, 2.0])] and x.grad.numpy().tolist() == [2.0, 2.0]
    h1.remove()
    x.grad = None
    (x * 1.0).sum().backward()
    assert calls[-1] == ("b", [1.0, 1.0]) and x.grad.numpy().tolist() == [1.0, 1.0]
    h2.remove()
    with h2:  # removing twice is harmless; a handle is a context manager
        pass
    (x * 1.0).sum().backward()
    assert len(calls) == 3


def test_nonleaf_hook_outlives_the_tensor_object_and_runs_before_retain_grad():
    x = vitc.tensor([1.0, -1.0], requires_grad=True)
    y = x * 2.0
    y.retain_grad()
    y.register_hook(lambda g: g * 5.0)
    z = (y * 1.0).sum()
    z.backward(retain_graph=True)
    assert y.grad.numpy().tolist() == [5.0, 5.0]  # torch: retain_grad sees the hooked gradient
    tx = torch.tensor([1.0, -1.0], requires_grad=True)
    ty = tx * 2.0
    ty.retain_grad()
    ty.register_hook(lambda g: g * 5.0)
    (ty * 1.0).sum().backward()
    assert ty.grad.tolist() == [5.0, 5.0] and x.grad.numpy().tolist() == tx.grad.tolist()
    x.grad = None
    del y
    gc.collect()
    z.backward()  # the hook lives on the node that made y
    assert x.grad.numpy().tolist() == [10.0, 10.0]


def test_hook_errors():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        vitc.ones(2).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        torch.ones(2).register_hook(lambda g: g)
    with pytest.raises(TypeError, match="callable"):
        vitc.ones(2, requires_grad=True).register_hook(3)
    x = vitc.ones(3, requires_grad=True)

    def boom(g):
        raise ValueError("boom from a hook")

    h = (x * 2.0).register_hook(boom)
    y = x * 2.0
    y.register_hook(boom)
    with pytest.raises(ValueError, match="boom from a hook"):
        y.sum().backward()
    h.remove()
    x2 = vitc.ones(3, requires_grad=True)
    x2.register_hook(lambda g: vitc.ones(2))
    with pytest.raises(RuntimeError, match="shape"):
        (x2 * 1.0).sum().backward()
    x3 = vitc.ones(3, requires_grad=True)
    x3.register_hook(lambda g: "no")
    with pytest.raises(TypeError, match="expected None or a vitc.Tensor"):
        (x3 * 1.0).sum().backward()
    assert x3.grad is None
    # the error left nothing behind: the next backward works
    z = vitc.ones(2, requires_grad=True)
    (z * 2.0).sum().backward()
    assert z.grad.numpy().tolist() == [2.0, 2.0]


# ---- module hooks --------------------------------------------------------------------------

def _mlp_pair():
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    v = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    v.load_state_dict({k: x.detach().numpy() for k, x in t.state_dict().items()})
    return v, t


def _np(x):
    if x is None:
        return None
    return x.detach().numpy() if isinstance(x, torch.Tensor) else x.numpy()


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("replace", [None, "pre", "full"])
def test_full_backward_hooks_match_torch(input_grad, replace):
    results = {}
    for lib, (v, t) in zip(("vitc", "torch"), [_mlp_pair()] * 2):
        mod = v if lib == "vitc" else t
        seen = []
        target = mod[2]  # the last Linear: its input is a non-leaf that requires grad either way
        first = mod[0]

        def pre(m, gout):
            seen.append(("pre", [_np(g) for g in gout]))
            return tuple(g * 3.0 for g in gout) if replace == "pre" else None

        def full(m, gin, gout):
            seen.append(("full", [_np(g) for g in gin], [_np(g) for g in gout]))
            return tuple(g * -2.0 for g in gin) if replace == "full" else None

        def first_full(m, gin, gout):
            seen.append(("first", [_np(g) for g in gin], [_np(g) for g in gout]))

        target.register_full_backward_pre_hook(pre)
        target.register_full_backward_hook(full)
        first.register_full_backward_hook(first_full)
        x = (vitc if lib == "vitc" else torch).tensor(A, requires_grad=input_grad)
        y = mod(x)
        (y * y).sum().backward()
        grads = {k: _np(p.grad) for k, p in mod.named_parameters()}
        results[lib] = seen, grads, _np(x.grad)
    (sv, gv, xv), (st, gt, xt) = results["vitc"], results["torch"]
    assert [s[0] for s in sv] == [s[0] for s in st]
    for a, b in zip(sv, st):
        for la, lb in zip(a[1:], b[1:]):
            assert len(la) == len(lb)
            for p, q in zip(la, lb):
                assert (p is None) == (q is None)
                if q is not None:
                    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    for k in gt:
        np.testing.assert_allclose(gv[k], gt[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert (xv is None) == (xt is None)
    if xt is not None:
        np.testing.assert_allclose(xv, xt, rtol=1e-5, atol=1e-6)


def test_module_hook_removal_and_bad_returns():
    v, _ = _mlp_pair()
    calls = []
    h = v.register_full_backward_hook(lambda m, gi, go: calls.append(1))
    x = vitc.tensor(A)
    v(x).sum().backward()
    assert calls == [1]
    h.remove()
    v(x).sum().backward()
    assert calls == [1]
    v[2].register_full_backward_pre_hook(lambda m, go: (go[0], go[0]))
    with pytest.raises(RuntimeError, match="tuple of 1"):
        v(x).sum().backward()

    class Pair(nn.Module):
        def forward(self, a):
            return a, a

    p = Pair()
    p.register_full_backward_hook(lambda m, gi, go: None)
    with pytest.raises(NotImplementedError, match="returns one Tensor"):
        p(vitc.tensor(A, requires_grad=True))


# ---- inference_mode ------------------------------------------------------------------------

def test_inference_mode_as_torch():
    w = vitc.ones(3, requires_grad=True)
    tw = torch.ones(3, requires_grad=True)
    with vitc.inference_mode():
        assert vitc.is_inference_mode_enabled() and not vitc.is_grad_enabled()
        a = vitc.ones(3)
        b = a * w  # no graph inside
        view = w.detach().reshape(3)
    with torch.inference_mode():
        ta = torch.ones(3)
        tb = ta * tw
    assert not vitc.is_inference_mode_enabled() and vitc.is_grad_enabled()
    assert (a.is_inference(), b.is_inference(), b.requires_grad) == (ta.is_inference(), tb.is_inference(),
                                                                      tb.requires_grad) == (True, True, False)
    assert not view.is_inference() and not w.is_inference()
    assert (a + w).requires_grad  # add saves nothing: allowed, as torch
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
        a * w
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
        ta * tw
    with pytest.raises(RuntimeError, match="inference tensor"):
        a.requires_grad_()
    with pytest.raises(RuntimeError, match="[Ii]nference tensor"):
        a.add_(1.0)
    with pytest.raises(RuntimeError, match="[Ii]nference tensor"):
        ta.add_(1.0)
    detached, tdetached = a.detach().reshape(3), ta.detach().reshape(3)  # views of inference tensors
    assert detached.is_inference() and tdetached.is_inference()
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
        detached * w
    c = a.clone()
    assert not c.is_inference()
    (c * w).sum().backward()
    assert w.grad.numpy().tolist() == [1.0, 1.0, 1.0]

    @vitc.inference_mode()
    def predict(x):
        return x * 2.0

    assert predict(vitc.ones(2)).is_inference() and vitc.is_grad_enabled()
    with vitc.inference_mode(False):
        assert not vitc.ones(1).is_inference()
