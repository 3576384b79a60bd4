"""The saturating power law of error against compute (Zhai et al., "Scaling Vision Transformers",
CVPR 2022, arXiv 2106.04560, §2 Eq. 1):

    E(C) = a · (C + d)^(−b) + c,      a > 0, b > 0, 0 ≤ c < 1, d ≥ 0,

E an error rate, C compute (or images seen); c is the irreducible error the largest models level
off at, d a shift of the compute axis that keeps the smallest models (which are better than a pure
power law predicts: even a trivial classifier has error below 1) above the curve.

The paper fits the law to the Pareto frontier of (compute, error) but does not give its procedure;
vitc's choice: least squares of log Ê(C_i) − log E_i (relative errors, so every decade of compute
counts alike) with scipy.optimize.least_squares under the bounds above, from several starts, the
best kept. Compute is divided by its geometric mean first (a = α·s^b, d = δ·s), which keeps the
problem well conditioned over many decades. Confidence intervals come from a seeded bootstrap over
the frontier points; ``compare_shift`` fits with d free and with d = 0 and says whether the shift is
needed (F-test on the two residual sums of squares, and AIC).
"""
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["saturating_power_law", "pareto_frontier", "PowerLawFit", "fit_power_law", "bootstrap_power_law",
           "compare_shift"]

_PARAMS = ("a", "b", "c", "d")


def saturating_power_law(compute, a, b, c, d=0.0):
    """E = a·(C + d)^(−b) + c, elementwise."""
    return a * np.power(np.asarray(compute, dtype=np.float64) + d, -b) + c


def _check_points(compute, error, who):
    x = np.asarray(compute, dtype=np.float64).ravel()
    e = np.asarray(error, dtype=np.float64).ravel()
    if x.shape != e.shape:
        raise ValueError(f"{who}: compute and error must have the same length, got {x.size} and {e.size}")
    if x.size == 0:
        raise ValueError(f"{who}: no points")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{who}: compute must be finite and > 0 (FLOPs or images), got min {np.min(x)!r}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0) or np.any(e > 1):
        bad = e[~(np.isfinite(e) & (e > 0) & (e <= 1))]
        raise ValueError(f"{who}: errors must be rates in (0, 1] (the fit is in log space, so an error of 0 "
                         f"cannot be used), got {bad[:3].tolist()}")
    return x, e


def pareto_frontier(compute, error):
    """Indices of the points no cheaper-or-equal point beats: sorted by compute, each has a lower error
    than every point with less (or equal) compute. Returns an int array ordered by compute."""
    x, e = _check_points(compute, error, "pareto_frontier")
    order = np.lexsort((e, x))  # by compute, ties by error
    keep, best = [], math.inf
    for i in order:
        if e[i] < best:
            keep.append(i)
            best = e[i]
    return np.asarray(keep, dtype=np.int64)


@dataclass
class PowerLawFit:
    """A fitted law: parameters, the log residuals log Ê − log E of the points it was fitted to, the
    residual sum of squares, whether d was fixed at 0, and the points."""
    a: float
    b: float
    c: float
    d: float
    rss: float
    residuals: np.ndarray
    compute: np.ndarray
    error: np.ndarray
    fix_d: bool = False
    intervals: dict = field(default_factory=dict)

    @property
    def num_params(self):
        return 3 if self.fix_d else 4

    @property
    def params(self):
        return {k: getattr(self, k) for k in _PARAMS}

    def predict(self, compute):
        return saturating_power_law(compute, self.a, self.b, self.c, self.d)

    def aic(self):
        """Akaike's criterion for Gaussian log residuals: n·log(RSS/n) + 2k."""
        n = len(self.error)
        return n * math.log(max(self.rss, 1e-300) / n) + 2 * self.num_params


def _residuals(theta, x, loge, fix_d):
    alpha, b, c = math.exp(theta[0]), theta[1], theta[2]
    delta = 0.0 if fix_d else theta[3]
    return np.log(alpha * np.power(x + delta, -b) + c) - loge


def _jacobian(theta, x, loge, fix_d):
    """∂(log Ê)/∂(log α, b, c, δ) with P = α(x+δ)^(−b), Ê = P + c."""
    alpha, b, c = math.exp(theta[0]), theta[1], theta[2]
    delta = 0.0 if fix_d else theta[3]
    xd = x + delta
    p = alpha * np.power(xd, -b)
    inv = 1.0 / (p + c)
    cols = [p * inv, -p * np.log(xd) * inv, inv] + ([] if fix_d else [-b * p / xd * inv])
    return np.stack(cols, axis=1)


def _solve(x, e, fix_d, starts):
    from scipy.optimize import least_squares
    loge = np.log(e)
    lo = [-np.inf, 1e-6, 0.0] + ([] if fix_d else [0.0])
    hi = [np.inf, 20.0, 1.0 - 1e-9] + ([] if fix_d else [np.inf])
    best = None
    for th in starts:
        th = np.clip(np.asarray(th, dtype=np.float64), np.array(lo) + 1e-12, np.array(hi) - 1e-12)
        try:
            r = least_squares(_residuals, th, bounds=(lo, hi), args=(x, loge, fix_d), method="trf", jac=_jacobian,
                              x_scale="jac", max_nfev=300)
        except (ValueError, FloatingPointError):
            continue
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        raise RuntimeError("fit_power_law: no start converged")
    return best


