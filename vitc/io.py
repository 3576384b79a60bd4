"""Weights in and out: safetensors files (via ``safetensors.numpy``), written atomically.

``save_safetensors`` writes to a temporary file in the target directory, flushes it to disk and
renames it over the target (``os.replace``), so a crash mid-write leaves any previous file intact.
The file gets the mode a plain ``open()`` would give it (0666 minus the umask).

Integrity: the header metadata key ``vitc.crc32`` holds a JSON map tensor name -> CRC-32 of the
tensor's little-endian bytes; ``load_safetensors`` verifies every tensor against it and raises
ValueError naming the file and the tensor on a mismatch. CRC-32 (zlib, IEEE polynomial) rather than
SHA-256 because the threat is storage damage, not an adversary (anyone who can flip data bits can
rewrite a stored hash too): it detects every error burst of up to 32 bits, so every single- or
double-bit flip within a tensor of any size here, and any other damage with probability 1 - 2^-32,
at a fraction of SHA-256's cost. Files without the key (written before it existed, or by other
tools) load unverified.
"""
import json
import os
import tempfile
import zlib

import numpy as np

from ._tensor import Tensor, bfloat16, bfloat16_bits, bfloat16_from_bits, from_numpy

__all__ = ["save", "load", "to_numpy", "save_safetensors", "load_safetensors", "atomic_write", "write_text_atomic"]


def _to_array(key, value):
    """(C-contiguous array, safetensors dtype name); bfloat16 tensors give their uint16 bits."""
    if isinstance(value, Tensor) and value.dtype is bfloat16:
        return np.require(bfloat16_bits(value.detach()), requirements="C"), "bfloat16"
    if isinstance(value, Tensor):
        arr = value.detach().numpy()
    elif isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
    else:
        raise TypeError(f"save_safetensors: value for {key!r} is a {type(value).__name__}, not a tensor or array")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"save_safetensors: {key!r} has unsupported dtype {arr.dtype}")
    return np.require(arr, requirements="C"), arr.dtype.name


def _umask():
    """The process umask, read without setting it (os.umask would change it for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call write(tmp_path) then move tmp_path onto path atomically (same directory, fsynced)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 and some writers (safetensors) recreate the file: give the mode open() would
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_text_atomic(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically: a temporary file in the same directory, fsynced, then
    ``os.replace``d over ``path`` (see atomic_write); a crash leaves the old file or the new one."""
    data = text.encode(encoding)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, write)


CHECKSUM_KEY = "vitc.crc32"


def _crc32(arr):
    """CRC-32 of the array's bytes as safetensors stores them (C order, little-endian), 8 hex digits."""
    a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return f"{zlib.crc32(a.reshape(-1).view(np.uint8)):08x}"


def save_safetensors(state_dict, path, metadata=None):
    """Save a name -> tensor/array mapping (e.g. ``model.state_dict()``) as a safetensors file.
    bfloat16 tensors are stored as the format's BF16 (their bits; torch reads them as torch.bfloat16).

    metadata: optional dict of str -> str stored in the header (the key ``vitc.crc32`` is reserved for
    the per-tensor checksums).
    """
    if not hasattr(state_dict, "items"):
        raise TypeError(f"save_safetensors: expected a dict of tensors, got {type(state_dict).__name__}")
    arrays, dtypes = {}, {}
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise TypeError(f"save_safetensors: keys must be str, got {type(k).__name__}")
        if k == "__metadata__":  # the format's header key: a tensor of that name makes an unreadable file
            raise ValueError("save_safetensors: the name '__metadata__' is reserved by the safetensors format")
        arrays[k], dtypes[k] = _to_array(k, v)
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("save_safetensors: metadata must map str to str")
        if CHECKSUM_KEY in metadata:
            raise ValueError(f"save_safetensors: metadata key {CHECKSUM_KEY!r} is reserved for the tensor checksums")
    metadata = dict(metadata or {})
    metadata[CHECKSUM_KEY] = json.dumps({k: _crc32(a) for k, a in arrays.items()}, sort_keys=True)
    atomic_write(path, lambda tmp: _write_file(arrays, dtypes, tmp, metadata))


def _write_file(arrays, dtypes, path, metadata):
    """safetensors.numpy.save_file, or — when some tensor is bfloat16, which NumPy cannot name —
    the format's serializer given each tensor's dtype and little-endian bytes."""
    import safetensors
    import safetensors.numpy

    if "bfloat16" not in dtypes.values():
        return safetensors.numpy.save_file(arrays, path, metadata=metadata)
    # the specs point into these arrays, alive until serialize_file returns
    arrays = {k: a.astype(a.dtype.newbyteorder("<"), order="C", copy=False) for k, a in arrays.items()}
    specs = {k: safetensors.TensorSpec(dtype=dtypes[k], shape=a.shape, data_ptr=a.ctypes.data, data_len=a.nbytes)
             for k, a in arrays.items()}
    safetensors.serialize_file(specs, path, metadata=metadata)


def load_safetensors(path, as_numpy=False):
    """Read a safetensors file into a dict name -> vitc Tensor (float32/int64/bool/bfloat16; other
    float and int dtypes are converted). as_numpy=True returns the NumPy arrays as stored (a BF16
    tensor as its uint16 bit patterns: NumPy has no bfloat16)."""
    return _read(path, as_numpy, "load_safetensors")[0]


