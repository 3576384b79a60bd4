"""Few-shot linear evaluation: the closed-form ridge against an independent NumPy solve, the shot
draws, features from registry models, and bad input."""
import numpy as np
import pytest

import vitc
from vitc.eval import extract_features, fewshot_accuracy, fewshot_evaluate, ridge_fewshot_fit
from vitc.models import create_model


def _ridge_by_lstsq(x, y, k, lam):
    """The same ridge problem as an augmented ordinary least-squares problem (a different method):
    min ‖XsW − Y‖² + λ‖W‖²  ==  min ‖[Xs; √λ I] W − [Y; 0]‖²."""
    mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + 1e-5
    xs = np.hstack([(x - mean) / std, np.full((len(x), 1), 100.0)])
    y1 = 2.0 * np.eye(k)[y] - 1.0
    d = xs.shape[1]
    a = np.vstack([xs, np.sqrt(lam) * np.eye(d)])
    b = np.vstack([y1, np.zeros((d, k))])
    return mean, std, np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.parametrize("n,d", [(40, 8), (6, 30)])  # primal (n > D) and dual (n < D) forms
def test_ridge_equals_independent_solve(n, d):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d) + rng.normal(size=d)
    y = rng.integers(0, 3, size=n)
    for lam in (2.0 ** 10, 1e-3):
        mean, std, w = ridge_fewshot_fit(x, y, 3, lam)
        m2, s2, w2 = _ridge_by_lstsq(x, y, 3, lam)
        np.testing.assert_allclose(mean, m2)
        np.testing.assert_allclose(std, s2)
        np.testing.assert_allclose(w, w2, rtol=1e-7, atol=1e-9)
    xt = rng.normal(size=(25, d))
    yt = rng.integers(0, 3, size=25)
    xs = np.hstack([(xt - m2) / s2, np.full((25, 1), 100.0)])
    assert fewshot_accuracy(x, y, xt, yt, 3) == pytest.approx(np.mean((xs @ _ridge_by_lstsq(x, y, 3, 2.0 ** 10)[2])
                                                                      .argmax(1) == yt))


def test_shot_draws_are_seeded_and_nested():
    rng = np.random.default_rng(1)
    k, per = 4, 30
    y = np.repeat(np.arange(k), per)
    x = rng.normal(size=(k * per, 5)) + y[:, None]  # separable-ish
    xt, yt = rng.normal(size=(50, 5)) + np.arange(50)[:, None] % k, np.arange(50) % k
    a = fewshot_evaluate(x, y, xt, yt, shots=(1, 5, 25), seeds=3)
    b = fewshot_evaluate(x, y, xt, yt, shots=(1, 5, 25), seeds=3)
    assert a == b and all(len(v) == 3 for v in a["per_seed"].values())
    assert a["mean"][25] == pytest.approx(np.mean(a["per_seed"][25]))
    # the draws are numpy.random.default_rng(seed), one permutation per class, first s kept
    for seed in range(3):
        g = np.random.default_rng(seed)
        perms = [g.permutation(np.flatnonzero(y == c)) for c in range(k)]
        for s in (1, 5, 25):
            idx = np.concatenate([p[:s] for p in perms])
            assert a["per_seed"][s][seed] == fewshot_accuracy(x[idx], y[idx], xt, yt, k)


def test_class_split_remaps_labels():
    """train on classes 0-4 elsewhere, evaluate few-shot on classes 5-9: labels 5..9 become 0..4"""
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(10), 12)
    x = rng.normal(size=(120, 6)) + 3 * np.eye(10)[y][:, :6]
    res = fewshot_evaluate(x, y, x, y, shots=(10,), seeds=2, classes=range(5, 10))
    sel = y >= 5
    want = fewshot_evaluate(x[sel], y[sel] - 5, x[sel], y[sel] - 5, shots=(10,), seeds=2)
    assert res == want


def test_fashion_mnist_pixels_ten_shot_beats_chance():
    """on real data, 10-shot ridge on raw pixels is far above chance (10 %)"""
    ds = vitc.data.FashionMNIST(train=True, subset=2000)
    te = vitc.data.FashionMNIST(train=False, subset=1000)
    ftr = ds.images.reshape(len(ds), -1)
    fte = te.images.reshape(len(te), -1)
    res = fewshot_evaluate(ftr, ds.labels, fte, te.labels, shots=(10,), seeds=2)
    assert res["mean"][10] > 0.45


@pytest.mark.parametrize("name", ["vit_seed_mnist", "deit_mnist_distilled", "deepvit_seed_mnist"])
def test_features_from_registry_models(name):
    vitc.manual_seed(0)
    model = create_model(name, **({"depth": 2} if name != "deit_mnist_distilled" else {}))
    x = np.random.default_rng(3).random((10, 1, 28, 28), dtype=np.float32)
    f = extract_features(model, x, batch_size=4)
    head = getattr(model, "mlp_head")
    assert f.shape == (10, head.weight.shape[1]) and f.dtype == np.float64
    assert model.training  # restored
    # the features are what the classifier sees: its output on them equals the model's eval logits
    model.eval()
    with vitc.no_grad():
        logits = model(vitc.from_numpy(x)).numpy()
        if isinstance(logits, tuple):
            logits = logits[0]
    w, b = head.weight.detach().numpy().astype(np.float64), head.bias.detach().numpy().astype(np.float64)
    if name != "deit_mnist_distilled":  # DeiT's eval logits fuse two heads
        np.testing.assert_allclose(f @ w.T + b, logits, rtol=1e-4, atol=1e-4)
    f2 = extract_features(model, x, features=lambda t: t.reshape(t.shape[0], -1))
    np.testing.assert_array_equal(f2, x.reshape(10, -1).astype(np.float64))


def test_bad_input():
    x, y = np.zeros((6, 3)), np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="class 0 has 3 training examples, fewer than 5 shots"):
        fewshot_evaluate(x, y, x, y, shots=(1, 5))
    with pytest.raises(ValueError, match="shots"):
        fewshot_evaluate(x, y, x, y, shots=(0,))
    with pytest.raises(ValueError, match="seeds"):
        fewshot_evaluate(x, y, x, y, shots=(1,), seeds=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fewshot_evaluate(x, np.zeros(6, int), x, y, shots=(1,))
    with pytest.raises(ValueError, match="labels must be"):
        ridge_fewshot_fit(x, y[:5], 2)
    with pytest.raises(TypeError, match="integers"):
        ridge_fewshot_fit(x, y.astype(float), 2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        ridge_fewshot_fit(x, y + 1, 2)
    with pytest.raises(ValueError, match="l2_reg"):
        ridge_fewshot_fit(x, y, 2, l2_reg=0)
    with pytest.raises(ValueError, match="test features"):
        fewshot_accuracy(x, y, np.zeros((2, 4)), [0, 1], 2)
    with pytest.raises(ValueError, match="no mlp_head"):
        extract_features(vitc.nn.Linear(3, 2), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        extract_features(create_model("vit_seed_mnist", depth=1), np.zeros((0, 1, 28, 28), np.float32))
