"""Data for vitc: datasets (TensorDataset, ImageFolder, CIFAR, MNIST / Fashion-MNIST, .npz, IDX
files), a DataLoader with worker processes, per-image and batch transforms.

Python + NumPy (+ Pillow for images): samples and batches are built as NumPy arrays and the
DataLoader hands them out as vitc tensors (``DataLoader(to_tensor=None)`` keeps NumPy).
The batch augmentations Mixup/CutMix, RandomErasing and RandAugment run in the C core
(csrc/ops/augment.c), which they import on first use.
"""

from .datasets import MNIST, FashionMNIST
from .dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from .folder import ImageFolder
from .cifar import CIFAR10, CIFAR100
from .npz import NpzDataset
from .collate import default_collate
from .workers import get_worker_info
from .image_transforms import CenterCrop, ImageTransform, Resize, ToTensor
from .idx import read_idx, write_idx
from .loader import DataLoader
from .transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, Transform
from .mixup import Mixup
from .random_erasing import RandomErasing
from .auto_augment import RandAugment
from .samplers import DistributedBatchSampler, RepeatAugSampler, ShardSampler
from .recipe import RecipeTransform

__all__ = [
    "read_idx", "write_idx",
    "MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "ImageFolder", "NpzDataset",
    "Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split",
    "DataLoader", "default_collate", "get_worker_info",
    "Transform", "Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip",
    "ImageTransform", "Resize", "CenterCrop", "ToTensor",
    "Mixup", "RandomErasing", "RandAugment", "RepeatAugSampler", "DistributedBatchSampler", "ShardSampler", "RecipeTransform",
]
