"""The label-map warp switch: the geometric warp (default: the map follows the image) against the
reference's index-space warp (legacy_warp=True; zihangJiang/TokenLabeling tlt/data/random_augment_label.py
`rotate_label`, `shear_x_label`, ..., `affine_label`), on small maps whose result is known by hand and
against scipy's affine_transform given the reference's own matrices."""
import math

import numpy as np
import pytest

from vitc._ops.augment import RA_OPS
from vitc.data.relabel import TokenLabelBatches
from vitc.data.relabel_augment import warp_dense_maps


def _plan(op, mag, sign=1.0):
    return np.array([[[RA_OPS.index(op), mag, sign, 0.0]]])


def test_quarter_turn_by_hand():
    # magnitude 30 -> 30·30/10 = 90 degrees, counter-clockwise as Pillow's rotate
    m = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    geo = warp_dense_maps(m, _plan("Rotate", 30.0), (16, 16))[0, 0]
    np.testing.assert_array_equal(geo, np.rot90(m[0, 0]))
    # the reference rotates about index (2, 2), half a cell below and right of the map's centre (1.5, 1.5):
    # out[r, c] = in[c, 4 − r], so the turned map comes out one row low and its first row is empty
    ref = warp_dense_maps(m, _plan("Rotate", 30.0), (16, 16), legacy_warp=True)[0, 0]
    want = np.zeros((4, 4), np.float32)
    want[1:] = np.rot90(m[0, 0])[:3]
    np.testing.assert_array_equal(ref, want)


def test_whole_cell_translation_is_the_same_in_both():
    m = np.arange(1, 2 * 16 + 1, dtype=np.float32).reshape(1, 2, 4, 4)
    plan = _plan("TranslateYRel", 10 * 0.5 / 0.45)  # +half the height = 2 rows: the map moves up by 2
    for legacy in (False, True):
        out = warp_dense_maps(m, plan, (16, 16), legacy_warp=legacy)[0]
        np.testing.assert_array_equal(out[:, :2], m[0, :, 2:])
        assert np.all(out[:, 2:] == 0)


def _reference_matrix(op, mag, sign, hl, wl, pct=0.45):
    """The matrices the reference builds for a (Hl, Wl) label, in its (row, column) index order."""
    level = mag / 10.0
    if op == "Rotate":
        ang = math.radians(sign * level * 30.0)
        a, b, d, e = (round(math.cos(ang), 15), round(math.sin(ang), 15), round(-math.sin(ang), 15),
                      round(math.cos(ang), 15))
        c0, c1 = hl / 2.0, wl / 2.0
        return (a, b, a * -c0 + b * -c1 + c0, d, e, d * -c0 + e * -c1 + c1)
    s = sign * level * 0.3
    return {"ShearX": (1, 0, 0, s, 1, 0), "ShearY": (1, s, 0, 0, 1, 0),
            "TranslateXRel": (1, 0, 0, 0, 1, sign * level * pct * wl),
            "TranslateYRel": (1, 0, sign * level * pct * hl, 0, 1, 0)}[op]


@pytest.mark.parametrize("op,mag,sign", [("Rotate", 9.0, 1.0), ("Rotate", 5.5, -1.0), ("ShearX", 7.0, 1.0),
                                         ("ShearY", 9.0, -1.0), ("TranslateXRel", 3.0, 1.0),
                                         ("TranslateYRel", 6.0, -1.0)])
def test_legacy_equals_scipy_on_the_reference_matrices(op, mag, sign):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    dense = rng.uniform(0.1, 1.0, size=(1, 3, 7, 7)).astype(np.float32)
    a, b, c, d, e, f = _reference_matrix(op, mag, sign, 7, 7)
    want = ndimage.affine_transform(dense[0], matrix=[[1, 0, 0, 0], [0, a, b, c], [0, d, e, f]], order=0,
                                    mode="constant")
    got = warp_dense_maps(dense, _plan(op, mag, sign), (28, 28), legacy_warp=True)[0]
    np.testing.assert_array_equal(got, want)
    if op.startswith(("Rotate", "Shear")):  # the half-cell origin makes the two warps differ
        assert not np.array_equal(got, warp_dense_maps(dense, _plan(op, mag, sign), (28, 28))[0])


def test_batches_pass_the_switch_on():
    from vitc.data import RandAugment

    class Map:
        num_classes = 3

        def __len__(self):
            return 2

        def dense(self, rows):
            return np.arange(len(rows) * 3 * 49, dtype=np.float32).reshape(len(rows), 3, 7, 7)
    x = np.full((2, 1, 28, 28), 0.5, np.float32)
    outs = []
    for legacy in (False, True):
        it = TokenLabelBatches(x, [0, 1], Map(), 2, (7, 7), num_classes=3, seed=3, flip=0.0, scale=None,
                               randaug=RandAugment("rand-n2-m9", seed=1), legacy_warp=legacy)
        outs.append(next(iter(it))[2].numpy())
        assert it.legacy_warp is legacy
    assert outs[0].shape == outs[1].shape == (2, 49, 3)