def _read(path, as_numpy, who):
    """(name -> tensor or array, header metadata) of a safetensors file; errors name ``who`` and the path."""
    import safetensors.numpy

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{who}: no such file: {path}")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            bf16 = {k for k in f.keys() if f.get_slice(k).get_dtype() == "BF16"}
            arrays = {k: f.get_tensor(k) for k in f.keys() if k not in bf16}
    except safetensors.SafetensorError as e:  # truncated or garbled header, data not covering the tensors
        raise ValueError(f"{who}: {path} is not a valid safetensors file (damaged or truncated?): "
                         f"{e}") from None
    if bf16:
        arrays.update(_read_bf16_bits(path, bf16))
    _verify(path, arrays, metadata.get(CHECKSUM_KEY))
    if as_numpy:
        return arrays, metadata
    out = {}
    for k, a in arrays.items():
        if k in bf16:
            out[k] = bfloat16_from_bits(np.require(a, requirements="CW"))
            continue
        if a.dtype.kind == "f" and a.dtype != np.float32:
            a = a.astype(np.float32)
        elif a.dtype.kind in "iu" and a.dtype != np.int64:
            a = a.astype(np.int64)
        out[k] = from_numpy(np.require(a, requirements="C"))
    return out, metadata


def _read_bf16_bits(path, names):
    """The BF16 tensors ``names`` as uint16 arrays of their bits (safetensors' NumPy reader has no
    bfloat16). Layout: an 8-byte little-endian header length, the JSON header, then the data, each
    tensor at its data_offsets; safe_open has already validated the header and the offsets."""
    out = {}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        for k in names:
            info = header[k]
            begin, end = info["data_offsets"]
            f.seek(8 + n + begin)
            data = f.read(end - begin)
            if len(data) != end - begin:
                raise ValueError(f"load_safetensors: {path}: tensor {k!r} is truncated")
            out[k] = np.frombuffer(data, dtype="<u2").astype(np.uint16).reshape(info["shape"])
    return out


def _verify(path, arrays, stored):
    """Compare every tensor with its stored CRC-32; no stored map (an older file) is not checked."""
    if stored is None:
        return
    try:
        sums = json.loads(stored)
        if not isinstance(sums, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise ValueError(f"load_safetensors: {path}: the checksum map in the header is damaged ({e})") from None
    if set(sums) != set(arrays):
        missing = sorted(set(arrays) ^ set(sums))
        raise ValueError(f"load_safetensors: {path}: tensors and checksums do not match "
                         f"(damaged header?): {missing[:5]}")
    for k, a in arrays.items():
        got = _crc32(a)
        if got != sums[k]:
            raise ValueError(f"load_safetensors: {path}: tensor {k!r} is damaged (CRC-32 {got}, "
                             f"stored {sums[k]})")


# ---- vitc.save / vitc.load: torch.save's everyday use (a state dict or one tensor), without pickle ----
KIND_KEY = "vitc.kind"  # header metadata: 'tensor' (one tensor, stored under _SINGLE) or 'state_dict'
_SINGLE = "tensor"


def save(obj, path):
    """Save a state dict (a mapping str -> vitc Tensor or NumPy array, e.g. ``model.state_dict()``) or
    a single tensor to ``path`` as a safetensors file, atomically, with per-tensor CRC-32s (see
    save_safetensors). Nothing is pickled: other objects (optimizers, modules, lists) raise TypeError.
    dtypes: float32, int64, bool, bfloat16 round-trip exactly; other NumPy int/float dtypes are stored
    as they are and come back as int64 / float32."""
    if isinstance(obj, (Tensor, np.ndarray)):
        return save_safetensors({_SINGLE: obj}, path, metadata={KIND_KEY: "tensor"})
    if isinstance(obj, dict) or (hasattr(obj, "items") and hasattr(obj, "keys")):
        return save_safetensors(obj, path, metadata={KIND_KEY: "state_dict"})
    raise TypeError(f"vitc.save stores a tensor or a dict of tensors (safetensors, never pickle), got "
                    f"{type(obj).__name__}; for a module or an optimizer save its .state_dict()")


def load(path):
    """Read what ``save`` wrote: the single tensor, or the dict name -> vitc Tensor. A safetensors
    file written by another tool loads as a dict. A file that is not safetensors (e.g. a pickled
    .pth) or is damaged raises ValueError naming the path."""
    tensors, metadata = _read(path, False, "vitc.load")
    kind = metadata.get(KIND_KEY, "state_dict")
    if kind == "tensor":
        if set(tensors) != {_SINGLE}:
            raise ValueError(f"vitc.load: {os.fspath(path)}: the header says one tensor but the file holds "
                             f"{sorted(tensors)[:5]}")
        return tensors[_SINGLE]
    if kind != "state_dict":
        raise ValueError(f"vitc.load: {os.fspath(path)}: unknown {KIND_KEY} {kind!r} in the header")
    return tensors


def to_numpy(state_dict):
    """A copy of a name -> tensor mapping as name -> NumPy array (for NumPy-only tools such as
    ``safetensors.numpy.save_file``). bfloat16 tensors raise (NumPy has no bfloat16): convert them
    with .float(), or use vitc.save, which stores them as BF16."""
    out = {}
    for k, v in state_dict.items():
        if isinstance(v, Tensor):
            if v.dtype is bfloat16:
                raise TypeError(f"to_numpy: {k!r} is bfloat16, which NumPy has no dtype for; use .float() "
                                "or vitc.save (stores BF16)")
            v = v.detach().numpy()
        out[k] = np.array(v, order="C", copy=True)
    return out
