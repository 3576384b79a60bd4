"""DataLoader: seeded shuffling, batch transforms and background prefetch, in NumPy.

Determinism: a loader has one integer ``seed``. Epoch ``e`` shuffles with
``Generator(PCG64(seed).jumped(2*e))`` and passes ``Generator(PCG64(seed).jumped(2*e + 1))`` to the
batch transform, so epoch e's order and augmentations are a function of (seed, e) alone: the same on
every run, different from epoch to epoch, and reproducible after a restart via ``set_epoch``.
Each ``iter(loader)`` runs the next epoch.
"""

import queue
import threading

import numpy as np

from .._checks import expect_int
from .transforms import Transform

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``dataset`` in batches ``(x, y)``.

    x is float32 (B, ...) and y int64 (B,) (float32 if a transform makes soft labels); both are
    C-contiguous and freshly allocated for each batch, so they may be kept or modified in place.
    Datasets with ``.images``/``.labels`` arrays and no per-item ``transform`` are batched by one
    fancy-indexing gather; any other dataset by stacking ``dataset[i]`` items.

    Arguments::

        batch_size: samples per batch. drop_last: drop a final short batch.
        shuffle: new random order every epoch. seed: int >= 0; None draws one (kept in ``.seed``),
            from ``generator`` (a numpy.random.Generator) when given.
        prefetch: batches prepared ahead by a background thread; 0 builds them in the caller.
        transform: a ``vitc.data.transforms.Transform`` ``t(x, rng) -> x`` applied to the images,
            or any callable ``t(x, y, rng) -> (x, y)`` applied to the batch (e.g. label mixing).
            It runs in the prefetch thread.
        to_tensor: applied to x and y in the caller's thread (e.g. ``vitc.from_numpy``); default
            returns the NumPy arrays.
        sampler: an iterable of dataset indices with ``len()`` (e.g. ``RepeatAugSampler``) that
            gives each epoch's order instead of ``shuffle``; its ``set_epoch(e)``, if any, is
            called before epoch e.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 generator=None, prefetch=2, transform=None, to_tensor=None, sampler=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset must support len() and indexing, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = expect_int(batch_size, "DataLoader", "batch_size", minimum=1)
        self.shuffle = _bool(shuffle, "shuffle")
        self.drop_last = _bool(drop_last, "drop_last")
        self.prefetch = expect_int(prefetch, "DataLoader", "prefetch", minimum=0)
        for name, fn in (("transform", transform), ("to_tensor", to_tensor)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        self.transform = transform
        self.to_tensor = to_tensor
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
        if hasattr(ds, "images") and hasattr(ds, "labels") and getattr(ds, "transform", None) is None:
            # Touch the arrays here so a lazily built .images is made once, in the caller's thread.
            images, labels = np.asarray(ds.images), np.asarray(ds.labels)
            gather = lambda idx: (images[idx], labels[idx])  # fancy indexing copies  # noqa: E731
        else:
            gather = self._stack_items

        def make_batch(idx):
            x, y = gather(idx)
            if self.transform is not None:
                if isinstance(self.transform, Transform):
                    x = self.transform(x, transform_rng)
                else:
                    x, y = self.transform(x, y, transform_rng)
            y = np.asarray(y)
            y_dtype = np.int64 if y.dtype.kind in "iub" else np.float32
            return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=y_dtype)

        return _BatchIterator(make_batch, batches, self.prefetch, self.to_tensor)

    def _stack_items(self, idx):
        items = [self.dataset[int(i)] for i in idx]
        x = np.stack([np.asarray(item[0], dtype=np.float32) for item in items])
        y = np.array([item[1] for item in items])
        return x, y

    def __repr__(self):
        return (f"DataLoader(samples={len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
                f"prefetch={self.prefetch})")


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

    def __init__(self, make_batch, batches, prefetch, to_tensor):
        self._to_tensor = to_tensor
        self._remaining = len(batches)
        self._finished = False
        self._thread = None
        if prefetch == 0:
            self._make_batch = make_batch
            self._pending = iter(batches)
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
            idx = next(self._pending, None)
            if idx is None:
                self._finished = True
                raise StopIteration
            try:
                x, y = self._make_batch(idx)
            except BaseException:
                self._finished = True  # as with prefetch: an error ends the epoch
                raise
        else:
            item = self._get()
            if item is _DONE or isinstance(item, _Failure):
                self.close()
                if item is _DONE:
                    raise StopIteration
                raise item.exc
            x, y = item
        self._remaining -= 1
        if self._to_tensor is not None:
            x, y = self._to_tensor(x), self._to_tensor(y)
        return x, y

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
        for idx in batches:
            if stop.is_set():
                return
            if not _put(q, make_batch(idx), stop):
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
