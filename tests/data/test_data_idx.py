import gzip
import os
import struct

import numpy as np
import pytest

import _vitc_data_under_test as vd

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
         np.float32: 0x0D, np.float64: 0x0E}


def _raw(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def _write(path, data, gz):
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    vd.write_idx(path, a)
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == gz
    b = vd.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape and np.array_equal(a, b)
    assert b.flags.writeable and b.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
def test_on_disk_layout_is_big_endian(tmp_path, dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    vd.write_idx(tmp_path / "a", a)
    raw = (tmp_path / "a").read_bytes()
    assert raw == _raw(CODES[dtype], (2, 3), a.astype(np.dtype(dtype).newbyteorder(">")).tobytes())


def test_gzip_detected_by_magic_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    vd.write_idx(tmp_path / "a.gz", a)
    os.rename(tmp_path / "a.gz", tmp_path / "plain-name")
    vd.write_idx(tmp_path / "b", a)
    os.rename(tmp_path / "b", tmp_path / "b.gz")
    assert np.array_equal(vd.read_idx(tmp_path / "plain-name"), a)
    assert np.array_equal(vd.read_idx(tmp_path / "b.gz"), a)


def test_empty_and_big_dims(tmp_path):
    vd.write_idx(tmp_path / "e", np.zeros((0, 28, 28), np.uint8))
    assert vd.read_idx(tmp_path / "e").shape == (0, 28, 28)
    vd.write_idx(tmp_path / "one", np.zeros((1,) * 8, np.float32))
    assert vd.read_idx(tmp_path / "one").shape == (1,) * 8


GOOD = _raw(0x08, (2, 3), bytes(6))
MALFORMED = {
    "empty": (b"", "truncated"),
    "short header": (b"\x00\x00\x08", "truncated"),
    "bad magic": (b"\x01\x00" + GOOD[2:], "magic"),
    "bad magic 2": (b"\x00\x07" + GOOD[2:], "magic"),
    "type code 0x0A": (GOOD[:2] + b"\x0a" + GOOD[3:], "type code"),
    "type code 0x07": (GOOD[:2] + b"\x07" + GOOD[3:], "type code"),
    "type code 0xFF": (GOOD[:2] + b"\xff" + GOOD[3:], "type code"),
    "zero dims": (b"\x00\x00\x08\x00", "0 dimensions"),
    "dims cut": (GOOD[:6], "truncated"),
    "payload short": (GOOD[:-1], "truncated"),
    "no payload": (_raw(0x0C, (4,), b""), "truncated"),
    "trailing": (GOOD + b"\x00", "trailing"),
    "huge dims": (_raw(0x0E, (2**32 - 1, 2**32 - 1), b""), "truncated"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_value_error_naming_file(tmp_path, case, gz):
    data, words = MALFORMED[case]
    path = _write(tmp_path / f"bad-{case.replace(' ', '_')}", data, gz)
    with pytest.raises(ValueError, match=words) as info:
        vd.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [5, 20, -9, -3])
def test_corrupt_gzip_raises_value_error(tmp_path, cut):
    packed = gzip.compress(GOOD * 1)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[:cut])
    with pytest.raises(ValueError, match="cut.gz"):
        vd.read_idx(path)


def test_gzip_bad_crc(tmp_path):
    packed = bytearray(gzip.compress(GOOD))
    packed[-8] ^= 0xFF  # CRC32 of the member
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(ValueError, match="crc.gz"):
        vd.read_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        vd.read_idx(tmp_path / "nope")


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        vd.write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="dtype"):
        vd.write_idx(tmp_path / "a", np.zeros(3, bool))
    with pytest.raises(ValueError, match="dimensions"):
        vd.write_idx(tmp_path / "a", np.float32(1.0))
    assert os.listdir(tmp_path) == []


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.gz"
    vd.write_idx(path, np.arange(5, dtype=np.int32))
    vd.write_idx(path, np.arange(7, dtype=np.int32))  # replaces the old file
    assert os.listdir(tmp_path) == ["a.gz"]
    assert vd.read_idx(path).tolist() == list(range(7))


def test_write_accepts_non_contiguous_input(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2].T
    vd.write_idx(tmp_path / "a", a)
    assert np.array_equal(vd.read_idx(tmp_path / "a"), a)
