"""MNIST and Fashion-MNIST read from IDX files into NumPy arrays.

Both give ``.data`` (uint8, N×H×W), ``.targets`` (int64, N) and, for fast batching, ``.images``
(float32 N×1×H×W in [0, 1], computed once on first use) and ``.labels`` (= ``.targets``).
``ds[i]`` returns ``(image, label)`` with image float32 (1, H, W), as torchvision's ToTensor gives.
"""

import hashlib
import http.client
import os
import urllib.request

import numpy as np

from .idx import _atomic_write, read_idx

__all__ = ["FashionMNIST", "MNIST"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist installs
MNIST_ROOT = "~/.cache/vitc/mnist"


class _IDXImageDataset:
    """Images and labels from a pair of IDX files (uint8 N×H×W images, uint8 N labels)."""

    classes = ()

    def __init__(self, images_path, labels_path, transform=None, subset=None):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        subset = _check_subset(subset)
        data = read_idx(images_path)
        targets = read_idx(labels_path)
        if data.dtype != np.uint8 or data.ndim != 3:
            raise ValueError(f"{images_path}: expected uint8 images of shape (N, H, W), "
                             f"got {data.dtype} {data.shape}")
        if targets.dtype != np.uint8 or targets.ndim != 1:
            raise ValueError(f"{labels_path}: expected uint8 labels of shape (N,), "
                             f"got {targets.dtype} {targets.shape}")
        if len(data) != len(targets):
            raise ValueError(f"{images_path} has {len(data)} images but {labels_path} has "
                             f"{len(targets)} labels")
        if len(targets) and targets.max() >= len(self.classes):
            raise ValueError(f"{labels_path}: label {targets.max()} out of range 0..{len(self.classes) - 1}")
        if subset is not None:
            # Copies, so a small subset does not keep the full arrays alive.
            data, targets = data[:subset].copy(), targets[:subset].copy()
        self.data = data
        self.targets = targets.astype(np.int64)
        self.transform = transform
        self._images = None

    @property
    def images(self):
        """All images as float32 (N, 1, H, W) in [0, 1]; computed on first use, then cached."""
        if self._images is None:
            self._images = _to_float(self.data[:, None])
        return self._images

    @property
    def labels(self):
        return self.targets

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        n = len(self.data)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        # Same arithmetic as .images, so per-item and batched access agree bit for bit.
        image = _to_float(self.data[index][None])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self):
        return f"{type(self).__name__}(samples={len(self)}, root={self.root!r}, train={self.train})"


def _to_float(u8):
    # Division (not multiplication by 1/255) matches ToTensor's img.float().div(255) exactly;
    # in place, to avoid a second full-size temporary for 60000 images.
    out = u8.astype(np.float32)
    out /= np.float32(255)
    return out


def _check_subset(subset):
    if subset is None:
        return None
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
        raise ValueError(f"subset must be a positive int or None, got {subset!r}")
    return int(subset)


def _split_names(train):
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(root, stem):
    """Path of ``stem.gz`` or ``stem`` under root, or None."""
    for name in (stem + ".gz", stem):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


class FashionMNIST(_IDXImageDataset):
    """Fashion-MNIST (60000 train / 10000 test 28×28 grey images, 10 classes).

    Reads the IDX files that Debian's ``dataset-fashion-mnist`` package installs in
    /usr/share/datasets/fashion-mnist (gzip or uncompressed). ``subset=n`` keeps the first n samples.
    """

    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

    def __init__(self, root=FASHION_MNIST_ROOT, train=True, transform=None, subset=None):
        self.root = os.path.expanduser(os.fspath(root))
        self.train = bool(train)
        stems = _split_names(train)
        paths = [_find(self.root, s) for s in stems]
        if None in paths:
            missing = " and ".join(f"{s}.gz (or {s})" for s, p in zip(stems, paths) if p is None)
            raise FileNotFoundError(
                f"Fashion-MNIST files missing in {self.root}: {missing}. "
                "Install them with `apt-get install dataset-fashion-mnist`, or pass root= "
                "the folder that holds them.")
        super().__init__(*paths, transform=transform, subset=subset)


# SHA-256 of the canonical MNIST .gz files (the same bytes on every mirror).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class MNIST(_IDXImageDataset):
    """MNIST handwritten digits (60000 train / 10000 test 28×28 grey images).

    Looks for the original IDX files (``train-images-idx3-ubyte.gz`` etc., gzip or not) in
    ``root``; missing ones are downloaded from ``MNIST.mirrors`` when ``download`` is true,
    checked against ``MNIST.sha256`` and written atomically. Only the requested split is fetched.
    """

    classes = tuple(str(d) for d in range(10))
    mirrors = MNIST_MIRRORS
    sha256 = MNIST_SHA256
    timeout = 60.0  # seconds per connection attempt

    def __init__(self, root=MNIST_ROOT, train=True, download=True, transform=None, subset=None):
        self.root = os.path.expanduser(os.fspath(root))
        self.train = bool(train)
        stems = _split_names(train)
        paths = [_find(self.root, s) for s in stems]
        missing = [s + ".gz" for s, p in zip(stems, paths) if p is None]
        if missing and not download:
            raise FileNotFoundError(
                f"MNIST files not found in {self.root}: {', '.join(missing)}. "
                "Pass download=True or put the files there.")
        if missing:
            os.makedirs(self.root, exist_ok=True)
            for name in missing:
                self._download(name)
            paths = [_find(self.root, s) for s in stems]
        super().__init__(*paths, transform=transform, subset=subset)

    def _download(self, name):
        expected = self.sha256[name]
        errors = []
        for base in self.mirrors:
            url = base + name
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as response, \
                        _atomic_write(os.path.join(self.root, name)) as f:
                    digest = hashlib.sha256()
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        f.write(chunk)
                    if digest.hexdigest() != expected:
                        # Raising inside _atomic_write discards the temporary file.
                        raise _ChecksumError(f"SHA-256 {digest.hexdigest()}, expected {expected}")
                return
            except (OSError, http.client.HTTPException, _ChecksumError) as e:
                errors.append(f"{url}: {e}")
        raise RuntimeError(
            f"could not download MNIST file {name} into {self.root}:\n  " + "\n  ".join(errors)
            + f"\nPut the MNIST files ({', '.join(self.sha256)}) in {self.root} by hand, "
            "or use FashionMNIST, which Debian ships offline.")


class _ChecksumError(Exception):
    pass
