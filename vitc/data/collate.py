"""Batching samples (default_collate) and turning batches into vitc tensors.

default_collate follows torch.utils.data.default_collate's structure rules (a tuple of fields gives
a tuple of batched fields, a dict gives a dict, arrays and numbers are stacked), in NumPy: the
batch crosses process boundaries as arrays and becomes vitc tensors only in the caller's process.
"""

import collections.abc
import numbers

import numpy as np

from .._checks import is_torch_tensor
from .image_transforms import is_pil_image

__all__ = ["default_collate", "map_arrays", "to_numpy", "to_vitc"]


def _is_vitc_tensor(x):
    from .._tensor import Tensor
    return isinstance(x, Tensor)


def to_numpy(x):
    """A NumPy array from an ndarray, a vitc Tensor or a torch Tensor; TypeError otherwise."""
    if isinstance(x, np.ndarray):
        return x
    if is_torch_tensor(x):
        return x.detach().cpu().numpy()
    if _is_vitc_tensor(x):
        return np.array(x.detach())  # Tensor.__array__ (float32 for bfloat16)
    raise TypeError(f"expected an array or tensor, got {type(x).__name__}")


def _canonical(arr):
    """Contiguous float32 / int64 / bool: the dtypes vitc computes and indexes with."""
    kind = arr.dtype.kind
    if kind == "f":
        dtype = np.float32
    elif kind in "iu":
        dtype = np.int64
    elif kind == "b":
        dtype = np.bool_
    else:
        raise TypeError(f"DataLoader: cannot batch arrays of dtype {arr.dtype} "
                        "(vitc batches are float32, int64 or bool)")
    return np.ascontiguousarray(arr, dtype=dtype)


def _pure_numbers(x):
    """True for a number or a (nested) list of numbers: collated as one array, not as fields."""
    if isinstance(x, (numbers.Number, np.generic)):
        return True
    return isinstance(x, list) and all(_pure_numbers(v) for v in x)


def default_collate(samples):
    """Batch a list of samples: dicts key by key, tuples field by field, arrays / tensors / numbers
    stacked along a new first axis (float -> float32, integers -> int64, bool kept), strings kept
    as a list. A list of numbers (possibly nested) is one array; a list holding arrays is a
    sequence of fields like a tuple. Every sample must have the same structure and shapes."""
    if not isinstance(samples, (list, tuple)) or not samples:
        raise ValueError("default_collate: expected a non-empty list of samples")
    first = samples[0]
    if isinstance(first, collections.abc.Mapping):
        keys = list(first)
        for k, s in enumerate(samples):
            if not isinstance(s, collections.abc.Mapping) or set(s) != set(keys):
                got = sorted(map(str, s)) if isinstance(s, collections.abc.Mapping) else type(s).__name__
                raise ValueError(f"default_collate: sample {k} has keys {got}, sample 0 has {sorted(map(str, keys))}")
        return {key: default_collate([s[key] for s in samples]) for key in keys}
    if isinstance(first, tuple) or (isinstance(first, list) and not _pure_numbers(first)):
        for k, s in enumerate(samples):
            if type(s) is not type(first) or len(s) != len(first):
                raise ValueError(f"default_collate: sample {k} is a {type(s).__name__} of {len(s)} fields, "
                                 f"sample 0 a {type(first).__name__} of {len(first)}")
        fields = [default_collate([s[j] for s in samples]) for j in range(len(first))]
        if isinstance(first, list):
            return fields
        return type(first)(*fields) if hasattr(first, "_fields") else tuple(fields)  # namedtuple
    if isinstance(first, (str, bytes)):
        return list(samples)
    if is_pil_image(first):
        raise TypeError("default_collate: samples are PIL images; give the dataset "
                        "transform=vitc.data.ToTensor() (or a Compose ending with it)")
    if first is None:
        raise TypeError("default_collate: a sample field is None")
    arrays = []
    for k, s in enumerate(samples):
        if isinstance(s, (np.ndarray, numbers.Number, np.generic)) or _pure_numbers(s):
            a = np.asarray(s)
        else:
            try:
                a = to_numpy(s)
            except TypeError:
                raise TypeError(f"default_collate: cannot batch sample {k} of type {type(s).__name__}") from None
        if arrays and a.shape != arrays[0].shape:
            raise ValueError(f"default_collate: sample {k} has shape {a.shape}, sample 0 has {arrays[0].shape}; "
                             "resize the images (e.g. transform=Resize(...)) or pass collate_fn=")
        arrays.append(a)
    return _canonical(np.stack(arrays))


def map_arrays(batch, fn):
    """batch with fn applied to each array or tensor leaf (in dicts, tuples and lists)."""
    if isinstance(batch, np.ndarray) or is_torch_tensor(batch) or _is_vitc_tensor(batch):
        return fn(batch)
    if isinstance(batch, collections.abc.Mapping):
        return {k: map_arrays(v, fn) for k, v in batch.items()}
    if isinstance(batch, tuple):
        fields = [map_arrays(v, fn) for v in batch]
        return type(batch)(*fields) if hasattr(batch, "_fields") else tuple(fields)
    if isinstance(batch, list):
        return [map_arrays(v, fn) for v in batch]
    return batch


def to_vitc(a):
    """A vitc Tensor from an array leaf (float -> float32, integers -> int64, bool kept); a vitc
    Tensor is returned as is, a torch Tensor converted."""
    if _is_vitc_tensor(a):
        return a
    from .._tensor import from_numpy
    return from_numpy(_canonical(to_numpy(a)))
