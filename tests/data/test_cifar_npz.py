"""CIFAR-10/100 from a tiny archive written here in the python-pickle format (folder and .tar.gz),
the restricted unpickler, and NpzDataset."""
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

import vitc
import vitc.data as vd


def _rows(n, seed):
    """n images as CIFAR rows: uint8 (n, 3072), the R, G, B 32x32 planes one after the other."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the archive's protocol; keys are bytes as Python 2 wrote them


def _write_cifar10(root, sizes=(2, 3, 1, 2, 2), test=3):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for k, n in enumerate(sizes, 1):
        _dump(d / f"data_batch_{k}", {b"batch_label": b"training batch", b"data": _rows(n, k),
                                     b"labels": [int(v) for v in np.arange(n) % 10]})
    _dump(d / "test_batch", {b"data": _rows(test, 9), b"labels": [9] * test})
    _dump(d / "batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                                b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072})
    return d


def test_cifar10_folder_layout_and_pixels(tmp_path):
    _write_cifar10(tmp_path)
    ds = vd.CIFAR10(tmp_path, train=True)
    assert len(ds) == 10 and ds.classes[1] == "automobile" and ds.class_to_idx["truck"] == 9
    rows = np.concatenate([_rows(n, k) for k, n in enumerate((2, 3, 1, 2, 2), 1)])
    planes = rows.reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(ds.data[4], planes[4].transpose(1, 2, 0))  # (H, W, C) as torchvision
    assert ds.targets.tolist() == [0, 1, 0, 1, 2, 0, 0, 1, 0, 1]
    x, y = ds[4]
    assert x.dtype == np.float32 and x.shape == (3, 32, 32) and y == 2
    np.testing.assert_array_equal(x, planes[4].astype(np.float32) / np.float32(255))
    test = vd.CIFAR10(tmp_path / "cifar-10-batches-py", train=False)  # the folder itself also works
    assert len(test) == 3 and test.targets.tolist() == [9, 9, 9]
    seen = []
    pil = vd.CIFAR10(tmp_path, transform=lambda img: seen.append(img) or vd.ToTensor()(img))
    np.testing.assert_array_equal(pil[4][0], x)  # transforms get PIL images (torchvision's convention)
    assert isinstance(seen[0], Image.Image) and seen[0].size == (32, 32)
    xb, yb = next(iter(vd.DataLoader(ds, batch_size=4)))
    assert isinstance(xb, vitc.Tensor) and tuple(xb.shape) == (4, 3, 32, 32) and yb.tolist() == [0, 1, 0, 1]


def test_cifar10_from_the_tar_gz(tmp_path):
    src = _write_cifar10(tmp_path / "src")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    folder = vd.CIFAR10(tmp_path / "src", train=False)
    for root in (tmp_path, tmp_path / "cifar-10-python.tar.gz"):
        ds = vd.CIFAR10(root, train=False)
        np.testing.assert_array_equal(ds.data, folder.data)
        assert not (tmp_path / "cifar-10-batches-py").exists()  # read in memory, never extracted


def test_cifar100(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    _dump(d / "train", {b"data": _rows(4, 1), b"fine_labels": [0, 99, 5, 7], b"coarse_labels": [0, 19, 1, 2]})
    _dump(d / "test", {b"data": _rows(2, 2), b"fine_labels": [1, 2], b"coarse_labels": [3, 4]})
    _dump(d / "meta", {b"fine_label_names": [f"c{k}".encode() for k in range(100)],
                       b"coarse_label_names": [f"s{k}".encode() for k in range(20)]})
    ds = vd.CIFAR100(tmp_path)
    assert len(ds) == 4 and ds.targets.tolist() == [0, 99, 5, 7] and ds.coarse_targets.tolist() == [0, 19, 1, 2]
    assert len(ds.classes) == 100 and ds[1][1] == 99
    assert len(vd.CIFAR100(tmp_path, train=False)) == 2


class _Evil:
    def __reduce__(self):
        return (os.getpid, ())


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no CIFAR data at {tmp_path}.*cifar-10-batches-py"):
        vd.CIFAR10(tmp_path)
    d = _write_cifar10(tmp_path)
    os.remove(d / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="CIFAR file missing: .*data_batch_3"):
        vd.CIFAR10(tmp_path)
    assert len(vd.CIFAR10(tmp_path, train=False)) == 3
    _dump(d / "data_batch_3", {b"data": _Evil(), b"labels": []})  # a pickle that would run code
    with pytest.raises(ValueError, match=r"data_batch_3: not a readable CIFAR pickle .*refusing to load posix.getpid"):
        vd.CIFAR10(tmp_path)
    _dump(d / "data_batch_3", {b"data": _rows(2, 3)[:, :100], b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"b'data' must be uint8 of shape \(N, 3072\)"):
        vd.CIFAR10(tmp_path)
    _dump(d / "data_batch_3", {b"data": _rows(2, 3), b"labels": [0, 10]})
    with pytest.raises(ValueError, match="label 10 out of range 0..9"):
        vd.CIFAR10(tmp_path)
    _dump(d / "data_batch_3", {b"data": _rows(2, 3)})
    with pytest.raises(ValueError, match="expected the keys b'data' and b'labels'"):
        vd.CIFAR10(tmp_path)
    (d / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="data_batch_3: not a readable CIFAR pickle"):
        vd.CIFAR10(tmp_path)
    with pytest.raises(TypeError, match="train must be a bool"):
        vd.CIFAR10(tmp_path, train="yes")


def test_npz_dataset(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)  # (N, H, W, C) images
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6) % 2, feats=np.ones((6, 7)))
    ds = vd.NpzDataset(tmp_path / "d.npz")
    assert len(ds) == 6 and ds.images.shape == (6, 3, 5, 4) and ds.classes == [0, 1]
    np.testing.assert_array_equal(ds[2][0], x[2].transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    feats = vd.NpzDataset(tmp_path / "d.npz", x_key="feats", transform=lambda v: v * 2)
    assert feats[0][0].tolist() == [2.0] * 7 and feats[0][1] == 0
    xb, yb = next(iter(vd.DataLoader(ds, batch_size=6)))
    assert tuple(xb.shape) == (6, 3, 5, 4) and yb.dtype is vitc.int64
    with pytest.raises(FileNotFoundError, match="no file .*nope.npz"):
        vd.NpzDataset(tmp_path / "nope.npz")
    with pytest.raises(KeyError, match=r"has no array 'label' \(it has \['x', 'y', 'feats'\]\)"):
        vd.NpzDataset(tmp_path / "d.npz", y_key="label")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match="x has 3 samples but y has 4"):
        vd.NpzDataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object), y=np.zeros(2))
    with pytest.raises(ValueError, match="cannot read .*obj.npz"):  # object arrays need pickle: refused
        vd.NpzDataset(tmp_path / "obj.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="one.npy as an .npz of arrays .*holds one array"):
        vd.NpzDataset(tmp_path / "one.npy")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read .*junk.npz"):
        vd.NpzDataset(tmp_path / "junk.npz")
