"""Turn a single-process DataLoader into this rank's share of it (the same global batches, split over the ranks)."""
import warnings

import numpy as np

from ..data.loader import DataLoader
from ..data.samplers import DistributedBatchSampler, RepeatAugSampler, ShardSampler

__all__ = ["shard_train_loader", "shard_eval_loader"]


def _rank_seed(seed, rank):
    """Seed of rank ``rank``'s batch transforms: distinct per rank (independent augmentations), fixed by (seed, rank)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def _copy(loader, batch_size, sampler, seed):
    return DataLoader(loader.dataset, batch_size=batch_size, shuffle=False, drop_last=loader.drop_last, seed=seed,
                      prefetch=loader.prefetch, transform=loader.transform, to_tensor=loader.to_tensor,
                      sampler=sampler, collate_fn=loader.collate_fn, num_workers=loader.num_workers)


def shard_train_loader(loader, context):
    """This rank's loader for data-parallel training: ``DistributedBatchSampler`` over the loader's own
    order (its seed and shuffle), local batch = batch_size / world size (ValueError when it does not
    divide). A loader already sharded (a DistributedBatchSampler, or a RepeatAugSampler built with
    num_replicas = world size) is returned as is. Batch transforms draw from a per-rank seed, so
    augmentations differ from the single-process run (the order does not)."""
    if context is None or context.size == 1:
        return loader
    if not isinstance(loader, DataLoader):
        raise TypeError(f"vitc.distributed: fit() under mpirun needs a vitc DataLoader to shard, got "
                        f"{type(loader).__name__}")
    sampler = loader.sampler
    if isinstance(sampler, DistributedBatchSampler) or \
            (isinstance(sampler, RepeatAugSampler) and sampler.num_replicas == context.size):
        if sampler.num_replicas != context.size or sampler.rank != context.rank:
            raise ValueError(f"vitc.distributed: the loader's sampler is for rank {sampler.rank} of "
                             f"{sampler.num_replicas}, this is rank {context.rank} of {context.size}")
        return loader
    if sampler is not None:
        raise ValueError(f"vitc.distributed: cannot shard a loader with a {type(sampler).__name__}; build it "
                         f"with num_replicas={context.size}, rank={context.rank} (RepeatAugSampler) or use a "
                         f"DistributedBatchSampler")
    sampler = DistributedBatchSampler(len(loader.dataset), loader.batch_size, context.size, context.rank,
                                      seed=loader.seed, shuffle=loader.shuffle, drop_last=loader.drop_last)
    tail = len(loader.dataset) % loader.batch_size
    if tail and not loader.drop_last and not sampler.tail and context.rank == 0:
        warnings.warn(f"vitc.distributed: the last global batch ({tail} samples) is not divisible by the world "
                      f"size {context.size} and is dropped every epoch", RuntimeWarning, stacklevel=3)
    return _copy(loader, sampler.local_batch_size, sampler, _rank_seed(loader.seed, context.rank))


def shard_eval_loader(loader, context):
    """This rank's share of an evaluation loader (every world-size-th sample; counts are summed after)."""
    if context is None or context.size == 1 or loader is None:
        return loader
    if not isinstance(loader, DataLoader):
        raise TypeError(f"vitc.distributed: fit() under mpirun needs a vitc DataLoader to shard, got "
                        f"{type(loader).__name__}")
    if loader.sampler is not None or loader.shuffle:
        raise ValueError("vitc.distributed: the evaluation loader must be unshuffled and have no sampler")
    sampler = ShardSampler(len(loader.dataset), context.size, context.rank)
    return _copy(loader, loader.batch_size, sampler, loader.seed)
