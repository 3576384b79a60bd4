"""Data for vitc: IDX files, MNIST / Fashion-MNIST, a prefetching DataLoader and batch transforms.

Pure Python + NumPy: batches are NumPy arrays unless ``DataLoader(to_tensor=...)`` converts them.
"""

from .datasets import MNIST, FashionMNIST
from .idx import read_idx, write_idx
from .loader import DataLoader
from .transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, Transform

__all__ = [
    "read_idx", "write_idx",
    "MNIST", "FashionMNIST",
    "DataLoader",
    "Transform", "Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip",
]
