"""Weights in and out: safetensors files (via ``safetensors.numpy``), written atomically.

``save_safetensors`` writes to a temporary file in the target directory, flushes it to disk and
renames it over the target (``os.replace``), so a crash mid-write leaves any previous file intact.
"""
import os
import tempfile

import numpy as np

from ._tensor import Tensor, from_numpy

__all__ = ["save_safetensors", "load_safetensors", "atomic_write", "write_text_atomic"]


def _to_array(key, value):
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
    return np.require(arr, requirements="C")


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        write(tmp)
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


def save_safetensors(state_dict, path, metadata=None):
    """Save a name -> tensor/array mapping (e.g. ``model.state_dict()``) as a safetensors file.

    metadata: optional dict of str -> str stored in the header.
    """
    import safetensors.numpy

    if not hasattr(state_dict, "items"):
        raise TypeError(f"save_safetensors: expected a dict of tensors, got {type(state_dict).__name__}")
    arrays = {}
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise TypeError(f"save_safetensors: keys must be str, got {type(k).__name__}")
        arrays[k] = _to_array(k, v)
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("save_safetensors: metadata must map str to str")
        metadata = dict(metadata)
    atomic_write(path, lambda tmp: safetensors.numpy.save_file(arrays, tmp, metadata=metadata))


def load_safetensors(path, as_numpy=False):
    """Read a safetensors file into a dict name -> vitc Tensor (float32/int64/bool; other float and
    int dtypes are converted). as_numpy=True returns the NumPy arrays as stored."""
    import safetensors.numpy

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_safetensors: no such file: {path}")
    arrays = safetensors.numpy.load_file(path)
    if as_numpy:
        return arrays
    out = {}
    for k, a in arrays.items():
        if a.dtype.kind == "f" and a.dtype != np.float32:
            a = a.astype(np.float32)
        elif a.dtype.kind in "iu" and a.dtype != np.int64:
            a = a.astype(np.int64)
        out[k] = from_numpy(np.require(a, requirements="C"))
    return out
