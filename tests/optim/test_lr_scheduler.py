"""Learning-rate schedules against torch.optim.lr_scheduler and timm's CosineLRScheduler."""
import math

import pytest
import torch
from timm.scheduler import CosineLRScheduler as TimmCosine

import vitc
from vitc import nn, optim
from vitc.optim import lr_scheduler as ls


def _opts(lr=0.1, lr2=0.05):
    vp = [nn.Parameter(vitc.zeros(2)), nn.Parameter(vitc.zeros(3))]
    tp = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    vo = optim.SGD([{"params": vp[:1]}, {"params": vp[1:], "lr": lr2}], lr=lr)
    to = torch.optim.SGD([{"params": tp[:1]}, {"params": tp[1:], "lr": lr2}], lr=lr)
    return vo, to


def _trace(sched, opt, n):
    out = [list(sched.get_last_lr())]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(list(sched.get_last_lr()))
    return out


CASES = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=1e-4)),
    ("CosineAnnealingLR", dict(T_max=4)),
    ("LinearLR", dict(start_factor=0.25, end_factor=1.0, total_iters=4)),
    ("LambdaLR", dict(lr_lambda=lambda e: 0.9 ** e + 0.01 * e)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_matches_torch(name, kw):
    vo, to = _opts()
    vs = getattr(ls, name)(vo, **kw)
    ts = getattr(torch.optim.lr_scheduler, name)(to, **kw)
    a, b = _trace(vs, vo, 14), _trace(ts, to, 14)
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-12, abs=1e-15)
    assert [g["lr"] for g in vo.param_groups] == pytest.approx([g["lr"] for g in to.param_groups], rel=1e-12)


def test_sequential_matches_torch():
    vo, to = _opts()
    vs = ls.SequentialLR(vo, [ls.LinearLR(vo, start_factor=0.1, total_iters=3), ls.CosineAnnealingLR(vo, T_max=6)],
                         milestones=[3])
    ts = torch.optim.lr_scheduler.SequentialLR(
        to, [torch.optim.lr_scheduler.LinearLR(to, start_factor=0.1, total_iters=3),
             torch.optim.lr_scheduler.CosineAnnealingLR(to, T_max=6)], milestones=[3])
    for x, y in zip(_trace(vs, vo, 10), _trace(ts, to, 10)):
        assert x == pytest.approx(y, rel=1e-12)


def test_state_dict_resume():
    vo, _ = _opts()
    s = ls.CosineAnnealingLR(vo, T_max=10, eta_min=0.001)
    for _ in range(4):
        s.step()
    sd = s.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 4
    vo2, _ = _opts()
    for g, g2 in zip(vo.param_groups, vo2.param_groups):
        g2["lr"] = g["lr"]
    s2 = ls.CosineAnnealingLR(vo2, T_max=10, eta_min=0.001)
    s2.load_state_dict(sd)
    for _ in range(3):
        s.step()
        s2.step()
    assert s.get_last_lr() == s2.get_last_lr()


@pytest.mark.parametrize("kw", [
    dict(t_initial=300, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-6),  # DeiT (facebookresearch/deit main.py)
    dict(t_initial=10, lr_min=0.0, warmup_t=3, warmup_lr_init=1e-4, warmup_prefix=True),
    dict(t_initial=6, lr_min=1e-3, cycle_mul=2.0, cycle_decay=0.5, cycle_limit=3, k_decay=1.5),
])
def test_cosine_lr_scheduler_matches_timm(kw):
    vo, to = _opts(lr=5e-4, lr2=1e-3)
    vs, ts = ls.CosineLRScheduler(vo, **kw), TimmCosine(to, **kw)
    assert [g["lr"] for g in vo.param_groups] == pytest.approx([g["lr"] for g in to.param_groups])
    for epoch in range(1, 40):
        vs.step(epoch)
        ts.step(epoch)
        assert [g["lr"] for g in vo.param_groups] == pytest.approx([g["lr"] for g in to.param_groups], rel=1e-12)


def test_cosine_lr_scheduler_spec_formula_and_updates():
    vo, _ = _opts(lr=5e-4)
    s = ls.CosineLRScheduler(vo, t_initial=300, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-6)
    for e in (0, 3, 5, 120):
        s.step(e)
        want = 1e-6 + e * (5e-4 - 1e-6) / 5 if e < 5 else 1e-5 + 0.5 * (5e-4 - 1e-5) * (1 + math.cos(math.pi * e / 300))
        assert vo.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12)
    vo2, to2 = _opts()
    v2 = ls.CosineLRScheduler(vo2, t_initial=50, warmup_t=10, warmup_lr_init=0.0, t_in_epochs=False)
    t2 = TimmCosine(to2, t_initial=50, warmup_t=10, warmup_lr_init=0.0, t_in_epochs=False)
    for n in range(0, 70, 7):
        v2.step_update(n)
        t2.step_update(n)
        assert vo2.param_groups[0]["lr"] == pytest.approx(to2.param_groups[0]["lr"], rel=1e-12)


def test_bad_arguments():
    vo, _ = _opts()
    with pytest.raises(ValueError):
        ls.StepLR(vo, step_size=0)
    with pytest.raises(ValueError):
        ls.CosineAnnealingLR(vo, T_max=0)
    with pytest.raises(ValueError):
        ls.LambdaLR(vo, [lambda e: 1.0])
    with pytest.raises(TypeError):
        ls.StepLR(object(), step_size=2)
    with pytest.raises(ValueError):
        ls.CosineLRScheduler(vo, t_initial=0)
