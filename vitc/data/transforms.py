"""Batch image transforms on NumPy arrays of shape (N, C, H, W), and Compose.

Each transform is a callable ``t(x, rng) -> x``: it takes a float batch and a
``numpy.random.Generator`` and returns a new array (the input is never modified). Randomness
comes only from ``rng``, so a seeded DataLoader gives the same augmentations on every run.
``DataLoader(transform=t)`` recognises ``Transform`` instances and applies them to the images only.
Per-image transforms (``Resize``, ``CenterCrop``, ``ToTensor``: vitc/data/image_transforms.py) are
called ``t(img)`` as torchvision's are, and go to a dataset's ``transform=``.
"""

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Transform", "Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip"]


class Transform:
    """Base class of image-batch transforms: ``t(x, rng) -> x``."""

    def __call__(self, x, rng=None):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _check_batch(x):
    if not isinstance(x, np.ndarray) and not hasattr(x, "__array__"):
        raise TypeError(f"expected a NumPy batch of shape (N, C, H, W), got {type(x).__name__} "
                        "(put ToTensor() before batch transforms)")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of shape (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"expected a float batch, got dtype {x.dtype}")
    return x


def _check_rng(rng, who):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who} needs a numpy.random.Generator, got {type(rng).__name__}")


def _int_pair(value, name):
    if isinstance(value, numbers.Integral):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            pair = ()
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return tuple(int(v) for v in pair)


class Compose(Transform):
    """Apply transforms in order.

    A batch ``Transform`` is called ``t(x, rng)`` (all drawing from the same rng); any other callable
    is a per-image transform, called ``t(img)`` as torchvision calls it. So one Compose serves as a
    dataset's per-image ``transform=`` (e.g. ``Compose([Resize(72), CenterCrop(64), ToTensor(),
    Normalize(mean, std)])``) or as a DataLoader batch transform. Inside a Compose, a batch
    transform given one (C, H, W) image treats it as a batch of one.
    """

    def __init__(self, transforms):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose expects callables (a Transform or t(img) -> img), got {type(t).__name__}")
        self.transforms = transforms

    def __call__(self, x, rng=None):
        for t in self.transforms:
            if not isinstance(t, Transform):
                x = t(x)
            elif isinstance(x, np.ndarray) and x.ndim == 3:
                x = t(x[None], rng)[0]
            else:
                x = t(x, rng)
        return x


class Normalize(Transform):
    """``(x - mean) / std`` per channel; mean and std are scalars or one value per channel."""

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float32))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float32))
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
                raise ValueError(f"Normalize: {name} must be a finite scalar or 1-D sequence, got {v}")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std}")
        if self.mean.size != self.std.size and 1 not in (self.mean.size, self.std.size):
            raise ValueError(f"Normalize: mean has {self.mean.size} values but std has {self.std.size}")

    def __call__(self, x, rng=None):
        x = _check_batch(x)
        c = x.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(f"Normalize: {name} has {v.size} values but the batch has {c} channels")
        # Subtract then divide, in float32, as torchvision does, so results match to the bit.
        return (x - self.mean.reshape(1, -1, 1, 1)) / self.std.reshape(1, -1, 1, 1)


class RandomCrop(Transform):
    """Pad each image with ``padding`` zeros on every side, then crop ``size`` at a random offset
    drawn independently for every sample."""

    def __init__(self, size, padding=0):
        self.size = _int_pair(size, "RandomCrop: size")
        if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be a non-negative int, got {padding!r}")
        self.padding = int(padding)

    def __call__(self, x, rng=None):
        x = _check_batch(x)
        _check_rng(rng, "RandomCrop")
        p, (h, w) = self.padding, self.size
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        n, _, hp, wp = x.shape
        if h > hp or w > wp:
            raise ValueError(f"RandomCrop: crop {h}x{w} is larger than the padded image {hp}x{wp}")
        top = rng.integers(0, hp - h + 1, size=n)
        left = rng.integers(0, wp - w + 1, size=n)
        # windows[n, c, i, j] is the h×w crop at offset (i, j): one gather picks every sample's crop.
        windows = sliding_window_view(x, (h, w), axis=(2, 3))
        return windows[np.arange(n), :, top, left]


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p=0.5):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a number in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x, rng=None):
        x = _check_batch(x)
        _check_rng(rng, "RandomHorizontalFlip")
        flip = rng.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip, ..., ::-1]
        return out
