import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

import _vitc_data_under_test as vd

MNIST_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("cls", [vd.FashionMNIST, vd.MNIST])
@pytest.mark.parametrize("train,n", [(True, 50), (False, 20)])
def test_small_split(idx_root, cls, train, n):
    ds = cls(root=idx_root, train=train)
    raw = vd.read_idx(idx_root / f"{'train' if train else 't10k'}-images-idx3-ubyte.gz")
    assert len(ds) == n
    assert ds.data.dtype == np.uint8 and ds.data.shape == (n, 28, 28)
    assert ds.targets.dtype == np.int64 and ds.targets.shape == (n,)
    assert np.array_equal(ds.data, raw)
    assert len(ds.classes) == 10
    assert ds.labels is ds.targets
    images = ds.images
    assert images is ds.images  # computed once
    assert images.dtype == np.float32 and images.shape == (n, 1, 28, 28)
    assert images.flags.c_contiguous
    assert np.array_equal(images[:, 0], raw.astype(np.float32) / np.float32(255))
    assert images.min() >= 0 and images.max() <= 1
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and type(y) is int
    assert np.array_equal(x, images[3]) and y == ds.targets[3]
    assert np.array_equal(ds[-1][0], images[-1])


def test_uncompressed_files_and_subset(tmp_path, idx_root):
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "plain").mkdir(exist_ok=True)
        (tmp_path / "plain" / stem).write_bytes(gzip.decompress((idx_root / f"{stem}.gz").read_bytes()))
    full = vd.FashionMNIST(root=idx_root)
    ds = vd.FashionMNIST(root=tmp_path / "plain", subset=7)
    assert len(ds) == 7 and ds.images.shape == (7, 1, 28, 28)
    assert np.array_equal(ds.data, full.data[:7]) and np.array_equal(ds.targets, full.targets[:7])
    assert len(vd.FashionMNIST(root=idx_root, subset=10**6)) == 50  # larger than the split: all


def test_per_item_transform(idx_root):
    ds = vd.FashionMNIST(root=idx_root, transform=lambda img: img * 2)
    assert np.array_equal(ds[0][0], 2 * vd.FashionMNIST(root=idx_root)[0][0])


def test_bad_arguments(idx_root):
    for subset in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="subset"):
            vd.FashionMNIST(root=idx_root, subset=subset)
    with pytest.raises(TypeError, match="transform"):
        vd.FashionMNIST(root=idx_root, transform=3)
    with pytest.raises(TypeError, match="train"):
        vd.FashionMNIST(root=idx_root, train="yes")
    ds = vd.FashionMNIST(root=idx_root)
    with pytest.raises(IndexError):
        ds[50]
    with pytest.raises(TypeError):
        ds[1.0]


def test_fashion_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        vd.FashionMNIST(root=tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path) in msg


def test_count_mismatch_and_bad_labels(tmp_path, idx_root):
    images = vd.read_idx(idx_root / "train-images-idx3-ubyte.gz")
    vd.write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    vd.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(49, np.uint8))
    with pytest.raises(ValueError, match="50 images.*49 labels"):
        vd.FashionMNIST(root=tmp_path)
    vd.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(50, 10, np.uint8))
    with pytest.raises(ValueError, match="out of range"):
        vd.FashionMNIST(root=tmp_path)
    vd.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((50, 1), np.uint8))
    with pytest.raises(ValueError, match="train-labels"):
        vd.FashionMNIST(root=tmp_path)
    vd.write_idx(tmp_path / "train-images-idx3-ubyte.gz", images.astype(np.float32))
    with pytest.raises(ValueError, match="train-images"):
        vd.FashionMNIST(root=tmp_path)


DEBIAN = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(DEBIAN), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("train,n", [(True, 60000), (False, 10000)])
def test_real_debian_fashion_mnist(train, n):
    ds = vd.FashionMNIST(train=train)
    assert len(ds) == n and ds.data.shape == (n, 28, 28)
    assert set(np.unique(ds.targets).tolist()) == set(range(10))
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and 0 <= x.min() and x.max() <= 1 and 0 <= y < 10


# --- MNIST download, served from memory ---------------------------------------------------

def _fake_mnist_files(idx_root):
    return {name: (idx_root / name).read_bytes() for name in MNIST_NAMES}


@pytest.fixture
def fake_web(monkeypatch, idx_root):
    """Serve the small IDX files as if they were MNIST, with matching SHA-256 sums.
    (idx_root is tmp_path, so tests download into a subfolder of it.)"""
    files = _fake_mnist_files(idx_root)
    monkeypatch.setattr(vd.MNIST, "sha256",
                        {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    served, requests = {}, []
    for base in vd.MNIST.mirrors:
        for name, data in files.items():
            served[base + name] = data

    def urlopen(url, timeout=None):
        requests.append(url)
        if url not in served:
            raise urllib.error.URLError("unreachable")
        return io.BytesIO(served[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return files, served, requests


def test_mnist_downloads_missing_split(tmp_path, fake_web):
    files, _, requests = fake_web
    root = tmp_path / "dl" / "mnist"
    ds = vd.MNIST(root=root, train=False)
    assert len(ds) == 20
    assert sorted(os.listdir(root)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert (root / "t10k-images-idx3-ubyte.gz").read_bytes() == files["t10k-images-idx3-ubyte.gz"]
    assert all(u.startswith(vd.MNIST.mirrors[0]) for u in requests)
    n = len(requests)
    vd.MNIST(root=root, train=False)  # present now: no second download
    assert len(requests) == n


def test_mnist_falls_back_to_next_mirror(tmp_path, fake_web):
    _, served, requests = fake_web
    for url in list(served):
        if url.startswith(vd.MNIST.mirrors[0]):
            del served[url]
    ds = vd.MNIST(root=tmp_path / "dl", train=True)
    assert len(ds) == 50
    assert any(u.startswith(vd.MNIST.mirrors[1]) for u in requests)


def test_mnist_checksum_mismatch_raises_and_leaves_nothing(tmp_path, fake_web):
    _, served, _ = fake_web
    for url in served:
        data = bytearray(served[url])
        data[len(data) // 2] ^= 0xFF  # same size, wrong bytes
        served[url] = bytes(data)
    root = tmp_path / "dl"
    with pytest.raises(RuntimeError, match="SHA-256") as info:
        vd.MNIST(root=root, train=True)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert os.listdir(root) == []


def test_mnist_offline_message(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "mnist"
    with pytest.raises(RuntimeError) as info:
        vd.MNIST(root=root)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(root) in msg
    assert all(m in msg for m in vd.MNIST.mirrors)
    assert os.listdir(root) == []


def test_mnist_no_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        vd.MNIST(root=tmp_path, download=False)


def test_mnist_canonical_checksums_are_sha256():
    assert sorted(vd.MNIST.sha256) == sorted(MNIST_NAMES)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in vd.MNIST.sha256.values())


def test_mnist_bad_first_mirror_then_good_second(tmp_path, fake_web):
    _, served, requests = fake_web
    for url in served:
        if url.startswith(vd.MNIST.mirrors[0]):
            served[url] = b"<html>not found</html>"
    ds = vd.MNIST(root=tmp_path / "dl", train=False)
    assert len(ds) == 20 and sorted(os.listdir(tmp_path / "dl")) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert len(requests) == 4
