"""Data for vitc: IDX files, MNIST / Fashion-MNIST, a prefetching DataLoader and batch transforms.

Pure Python + NumPy: batches are NumPy arrays unless ``DataLoader(to_tensor=...)`` converts them.
The batch augmentations Mixup/CutMix, RandomErasing and RandAugment run in the C core
(csrc/ops/augment.c), which they import on first use.
"""

from .datasets import MNIST, FashionMNIST
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
    "MNIST", "FashionMNIST",
    "DataLoader",
    "Transform", "Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip",
    "Mixup", "RandomErasing", "RandAugment", "RepeatAugSampler", "DistributedBatchSampler", "ShardSampler", "RecipeTransform",
]
