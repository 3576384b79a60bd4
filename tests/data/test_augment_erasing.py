"""Random Erasing against timm's RandomErasing with `random` patched to vitc's boxes."""
import math
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm_re = pytest.importorskip("timm.data.random_erasing")

import vitc  # noqa: E402
import vitc.data as vd  # noqa: E402


def batch(b=16, c=3, h=20, w=24, seed=0):
    return np.random.default_rng(seed).standard_normal((b, c, h, w)).astype(np.float32)


def timm_with_boxes(monkeypatch, x, boxes, ours, **kw):
    """timm's RandomErasing with random.random/uniform/randint returning vitc's decisions and boxes;
    its fill (_get_pixels) returns what vitc wrote there, so everything else is compared exactly."""
    b, c, h, w = x.shape
    rnd, uni, ints, fills = [], [], [], []
    count = kw.get("min_count", 1)
    for i in range(b):
        placed = [bx for bx in boxes[i] if bx[0] >= 0]
        rnd.append(0.0 if len(placed) else 1.0)  # erase iff random() <= probability
        for top, left, bh, bw in placed:
            # uniform() -> an area fraction and a log-aspect giving exactly h×w after rounding
            uni += [bh * bw * count / (h * w), math.log(bh / bw)]
            ints += [top, left]
            fills.append(ours[i, :, top:top + bh, left:left + bw].copy())
    monkeypatch.setattr(random, "random", lambda: rnd.pop(0))
    monkeypatch.setattr(random, "uniform", lambda a, b_: uni.pop(0))
    monkeypatch.setattr(random, "randint", lambda a, b_: ints.pop(0))
    monkeypatch.setattr(timm_re, "_get_pixels", lambda *a, **k: torch.from_numpy(fills.pop(0)))
    ref = timm_re.RandomErasing(device="cpu", **kw)(torch.from_numpy(x.copy())).numpy()
    assert not rnd and not uni and not ints and not fills
    return ref


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_matches_timm_with_the_same_boxes(monkeypatch, mode):
    x = batch()
    er = vd.RandomErasing(probability=0.6, mode=mode, seed=2)
    ours = er(x)
    boxes = er.last_boxes
    assert boxes.shape == (16, 1, 4) and boxes.dtype == np.int64
    assert 0 < (boxes[:, 0, 0] >= 0).sum() < 16
    ref = timm_with_boxes(monkeypatch, x, boxes, ours, probability=0.6, mode=mode)
    np.testing.assert_array_equal(ours, ref)
    if mode == "const":  # the fill itself is checked too: zeros
        for i, (top, left, h, w) in enumerate(boxes[:, 0]):
            if top >= 0:
                assert np.all(ours[i, :, top:top + h, left:left + w] == 0)
    if mode == "rand":  # one value per channel
        for i, (top, left, h, w) in enumerate(boxes[:, 0]):
            if top >= 0:
                patch = ours[i, :, top:top + h, left:left + w]
                assert np.all(patch == patch[:, :1, :1])


def test_several_boxes_match_timm(monkeypatch):
    x = batch(b=8)
    kw = dict(probability=1.0, mode="const", min_count=3, max_count=3)
    er = vd.RandomErasing(seed=4, **kw)
    ours = er(x)
    assert er.last_boxes.shape == (8, 3, 4) and np.all(er.last_boxes[:, :, 0] >= 0)
    np.testing.assert_array_equal(ours, timm_with_boxes(monkeypatch, x, er.last_boxes, ours, **kw))
    # a random count in [1, 3]: boxes after the count are -1
    er = vd.RandomErasing(probability=1.0, min_count=1, max_count=3, seed=1)
    er(batch(b=200, c=1, h=8, w=8))
    counts = (er.last_boxes[:, :, 0] >= 0).sum(1)
    assert set(counts) == {1, 2, 3}


def test_boxes_follow_the_rule():
    h, w = 32, 40
    x = batch(b=3000, c=1, h=h, w=w)
    er = vd.RandomErasing(probability=0.25, mode="pixel", seed=7)
    out = er(x)
    bx = er.last_boxes[:, 0]
    on = bx[:, 0] >= 0
    assert abs(on.mean() - 0.25) < 0.03
    top, left, bh, bw = bx[on].T
    assert np.all(bh < h) and np.all(bw < w) and np.all(top + bh <= h) and np.all(left + bw <= w)
    area = bh * bw / (h * w)
    assert area.min() > 0.015 and area.max() < 0.36  # s ~ U(0.02, 1/3), up to rounding of h and w
    assert abs(np.mean(np.log(bh / bw))) < 0.05 and np.all(np.abs(np.log(bh / bw)) < math.log(1 / 0.3) + 0.3)
    assert top.min() == 0 and left.min() == 0  # placements reach the edges
    # fill ~ N(0, 1), untouched pixels unchanged
    vals = np.concatenate([out[i, :, t:t + a, l:l + b].ravel() for i, (t, l, a, b) in zip(np.where(on)[0], bx[on])])
    assert abs(vals.mean()) < 0.02 and abs(vals.std() - 1) < 0.02
    mask = np.zeros(x.shape, bool)
    for i, (t, l, a, b) in zip(np.where(on)[0], bx[on]):
        mask[i, :, t:t + a, l:l + b] = True
    np.testing.assert_array_equal(out[~mask], x[~mask])


def test_seeds_inputs_and_kinds():
    x = batch()
    a, b = vd.RandomErasing(probability=0.5, seed=3), vd.RandomErasing(probability=0.5, seed=3)
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(vd.RandomErasing(probability=0.5, seed=4)(x), vd.RandomErasing(probability=0.5, seed=3)(x))
    x0 = x.copy()
    vitc.manual_seed(1)
    t = vd.RandomErasing(probability=1.0)(vitc.from_numpy(x))
    assert isinstance(t, vitc.Tensor) and t.shape == x.shape
    np.testing.assert_array_equal(x, x0)  # the input is not modified
    vitc.manual_seed(1)
    np.testing.assert_array_equal(vd.RandomErasing(probability=1.0)(vitc.from_numpy(x)).numpy(), t.numpy())
    assert np.array_equal(vd.RandomErasing(probability=0.0, seed=0)(x), x)
    # as a DataLoader transform: (x, rng) -> x
    np.testing.assert_array_equal(a(x, np.random.default_rng(5)), b(x, np.random.default_rng(5)))


@pytest.mark.parametrize("kwargs, err", [
    (dict(probability=1.2), ValueError), (dict(min_area=0.0), ValueError), (dict(max_area=0.01), ValueError),
    (dict(min_aspect=-1), ValueError), (dict(mode="zero"), ValueError), (dict(min_count=0), ValueError),
    (dict(min_count=3, max_count=2), ValueError), (dict(probability="x"), TypeError),
])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        vd.RandomErasing(**kwargs)


def test_bad_inputs():
    er = vd.RandomErasing(seed=0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        er(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        er(np.zeros((1, 1, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="float32"):
        er(vitc.zeros((1, 1, 4, 4), dtype=vitc.int64))
