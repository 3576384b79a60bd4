"""The dense-label pipeline: label maps from a teacher (ResNet and ViT), the checksum guard, ReLabel
pooling on maps whose pooled result is known by hand, the flip that moves the map with the image, the
box-order switch, and the batches the loader path yields."""
import numpy as np
import pytest

import vitc
from vitc.data.relabel import (TokenLabelBatches, crop_resize, dataset_checksum, dense_from_topk, dense_logits,
                               generate_label_map, load_label_map, random_resized_crop_boxes, relabel_pool)
from vitc.models import create_model


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_whole_image_pools_to_the_mean_of_the_map():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((2, 5, 4, 4)).astype(np.float32)
    y = relabel_pool(dense, np.array([[0, 0, 1, 1]] * 2))
    # the whole map with R=1: 4×4 samples at every cell centre -> the mean of the map
    np.testing.assert_allclose(y, _softmax(dense.mean((2, 3))), rtol=1e-5)


def test_token_grid_equal_to_map_reads_each_cell_and_smoothing_rule():
    rng = np.random.default_rng(1)
    dense = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    cls, tok = relabel_pool(dense, np.array([[0, 0, 1, 1]]), grid=(2, 2), smoothing=0.3)
    k = 3
    want = _softmax(dense[0].reshape(3, 4).T) * (1 - 0.3 + 0.3 / k) + 0.3 / k
    np.testing.assert_allclose(tok[0], want, rtol=1e-5)
    np.testing.assert_allclose(tok.sum(-1), 1 + 0.3 / k, rtol=1e-5)


def test_quadrant_box_reads_one_cell_and_box_order():
    # a 2×2 map with one class hot per cell; the top-right quadrant (rows 0..0.5, cols 0.5..1) is cell (0, 1)
    dense = np.zeros((1, 4, 2, 2), np.float32)
    for c, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        dense[0, c, i, j] = 10.0
    y = relabel_pool(dense, np.array([[0, 0.5, 0.5, 1]]))
    assert y.argmax() == 1
    legacy = relabel_pool(dense, np.array([[0, 0.5, 0.5, 1]]), legacy_box_order=True)
    assert legacy.argmax() == 2  # the reference's swapped axes read cell (1, 0)


def test_topk_to_dense_keeps_zeros_elsewhere():
    s = np.array([[[[3.0]], [[1.0]]]], np.float32)
    i = np.array([[[[2]], [[0]]]])
    np.testing.assert_array_equal(dense_from_topk(s, i, 4)[0, :, 0, 0], [1.0, 0.0, 3.0, 0.0])


@pytest.mark.parametrize("name", ["resnet_mnist", "lvvit_tiny_mnist"])
def test_label_map_round_trip_and_guards(tmp_path, name):
    vitc.manual_seed(0)
    teacher = create_model(name, depth=1) if name.startswith("lvvit") else create_model(name)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 1, 28, 28)).astype(np.float32)
    ck = dataset_checksum(x)
    path = str(tmp_path / "map.safetensors")
    hw = generate_label_map(teacher, x, path, checksum=ck, topk=3, batch_size=2)
    assert tuple(hw) == (7, 7)
    lm = load_label_map(path, checksum=ck, num_images=5)
    teacher.eval()
    with vitc.no_grad():
        z = dense_logits(teacher, vitc.tensor(x)).numpy()
    np.testing.assert_allclose(lm.scores[:, 0], z.max(1), rtol=1e-6)
    np.testing.assert_array_equal(lm.indices[:, 0], z.argmax(1))
    if name == "resnet_mnist":  # the per-cell classifier averaged over cells is the teacher's own logits
        with vitc.no_grad():
            np.testing.assert_allclose(z.mean((2, 3)), teacher(vitc.tensor(x)).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="another data set"):
        load_label_map(path, checksum=dataset_checksum(x[:4]))
    with pytest.raises(ValueError, match="5 maps"):
        load_label_map(path, checksum=ck, num_images=6)


