"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic ``00 00 <type code> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the values in C order, big-endian. Files may be gzip-compressed; compression is
detected from the gzip magic bytes, not from the file name.
"""

import contextlib
import gzip
import math
import os
import struct
import tempfile
import zlib

import numpy as np

__all__ = ["read_idx", "write_idx"]

# Type code -> big-endian dtype, as in the IDX description (0x0A is unassigned).
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path):
    """Read an IDX file (plain or gzip) into a new native-endian NumPy array.

    Raises ``ValueError`` naming the file when the magic, type code, dimensions or payload length
    are wrong, or when a gzip stream is corrupt.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    return _parse(raw, path)


def _parse(raw, path):
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic: first two bytes are {raw[:2].hex(' ')}, expected 00 00")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise ValueError(f"{path}: wrong IDX type code 0x{code:02X} (valid: {valid})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header says 0 dimensions")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need {start} bytes, "
                         f"file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = _DTYPES[code]
    count = math.prod(dims)
    want = count * dtype.itemsize
    have = len(raw) - start
    if have < want:
        raise ValueError(f"{path}: truncated IDX payload: shape {dims} of {dtype.name} needs "
                         f"{want} bytes, file has {have}")
    if have > want:
        raise ValueError(f"{path}: {have - want} trailing bytes after the IDX payload of shape {dims}")
    native = dtype.newbyteorder("=")
    if count == 0:
        return np.empty(dims, dtype=native)
    # astype copies, so the result is writable and owns its memory (not a view on `raw`).
    return np.frombuffer(raw, dtype=dtype, count=count, offset=start).astype(native).reshape(dims)


def write_idx(path, array):
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64. The file is written to a
    temporary name in the same directory and renamed, so readers never see a partial file.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    code = _CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"write_idx: dtype {arr.dtype} has no IDX type code "
                        "(use uint8, int8, int16, int32, float32 or float64)")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: dimension too large for IDX: {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
    with _atomic_write(path) as f:
        if path.endswith(".gz"):
            # mtime=0 makes the output byte-identical across runs.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)


@contextlib.contextmanager
def _atomic_write(path):
    """Yield a binary file that replaces ``path`` only if the block finishes without error."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data is not secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
