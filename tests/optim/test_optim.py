"""vitc.optim against torch.optim, step for step: SGD (momentum, dampening, Nesterov, weight decay,
maximize), Adam (L2, AMSGrad), AdamW; parameter groups, lr changes, None gradients, state_dict."""
import numpy as np
import pytest
import torch

import vitc
from vitc import nn, optim

SHAPES = [(6, 5), (6,), (3, 6), (2, 3, 4)]


def _init(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _loss_vitc(ps, x, skip_last):
    # a small non-quadratic function of every parameter (tanh-free: only ops of the core)
    h = vitc.linear(x, ps[0], ps[1])
    out = vitc.linear(h * h, ps[2]).sum()
    if not skip_last:
        out = out + (ps[3] * ps[3] * ps[3]).sum() * 0.1
    return out


def _loss_torch(ps, x, skip_last):
    h = torch.nn.functional.linear(x, ps[0], ps[1])
    out = torch.nn.functional.linear(h * h, ps[2]).sum()
    if not skip_last:
        out = out + (ps[3] * ps[3] * ps[3]).sum() * 0.1
    return out


def run_pair(make_v, make_t, steps=12, set_to_none_every=2, skip_at=(4,), lr_changes=None, seed=0):
    """Run both optimizers on the same losses; return max relative parameter error after each step."""
    init = _init(seed)
    vp = [nn.Parameter(vitc.tensor(a)) for a in init]
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    vo, to = make_v(vp), make_t(tp)
    rng = np.random.default_rng(seed + 1)
    errs = []
    for s in range(steps):
        if lr_changes and s in lr_changes:
            for g in vo.param_groups:
                g["lr"] = lr_changes[s]
            for g in to.param_groups:
                g["lr"] = lr_changes[s]
        x = rng.standard_normal((4, 5)).astype(np.float32)
        stn = (s % set_to_none_every == 0)
        vo.zero_grad(set_to_none=stn)
        to.zero_grad(set_to_none=stn)
        _loss_vitc(vp, vitc.tensor(x), s in skip_at).backward()
        _loss_torch(tp, torch.tensor(x), s in skip_at).backward()
        vo.step()
        to.step()
        errs.append(max(np.abs(a.detach().numpy() - b.detach().numpy()).max() / (np.abs(b.detach().numpy()).max() + 1e-12)
                        for a, b in zip(vp, tp)))
    return errs, vo, to, vp, tp


CASES = [
    ("sgd", dict(lr=1e-2)),
    ("sgd", dict(lr=1e-3, momentum=0.9)),
    ("sgd", dict(lr=1e-3, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ("sgd", dict(lr=1e-3, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("sgd", dict(lr=1e-3, momentum=0.5, maximize=True)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.01)),
    ("adamw", dict(lr=1e-2)),
    ("adamw", dict(lr=5e-3, weight_decay=0.3, amsgrad=True)),
    ("adamw", dict(lr=5e-3, maximize=True)),
]
CLS = {"sgd": (optim.SGD, torch.optim.SGD), "adam": (optim.Adam, torch.optim.Adam),
       "adamw": (optim.AdamW, torch.optim.AdamW)}


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch_step_for_step(name, kw):
    vc, tc = CLS[name]
    errs, *_ = run_pair(lambda p: vc(p, **kw), lambda p: tc(p, **kw), lr_changes={6: kw["lr"] * 0.3})
    # each step within 1e-6 relative of torch's (the error is float32 rounding, not drift)
    assert max(errs) < 5e-6, errs


def test_skipped_parameter_keeps_state():
    """A parameter with grad None is not updated and its step count does not advance (torch)."""
    errs, vo, to, vp, tp = run_pair(lambda p: optim.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2),
                                    steps=6, set_to_none_every=1, skip_at=(1, 2))
    assert max(errs) < 5e-6
    assert vo.state[vp[3]]["step"].item() == to.state[tp[3]]["step"].item() == 4
    assert vo.state[vp[0]]["step"].item() == 6


def test_param_groups_per_group_options():
    init = _init(3)
    vp = [nn.Parameter(vitc.tensor(a)) for a in init]
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    vo = optim.AdamW([{"params": vp[:2]}, {"params": vp[2:], "lr": 1e-3, "weight_decay": 0.0}], lr=1e-2)
    to = torch.optim.AdamW([{"params": tp[:2]}, {"params": tp[2:], "lr": 1e-3, "weight_decay": 0.0}], lr=1e-2)
    assert vo.param_groups[1]["lr"] == 1e-3 and vo.param_groups[0]["weight_decay"] == 1e-2
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.standard_normal((4, 5)).astype(np.float32)
        vo.zero_grad()
        to.zero_grad()
        _loss_vitc(vp, vitc.tensor(x), False).backward()
        _loss_torch(tp, torch.tensor(x), False).backward()
        vo.step()
        to.step()
    for a, b in zip(vp, tp):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_flat_storage_keeps_parameters_and_grads_as_views():
    lin = nn.Linear(5, 3)
    w = lin.weight
    opt = optim.Adam(lin.parameters(), lr=1e-3)
    assert lin.weight is w  # same Parameter object, now a view of the group's buffer
    fg = opt._flat[0]
    assert w.data_ptr() == fg.flat.data_ptr()
    assert lin.bias.data_ptr() == fg.flat.data_ptr() + 4 * 15
    lin(vitc.randn(2, 5)).sum().backward()
    opt.step()
    assert w.grad.data_ptr() == fg.grad.data_ptr()  # gathered into the flat gradient buffer
    opt.zero_grad(set_to_none=False)
    assert np.all(fg.grad.numpy() == 0) and w.grad is not None
    lin(vitc.randn(2, 5)).sum().backward()  # accumulates straight into the flat buffer
    assert np.any(fg.grad.numpy() != 0)
    opt.zero_grad()
    assert w.grad is None
    # replacing .data is noticed: the new values are adopted into the flat buffer
    with vitc.no_grad():
        lin.weight.data = vitc.zeros(3, 5)
    lin(vitc.randn(2, 5)).sum().backward()
    opt.step()
    assert w.data_ptr() == fg.flat.data_ptr()
    assert np.abs(w.detach().numpy()).max() <= 1.5e-3  # one Adam step from zero moves at most ~lr


def test_state_dict_round_trip_continues_identically():
    def make(ps):
        return optim.Adam(ps, lr=1e-2, amsgrad=True)

    init = _init(5)
    a = [nn.Parameter(vitc.tensor(x)) for x in init]
    oa = make(a)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(6)]
    for x in xs[:3]:
        oa.zero_grad()
        _loss_vitc(a, vitc.tensor(x), False).backward()
        oa.step()
    sd = oa.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2, 3] and sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    snap = {i: {k: (v.numpy().copy()) for k, v in st.items()} for i, st in sd["state"].items()}
    b = [nn.Parameter(vitc.tensor(p.detach().numpy().copy())) for p in a]
    ob = make(b)
    ob.load_state_dict({"state": snap, "param_groups": sd["param_groups"]})
    for x in xs[3:]:
        for o, ps in ((oa, a), (ob, b)):
            o.zero_grad()
            _loss_vitc(ps, vitc.tensor(x), False).backward()
            o.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    # torch accepts vitc's layout too
    t = [torch.tensor(p.detach().numpy().copy(), requires_grad=True) for p in a]
    to = torch.optim.Adam(t, lr=1e-2, amsgrad=True)
    to.load_state_dict({"state": {i: {k: torch.tensor(v) for k, v in st.items()} for i, st in snap.items()},
                        "param_groups": sd["param_groups"]})


def test_state_dict_errors():
    p = [nn.Parameter(vitc.zeros(3))]
    o = optim.SGD(p, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="number of parameter groups"):
        o.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="doesn't match the size"):
        o.load_state_dict({"state": {}, "param_groups": [{"params": [0, 1], "lr": 0.1}]})
    with pytest.raises(ValueError, match="has shape"):
        o.load_state_dict({"state": {0: {"step": 1.0, "momentum_buffer": np.zeros(4, np.float32)}},
                           "param_groups": [{"params": [0], "lr": 0.1}]})