def test_bad_boxes_and_shapes():
    d = np.zeros((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="inside the image"):
        relabel_pool(d, np.array([[0, 0, 1.2, 1]]))
    with pytest.raises(ValueError, match="inside the image"):
        relabel_pool(d, np.array([[0.5, 0, 0.5, 1]]))
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        relabel_pool(d, np.array([[0, 0, 1]]))


def test_crop_boxes_and_crop_resize():
    rng = np.random.default_rng(0)
    boxes = random_resized_crop_boxes(200, (28, 20), rng, scale=(0.2, 1.0))
    t, l_, h, w = boxes.T
    assert np.all((t >= 0) & (l_ >= 0) & (t + h <= 28) & (l_ + w <= 20) & (h > 0) & (w > 0))
    x = rng.uniform(size=(2, 1, 8, 8)).astype(np.float32)
    # the whole image at its own size is the identity
    np.testing.assert_allclose(crop_resize(x, np.array([[0, 0, 8, 8]] * 2), (8, 8)), x, rtol=1e-6)


def test_flip_moves_the_map_with_the_image():
    # image 0: class 0 everywhere on the left half, class 1 on the right; flip always; no crop
    x = np.zeros((2, 1, 4, 4), np.float32)
    x[:, :, :, 2:] = 1.0
    scores = np.zeros((2, 1, 1, 2), np.float32) + 5.0
    idx = np.array([[[[0, 1]]]] * 2)

    class Map:
        num_classes = 2

        def __len__(self):
            return 2

        def dense(self, rows):
            return dense_from_topk(scores[rows], idx[rows], 2)
    it = TokenLabelBatches(x, [0, 1], Map(), 2, (1, 2), num_classes=2, flip=1.0, scale=None, smoothing=0.0)
    xb, yc, yt = next(iter(it))
    assert xb.numpy()[0, 0, 0, 0] == 1.0  # the bright half moved left
    assert yt.numpy()[0, 0].argmax() == 1 and yt.numpy()[0, 1].argmax() == 0  # and so did the labels
    np.testing.assert_allclose(yc.numpy(), 0.5, rtol=1e-5)


def test_batches_without_a_map_give_the_image_label():
    x = np.zeros((4, 1, 8, 8), np.float32)
    it = TokenLabelBatches(x, [0, 1, 2, 1], None, 2, (2, 2), num_classes=3, smoothing=0.0)
    batches = list(it)
    assert len(batches) == 2 and all(yt is None for _, _, yt in batches)
    assert sorted(int(v) for _, yc, _ in batches for v in yc.numpy().argmax(1)) == [0, 1, 1, 2]


def _block_image_and_map(cell, hl=7, size=28):
    """A 28×28 image bright on one 4×4 block and a 7×7 map hot on the same cell (class 1)."""
    r, c = cell
    s = size // hl
    img = np.zeros((1, 1, size, size), np.float32)
    img[0, 0, r * s:(r + 1) * s, c * s:(c + 1) * s] = 1.0
    dense = np.zeros((1, 2, hl, hl), np.float32)
    dense[0, 1, r, c] = 5.0
    return img, dense


@pytest.mark.parametrize("op,mag,sign", [("TranslateXRel", 10 * (8 / 28) / 0.45, 1.0),
                                         ("TranslateYRel", 10 * (4 / 28) / 0.45, -1.0),
                                         ("ShearX", 10.0, 1.0), ("ShearY", 6.0, -1.0), ("Rotate", 10.0, 1.0),
                                         ("Rotate", 7.0, -1.0)])
def test_geometric_randaugment_moves_the_map_with_the_image(op, mag, sign):
    from vitc._ops.augment import RA_OPS
    from vitc.data import RandAugment
    from vitc.data.relabel_augment import warp_dense_maps
    ra = RandAugment("rand-n1-m9", interpolation="bilinear", fill=0)
    plan = np.array([[[RA_OPS.index(op), mag, sign, 0.0]]], np.float32)
    for cell in [(3, 3), (1, 2), (5, 4)]:
        img, dense = _block_image_and_map(cell)
        out = ra.apply(img, plan)[0, 0]
        warped = warp_dense_maps(dense, plan, (28, 28))[0, 1]
        # the image value at every cell centre, thresholded, is the warped map's hot set
        # the image's value at each cell centre (a pixel corner): the mean of the four pixels around it
        centres = (out[1::4, 1::4] + out[1::4, 2::4] + out[2::4, 1::4] + out[2::4, 2::4]) / 4 > 0.5
        # (a cell whose centre falls on the warped block's edge may go either way)
        assert np.any(centres & (warped > 0))
        assert np.mean(centres == (warped > 0)) >= 0.93, (op, cell, centres.astype(int), warped)


def test_translate_by_two_cells_exactly_and_fill_outside():
    from vitc._ops.augment import RA_OPS
    from vitc.data.relabel_augment import warp_dense_maps
    dense = np.arange(2 * 7 * 7, dtype=np.float32).reshape(1, 2, 7, 7) + 1
    # TranslateXRel by +8 px = 2 cells: the source column is x + 2 cells, so the map moves left
    plan = np.array([[[RA_OPS.index("TranslateXRel"), 10 * (8 / 28) / 0.45, 1.0, 0.0]]])
    out = warp_dense_maps(dense, plan, (28, 28))
    np.testing.assert_array_equal(out[0, :, :, :5], dense[0, :, :, 2:])
    assert np.all(out[0, :, :, 5:] == 0)
    # colour ops leave the map alone
    plan2 = np.array([[[RA_OPS.index("Equalize"), 9, 1.0, 0.0]]])
    np.testing.assert_array_equal(warp_dense_maps(dense, plan2, (28, 28)), dense)
    with pytest.raises(ValueError, match="same B"):
        warp_dense_maps(dense, np.zeros((2, 1, 4)), (28, 28))


def test_batches_with_randaugment_and_normalize():
    from vitc.data import RandAugment
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 1, 28, 28)).astype(np.float32)

    class Map:
        num_classes = 3

        def __len__(self):
            return 4

        def dense(self, rows):
            return rng.standard_normal((len(rows), 3, 7, 7)).astype(np.float32)
    it = TokenLabelBatches(x, [0, 1, 2, 0], Map(), 4, (7, 7), num_classes=3, randaug=RandAugment("rand-m9-mstd0.5"),
                           normalize=(0.5, 0.25))
    xb, yc, yt = next(iter(it))
    assert tuple(xb.shape) == (4, 1, 28, 28) and tuple(yt.shape) == (4, 49, 3)
    assert xb.numpy().min() < 0  # normalised
