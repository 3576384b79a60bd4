"""CIFAR-10 / CIFAR-100 from the python-pickle archive on disk.

The archive layout is the one https://www.cs.toronto.edu/~kriz/cifar.html describes: pickled dicts
with b'data' (uint8 N x 3072, the red, green then blue 32x32 planes of each image) and b'labels'
(CIFAR-10) or b'fine_labels' / b'coarse_labels' (CIFAR-100), plus a meta file with the class
names. Nothing is downloaded. The pickles are read with an unpickler that can build only NumPy
arrays and plain containers, so a crafted file cannot run code.
"""

import io
import os
import pickle
import tarfile

import numpy as np

from .dataset import Dataset, check_index

__all__ = ["CIFAR10", "CIFAR100"]

# The only globals a CIFAR pickle needs: NumPy's array/dtype reconstruction (numpy 1 and 2 module
# paths) and the codec Python 3 uses for bytes in protocol-2 pickles.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR file holds only "
                                     "arrays, lists and dicts")


def load_pickle(data, where):
    """The dict pickled in ``data`` (bytes), keys decoded to str; ValueError naming ``where``."""
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise ValueError(f"{where}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


class _Archive:
    """Files of the extracted folder or of the .tar.gz, by their name inside the folder."""

    def __init__(self, root, folder, tarball, meta_file):
        root = os.path.expanduser(os.fspath(root))
        self.folder = self.tar = None
        self.folder_name = folder
        if os.path.isdir(os.path.join(root, folder)):
            self.folder = os.path.join(root, folder)
        elif os.path.isfile(os.path.join(root, meta_file)):  # root is the extracted folder itself
            self.folder = root
        elif os.path.isfile(root) and root.endswith((".tar.gz", ".tgz")):
            self.tar = root
        elif os.path.isfile(os.path.join(root, tarball)):
            self.tar = os.path.join(root, tarball)
        else:
            raise FileNotFoundError(
                f"no CIFAR data at {root}: expected the extracted folder {os.path.join(root, folder)} "
                f"or the archive {os.path.join(root, tarball)} (nothing is downloaded)")

    def read(self, name):
        if self.folder is not None:
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"CIFAR file missing: {path}")
            with open(path, "rb") as f:
                return f.read(), path
        where = f"{self.tar}:{self.folder_name}/{name}"
        try:
            with tarfile.open(self.tar, "r:gz") as tar:
                member = tar.extractfile(f"{self.folder_name}/{name}")  # read in memory, never extracted
                return member.read(), where
        except KeyError:
            raise FileNotFoundError(f"CIFAR file missing: {where}") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"{self.tar}: not a readable .tar.gz ({e})") from None


class _CIFAR(Dataset):
    folder = tarball = label_key = meta_file = names_key = None
    train_files = test_files = ()

    def __init__(self, root, train=True, transform=None, target_transform=None):
        if not isinstance(train, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: train must be a bool, got {type(train).__name__}")
        for name, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{type(self).__name__}: {name} must be callable or None, got {type(fn).__name__}")
        self.root, self.train = os.fspath(root), bool(train)
        self.transform, self.target_transform = transform, target_transform
        archive = _Archive(root, self.folder, self.tarball, self.meta_file)
        meta = load_pickle(*archive.read(self.meta_file))
        self.classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(self.names_key, [])]
        if not self.classes:
            raise ValueError(f"{self.meta_file} of {self.root}: no '{self.names_key}' class names")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        data, targets, extra = [], [], []
        for name in (self.train_files if train else self.test_files):
            d, t, e = self._read_batch(archive, name)
            data.append(d), targets.append(t), extra.append(e)
        self.data = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3) as torchvision
        self.targets = np.concatenate(targets)
        self._extra = np.concatenate(extra) if extra[0] is not None else None

    def _read_batch(self, archive, name):
        batch = load_pickle(*archive.read(name))
        where = f"{name} of {self.root}"
        if "data" not in batch or self.label_key not in batch:
            raise ValueError(f"{where}: expected the keys b'data' and b'{self.label_key}', got {sorted(batch)}")
        data, labels = batch["data"], np.asarray(batch[self.label_key])
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{where}: b'data' must be uint8 of shape (N, 3072), got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {np.shape(data)}")
        if labels.ndim != 1 or len(labels) != len(data) or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"{where}: {len(data)} images but b'{self.label_key}' has shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(f"{where}: label {labels.max()} out of range 0..{len(self.classes) - 1}")
        extra = np.asarray(batch["coarse_labels"], dtype=np.int64) if "coarse_labels" in batch else None
        return data, labels.astype(np.int64), extra

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        """(image, class): a PIL image through ``transform`` when one is given (torchvision's
        convention), else float32 (3, 32, 32) in [0, 1]."""
        index = check_index(index, len(self), type(self).__name__)
        if self.transform is not None:
            from PIL import Image
            img = self.transform(Image.fromarray(self.data[index]))
        else:
            img = _to_float_chw(self.data[index])
        target = int(self.targets[index])
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self):
        return f"{type(self).__name__}(samples={len(self)}, root={self.root!r}, train={self.train})"


def _to_float_chw(hwc):
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) / 255, ToTensor's arithmetic."""
    out = np.ascontiguousarray(np.moveaxis(hwc, -1, -3), dtype=np.float32)
    out /= np.float32(255)
    return out


class CIFAR10(_CIFAR):
    """CIFAR-10 (50000 train / 10000 test 32x32 colour images, 10 classes) from ``root``: the folder
    holding ``cifar-10-batches-py/`` (or that folder, or ``cifar-10-python.tar.gz``, or the archive's
    path). ``.data`` is uint8 (N, 32, 32, 3), ``.targets`` int64 (N,)."""

    folder, tarball = "cifar-10-batches-py", "cifar-10-python.tar.gz"
    label_key, meta_file, names_key = "labels", "batches.meta", "label_names"
    train_files = tuple(f"data_batch_{k}" for k in range(1, 6))
    test_files = ("test_batch",)


class CIFAR100(_CIFAR):
    """CIFAR-100 (100 fine classes) from ``root``: the folder holding ``cifar-100-python/`` (or that
    folder, ``cifar-100-python.tar.gz`` or the archive's path). Targets are the fine labels;
    ``.coarse_targets`` holds the 20 superclasses."""

    folder, tarball = "cifar-100-python", "cifar-100-python.tar.gz"
    label_key, meta_file, names_key = "fine_labels", "meta", "fine_label_names"
    train_files, test_files = ("train",), ("test",)

    @property
    def coarse_targets(self):
        return self._extra
