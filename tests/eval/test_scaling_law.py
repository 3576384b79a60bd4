"""vitc.eval.scaling_law: the saturating power law E = a·(C + d)^(−b) + c (Zhai et al. 2022, §2 Eq. 1)
recovered from synthetic points, the Pareto frontier, the d > 0 comparison, and bad input."""
import numpy as np
import pytest

pytest.importorskip("scipy")
from vitc.eval.scaling_law import (bootstrap_power_law, compare_shift, fit_power_law, pareto_frontier,  # noqa: E402
                                   saturating_power_law)

TRUE = dict(a=30.0, b=0.25, c=0.08, d=3e10)
C = np.logspace(9, 15, 25)


def noisy(params, sigma, seed):
    rng = np.random.default_rng(seed)
    return saturating_power_law(C, **params) * np.exp(rng.normal(0.0, sigma, C.size))


def test_exact_points_are_recovered():
    f = fit_power_law(C, saturating_power_law(C, **TRUE))
    assert f.b == pytest.approx(TRUE["b"], rel=1e-4) and f.c == pytest.approx(TRUE["c"], rel=1e-4)
    assert f.a == pytest.approx(TRUE["a"], rel=1e-3) and f.d == pytest.approx(TRUE["d"], rel=1e-3)
    assert f.rss < 1e-12 and len(f.error) == C.size


def test_noisy_points_true_parameters_inside_the_bootstrap_intervals():
    e = noisy(TRUE, 0.02, seed=1)
    f = bootstrap_power_law(C, e, n_boot=150, seed=0)
    for k, v in TRUE.items():
        lo, hi = f.intervals[k]
        assert lo <= v <= hi, (k, lo, v, hi)
    lo, hi = f.intervals["c"]
    assert hi - lo < 0.05  # the floor is pinned down by the flat end
    assert f.intervals["used"] + f.intervals["skipped"] == 150
    one, two = (bootstrap_power_law(C, e, n_boot=20, seed=5) for _ in range(2))  # seeded: the same intervals
    assert one.intervals["b"] == two.intervals["b"] and one.intervals["b"] != f.intervals["b"]


def test_pareto_frontier_keeps_only_unbeaten_points():
    x = [1, 2, 3, 4, 5, 5]
    e = [0.5, 0.6, 0.4, 0.45, 0.3, 0.2]
    assert pareto_frontier(x, e).tolist() == [0, 2, 5]
    f = fit_power_law(C, np.r_[saturating_power_law(C, **TRUE)[:-1], 0.99])  # the last point is dominated
    assert len(f.error) == C.size - 1


def test_shift_needed_only_when_the_data_has_one():
    assert compare_shift(C, noisy(TRUE, 0.01, seed=2))["needed"]
    res = compare_shift(C, noisy(dict(TRUE, d=0.0), 0.01, seed=3))
    assert not res["needed"] and res["zero"].fix_d and res["zero"].d == 0.0
    assert res["p_value"] is not None and 0.0 <= res["p_value"] <= 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="cannot determine 4 parameters"):
        fit_power_law([1e9, 1e10, 1e11], [0.5, 0.4, 0.3])
    with pytest.raises(ValueError, match="cannot determine 3 parameters"):
        fit_power_law([1e9, 1e10], [0.5, 0.4], fix_d=True)
    with pytest.raises(ValueError, match="cannot determine"):  # 5 points, only 3 on the frontier
        fit_power_law([1, 2, 3, 4, 5], [0.5, 0.6, 0.4, 0.45, 0.3])
    with pytest.raises(ValueError, match="compute must be finite and > 0"):
        fit_power_law([0, 1, 2, 3, 4], [0.5, 0.4, 0.3, 0.2, 0.1])
    for bad in (1.5, -0.1, 0.0, np.nan):
        with pytest.raises(ValueError, match=r"errors must be rates in \(0, 1\]"):
            fit_power_law([1, 2, 3, 4, 5], [0.5, 0.4, 0.3, 0.2, bad])
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2, 3], [0.5, 0.4])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_power_law(C, saturating_power_law(C, **TRUE), n_boot=0)
