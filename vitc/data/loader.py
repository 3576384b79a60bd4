"""DataLoader: seeded shuffling, collation, worker processes, batch transforms and prefetch.

Determinism: a loader has one integer ``seed``. Epoch ``e`` shuffles with
``Generator(PCG64(seed).jumped(2*e))`` and passes ``Generator(PCG64(seed).jumped(2*e + 1))`` to the
batch transform, so epoch e's order and augmentations are a function of (seed, e) alone: the same on
every run, different from epoch to epoch, and reproducible after a restart via ``set_epoch``.
Worker processes only load and collate samples; the batch transform always runs in the parent,
batch after batch, so ``num_workers`` does not change the batches.
Each ``iter(loader)`` runs the next epoch.
"""

import multiprocessing
import queue
import threading

import numpy as np

from .._checks import expect_int, expect_number
from .collate import _canonical, default_collate, map_arrays, to_vitc
from .image_transforms import ImageTransform
from .transforms import Compose, Transform
from .workers import WorkerPool, worker_seed

__all__ = ["DataLoader"]

_VITC = object()  # to_tensor's default: batches become vitc tensors


class DataLoader:
    """Iterate over ``dataset`` in batches, as vitc tensors by default.

    A sample ``ds[i]`` may be a tuple ``(x, y, ...)``, a dict, an array or a number; the batch has
    the same structure with each field stacked (``default_collate``): float fields become float32,
    integer fields int64 (e.g. ``(image, label)`` samples give a float32 (B, C, H, W) tensor and an
    int64 (B,) tensor) that go straight into a model, a loss or ``vitc.train.fit``.
    Datasets with ``.images``/``.labels`` arrays and no per-item ``transform`` are batched by one
    fancy-indexing gather (in the parent, whatever ``num_workers``); any other dataset by collating
    ``dataset[i]`` items.

    Arguments::

        batch_size: samples per batch. drop_last: drop a final short batch.
        shuffle: new random order every epoch. seed: int >= 0; None draws one (kept in ``.seed``),
            from ``generator`` (a numpy.random.Generator) when given.
        prefetch: batches prepared ahead by a background thread (num_workers=0 only); 0 builds them
            in the caller.
        num_workers: processes that load and collate batches; 0 does it in this process. Worker w
            of epoch e seeds Python's ``random`` and NumPy's global generator with
            ``get_worker_info().seed``, a function of (seed, e, w). The batches and their order are
            those of num_workers=0 when the per-sample code (``dataset[i]``, ``collate_fn``) draws
            no random numbers; the batch ``transform`` (where vitc's augmentations run) always
            runs here, from the loader's seeded generator. Workers start with the 'fork' method on
            Linux (the dataset is not copied), else the platform's default
            (``multiprocessing_context=`` overrides it; then the dataset must pickle). Per-sample
            code in workers should stay in NumPy and Pillow.
        prefetch_factor: batches in flight per worker (default 2).
        persistent_workers: keep the worker processes from one epoch to the next.
        worker_init_fn: called as ``fn(worker_id)`` in each worker after seeding.
        timeout: seconds to wait for a worker's batch before RuntimeError; 0 waits forever (a
            worker that dies is noticed either way).
        collate_fn: turns a list of samples into a batch (default ``default_collate``). Its result
            is used as returned (no dtype conversion) except that ``to_tensor`` converts its arrays.
        pin_memory: accepted for PyTorch compatibility; vitc runs on the CPU, so it does nothing.
        transform: a ``vitc.data.transforms.Transform`` ``t(x, rng) -> x`` applied to the images,
            or any callable ``t(x, y, rng) -> (x, y)`` applied to the batch (e.g. label mixing).
            It needs ``(x, y)`` batches and runs in the prefetch thread (or the caller).
        to_tensor: applied to every array in a batch, in the caller's thread. The default turns
            them into vitc tensors (float32, int64 or bool) sharing the batch's memory;
            ``to_tensor=None`` yields the NumPy arrays.
        sampler: an iterable of dataset indices with ``len()`` (e.g. ``RepeatAugSampler``) that
            gives each epoch's order instead of ``shuffle``; its ``set_epoch(e)``, if any, is
            called before epoch e.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 generator=None, prefetch=2, transform=None, to_tensor=_VITC, sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, worker_init_fn=None,
                 prefetch_factor=None, persistent_workers=False, timeout=0,
                 multiprocessing_context=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset must support len() and indexing, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = expect_int(batch_size, "DataLoader", "batch_size", minimum=1)
        self.shuffle = _bool(shuffle, "shuffle")
        self.drop_last = _bool(drop_last, "drop_last")
        self.prefetch = expect_int(prefetch, "DataLoader", "prefetch", minimum=0)
        self.pin_memory = _bool(pin_memory, "pin_memory")  # no-op: there is no device memory to pin
        for name, fn in (("transform", transform), ("collate_fn", collate_fn),
                         ("worker_init_fn", worker_init_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"DataLoader: {name} must be callable or None, got {type(fn).__name__}")
        if to_tensor is not _VITC and to_tensor is not None and not callable(to_tensor):
            raise TypeError(f"DataLoader: to_tensor must be callable or None, got {type(to_tensor).__name__}")
        _refuse_per_image(transform)
        self.transform = transform
        self.to_tensor = to_vitc if to_tensor is _VITC else to_tensor
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.num_workers = expect_int(num_workers, "DataLoader", "num_workers", minimum=0)
        if self.num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise ValueError("DataLoader: prefetch_factor and persistent_workers need num_workers > 0")
        self.prefetch_factor = expect_int(2 if prefetch_factor is None else prefetch_factor,
                                          "DataLoader", "prefetch_factor", minimum=1)
        self.persistent_workers = _bool(persistent_workers, "persistent_workers")
        self.worker_init_fn = worker_init_fn
        self.timeout = expect_number(timeout, "DataLoader", "timeout", lo=0.0)
        methods = multiprocessing.get_all_start_methods()
        if multiprocessing_context is None:
            multiprocessing_context = "fork" if "fork" in methods else None
        elif multiprocessing_context not in methods:
            raise ValueError(f"DataLoader: multiprocessing_context must be one of {methods}, "
                             f"got {multiprocessing_context!r}")
        self.multiprocessing_context = multiprocessing_context
        self._pool = None
        if sampler is not None:
            if not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
                raise TypeError(f"sampler must be an iterable with len(), got {type(sampler).__name__}")
            if self.shuffle:
                raise ValueError("sampler and shuffle=True are mutually exclusive (the sampler gives the order)")
        self.sampler = sampler
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if generator is not None:
            if not isinstance(generator, np.random.Generator):
                raise TypeError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
            seed = int(generator.integers(2**63))
        elif seed is None:
            seed = np.random.SeedSequence().entropy
        self.seed = expect_int(seed, "DataLoader", "seed", minimum=0)
        self.epoch = 0

    def __len__(self):
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        """Make the next ``iter(loader)`` run epoch ``epoch`` (e.g. when resuming training)."""
        self.epoch = expect_int(epoch, "DataLoader", "epoch", minimum=0)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        bits = np.random.PCG64(self.seed)
        order_rng = np.random.Generator(bits.jumped(2 * epoch))
        transform_rng = np.random.Generator(bits.jumped(2 * epoch + 1))
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            order = np.fromiter(iter(self.sampler), dtype=np.int64)
        else:
            n = len(self.dataset)
            order = order_rng.permutation(n) if self.shuffle else np.arange(n)
        bs = self.batch_size
        batches = [order[i:i + bs] for i in range(0, len(self) * bs, bs)]
        ds = self.dataset
        cleanup = None
        prefetch = self.prefetch
        if (hasattr(ds, "images") and hasattr(ds, "labels") and getattr(ds, "transform", None) is None
                and self.collate_fn is default_collate):
            # Touch the arrays here so a lazily built .images is made once, in the caller's thread.
            images, labels = np.asarray(ds.images), np.asarray(ds.labels)
            gather = lambda k, idx: (images[idx], labels[idx])  # fancy indexing copies  # noqa: E731
        elif self.num_workers and batches:
            pool = self._workers(epoch)
            fetch = pool.epoch([b.tolist() for b in batches])
            gather = lambda k, idx: fetch.get(k)  # noqa: E731
            prefetch = 0  # the workers are the prefetchers
            if not self.persistent_workers:
                cleanup = pool.shutdown
        else:
            gather = lambda k, idx: self.collate_fn([ds[int(i)] for i in idx])  # noqa: E731
        finish = self.collate_fn is default_collate

        def make_batch(k, idx):
            batch = gather(k, idx)
            if self.transform is not None:
                if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                    raise TypeError("DataLoader: transform= needs (x, y) batches, got a "
                                    f"{type(batch).__name__}" + (f" of {len(batch)} fields"
                                                                 if isinstance(batch, (tuple, list)) else ""))
                x, y = batch
                if isinstance(self.transform, Transform):
                    x = self.transform(x, transform_rng)
                else:
                    x, y = self.transform(x, y, transform_rng)
                batch = (np.ascontiguousarray(x, dtype=np.float32), y)
            if finish or self.transform is not None:
                batch = map_arrays(batch, _canonical)
            return batch

        return _BatchIterator(make_batch, batches, prefetch, self.to_tensor, cleanup)

    def _workers(self, epoch):
        if self._pool is not None and self._pool.alive():
            return self._pool
        self.close()  # a persistent pool that lost a worker is replaced
        seeds = [worker_seed(self.seed, epoch, w) for w in range(self.num_workers)]
        pool = WorkerPool(self.dataset, self.collate_fn, seeds, self.worker_init_fn,
                          self.prefetch_factor, self.timeout, self.multiprocessing_context)
        if self.persistent_workers:
            self._pool = pool
        return pool

    def close(self):
        """Stop persistent workers now (they also stop when the loader is garbage collected)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # e.g. during interpreter shutdown
            pass

    def __repr__(self):
        return (f"DataLoader(samples={len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
                f"prefetch={self.prefetch}, num_workers={self.num_workers})")


