import gc
import threading
import time

import numpy as np
import pytest

import _vitc_data_under_test as vd


class ArrayDataset:
    """Batchable dataset: .images/.labels arrays; sample i has every pixel equal to i."""

    transform = None

    def __init__(self, n, shape=(1, 4, 4)):
        self.images = np.repeat(np.arange(n, dtype=np.float32), np.prod(shape)).reshape(n, *shape)
        self.labels = np.arange(n, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


class ItemDataset:
    """Only __len__/__getitem__; items are (list-of-lists image, numpy int label)."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"sample {i} is broken")
        return [[float(i)] * 3] * 2, np.int32(i)


def _epoch_ids(loader):
    return np.concatenate([y for _, y in loader]).tolist()


@pytest.mark.parametrize("n,bs,drop,expect", [
    (10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3),
    (2, 5, False, 1), (2, 5, True, 0), (0, 4, False, 0), (1, 1, False, 1),
])
def test_len_and_batch_sizes(n, bs, drop, expect):
    loader = vd.DataLoader(ArrayDataset(n), batch_size=bs, drop_last=drop, to_tensor=None)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == expect == len(sizes)
    assert all(s == bs for s in sizes[:-1])
    assert sum(sizes) == (n - n % bs if drop else n)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
@pytest.mark.parametrize("dataset_cls", [ArrayDataset, ItemDataset])
def test_every_sample_once_per_epoch(dataset_cls, prefetch):
    loader = vd.DataLoader(dataset_cls(23), batch_size=4, shuffle=True, seed=5, prefetch=prefetch, to_tensor=None)
    for _ in range(3):
        seen = []
        for x, y in loader:
            assert np.all(x.reshape(len(x), -1)[:, 0] == y)  # images and labels stay paired
            seen += y.tolist()
        assert sorted(seen) == list(range(23))


def test_unshuffled_order():
    assert _epoch_ids(vd.DataLoader(ArrayDataset(7), batch_size=3, to_tensor=None)) == list(range(7))


def test_seeded_order_is_a_function_of_seed_and_epoch():
    a = vd.DataLoader(ArrayDataset(50), batch_size=8, shuffle=True, seed=123, to_tensor=None)
    b = vd.DataLoader(ArrayDataset(50), batch_size=8, shuffle=True, seed=123, prefetch=0, to_tensor=None)
    ea = [_epoch_ids(a) for _ in range(3)]
    eb = [_epoch_ids(b) for _ in range(3)]
    assert ea == eb
    assert ea[0] != ea[1] != ea[2] and ea[0] != list(range(50))
    c = vd.DataLoader(ArrayDataset(50), batch_size=8, shuffle=True, seed=124, to_tensor=None)
    assert _epoch_ids(c) != ea[0]
    b.set_epoch(1)  # resuming at epoch 1 replays it
    assert _epoch_ids(b) == ea[1] and b.epoch == 2
    perm = np.random.Generator(np.random.PCG64(123).jumped(4)).permutation(50).tolist()
    assert ea[2] == perm  # the documented rule


def test_seed_from_generator_or_fresh():
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    a = vd.DataLoader(ArrayDataset(30), batch_size=30, shuffle=True, generator=g1, to_tensor=None)
    b = vd.DataLoader(ArrayDataset(30), batch_size=30, shuffle=True, generator=g2, to_tensor=None)
    assert a.seed == b.seed and _epoch_ids(a) == _epoch_ids(b)
    c = vd.DataLoader(ArrayDataset(30), batch_size=30, shuffle=True, to_tensor=None)
    d = vd.DataLoader(ArrayDataset(30), batch_size=30, shuffle=True, to_tensor=None)
    assert isinstance(c.seed, int) and c.seed != d.seed


@pytest.mark.parametrize("dataset_cls", [ArrayDataset, ItemDataset])
def test_batch_dtypes_contiguity_and_freshness(dataset_cls):
    ds = dataset_cls(10)
    batches = list(vd.DataLoader(ds, batch_size=4, prefetch=1, to_tensor=None))
    for x, y in batches:
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.flags.c_contiguous and y.flags.c_contiguous
        assert x.flags.writeable and x.flags.owndata and y.flags.owndata
    xs = [x.copy() for x, _ in batches]
    for x, _ in batches:
        x += 1000  # writing a batch touches neither the dataset nor the other batches
    for (x, _), before in zip(batches, xs):
        assert np.all(x == before + 1000)
    if dataset_cls is ArrayDataset:
        assert ds.images.max() == 9
    assert batches[0][0].shape == ((4, 1, 4, 4) if dataset_cls is ArrayDataset else (4, 2, 3))


def test_real_dataset_class_is_gathered_in_batches(idx_root):
    ds = vd.FashionMNIST(root=idx_root)
    order = np.random.Generator(np.random.PCG64(0)).permutation(50)
    x, y = next(iter(vd.DataLoader(ds, batch_size=50, shuffle=True, seed=0, to_tensor=None)))
    assert np.array_equal(x, ds.images[order]) and np.array_equal(y, ds.targets[order])
    # A per-item transform switches to stacking ds[i], with the same result here.
    ds.transform = lambda img: img
    x2, y2 = next(iter(vd.DataLoader(ds, batch_size=50, shuffle=True, seed=0, to_tensor=None)))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_to_tensor_and_transforms():
    calls = []

    def to_tensor(a):
        calls.append(threading.current_thread())
        return ("T", a)

    flip = vd.RandomHorizontalFlip(p=1.0)
    loader = vd.DataLoader(ArrayDataset(6, (1, 2, 3)), batch_size=3, transform=flip, to_tensor=to_tensor)
    (tx, x), (ty, y) = next(iter(loader))
    assert tx == ty == "T" and y.tolist() == [0, 1, 2]
    assert all(t is threading.current_thread() for t in calls)

    def mix(x, y, rng):  # a batch-level transform may change the labels (soft labels)
        assert isinstance(rng, np.random.Generator)
        return x[:, :, :, ::-1], np.eye(10)[y] * 0.5
    x, y = next(iter(vd.DataLoader(ArrayDataset(6), batch_size=3, transform=mix, to_tensor=None)))
    assert y.dtype == np.float32 and y.shape == (3, 10) and y.flags.c_contiguous
    assert x.flags.c_contiguous and x.dtype == np.float32


def test_transform_rng_is_seeded_per_epoch():
    crop = vd.Compose([vd.RandomCrop(3, padding=1), vd.RandomHorizontalFlip()])
    ds = ArrayDataset(16, (1, 3, 3))
    ds.images = np.random.default_rng(0).random((16, 1, 3, 3), dtype=np.float32)
    run = lambda loader: [x for x, _ in loader]  # noqa: E731
    a = vd.DataLoader(ds, batch_size=4, seed=1, transform=crop, to_tensor=None)
    b = vd.DataLoader(ds, batch_size=4, seed=1, transform=crop, prefetch=0, to_tensor=None)
    a0, a1 = run(a), run(a)
    b0 = run(b)
    assert all(np.array_equal(p, q) for p, q in zip(a0, b0))
    assert not all(np.array_equal(p, q) for p, q in zip(a0, a1))


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "vitc-DataLoader-prefetch"]


def _wait_gone(threads, timeout=3.0):
    for t in threads:
        t.join(timeout)
    return not any(t.is_alive() for t in threads)


def test_early_break_stops_prefetch_thread():
    loader = vd.DataLoader(ArrayDataset(1000), batch_size=2, prefetch=2, to_tensor=None)
    before = set(_prefetch_threads())
    for i, _ in enumerate(loader):
        if i == 1:
            break
    gc.collect()
    assert _wait_gone([t for t in _prefetch_threads() if t not in before])

    it = iter(loader)
    next(it)
    thread = it._thread
    assert thread.is_alive()  # blocked on the full queue
    del it
    thread.join(3.0)
    assert not thread.is_alive()

    it = iter(loader)
    next(it)
    it.close()
    assert not it._thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)


def test_thread_ends_after_full_epoch():
    it = iter(vd.DataLoader(ArrayDataset(10), batch_size=3, to_tensor=None))
    assert len(list(it)) == 4
    assert not it._thread.is_alive()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_worker_exception_propagates(prefetch):
    loader = vd.DataLoader(ItemDataset(20, fail_at=9), batch_size=4, prefetch=prefetch, to_tensor=None)
    it = iter(loader)
    assert next(it)[1].tolist() == [0, 1, 2, 3]
    assert next(it)[1].tolist() == [4, 5, 6, 7]
    with pytest.raises(KeyError, match="sample 9 is broken"):
        next(it)
    with pytest.raises(StopIteration):  # the epoch ends with the error
        next(it)
    if prefetch:
        assert _wait_gone([it._thread])


def test_transform_exception_propagates():
    def bad(x, y, rng):
        raise ValueError("augmentation failed")
    with pytest.raises(ValueError, match="augmentation failed"):
        list(vd.DataLoader(ArrayDataset(4), batch_size=2, transform=bad, to_tensor=None))


def test_prefetch_works_ahead_of_the_consumer():
    it = iter(vd.DataLoader(ItemDataset(12), batch_size=4, prefetch=2, to_tensor=None))
    deadline = time.monotonic() + 5
    while it._queue.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert it._queue.qsize() == 2  # two batches ready before the first is asked for
    assert it._thread.is_alive()  # the third waits for room: the queue is bounded
    assert [y.tolist() for _, y in it] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


@pytest.mark.parametrize("kwargs,exc", [
    (dict(batch_size=0), ValueError), (dict(batch_size=-2), ValueError),
    (dict(batch_size=2.0), TypeError), (dict(batch_size=True), TypeError),
    (dict(batch_size="4"), TypeError), (dict(shuffle=1), TypeError),
    (dict(drop_last=None), TypeError), (dict(seed=-1), ValueError), (dict(seed=1.5), TypeError),
    (dict(prefetch=-1), ValueError), (dict(transform=5), TypeError), (dict(to_tensor="x"), TypeError),
    (dict(seed=1, generator=np.random.default_rng()), ValueError), (dict(generator=3), TypeError),
])
def test_argument_validation(kwargs, exc):
    with pytest.raises(exc):
        vd.DataLoader(ArrayDataset(4), **kwargs)


def test_rejects_non_dataset():
    with pytest.raises(TypeError, match="dataset"):
        vd.DataLoader(42)
    loader = vd.DataLoader(ArrayDataset(4), batch_size=np.int64(2), to_tensor=None)
    assert loader.batch_size == 2 and type(loader.batch_size) is int
    with pytest.raises(ValueError):
        loader.set_epoch(-1)