def _starts(x, e, fix_d):
    """Several starting points: exponents 0.1–1, floors 0 to 0.9·min E, shifts 0 and the cheapest point's
    compute; α from the cheapest point."""
    i0 = int(np.argmin(x))
    out = []
    for b in (0.1, 0.3, 0.6, 1.0):
        for cf in (0.0, 0.5, 0.9):
            c = cf * float(np.min(e))
            for delta in ((0.0,) if fix_d else (0.0, float(x[i0]))):
                alpha = max(float(e[i0]) - c, 1e-6) * (x[i0] + delta) ** b
                out.append([math.log(alpha), b, c] + ([] if fix_d else [delta]))
    return out


def fit_power_law(compute, error, fix_d=False, frontier=True, starts=None):
    """Fit E = a·(C + d)^(−b) + c to (compute, error) points; ``frontier`` (default) fits the Pareto
    frontier only (``pareto_frontier``), as the paper does. fix_d=True fixes d = 0 (3 parameters).
    Raises ValueError for fewer (frontier) points than parameters, compute ≤ 0, or errors outside (0, 1]."""
    x, e = _check_points(compute, error, "fit_power_law")
    if frontier:
        idx = pareto_frontier(x, e)
        x, e = x[idx], e[idx]
    k = 3 if fix_d else 4
    if len(x) < k:
        raise ValueError(f"fit_power_law: {len(x)} {'frontier ' if frontier else ''}points cannot determine "
                         f"{k} parameters (a, b, c{', d' if not fix_d else ''}); give at least {k}")
    scale = float(np.exp(np.mean(np.log(x))))
    xs = x / scale
    r = _solve(xs, e, fix_d, starts if starts is not None else _starts(xs, e, fix_d))
    alpha, b, c = math.exp(r.x[0]), float(r.x[1]), float(r.x[2])
    delta = 0.0 if fix_d else float(r.x[3])
    return PowerLawFit(a=alpha * scale ** b, b=b, c=c, d=delta * scale, rss=float(2 * r.cost),
                       residuals=np.asarray(r.fun, dtype=np.float64), compute=x, error=e, fix_d=bool(fix_d))


def bootstrap_power_law(compute, error, n_boot=1000, seed=0, level=0.95, fix_d=False, frontier=True):
    """The fit plus percentile bootstrap intervals: the (frontier) points are resampled with replacement
    ``n_boot`` times (numpy default_rng(seed)) and refitted; resamples with fewer distinct points than
    parameters are skipped (their count is returned). Returns the PowerLawFit with ``intervals`` =
    {'a': (lo, hi), ..., 'samples': {name: array}, 'used': n, 'skipped': n, 'level': level}."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"bootstrap_power_law: n_boot must be an int >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_power_law: level must be in (0, 1), got {level!r}")
    fit = fit_power_law(compute, error, fix_d=fix_d, frontier=frontier)
    x, e, k = fit.compute, fit.error, fit.num_params
    rng = np.random.default_rng(seed)
    scale = float(np.exp(np.mean(np.log(x))))
    th0 = [math.log(fit.a / scale ** fit.b), fit.b, fit.c] + ([] if fix_d else [fit.d / scale])
    samples, skipped = {p: [] for p in _PARAMS}, 0
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(idx)) < k:
            skipped += 1
            continue
        xs, es = x[idx] / scale, e[idx]
        r = _solve(xs, es, fix_d, [th0, _starts(xs, es, fix_d)[0]])  # from the full fit, and one plain start
        alpha, b, c = math.exp(r.x[0]), float(r.x[1]), float(r.x[2])
        for name, v in zip(_PARAMS, (alpha * scale ** b, b, c, 0.0 if fix_d else float(r.x[3]) * scale)):
            samples[name].append(v)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    iv = {p: tuple(float(v) for v in np.percentile(s, q)) if s else (math.nan, math.nan)
          for p, s in samples.items()}
    iv.update(samples={p: np.asarray(s) for p, s in samples.items()}, used=n_boot - skipped, skipped=skipped,
              level=level)
    fit.intervals = iv
    return fit


def compare_shift(compute, error, frontier=True, alpha=0.05):
    """Is the shift d > 0 needed? Fits with d free and with d = 0 and compares them: the F statistic of the
    extra parameter, F = (RSS₀ − RSS₁) / (RSS₁ / (n − 4)), its p-value, and both AICs. ``needed`` is
    true when the free fit has d > 0, lower AIC and p < alpha (with n = 4 points there is no F-test and
    only the AIC decides)."""
    free = fit_power_law(compute, error, frontier=frontier)
    zero = fit_power_law(compute, error, fix_d=True, frontier=frontier)
    n = len(free.error)
    dof = n - 4
    f_stat = p = None
    if dof > 0:
        from scipy.stats import f as f_dist
        rss1 = max(free.rss, 1e-300)
        f_stat = max(zero.rss - free.rss, 0.0) / (rss1 / dof)
        p = float(f_dist.sf(f_stat, 1, dof))
    aic_free, aic_zero = free.aic(), zero.aic()
    needed = free.d > 0 and aic_free < aic_zero and (p is None or p < alpha)
    return {"free": free, "zero": zero, "points": n, "F": f_stat, "p_value": p, "aic_free": aic_free,
            "aic_zero": aic_zero, "needed": bool(needed)}
