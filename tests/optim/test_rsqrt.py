"""Warmup + reciprocal-sqrt + linear cooldown (Zhai et al. 2021 §3.5, big_vision's 'rsqrt' decay)."""
import math

import numpy as np
import pytest

import vitc
from vitc import nn, optim
from vitc.optim.lr_scheduler import RsqrtLR, rsqrt_factor
from vitc.train import train_one_epoch


def _formula(s, S, w, tau, c):
    """written out piece by piece, independently of rsqrt_factor"""
    if s >= S:
        return 0.0
    warm = s / w if (w and s < w) else 1.0
    decay = 1.0 if s < w else (1.0 + (s - w) / tau) ** -0.5
    cool = 1.0 if c == 0 else min(1.0, (S - s) / c)
    return warm * decay * cool


def _opt(lr=0.5):
    return optim.SGD([nn.Parameter(vitc.zeros(3))], lr=lr)


@pytest.mark.parametrize("S,w,tau,c", [(40, 5, 7.0, 10), (30, 0, 3.0, 0), (25, 25, 10.0, 0), (12, 0, 1.0, 12)])
def test_every_step_matches_formula_including_clamp(S, w, tau, c):
    opt = _opt()
    sch = RsqrtLR(opt, S, warmup_steps=w, timescale=tau, cooldown_steps=c)
    for s in range(S + 5):  # past the end: clamped at 0, never negative
        want = 0.5 * _formula(s, S, w, tau, c)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12, abs=1e-15), s
        assert rsqrt_factor(s, S, w, tau, c) >= 0.0
        opt.step()
        sch.step()
    if w:
        assert rsqrt_factor(0, S, w, tau, c) == 0.0


def test_fractions_of_total():
    a = RsqrtLR(_opt(), 100, warmup_steps=0.1, cooldown_steps=0.25)
    assert (a.warmup_steps, a.cooldown_steps) == (10, 25)


def test_fit_steps_the_schedule_once_per_update():
    """vitc.train calls step_update(n) after every update; the rate each update used is base·f(n)"""
    vitc.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = optim.SGD(model.parameters(), lr=0.2)
    sch = RsqrtLR(opt, 12, warmup_steps=3, timescale=2.0, cooldown_steps=4)
    seen = []

    def loss_fn(z, y):
        seen.append(opt.param_groups[0]["lr"])
        return vitc.cross_entropy(z, y)

    rng = np.random.default_rng(0)
    batches = [(vitc.from_numpy(rng.random((5, 4), dtype=np.float32)), vitc.tensor(rng.integers(0, 3, 5)))
               for _ in range(14)]
    train_one_epoch(model, batches, opt, loss_fn, scheduler=sch, progress=False)
    assert seen == pytest.approx([0.2 * _formula(s, 12, 3, 2.0, 4) for s in range(14)], rel=1e-12, abs=1e-15)
    assert seen[-2:] == [0.0, 0.0]


def test_branch_cooldowns_from_one_run():
    """one long rsqrt run, branched at update 20 into cooldowns ending at 30 and at 50"""
    base = RsqrtLR(_opt(), 1000, warmup_steps=5, timescale=10.0)
    for _ in range(20):
        base.step()
    state = base.state_dict()
    for total, cool in ((30, 10), (50, 20)):
        opt = _opt()
        b = RsqrtLR(opt, 1000, warmup_steps=5, timescale=10.0)
        b.load_state_dict(state)
        b.branch(total, cool)
        for s in range(20, total + 2):
            assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * _formula(s, total, 5, 10.0, cool), rel=1e-12)
            b.step()
        assert opt.param_groups[0]["lr"] == 0.0
    with pytest.raises(ValueError, match="before the current update 20"):
        _branched(state).branch(25, 10)


def _branched(state):
    b = RsqrtLR(_opt(), 1000)
    b.load_state_dict(state)
    return b


def test_bad_input():
    with pytest.raises(ValueError, match=r"warmup_steps \(50\) exceeds total_steps \(40\)"):
        RsqrtLR(_opt(), 40, warmup_steps=50)
    with pytest.raises(ValueError, match="exceed total_steps"):
        RsqrtLR(_opt(), 40, warmup_steps=30, cooldown_steps=20)
    with pytest.raises(ValueError, match="total_steps"):
        RsqrtLR(_opt(), 0)
    with pytest.raises(ValueError, match="timescale"):
        RsqrtLR(_opt(), 10, timescale=0)
    with pytest.raises(ValueError, match="fraction"):
        RsqrtLR(_opt(), 10, warmup_steps=1.5)
    with pytest.raises(TypeError, match="warmup_steps"):
        RsqrtLR(_opt(), 10, warmup_steps="3")
    with pytest.raises(TypeError, match="not a vitc Optimizer"):
        RsqrtLR(object(), 10)
    assert math.isclose(rsqrt_factor(10, 10), 0.0)