def test_bad_arguments():
    p = [nn.Parameter(vitc.zeros(3))]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam(p, lr=-1)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": p}, {"params": p}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p[0] * 2], lr=0.1)
    o = optim.Adam(p, lr=0.1)
    o.param_groups[0]["lr"] = -0.5
    p[0].grad = vitc.ones(3)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        o.step()


def test_closure_and_repr():
    p = nn.Parameter(vitc.ones(2))
    o = optim.SGD([p], lr=0.5)

    def closure():
        o.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert o.step(closure).item() == 2.0
    np.testing.assert_allclose(p.detach().numpy(), [0.0, 0.0])
    assert "lr: 0.5" in repr(o)


def test_step_kernels_reject_bad_buffers():
    from vitc._ops.optim_ops import adam_step, flat_view
    P, G = vitc.zeros(4), vitc.zeros(4)
    seg = vitc.tensor(np.array([[0, 4, 0, 1]], dtype=np.int64))
    with pytest.raises(ValueError, match="exp_avg has 3 elements"):
        adam_step(P, G, vitc.zeros(3), vitc.zeros(4), None, seg, 1e-3, 0.9, 0.999, 1e-8, 0, False, False, False)
    bad = vitc.tensor(np.array([[2, 4, 0, 1]], dtype=np.int64))
    with pytest.raises(ValueError, match="outside the buffer"):
        adam_step(P, G, vitc.zeros(4), vitc.zeros(4), None, bad, 1e-3, 0.9, 0.999, 1e-8, 0, False, False, False)
    with pytest.raises(ValueError, match="beta1"):
        adam_step(P, G, vitc.zeros(4), vitc.zeros(4), None, seg, 1e-3, 1.5, 0.999, 1e-8, 0, False, False, False)
    with pytest.raises(ValueError, match="does not fit"):
        flat_view(P, 2, (3,))
    with pytest.raises(ValueError, match="contiguous 1-d"):
        flat_view(vitc.zeros(2, 2), 0, (1,))
