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

from ..io import _umask

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


# Deflate cannot expand data more than 1032:1 (zlib's technical details, "Maximum compression
# factor"); the slack covers the gzip header and trailer of small files.
_DEFLATE_MAX_RATIO, _GZIP_SLACK = 1032, 1024
_CHUNK = 1 << 20


def read_idx(path, max_bytes=1 << 32):
    """Read an IDX file (plain or gzip) into a new native-endian NumPy array.

    Raises ``ValueError`` naming the file when the magic, type code, dimensions or payload length
    are wrong, or when a gzip stream is corrupt. The header is read first: a payload larger than
    ``max_bytes``, larger than the file (plain) or than deflate's 1032:1 limit allows (gzip) is
    refused before anything is allocated, and a gzip stream is never inflated beyond the header's
    size plus one byte, so a decompression bomb costs no more memory than the size it declares.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(2) == _GZIP_MAGIC:
            f.seek(0)
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    return _read_stream(gz, path, size, _DEFLATE_MAX_RATIO * size + _GZIP_SLACK, max_bytes)
            except (OSError, EOFError, zlib.error) as e:
                raise ValueError(f"{path}: corrupt gzip data ({e})") from None
        f.seek(0)
        return _read_stream(f, path, size, size, max_bytes)


def _read_exactly(stream, buf):
    """Fill the writable byte buffer from stream; returns how many bytes it got (less at the end)."""
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got:got + _CHUNK])
        if not n:
            break
        got += n
    return got


def _read_stream(stream, path, size, limit, max_bytes):
    """Parse an IDX stream whose whole content can be at most ``limit`` bytes (file size or deflate bound)."""
    head = stream.read(4)
    if len(head) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(head)} bytes, need at least 4)")
    if head[0] != 0 or head[1] != 0:
        raise ValueError(f"{path}: bad IDX magic: first two bytes are {head[:2].hex(' ')}, expected 00 00")
    code, ndim = head[2], head[3]
    if code not in _DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise ValueError(f"{path}: wrong IDX type code 0x{code:02X} (valid: {valid})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header says 0 dimensions")
    start = 4 + 4 * ndim
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need {start} bytes, "
                         f"file has {4 + len(raw_dims)}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _DTYPES[code]
    count = math.prod(dims)
    want = count * dtype.itemsize
    if start + want > limit:
        how = "the file has" if limit == size else f"a {size}-byte gzip file inflates to at most"
        raise ValueError(f"{path}: truncated or implausible IDX payload: shape {dims} of {dtype.name} needs "
                         f"{want} bytes, {how} {limit - start}")
    if want > max_bytes:
        raise ValueError(f"{path}: IDX shape {dims} of {dtype.name} needs {want} bytes, more than "
                         f"max_bytes={max_bytes}")
    out = np.empty(count, dtype=dtype)
    have = _read_exactly(stream, memoryview(out).cast("B"))
    if have < want:
        raise ValueError(f"{path}: truncated IDX payload: shape {dims} of {dtype.name} needs "
                         f"{want} bytes, file has {have}")
    extra = len(stream.read(1))  # one byte more tells a longer stream, without inflating it
    if extra:
        if limit == size:
            raise ValueError(f"{path}: {size - start - want} trailing bytes after the IDX payload of shape {dims}")
        raise ValueError(f"{path}: trailing bytes after the IDX payload of shape {dims}: the gzip stream inflates "
                         f"beyond the {start + want} bytes the header declares (the rest was not inflated)")
    # swap to native order in place: the result owns its memory and is the only copy
    if not dtype.isnative:
        out.byteswap(inplace=True)
    return out.view(dtype.newbyteorder("=")).reshape(dims)


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
