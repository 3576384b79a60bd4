import numpy as np
import pytest

import _vitc_data_under_test as vd


def _batch(n=6, c=3, h=5, w=7, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_normalize_math():
    x = _batch()
    mean, std = [0.1, 0.2, 0.3], [0.5, 2.0, 0.25]
    out = vd.Normalize(mean, std)(x)
    m = np.array(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.array(std, np.float32).reshape(1, 3, 1, 1)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.array_equal(out, (x - m) / s)
    assert np.allclose(out[:, 1], (x[:, 1] - 0.2) / 2.0)
    assert np.array_equal(vd.Normalize(0.5, 0.5)(x), (x - np.float32(0.5)) / np.float32(0.5))
    assert np.array_equal(vd.Normalize([0.5], [0.5])(x), vd.Normalize(0.5, 0.5)(x))


def test_normalize_leaves_input_alone():
    x = _batch()
    before = x.copy()
    vd.Normalize(0.3, 0.7)(x, rng())
    assert np.array_equal(x, before)


def test_flip_p1_equals_np_flip_and_p0_is_identity():
    x = _batch()
    assert np.array_equal(vd.RandomHorizontalFlip(p=1)(x, rng()), np.flip(x, axis=-1))
    out = vd.RandomHorizontalFlip(p=0.0)(x, rng())
    assert np.array_equal(out, x) and out is not x


def test_flip_is_per_sample():
    x = _batch(n=200, c=1, h=2, w=3)
    out = vd.RandomHorizontalFlip()(x, rng(1))
    flipped = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == x, axis=(1, 2, 3))
    assert np.all(flipped | kept) and 60 < flipped.sum() < 140


def test_crop_identity_cases():
    x = _batch()
    assert np.array_equal(vd.RandomCrop((5, 7), padding=0)(x, rng()), x)
    sq = _batch(h=6, w=6)
    assert np.array_equal(vd.RandomCrop(6)(sq, rng()), sq)


def test_crop_offsets_are_per_sample_and_zero_padded():
    x = np.arange(1, 1 + 50 * 16, dtype=np.float32).reshape(50, 1, 4, 4)
    out = vd.RandomCrop(4, padding=2)(x, rng(3))
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(50):  # each output is some 4×4 window of the zero-padded image
        hits = [(r, c) for r in range(5) for c in range(5)
                if np.array_equal(out[i], padded[i, :, r:r + 4, c:c + 4])]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 5


def test_crop_smaller_than_image():
    x = _batch(h=8, w=9)
    out = vd.RandomCrop((3, 4))(x, rng())
    assert out.shape == (6, 3, 3, 4)


def test_compose_shapes_and_determinism():
    t = vd.Compose([vd.RandomCrop(5, padding=1), vd.RandomHorizontalFlip(), vd.Normalize(0.5, 0.25)])
    x = _batch(h=5, w=5)
    a, b = t(x, rng(7)), t(x, rng(7))
    assert a.shape == x.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, t(x, rng(8)))
    assert np.array_equal(vd.Compose([])(x, rng()), x)


@pytest.mark.parametrize("make", [
    lambda: vd.Normalize(0.5, 0),
    lambda: vd.Normalize(0.5, -1),
    lambda: vd.Normalize([0.1, 0.2], [0.1, 0.2, 0.3]),
    lambda: vd.Normalize(float("nan"), 1),
    lambda: vd.Normalize([], []),
    lambda: vd.RandomCrop(0),
    lambda: vd.RandomCrop((3, 0)),
    lambda: vd.RandomCrop(3, padding=-1),
    lambda: vd.RandomCrop(3, padding=1.5),
    lambda: vd.RandomCrop(2.5),
    lambda: vd.RandomHorizontalFlip(p=1.5),
    lambda: vd.RandomHorizontalFlip(p=-0.1),
    lambda: vd.RandomHorizontalFlip(p="0.5"),
])
def test_bad_constructor_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_bad_call_arguments():
    x = _batch()
    with pytest.raises(ValueError, match="channels"):
        vd.Normalize([0.1, 0.2], [1, 1])(x)
    with pytest.raises(ValueError, match="N, C, H, W"):
        vd.Normalize(0, 1)(x[0])
    with pytest.raises(TypeError, match="float"):
        vd.Normalize(0, 1)(x.astype(np.uint8))
    with pytest.raises(ValueError, match="larger"):
        vd.RandomCrop(9)(x, rng())
    with pytest.raises(TypeError, match="Generator"):
        vd.RandomCrop(3)(x, None)
    with pytest.raises(TypeError, match="Generator"):
        vd.RandomHorizontalFlip()(x, 0)
    with pytest.raises(TypeError, match="callables"):
        vd.Compose([vd.Normalize(0, 1), 3])
