"""DataLoader worker processes: each builds whole batches (load items, collate) from index lists.

Batch k of an epoch goes to worker ``k % num_workers``; the parent keeps at most
``prefetch_factor * num_workers`` batches in flight and hands them out in order k = 0, 1, ...,
so the batches are the ones ``num_workers=0`` builds, in the same order (the same split of work
as torch.utils.data's _MultiProcessingDataLoaderIter). Results carry a generation number so a
persistent pool drops what an abandoned epoch left in flight.
"""

import multiprocessing
import os
import pickle
import queue
import random
import signal
import time
import traceback

import numpy as np

__all__ = ["WorkerInfo", "get_worker_info", "WorkerPool"]

_worker_info = None


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: id, num_workers, seed, dataset."""

    def __init__(self, id, num_workers, seed, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


def get_worker_info():
    """The WorkerInfo of this DataLoader worker process, or None in the main process."""
    return _worker_info


def worker_seed(seed, epoch, worker_id):
    """The 64-bit seed of worker ``worker_id`` started for epoch ``epoch`` of a loader seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch, worker_id]).generate_state(1, np.uint64)[0])


class _Failure:
    """An exception raised in a worker, carried to the parent with its traceback text."""

    def __init__(self, exc, where):
        self.text = f"{where}:\n{traceback.format_exc()}"
        try:
            self.exc = pickle.loads(pickle.dumps(exc))
        except Exception:  # an exception that does not pickle becomes a RuntimeError with its text
            self.exc = RuntimeError(f"{type(exc).__name__}: {exc}")

    def reraise(self):
        self.exc.add_note(f"Raised in {self.text}")
        raise self.exc


def _worker_loop(dataset, collate_fn, index_queue, result_queue, worker_id, num_workers, seed, init_fn):
    global _worker_info
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    # Seeded like torch's workers: Python's and NumPy's global generators get the worker's seed.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    if init_fn is not None:
        try:
            init_fn(worker_id)
        except Exception as e:  # exiting flushes this message: the queue's feeder thread is joined
            result_queue.put((None, -1, _Failure(e, f"DataLoader worker {worker_id} in worker_init_fn")))
            return
    result_queue.cancel_join_thread()  # from here on, never block this process's exit on unread results
    while True:
        try:
            task = index_queue.get(timeout=0.5)
        except queue.Empty:
            if os.getppid() != parent:  # the parent died without saying goodbye
                return
            continue
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if task is None:
            return
        generation, k, indices = task
        try:
            data = collate_fn([dataset[int(i)] for i in indices])
        except Exception as e:
            data = _Failure(e, f"DataLoader worker {worker_id} while building batch {k}")
        try:
            result_queue.put((generation, k, data))
        except Exception as e:  # e.g. the batch does not pickle
            result_queue.put((generation, k, _Failure(e, f"DataLoader worker {worker_id} sending batch {k}")))


class WorkerPool:
    """One process per seed in ``seeds``, serving the batches of one epoch at a time."""

    def __init__(self, dataset, collate_fn, seeds, init_fn, prefetch_factor, timeout, context):
        self.num_workers = num_workers = len(seeds)
        self.prefetch_factor = prefetch_factor
        self.timeout = timeout
        self.generation = 0
        ctx = multiprocessing.get_context(context)
        self._result_queue = ctx.Queue()
        self._index_queues, self._processes = [], []
        try:
            for w in range(num_workers):
                q = ctx.Queue()
                p = ctx.Process(target=_worker_loop, name=f"vitc-DataLoader-worker-{w}", daemon=True,
                                args=(dataset, collate_fn, q, self._result_queue, w, num_workers,
                                      seeds[w], init_fn))
                p.start()
                self._index_queues.append(q)
                self._processes.append(p)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            self.shutdown()
            raise TypeError(f"DataLoader: the {context} start method sends the dataset and collate_fn to "
                            f"each worker by pickling, which failed ({e}); use picklable objects or "
                            "multiprocessing_context='fork'") from e

    def alive(self):
        return bool(self._processes) and all(p.is_alive() for p in self._processes)

    @property
    def pids(self):
        return [p.pid for p in self._processes]

    def epoch(self, batches):
        """An iterator over the collated batches for ``batches`` (lists of indices), in order."""
        self.generation += 1
        return _EpochFetch(self, self.generation, batches)

    def _receive(self, what):
        deadline = None if not self.timeout else time.monotonic() + self.timeout
        while True:
            try:
                return self._result_queue.get(timeout=0.2)
            except queue.Empty:
                pass
            for w, p in enumerate(self._processes):
                if not p.is_alive():
                    try:  # what it sent just before ending (e.g. a worker_init_fn failure)
                        return self._result_queue.get(timeout=0.2)
                    except queue.Empty:
                        pass
                    raise RuntimeError(f"DataLoader worker {w} (pid {p.pid}) exited unexpectedly with exit "
                                       f"code {p.exitcode} while the loader waited for {what}")
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"DataLoader timed out after {self.timeout} s waiting for {what}")

    def shutdown(self):
        """Stop the workers: ask politely, then terminate those still running after 2 s."""
        for q in self._index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for p in self._processes:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(1.0)
        for q in self._index_queues + [self._result_queue]:
            q.cancel_join_thread()
            q.close()
        self._processes, self._index_queues = [], []


class _EpochFetch:
    def __init__(self, pool, generation, batches):
        self.pool, self.generation, self.batches = pool, generation, batches
        self.sent = 0
        self.ready = {}
        for _ in range(min(len(batches), pool.prefetch_factor * pool.num_workers)):
            self._send()

    def _send(self):
        k = self.sent
        self.pool._index_queues[k % self.pool.num_workers].put((self.generation, k, self.batches[k]))
        self.sent += 1

    def get(self, k):
        """Batch k; called for k = 0, 1, 2, ... in turn."""
        while k not in self.ready:
            generation, j, data = self.pool._receive(f"batch {k}")
            if generation is None:  # worker_init_fn failed
                data.reraise()
            if generation == self.generation:
                self.ready[j] = data
        data = self.ready.pop(k)
        if self.sent < len(self.batches):
            self._send()
        if isinstance(data, _Failure):
            data.reraise()
        return data
