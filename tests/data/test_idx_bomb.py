"""IDX files that lie about their size: the header is read first, a gzip stream is never inflated
beyond the size the header declares (plus one byte), and a missing dataset file is named."""
import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest

import vitc.data as vd
from vitc.data import idx as vidx

HEADER_10_IMAGES = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 10, 28, 28)


def _bomb(path, header, zeros):
    """header then `zeros` zero bytes, gzip level 9, written in pieces (the test never holds them all)."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(block)


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            fn()
        return tracemalloc.get_traced_memory()[1], info.value
    finally:
        tracemalloc.stop()


def test_gzip_bomb_longer_than_its_header_stops_at_the_declared_size(tmp_path):
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    _bomb(path, HEADER_10_IMAGES, 50 << 20)  # 10 images of 784 bytes declared, 50 MiB of zeros inflated
    assert os.path.getsize(path) < 100 << 10
    peak, err = _peak_bytes(lambda: vd.read_idx(path))
    assert str(path) in str(err) and "trailing bytes" in str(err) and "inflates beyond the 7856 bytes" in str(err)
    assert peak < 4 << 20, peak  # 7840 bytes declared; the 50 MiB were never inflated


def test_gzip_bomb_declaring_an_impossible_size_is_refused_before_inflating(tmp_path):
    path = tmp_path / "huge.gz"
    # 2^40 bytes declared in a file of a few kB: beyond deflate's 1032:1
    _bomb(path, bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 1 << 20, 1 << 20), 1 << 20)
    peak, err = _peak_bytes(lambda: vd.read_idx(path))
    assert str(path) in str(err) and "implausible" in str(err) and "inflates to at most" in str(err)
    assert peak < 4 << 20, peak


def test_declared_size_above_max_bytes_is_refused(tmp_path):
    path = tmp_path / "big.gz"
    _bomb(path, bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3 << 20), 3 << 20)  # a real 3 MiB payload
    with pytest.raises(ValueError, match="max_bytes"):
        vd.read_idx(path, max_bytes=1 << 20)
    assert vd.read_idx(path).shape == (3 << 20,)


def test_plain_file_declaring_more_than_it_holds_allocates_nothing(tmp_path):
    path = tmp_path / "liar"
    path.write_bytes(bytes([0, 0, 0x0E, 2]) + struct.pack(">2I", 1 << 16, 1 << 16) + bytes(64))
    peak, err = _peak_bytes(lambda: vd.read_idx(path))
    assert str(path) in str(err) and "truncated" in str(err)
    assert peak < 1 << 20


def test_round_trip_of_every_dtype_through_the_streaming_reader(tmp_path):
    rng = np.random.default_rng(0)
    for dt in ("u1", "i1", "i2", "i4", "f4", "f8"):
        a = (rng.standard_normal((3, 5, 2)) * 100).astype(dt)
        for name in ("a", "a.gz"):
            vd.write_idx(tmp_path / name, a)
            b = vd.read_idx(tmp_path / name)
            assert b.dtype == a.dtype and b.dtype.isnative and b.flags.writeable
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_idx_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        vd.write_idx(tmp_path / "m.gz", np.zeros(3, np.uint8))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.gz").st_mode & 0o777 == mode


def test_fashion_mnist_names_the_missing_file(tmp_path):
    vd.write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        vd.FashionMNIST(root=tmp_path, train=True)
    msg = str(info.value)
    assert "train-labels-idx1-ubyte" in msg and "train-images" not in msg
    vd.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    assert len(vd.FashionMNIST(root=tmp_path, train=True)) == 2
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz .* and t10k-labels-idx1-ubyte"):
        vd.FashionMNIST(root=tmp_path, train=False)


def test_mnist_names_the_missing_file(tmp_path):
    vd.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        vd.MNIST(root=tmp_path, train=False, download=False)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value) and "labels" not in str(info.value)


def test_chunked_reads_cover_payloads_larger_than_a_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(vidx, "_CHUNK", 7)
    a = np.arange(1000, dtype=np.int32)
    vd.write_idx(tmp_path / "c.gz", a)
    np.testing.assert_array_equal(vd.read_idx(tmp_path / "c.gz"), a)
