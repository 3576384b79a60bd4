"""Mixup / CutMix against timm's Mixup with vitc's draws injected into np.random."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm_mixup = pytest.importorskip("timm.data.mixup")

import vitc  # noqa: E402
import vitc.data as vd  # noqa: E402

K = 7


def batch(b=6, c=3, h=9, w=11, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, c, h, w)).astype(np.float32), rng.integers(0, K, b).astype(np.int64)


class Draws:
    """np.random.rand/beta/randint replaced by queues of the values vitc drew."""

    def __init__(self, monkeypatch):
        self.rand, self.beta, self.randint = [], [], []
        monkeypatch.setattr(np.random, "rand", lambda *size: self.rand.pop(0))
        monkeypatch.setattr(np.random, "beta", lambda a, b, size=None: self.beta.pop(0))
        monkeypatch.setattr(np.random, "randint", lambda lo, hi, size=None: self.randint.pop(0))


def timm_batch_mode(monkeypatch, x, y, params, **kw):
    """timm's Mixup(mode='batch') fed the decisions, λ and box centre in vitc's params row 0."""
    applied, cut, lam, _, cy, cx = params[0, :6]
    d = Draws(monkeypatch)
    both = kw["mixup_alpha"] > 0 and kw["cutmix_alpha"] > 0
    d.rand = [0.0 if applied else 1.0] + ([0.0 if cut else 1.0] if both else [])
    d.beta = [float(lam)]
    d.randint = [int(cy), int(cx)]
    m = timm_mixup.Mixup(mode="batch", **kw)
    xt, yt = m(torch.from_numpy(x.copy()), torch.from_numpy(y))
    return xt.numpy(), yt.numpy()


def timm_elem_mode(monkeypatch, x, y, params, **kw):
    d = Draws(monkeypatch)
    applied, cut, lam = params[:, 0], params[:, 1], params[:, 2]
    both = kw["mixup_alpha"] > 0 and kw["cutmix_alpha"] > 0
    # _params_per_elem: the switch draw, the two Beta draws (np.where picks), then the mix draw
    d.rand = ([np.where(cut > 0, 0.0, 1.0)] if both else []) + [np.where(applied > 0, 0.0, 1.0)]
    d.beta = [lam.astype(np.float64)] * (2 if both else 1)
    d.randint = [int(v) for r in params if r[0] and r[1] and r[2] != 1 for v in (r[4], r[5])]
    m = timm_mixup.Mixup(mode="elem", **kw)
    xt, yt = m(torch.from_numpy(x.copy()), torch.from_numpy(y))
    return xt.numpy(), yt.numpy()


CONFIGS = [
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1),  # DeiT
    dict(mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, label_smoothing=0.0),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.6, switch_prob=0.5, label_smoothing=0.2),
    dict(mixup_alpha=0.3, cutmix_alpha=0.4, prob=0.8, switch_prob=0.3, label_smoothing=0.1, correct_lam=False),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_batch_mode_matches_timm(monkeypatch, kw):
    x, y = batch()
    seen = set()
    for seed in range(12):
        m = vd.Mixup(num_classes=K, seed=seed, **kw)
        xm, ys = m(x, y)
        p = m.last_params
        seen.add((int(p[0, 0]), int(p[0, 1])))
        xr, yr = timm_batch_mode(monkeypatch, x, y, p, num_classes=K, **kw)
        monkeypatch.undo()
        np.testing.assert_array_equal(xm, xr)
        np.testing.assert_array_equal(ys, yr)
    if kw["mixup_alpha"] and kw["cutmix_alpha"]:
        assert {(1, 0), (1, 1)} <= seen  # both Mixup and CutMix batches were checked


@pytest.mark.parametrize("kw", CONFIGS)
def test_elem_mode_matches_timm(monkeypatch, kw):
    x, y = batch(b=8)
    for seed in range(4):
        m = vd.Mixup(num_classes=K, seed=seed, mode="elem", **kw)
        xm, ys = m(x, y)
        xr, yr = timm_elem_mode(monkeypatch, x, y, m.last_params, num_classes=K, **kw)
        monkeypatch.undo()
        np.testing.assert_array_equal(xm, xr)
        np.testing.assert_array_equal(ys, yr)


def test_soft_targets_sum_to_one_and_cutmix_lambda_is_the_box_area():
    x, y = batch(b=8, h=16, w=12)
    cut_seen = 0
    for seed in range(20):
        m = vd.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K, seed=seed, mode="elem")
        xm, ys = m(x, y)
        np.testing.assert_allclose(ys.sum(1), 1.0, atol=1e-6)
        assert ys.shape == (8, K) and ys.dtype == np.float32
        for b, p in enumerate(m.last_params):
            applied, cut, lam_drawn, lam = p[:4]
            if not (applied and cut and lam_drawn != 1):
                continue
            cut_seen += 1
            y0, y1, x0, x1 = p[6:].astype(int)
            # the pixels that came from the partner B-1-b are exactly the box
            from_partner = np.all(xm[b] == x[7 - b], axis=0) & np.any(xm[b] != x[b], axis=0)
            assert from_partner.sum() == (y1 - y0) * (x1 - x0)
            assert lam == pytest.approx(1 - from_partner.sum() / (16 * 12), abs=1e-7)
            # and the label weights are λ and 1 - λ
            on, off = 1 - 0.1 + 0.1 / K, 0.1 / K
            expect = np.full(K, off) * 1.0
            expect[y[b]] += lam * (on - off)
            expect[y[7 - b]] += (1 - lam) * (on - off)
            np.testing.assert_allclose(ys[b], expect, atol=1e-6)
    assert cut_seen >= 10


def test_lambda_is_beta_distributed():
    stats = pytest.importorskip("scipy.stats")
    x, y = np.zeros((4000, 1, 1, 1), np.float32), np.zeros(4000, np.int64)
    for alpha in (0.3, 0.8, 2.0):
        m = vd.Mixup(mixup_alpha=alpha, cutmix_alpha=0.0, num_classes=2, seed=1, mode="elem")
        m(x, y)
        lam = m.last_params[:, 2]
        assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_seeds_reproduce_and_differ():
    x, y = batch()
    kw = dict(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
    a, b = vd.Mixup(seed=3, **kw), vd.Mixup(seed=3, **kw)
    for _ in range(3):  # the private streams advance alike
        (xa, ya), (xb, yb) = a(x, y), b(x, y)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(vd.Mixup(seed=4, **kw)(x, y)[0], vd.Mixup(seed=3, **kw)(x, y)[0])
    # seed=None: vitc's global generator, repeatable with manual_seed, and Tensors in and out
    vitc.manual_seed(5)
    t1 = vd.Mixup(**kw)(vitc.from_numpy(x), vitc.from_numpy(y))
    vitc.manual_seed(5)
    t2 = vd.Mixup(**kw)(vitc.from_numpy(x), vitc.from_numpy(y))
    assert isinstance(t1[0], vitc.Tensor) and isinstance(t1[1], vitc.Tensor)
    np.testing.assert_array_equal(t1[0].numpy(), t2[0].numpy())
    np.testing.assert_array_equal(t1[1].numpy(), t2[1].numpy())


def test_disabled_mixing_gives_smoothed_one_hot():
    x, y = batch()
    m = vd.Mixup(mixup_alpha=1.0, num_classes=K, seed=0, label_smoothing=0.1)
    m.mixup_enabled = False
    xm, ys = m(x, y)
    np.testing.assert_array_equal(xm, x)
    expect = np.full((len(y), K), np.float32(0.1 / K))
    expect[np.arange(len(y)), y] = np.float32(1 - 0.1 + 0.1 / K)
    np.testing.assert_array_equal(ys, expect)


def test_in_a_dataloader_with_soft_labels():
    x, y = batch(b=20, c=1)

    class DS:
        images, labels = x, y

        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], y[i]

    mix = vd.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
    run = lambda: [(a.copy(), b.copy()) for a, b in vd.DataLoader(DS(), 4, shuffle=True, seed=9, transform=mix, to_tensor=None)]  # noqa
    r1, r2 = run(), run()
    for (xa, ya), (xb, yb) in zip(r1, r2):
        assert ya.shape == (4, K) and ya.dtype == np.float32
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("kwargs, err", [
    (dict(mixup_alpha=0.0, cutmix_alpha=0.0), ValueError), (dict(mixup_alpha=-1.0), ValueError),
    (dict(prob=1.5), ValueError), (dict(switch_prob=-0.1), ValueError), (dict(label_smoothing=2.0), ValueError),
    (dict(mode="pair"), ValueError), (dict(num_classes=0), ValueError), (dict(num_classes=None), TypeError),
    (dict(seed=-1), ValueError), (dict(mixup_alpha="a"), TypeError),
])
def test_bad_arguments(kwargs, err):
    kw = dict(num_classes=K)
    kw.update(kwargs)
    with pytest.raises(err):
        vd.Mixup(**kw)


def test_bad_inputs():
    m = vd.Mixup(num_classes=K, seed=0)
    x, y = batch()
    with pytest.raises(ValueError, match="even"):
        m(x[:5], y[:5])
    with pytest.raises(TypeError, match="int64"):
        m(x, y.astype(np.float32))
    with pytest.raises(TypeError, match="float32"):
        m(x.astype(np.float64), y)
    with pytest.raises(ValueError, match="labels must have shape"):
        m(x, y[:4])
    with pytest.raises(ValueError, match="B, C, H, W"):
        m(x[0], y)
    with pytest.raises(IndexError, match="out of range"):
        m(x, np.full(len(y), K))
    with pytest.raises(TypeError):
        m([1, 2], y)
