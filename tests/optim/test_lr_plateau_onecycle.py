"""OneCycleLR and ReduceLROnPlateau: rates (and cycled momenta) equal to torch's on the same settings."""
import pytest
import torch

import vitc
from vitc import nn, optim
from vitc.optim import lr_scheduler as ls


def _opts(kind):
    vp = [nn.Parameter(vitc.zeros(2)), nn.Parameter(vitc.zeros(3))]
    tp = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    if kind == "sgd":
        return (optim.SGD([{"params": vp[:1]}, {"params": vp[1:], "lr": 0.05}], lr=0.1, momentum=0.9),
                torch.optim.SGD([{"params": tp[:1]}, {"params": tp[1:], "lr": 0.05}], lr=0.1, momentum=0.9))
    return (optim.Adam([{"params": vp[:1]}, {"params": vp[1:]}], lr=0.1),
            torch.optim.Adam([{"params": tp[:1]}, {"params": tp[1:]}], lr=0.1))


def _state(opt):
    return [(g["lr"], g.get("momentum"), g.get("betas")) for g in opt.param_groups]


ONE_CYCLE = [
    ("sgd", dict(max_lr=1.0, total_steps=20)),
    ("sgd", dict(max_lr=[1.0, 0.5], epochs=3, steps_per_epoch=7, pct_start=0.25, anneal_strategy="linear")),
    ("adam", dict(max_lr=0.01, total_steps=17, three_phase=True, div_factor=10.0, final_div_factor=100.0)),
    ("adam", dict(max_lr=0.01, total_steps=12, base_momentum=0.8, max_momentum=[0.9, 0.95])),
    ("sgd", dict(max_lr=0.3, total_steps=9, cycle_momentum=False)),
]


@pytest.mark.parametrize("kind,kw", ONE_CYCLE, ids=[f"{k}{i}" for i, (k, _) in enumerate(ONE_CYCLE)])
def test_one_cycle_matches_torch(kind, kw):
    vo, to = _opts(kind)
    vs, ts = ls.OneCycleLR(vo, **kw), torch.optim.lr_scheduler.OneCycleLR(to, **kw)
    total = ts.total_steps
    assert vs.total_steps == total
    for _ in range(total - 1):
        for (a, am, ab), (b, bm, bb) in zip(_state(vo), _state(to)):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
            assert (am is None) == (bm is None) and (am is None or am == pytest.approx(bm, rel=1e-12))
            assert (ab is None) == (bb is None) and (ab is None or ab == pytest.approx(bb, rel=1e-12))
        assert vs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        vo.step()
        to.step()
        vs.step()
        ts.step()
    vs.step()  # step total_steps is allowed (torch too); one more is not
    with pytest.raises(ValueError, match="total_steps"):
        vs.step()


def test_one_cycle_bad_arguments():
    vo, _ = _opts("sgd")
    with pytest.raises(ValueError, match="total_steps"):
        ls.OneCycleLR(vo, max_lr=1.0)
    with pytest.raises(ValueError, match="anneal_strategy"):
        ls.OneCycleLR(vo, max_lr=1.0, total_steps=5, anneal_strategy="exp")
    with pytest.raises(ValueError, match="pct_start"):
        ls.OneCycleLR(vo, max_lr=1.0, total_steps=5, pct_start=1.5)
    with pytest.raises(ValueError, match="max_lr"):
        ls.OneCycleLR(vo, max_lr=[1.0], total_steps=5)
    plain = optim.SGD([nn.Parameter(vitc.zeros(1))], lr=0.1)
    del plain.defaults["momentum"]
    with pytest.raises(ValueError, match="cycle_momentum"):
        ls.OneCycleLR(plain, max_lr=1.0, total_steps=5)


METRICS = [5.0, 4.0, 4.0, 4.0, 3.9999, 4.1, 4.2, 4.3, 4.4, 2.0, 2.0, 2.5, 2.6, 2.7, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
           1.0, 1.0, 1.0, 1.0]

PLATEAU = [
    dict(),
    dict(patience=1, factor=0.5),
    dict(mode="max", patience=2, threshold=0.1, threshold_mode="abs", cooldown=2),
    dict(patience=0, factor=0.3, min_lr=[0.01, 0.02], cooldown=1),
    dict(patience=0, factor=0.9, min_lr=0.0999, eps=1e-3),
]


@pytest.mark.parametrize("kw", PLATEAU)
def test_plateau_matches_torch(kw):
    vo, to = _opts("sgd")
    vs = ls.ReduceLROnPlateau(vo, **kw)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(to, **kw)
    for m in METRICS:
        vs.step(m)
        ts.step(m)
        assert [g["lr"] for g in vo.param_groups] == pytest.approx([g["lr"] for g in to.param_groups], rel=1e-12)
        assert vs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        assert (vs.num_bad_epochs, vs.cooldown_counter, vs.best) == (ts.num_bad_epochs, ts.cooldown_counter, ts.best)
    sd = vs.state_dict()
    vo2, _ = _opts("sgd")
    vs2 = ls.ReduceLROnPlateau(vo2)
    vs2.load_state_dict(sd)
    assert (vs2.best, vs2.mode, vs2.patience) == (vs.best, vs.mode, vs.patience)


def test_plateau_bad_arguments():
    vo, _ = _opts("sgd")
    with pytest.raises(ValueError, match="factor"):
        ls.ReduceLROnPlateau(vo, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        ls.ReduceLROnPlateau(vo, mode="up")
    with pytest.raises(ValueError, match="threshold_mode"):
        ls.ReduceLROnPlateau(vo, threshold_mode="pct")
    with pytest.raises(ValueError, match="min_lr"):
        ls.ReduceLROnPlateau(vo, min_lr=[0.1])
    with pytest.raises(TypeError, match="metrics"):
        ls.ReduceLROnPlateau(vo).step("loss")