def _refuse_per_image(transform):
    """A per-image transform given as the batch transform would be called (x, y, rng): say where it goes."""
    parts = transform.transforms if isinstance(transform, Compose) else [transform]
    for t in parts:
        if isinstance(t, ImageTransform):
            raise TypeError(f"DataLoader: {type(t).__name__} is a per-image transform, called t(img); give it to "
                            "the dataset (e.g. ImageFolder(root, transform=...)). DataLoader(transform=) takes "
                            "batch transforms t(x, rng) or t(x, y, rng)")


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


class _Failure:
    def __init__(self, exc):
        self.exc = exc


_DONE = object()


class _BatchIterator:
    """One epoch of batches. With prefetch > 0 a daemon thread fills a bounded queue.

    The thread holds no reference to this object, so dropping the iterator (e.g. ``break`` out of
    a for loop) lets ``__del__`` run, which tells the thread to stop.
    """

    def __init__(self, make_batch, batches, prefetch, to_tensor, cleanup=None):
        self._to_tensor = to_tensor
        self._cleanup = cleanup  # called once when the epoch ends or the iterator closes
        self._remaining = len(batches)
        self._finished = False
        self._thread = None
        if prefetch == 0:
            self._make_batch = make_batch
            self._pending = iter(enumerate(batches))
            return
        self._queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_produce, name="vitc-DataLoader-prefetch",
                                        args=(make_batch, batches, self._queue, self._stop),
                                        daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __len__(self):
        return self._remaining

    def __next__(self):
        if self._finished:
            raise StopIteration
        if self._thread is None:
            task = next(self._pending, None)
            if task is None:
                self.close()
                raise StopIteration
            try:
                batch = self._make_batch(*task)
            except BaseException:
                self.close()  # as with prefetch: an error ends the epoch
                raise
        else:
            item = self._get()
            if item is _DONE or isinstance(item, _Failure):
                self.close()
                if item is _DONE:
                    raise StopIteration
                raise item.exc
            batch = item
        self._remaining -= 1
        if self._to_tensor is not None:
            batch = map_arrays(batch, self._to_tensor)
        return batch

    def _get(self):
        while True:
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive():
                    try:  # it may have put its last item just before ending
                        return self._queue.get_nowait()
                    except queue.Empty:
                        raise RuntimeError("DataLoader prefetch thread ended unexpectedly") from None

    def close(self):
        """Stop the prefetch thread and drop prepared batches. Safe to call more than once."""
        self._finished = True
        if self._cleanup is not None:
            cleanup, self._cleanup = self._cleanup, None
            cleanup()
        if self._thread is None:
            return
        self._stop.set()
        while True:  # free the queued batches now rather than when the queue is collected
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            # The thread checks the flag between batches and every 0.1 s while the queue is full.
            self._thread.join(timeout=1.0)

    def __del__(self):
        try:
            self.close()
        except Exception:  # e.g. during interpreter shutdown
            pass


def _produce(make_batch, batches, q, stop):
    try:
        for k, idx in enumerate(batches):
            if stop.is_set():
                return
            if not _put(q, make_batch(k, idx), stop):
                return
    except BaseException as e:  # re-raised in the consumer's thread
        _put(q, _Failure(e), stop)
        return
    _put(q, _DONE, stop)


def _put(q, item, stop):
    """Put ``item`` unless ``stop`` is set first; never blocks forever."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False
