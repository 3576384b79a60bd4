"""Repeated augmentation (facebookresearch/deit samplers.py): Hoffer et al., "Augment your batch" (arXiv 1901.09335), as
DeiT's RASampler (facebookresearch/deit, samplers.py) and timm's RepeatAugSampler
(data/distributed_sampler.py) draw it."""
import math
import numbers

import numpy as np

from .._checks import expect_int

__all__ = ["RepeatAugSampler", "DistributedBatchSampler", "ShardSampler"]


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


def _loader_order(n, seed, epoch, shuffle):
    """The order a single-process vitc DataLoader(shuffle=..., seed=seed) uses in epoch ``epoch``
    (vitc/data/loader.py: PCG64(seed) jumped 2*epoch times)."""
    if not shuffle:
        return np.arange(n)
    return np.random.Generator(np.random.PCG64(seed).jumped(2 * epoch)).permutation(n)


class DistributedBatchSampler:
    """Rank ``rank``'s share of every global batch of a single-process epoch, for data parallelism.

    The epoch order is exactly the single-process ``DataLoader(shuffle, seed)`` order; it is cut into
    global batches of ``batch_size``, and rank r takes the r-th contiguous slice of ``batch_size /
    num_replicas`` indices of each. Use with ``DataLoader(ds, batch_size // num_replicas, sampler=...)``:
    the N ranks together then see the single process's batches, so averaged gradients equal its
    gradients up to float reordering. ``num_replicas`` must divide ``batch_size`` (ValueError).
    A final short global batch is kept when ``num_replicas`` divides its size and ``drop_last`` is
    False, dropped otherwise (the ranks must take equal shares for their mean to be the batch mean).
    """

    def __init__(self, data_source, batch_size, num_replicas, rank, seed=0, shuffle=True, drop_last=False):
        n = data_source if isinstance(data_source, numbers.Integral) and not isinstance(data_source, bool) \
            else len(data_source)
        who = "DistributedBatchSampler"
        self.n = expect_int(n, who, "dataset length", 1)
        self.batch_size = expect_int(batch_size, who, "batch_size", 1)
        self.num_replicas = expect_int(num_replicas, who, "num_replicas", 1)
        self.rank = expect_int(rank, who, "rank", 0)
        self.seed = expect_int(seed, who, "seed", 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"{who}: rank must be < num_replicas ({self.num_replicas}), got {self.rank}")
        if self.batch_size % self.num_replicas:
            raise ValueError(f"{who}: the world size {self.num_replicas} does not divide the batch size "
                             f"{self.batch_size}; choose a batch size that is a multiple of the number of ranks")
        for name, v in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{who}: {name} must be a bool, got {type(v).__name__}")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.local_batch_size = self.batch_size // self.num_replicas
        tail = self.n % self.batch_size
        self.tail = tail if (tail and not self.drop_last and tail % self.num_replicas == 0) else 0
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = expect_int(epoch, "DistributedBatchSampler", "epoch", 0)

    def indices(self, epoch=None):
        order = _loader_order(self.n, self.seed, self.epoch if epoch is None else epoch, self.shuffle)
        full = self.n // self.batch_size * self.batch_size
        b, r = self.local_batch_size, self.rank
        mine = order[:full].reshape(-1, self.num_replicas, b)[:, r].reshape(-1)
        if self.tail:
            t = self.tail // self.num_replicas
            mine = np.concatenate([mine, order[full + r * t:full + (r + 1) * t]])
        return mine

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.n // self.batch_size * self.local_batch_size + self.tail // self.num_replicas

    def __repr__(self):
        return (f"DistributedBatchSampler(n={self.n}, batch_size={self.batch_size}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, seed={self.seed}, shuffle={self.shuffle}, drop_last={self.drop_last})")


class ShardSampler:
    """Every ``num_replicas``-th index from ``rank`` (no shuffling, nothing dropped): an evaluation
    pass split over ranks whose counts are then summed."""

    def __init__(self, data_source, num_replicas, rank):
        n = data_source if isinstance(data_source, numbers.Integral) and not isinstance(data_source, bool) \
            else len(data_source)
        self.n = expect_int(n, "ShardSampler", "dataset length", 0)
        self.num_replicas = expect_int(num_replicas, "ShardSampler", "num_replicas", 1)
        self.rank = expect_int(rank, "ShardSampler", "rank", 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"ShardSampler: rank must be < num_replicas ({self.num_replicas}), got {self.rank}")

    def __iter__(self):
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self):
        return len(range(self.rank, self.n, self.num_replicas))
