"""Repeated augmentation (facebookresearch/deit samplers.py): Hoffer et al., "Augment your batch" (arXiv 1901.09335), as
DeiT's RASampler (facebookresearch/deit, samplers.py) and timm's RepeatAugSampler
(data/distributed_sampler.py) draw it."""
import math
import numbers

import numpy as np

from .._checks import expect_int

__all__ = ["RepeatAugSampler"]


class RepeatAugSampler:
    """Indices of one epoch: a permutation of the dataset (seeded by (seed, epoch)), each index
    repeated ``num_repeats`` times in a row (a, a, a, b, b, b, ...), padded by wrapping to a multiple
    of ``num_replicas``, this rank's share taken by stride, then cut to ⌊n/selected_round⌋·
    selected_round / num_replicas indices (⌈n/num_replicas⌉ when n < selected_round or
    selected_round = 0). One epoch thus shows about n/num_repeats distinct images, each augmented
    ``num_repeats`` times independently.

    Use as ``DataLoader(ds, batch_size, sampler=RepeatAugSampler(ds))``; the loader calls
    ``set_epoch`` before each epoch. ``permutation(epoch)`` is the epoch's shuffled order.
    """

    def __init__(self, data_source, num_repeats=3, shuffle=True, seed=0, selected_round=256, num_replicas=1, rank=0):
        n = data_source if isinstance(data_source, numbers.Integral) and not isinstance(data_source, bool) \
            else len(data_source)
        self.n = expect_int(n, "RepeatAugSampler", "dataset length", 1)
        self.num_repeats = expect_int(num_repeats, "RepeatAugSampler", "num_repeats", 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        self.shuffle = bool(shuffle)
        self.seed = expect_int(seed, "RepeatAugSampler", "seed", 0)
        self.selected_round = expect_int(selected_round, "RepeatAugSampler", "selected_round", 0)
        self.num_replicas = expect_int(num_replicas, "RepeatAugSampler", "num_replicas", 1)
        self.rank = expect_int(rank, "RepeatAugSampler", "rank", 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be < num_replicas ({self.num_replicas}), got {self.rank}")
        self.epoch = 0
        self.num_samples = math.ceil(self.n * self.num_repeats / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        if self.selected_round and self.n >= self.selected_round:
            selected = self.n // self.selected_round * self.selected_round // self.num_replicas
        else:
            selected = math.ceil(self.n / self.num_replicas)
        self.num_selected = min(selected, self.num_samples)

    def set_epoch(self, epoch):
        self.epoch = expect_int(epoch, "RepeatAugSampler", "epoch", 0)

    def permutation(self, epoch):
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def indices(self, epoch=None):
        order = self.permutation(self.epoch if epoch is None else epoch)
        rep = np.repeat(order, self.num_repeats)
        take = np.arange(self.rank, self.total_size, self.num_replicas)[:self.num_selected]
        return rep[take % len(rep)]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_selected

    def __repr__(self):
        return (f"RepeatAugSampler(n={self.n}, num_repeats={self.num_repeats}, shuffle={self.shuffle}, "
                f"seed={self.seed}, selected_round={self.selected_round}, num_replicas={self.num_replicas}, "
                f"rank={self.rank})")
