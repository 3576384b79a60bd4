"""Map-style datasets with PyTorch's names: Dataset, TensorDataset, Subset, ConcatDataset, random_split.

A dataset is anything with ``len(ds)`` and ``ds[i]``; these classes add the usual building blocks
(torch.utils.data.dataset has the same names and meanings). Indices are ints in ``[-len, len)``.
"""

import bisect
import math
import numbers

import numpy as np

from .._checks import expect_int

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """Base class: subclasses define ``__getitem__(i)`` and ``__len__()``; ``a + b`` concatenates."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


def check_index(index, n, who):
    """index as a non-negative int below n (negative counts from the end); IndexError/TypeError."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"{who}: index must be an int, got {type(index).__name__}")
    index = int(index)
    if not -n <= index < n:
        raise IndexError(f"{who}: index {index} out of range for a dataset of {n} samples")
    return index + n if index < 0 else index


def _as_array(a, position):
    """A NumPy array from an array, a vitc Tensor or a torch Tensor (copied, detached)."""
    from .collate import to_numpy
    try:
        arr = to_numpy(a)
    except TypeError:
        arr = np.asarray(a)
    if arr.ndim == 0:
        raise ValueError(f"TensorDataset: argument {position} is a scalar; each argument needs a first "
                         "(sample) dimension")
    if arr.dtype == object:
        raise TypeError(f"TensorDataset: argument {position} is not a numeric array (dtype object)")
    return arr


class TensorDataset(Dataset):
    """Samples ``(a[i], b[i], ...)`` from arrays that share their first dimension.

    Takes NumPy arrays, vitc tensors or array-likes (torch tensors are converted to NumPy). The
    arrays are kept as NumPy (``.arrays``); the DataLoader turns batches into vitc tensors.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = tuple(_as_array(a, k) for k, a in enumerate(arrays))
        sizes = [len(a) for a in self.arrays]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: arrays have different first dimensions {sizes}")

    def __len__(self):
        return len(self.arrays[0])

    # With exactly two arrays (inputs, targets) the DataLoader batches by one gather of each, which
    # gives the same arrays as collating the samples one by one.
    @property
    def images(self):
        if len(self.arrays) != 2:
            raise AttributeError("images: only a TensorDataset of two arrays has it")
        return self.arrays[0]

    @property
    def labels(self):
        if len(self.arrays) != 2:
            raise AttributeError("labels: only a TensorDataset of two arrays has it")
        return self.arrays[1]

    def __getitem__(self, index):
        index = check_index(index, len(self), "TensorDataset")
        return tuple(a[index] for a in self.arrays)

    def __repr__(self):
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"TensorDataset({shapes})"


class Subset(Dataset):
    """``dataset`` seen through ``indices``: ``Subset(ds, idx)[k] == ds[idx[k]]``."""

    def __init__(self, dataset, indices):
        _check_dataset(dataset, "Subset")
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(f"Subset: indices must be a 1-D sequence of ints, got {np.asarray(indices).dtype} "
                            f"shape {idx.shape}")
        n = len(dataset)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"Subset: indices must lie in [{-n}, {n}) for a dataset of {n} samples")
        self.dataset = dataset
        self.indices = [int(i) for i in idx]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[check_index(index, len(self), "Subset")]]


class ConcatDataset(Dataset):
    """Several datasets one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: needs at least one dataset")
        for d in self.datasets:
            _check_dataset(d, "ConcatDataset")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]).tolist())

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        index = check_index(index, len(self), "ConcatDataset")
        k = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[k - 1] if k else 0
        return self.datasets[k][index - start]


def _check_dataset(dataset, who):
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{who}: dataset must support len() and indexing, got {type(dataset).__name__}")


def _split_lengths(lengths, n):
    """Integer lengths summing to n from ints or fractions (fractions: floor, then one more sample
    to the first splits in turn until the total is n, as torch.utils.data.random_split does)."""
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in lengths):
        lengths = [int(v) for v in lengths]
        if min(lengths) < 0:
            raise ValueError(f"random_split: lengths must be non-negative, got {lengths}")
        if sum(lengths) != n:
            raise ValueError(f"random_split: lengths sum to {sum(lengths)} but the dataset has {n} samples")
        return lengths
    if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral)) for v in lengths):
        raise TypeError(f"random_split: lengths must be all ints or all fractions, got {lengths}")
    fractions = [float(v) for v in lengths]
    if min(fractions) < 0 or max(fractions) > 1 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"random_split: fractions must be in [0, 1] and sum to 1, got {lengths}")
    counts = [int(math.floor(n * f)) for f in fractions]
    for k in range(n - sum(counts)):
        counts[k % len(counts)] += 1
    return counts


def random_split(dataset, lengths, generator=None, seed=None):
    """Split ``dataset`` into non-overlapping ``Subset`` objects of the given lengths, in a random order.

    lengths: ints summing to ``len(dataset)``, or fractions summing to 1 (rounded as torch does).
    The order comes from ``seed`` (an int) or ``generator`` (a numpy.random.Generator); the same
    seed gives the same split. Neither: a fresh random split.
    """
    _check_dataset(dataset, "random_split")
    if seed is not None and generator is not None:
        raise ValueError("random_split: give seed or generator, not both")
    if generator is None:
        seed = None if seed is None else expect_int(seed, "random_split", "seed", minimum=0)
        generator = np.random.default_rng(seed)
    elif not isinstance(generator, np.random.Generator):
        raise TypeError(f"random_split: generator must be a numpy.random.Generator, got {type(generator).__name__}")
    n = len(dataset)
    counts = _split_lengths(lengths, n)
    order = generator.permutation(n)
    ends = np.cumsum(counts)
    return [Subset(dataset, order[end - c:end]) for c, end in zip(counts, ends)]
