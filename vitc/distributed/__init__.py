"""vitc.distributed: data-parallel training over MPI (mpi4py on an MPI such as Debian's OpenMPI).

Every rank holds the whole model and trains on its share of each global batch; before each
optimizer step one in-place ``MPI_Allreduce`` per flat gradient buffer (one per parameter group,
see vitc/optim/optimizer.py) sums the gradients, which are then scaled by 1/world_size. mpi4py
releases the GIL inside MPI calls, so the watchdog thread below runs while a rank waits.

Consistency rules (what makes N ranks equal one process fed the same global batches):

- start: parameters and buffers are broadcast from rank 0 (``broadcast_state``);
- data: ``DistributedBatchSampler`` gives rank r the r-th 1/N slice of every global batch of the
  single-process order (same seed, same permutation); the world size must divide the batch size;
- BatchNorm: running statistics are computed per rank (each on its slice: the batch statistics of
  a training step are NOT synchronized, so BN layers see batches of B/N) and averaged over the ranks
  before every evaluation and checkpoint (``average_buffers``), as timm's ``distribute_bn(reduce=True)``;
- checkpoints: written by rank 0 only, after a barrier read by every rank (a shared file system).

Failure: an uncaught exception on any rank aborts the whole job (``MPI_Abort``) instead of leaving
the others blocked; a collective that waits longer than ``timeout`` seconds (a rank hangs or died
without the launcher noticing) makes the waiting rank print which operation timed out and abort.

mpi4py is imported only by ``init()``: vitc without MPI works, and asking for a distributed feature
without mpi4py raises RuntimeError naming what to install.
"""

from ._launch import launched_rank, launched_world_size
from .context import Context, init, current
from .sharding import shard_train_loader, shard_eval_loader

__all__ = ["launched_rank", "launched_world_size", "Context", "init", "current", "shard_train_loader",
           "shard_eval_loader"]
