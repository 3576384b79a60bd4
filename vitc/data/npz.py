"""NpzDataset: samples from two arrays of an .npz file, read without pickle."""

import os

import numpy as np

from .dataset import Dataset, check_index

__all__ = ["NpzDataset"]


class NpzDataset(Dataset):
    """Samples ``(x[i], y[i])`` from the arrays ``x_key`` and ``y_key`` of an .npz file.

    uint8 images are scaled to float32 [0, 1] as ToTensor does: (N, H, W) gets a channel axis and
    (N, H, W, C) with C in 1, 3 or 4 becomes (N, C, H, W); float arrays are used as stored (images
    as (N, C, H, W)). Labels must be integers (classes) or floats (targets). Loaded without pickle.
    ``transform`` (per sample, ``t(x) -> x``) applies to x.
    """

    def __init__(self, path, x_key="x", y_key="y", transform=None):
        if transform is not None and not callable(transform):
            raise TypeError(f"NpzDataset: transform must be callable or None, got {type(transform).__name__}")
        self.path = os.path.expanduser(os.fspath(path))
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"NpzDataset: no file {self.path}")
        try:
            npz = np.load(self.path, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("it holds one array, not an .npz archive of named arrays")
            with npz:
                keys = list(npz.keys())
                missing = [k for k in (x_key, y_key) if k not in keys]
                if missing:
                    raise KeyError(f"NpzDataset: {self.path} has no array {missing[0]!r} (it has {keys}); "
                                   "pass x_key= / y_key=")
                x, y = npz[x_key], npz[y_key]
        except (ValueError, OSError) as e:
            raise ValueError(f"NpzDataset: cannot read {self.path} as an .npz of arrays ({e})") from None
        if len(x) != len(y):
            raise ValueError(f"NpzDataset: {self.path}: {x_key} has {len(x)} samples but {y_key} has {len(y)}")
        if y.ndim == 0 or y.dtype.kind not in "iubf":
            raise ValueError(f"NpzDataset: {self.path}: {y_key} must be numeric labels, got {y.dtype} {y.shape}")
        if x.dtype == np.uint8:
            if x.ndim == 3:
                x = x[:, None]
            elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
                x = np.moveaxis(x, -1, 1)
            x = np.ascontiguousarray(x, dtype=np.float32) / np.float32(255)
        elif x.dtype.kind not in "fiub":
            raise ValueError(f"NpzDataset: {self.path}: {x_key} must be numeric, got {x.dtype}")
        self.x, self.y = x, (y.astype(np.int64) if y.dtype.kind in "iub" else y.astype(np.float32))
        self.transform = transform
        self.classes = list(range(int(self.y.max()) + 1)) if self.y.dtype == np.int64 and len(y) else []

    @property
    def images(self):
        return self.x

    @property
    def labels(self):
        return self.y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        index = check_index(index, len(self), "NpzDataset")
        x = self.x[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.y[index]

    def __repr__(self):
        return f"NpzDataset(samples={len(self)}, x={self.x.dtype}{list(self.x.shape)}, path={self.path!r})"
