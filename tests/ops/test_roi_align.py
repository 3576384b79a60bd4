"""roi_align against torchvision.ops.roi_align (aligned False and True, adaptive and fixed sampling) on
random maps, boxes and output sizes; a hand-computed case; bad calls; allocation failures."""
import numpy as np
import pytest
import torch
import torchvision

import vitc
from opcheck import assert_same_at_1_and_2_threads, check_allocation_failures


def _boxes(rng, k, b, h, w):
    x1, y1 = rng.uniform(-2, w, k), rng.uniform(-2, h, k)
    x2, y2 = x1 + rng.uniform(0, w, k), y1 + rng.uniform(0, h, k)
    return np.stack([rng.integers(0, b, k), x1, y1, x2, y2], 1).astype(np.float32)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [-1, 2])
def test_matches_torchvision_on_random_cases(aligned, ratio):
    rng = np.random.default_rng(int(aligned) * 10 + ratio + 3)
    for _ in range(25):
        b, c, h, w = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 12), rng.integers(1, 12)
        x = rng.standard_normal((b, c, h, w)).astype(np.float32)
        boxes = _boxes(rng, int(rng.integers(1, 6)), b, h, w)
        out = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
        scale = float(rng.choice([1.0, 0.5, 2.0]))
        got = vitc.roi_align(vitc.tensor(x), vitc.tensor(boxes), out, scale, ratio, aligned).numpy()
        want = torchvision.ops.roi_align(torch.tensor(x), torch.tensor(boxes), out, scale, ratio, aligned).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_whole_map_to_one_cell_is_the_mean_by_hand():
    # box (-0.5, -0.5, 1.5, 1.5) over a 2×2 map, one output cell: 2×2 samples at the pixel centres
    x = np.array([[[[1.0, 2.0], [3.0, 6.0]]]], np.float32)
    got = vitc.roi_align(vitc.tensor(x), vitc.tensor(np.array([[0, -0.5, -0.5, 1.5, 1.5]], np.float32)), 1).numpy()
    assert got.shape == (1, 1, 1, 1) and got[0, 0, 0, 0] == pytest.approx(3.0)


def test_threads_agree():
    rng = np.random.default_rng(0)
    x = vitc.tensor(rng.standard_normal((2, 64, 16, 16)).astype(np.float32))
    boxes = vitc.tensor(_boxes(rng, 8, 2, 16, 16))
    assert_same_at_1_and_2_threads(lambda: [vitc.roi_align(x, boxes, (7, 7)).numpy()])


def test_bad_calls():
    x = vitc.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        vitc.roi_align(x, vitc.zeros(3, 4), 2)
    with pytest.raises(IndexError, match="batch index"):
        vitc.roi_align(x, vitc.tensor(np.array([[2, 0, 0, 1, 1]], np.float32)), 2)
    with pytest.raises(IndexError, match="non-finite"):
        vitc.roi_align(x, vitc.tensor(np.array([[0, np.nan, 0, 1, 1]], np.float32)), 2)
    with pytest.raises(ValueError, match="output size"):
        vitc.roi_align(x, vitc.zeros(1, 5), (0, 2))
    with pytest.raises(ValueError, match="spatial_scale"):
        vitc.roi_align(x, vitc.zeros(1, 5), 2, spatial_scale=0.0)
    with pytest.raises(TypeError, match="float32"):
        vitc.roi_align(x, vitc.zeros(1, 5, dtype=vitc.int64), 2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        vitc.roi_align(vitc.zeros(1, 4, 4), vitc.zeros(1, 5), 2)


def test_allocation_failures():
    x, b = vitc.randn(2, 3, 5, 5), vitc.tensor(np.array([[1, 0, 0, 3, 4]], np.float32))
    check_allocation_failures(lambda: vitc.roi_align(x, b, 3))
