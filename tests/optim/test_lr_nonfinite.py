"""Every schedule refuses inf and NaN arguments with a ValueError naming the argument (before: OverflowError
from int(inf), or a NaN rate accepted silently)."""
import math

import pytest

from vitc import nn, optim
from vitc.optim import lr_scheduler as ls

INF, NAN = math.inf, math.nan


def _opt():
    return optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)


CASES = [
    (lambda o, v: ls.CosineLRScheduler(o, 10, warmup_t=v), "warmup_t"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, lr_min=v), "lr_min"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, cycle_limit=v), "cycle_limit"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, cycle_mul=v), "cycle_mul"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, cycle_decay=v), "cycle_decay"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, warmup_t=2, warmup_lr_init=v), "warmup_lr_init"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, k_decay=v), "k_decay"),
    (lambda o, v: ls.CosineLRScheduler(o, 10).step(v), "epoch"),
    (lambda o, v: ls.CosineLRScheduler(o, 10, t_in_epochs=False).step_update(v), "num_updates"),
    (lambda o, v: ls.LinearLR(o, total_iters=v), "total_iters"),
    (lambda o, v: ls.LinearLR(o, start_factor=v), "start_factor"),
    (lambda o, v: ls.LinearLR(o, end_factor=v), "end_factor"),
    (lambda o, v: ls.StepLR(o, 2, gamma=v), "gamma"),
    (lambda o, v: ls.MultiStepLR(o, [2], gamma=v), "gamma"),
    (lambda o, v: ls.CosineAnnealingLR(o, 5, eta_min=v), "eta_min"),
    (lambda o, v: ls.CosineAnnealingLR(o, 5).step(v), "epoch"),
    (lambda o, v: ls.OneCycleLR(o, max_lr=v, total_steps=10), "max_lr"),
    (lambda o, v: ls.OneCycleLR(o, max_lr=1.0, total_steps=10, div_factor=v), "div_factor"),
    (lambda o, v: ls.OneCycleLR(o, max_lr=1.0, total_steps=10, final_div_factor=v), "final_div_factor"),
    (lambda o, v: ls.OneCycleLR(o, max_lr=1.0, total_steps=10, max_momentum=v), "max_momentum"),
    (lambda o, v: ls.OneCycleLR(o, max_lr=1.0, total_steps=10, base_momentum=v), "base_momentum"),
    (lambda o, v: ls.ReduceLROnPlateau(o, factor=v), "factor"),
    (lambda o, v: ls.ReduceLROnPlateau(o, threshold=v), "threshold"),
    (lambda o, v: ls.ReduceLROnPlateau(o, min_lr=v), "min_lr"),
    (lambda o, v: ls.ReduceLROnPlateau(o, eps=v), "eps"),
    (lambda o, v: ls.RsqrtLR(o, 10, timescale=v), "timescale"),
    (lambda o, v: ls.RsqrtLR(o, 10).step_update(v), "num_updates"),
]


@pytest.mark.parametrize("value", [INF, -INF, NAN], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("build, name", CASES, ids=[f"{i}-{c[1]}" for i, c in enumerate(CASES)])
def test_non_finite_argument_is_refused_naming_it(build, name, value):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        build(_opt(), value)
