"""DataLoader(num_workers=...): the same batches as num_workers=0, seeded workers, errors carried to
the parent, no worker left running. Every test runs under an alarm so a hang fails instead of
blocking the suite."""
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import _vitc_data_under_test as vd


@pytest.fixture(autouse=True)
def watchdog():
    def fail(*_):
        raise TimeoutError("DataLoader worker test hung for 60 s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _workers_alive():
    return [p for p in multiprocessing.active_children() if p.name.startswith("vitc-DataLoader-worker")]


def _wait_no_workers(timeout=5.0):
    deadline = time.monotonic() + timeout
    while _workers_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _workers_alive()


class Items(vd.Dataset):
    """Per-item work in __getitem__ (so the workers do it): a dict sample with an image, a label, a name."""

    def __init__(self, n=37, fail_at=None, exit_at=None, sleep=0.0):
        self.n, self.fail_at, self.exit_at, self.sleep = n, fail_at, exit_at, sleep

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"sample {i} is broken")
        if i == self.exit_at:
            os._exit(3)
        if self.sleep:
            time.sleep(self.sleep)
        img = np.random.default_rng(i).random((2, 4, 4), dtype=np.float32)
        return {"image": img, "label": i % 5, "name": f"s{i}"}


def _numpy_epochs(loader, epochs=2):
    out = []
    for _ in range(epochs):
        out.append([{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in b.items()} for b in loader])
    return out


def _same(a, b):
    assert len(a) == len(b)
    for ea, eb in zip(a, b):
        assert len(ea) == len(eb)
        for ba, bb in zip(ea, eb):
            assert ba.keys() == bb.keys()
            np.testing.assert_array_equal(ba["image"], bb["image"])
            np.testing.assert_array_equal(ba["label"], bb["label"])
            assert ba["name"] == bb["name"]


@pytest.mark.parametrize("persistent", [False, True])
def test_same_batches_as_single_process(persistent):
    kw = dict(batch_size=5, shuffle=True, seed=11, to_tensor=None)
    ref = _numpy_epochs(vd.DataLoader(Items(), **kw))
    loader = vd.DataLoader(Items(), num_workers=2, persistent_workers=persistent, **kw)
    got = _numpy_epochs(loader)
    _same(got, ref)
    assert ref[0][0]["image"].dtype == np.float32 and ref[0][0]["label"].dtype == np.int64
    assert [b["name"] for b in ref[0]] != [b["name"] for b in ref[1]]  # epochs differ
    loader.close()
    assert _wait_no_workers()


def test_same_batches_with_a_batch_transform_and_tuples():
    arrays = vd.TensorDataset(np.random.default_rng(0).random((21, 1, 5, 5), dtype=np.float32), np.arange(21))
    ds = vd.Subset(arrays, range(21))  # items one by one (a TensorDataset of two arrays is gathered in the parent)
    crop = vd.Compose([vd.RandomCrop(3, padding=1), vd.RandomHorizontalFlip()])
    run = lambda nw: [(x.copy(), y.copy()) for x, y in vd.DataLoader(  # noqa: E731
        ds, batch_size=4, shuffle=True, seed=3, transform=crop, num_workers=nw, to_tensor=None)]
    a, b = run(0), run(2)
    assert len(a) == len(b) == 6
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_default_yields_vitc_tensors_from_workers():
    import vitc
    ds = vd.TensorDataset(np.ones((6, 3), np.float64), np.arange(6, dtype=np.int32), np.arange(6) % 2 == 0)
    x, y, even = next(iter(vd.DataLoader(ds, batch_size=4, num_workers=2)))
    assert isinstance(x, vitc.Tensor) and x.dtype is vitc.float32 and tuple(x.shape) == (4, 3)
    assert isinstance(y, vitc.Tensor) and y.dtype is vitc.int64 and y.tolist() == [0, 1, 2, 3]
    assert even.dtype is vitc.bool and even.tolist() == [True, False, True, False]
    assert _wait_no_workers()
    assert list(vd.DataLoader(vd.TensorDataset(np.zeros((0, 3)), np.zeros(0), np.zeros(0)), num_workers=2)) == []


def test_persistent_workers_survive_epochs_and_an_early_break():
    loader = vd.DataLoader(Items(40), batch_size=4, shuffle=True, seed=5, num_workers=2,
                           persistent_workers=True, prefetch_factor=3, to_tensor=None)
    ref = vd.DataLoader(Items(40), batch_size=4, shuffle=True, seed=5, to_tensor=None)
    it = iter(loader)
    next(it)  # abandon epoch 0 with batches still in flight
    del it
    pids = loader._pool.pids
    ref_epochs = _numpy_epochs(ref, 2)
    loader.set_epoch(0)
    _same(_numpy_epochs(loader, 2), ref_epochs)  # nothing from the abandoned epoch leaks in
    assert loader._pool.pids == pids  # the same processes served every epoch
    loader.close()
    assert _wait_no_workers()


def test_workers_are_seeded_and_see_worker_info():
    class Seeds(vd.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            info = vd.get_worker_info()
            return np.array([info.id, info.num_workers, np.random.randint(1 << 30), info.seed % (1 << 40)])

    assert vd.get_worker_info() is None
    run = lambda seed: np.concatenate(list(vd.DataLoader(Seeds(), batch_size=2, num_workers=2, seed=seed,  # noqa
                                                         to_tensor=None)))
    a, b, c = run(1), run(1), run(2)
    assert a[:, 0].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]  # batch k goes to worker k % 2
    assert (a[:, 1] == 2).all()
    np.testing.assert_array_equal(a, b)  # same loader seed: same worker seeds and global-RNG draws
    assert a[0, 3] != a[2, 3] and a[0, 3] != c[0, 3]  # seeds differ between workers and loader seeds


def test_worker_init_fn_runs_in_each_worker(tmp_path):
    def init(worker_id):
        (tmp_path / f"w{worker_id}-{os.getpid()}").write_text(str(vd.get_worker_info().id))

    list(vd.DataLoader(Items(8), batch_size=2, num_workers=2, worker_init_fn=init, to_tensor=None))
    names = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert names == ["w0", "w1"]
    assert all(int(p.name.split("-")[1]) != os.getpid() for p in tmp_path.iterdir())

    def bad_init(worker_id):
        raise ValueError("init failed")
    with pytest.raises(ValueError, match="init failed"):
        list(vd.DataLoader(Items(8), batch_size=2, num_workers=2, worker_init_fn=bad_init))
    assert _wait_no_workers()


def test_worker_exception_is_raised_in_order_with_its_origin():
    it = iter(vd.DataLoader(Items(20, fail_at=9), batch_size=4, num_workers=2, to_tensor=None))
    assert next(it)["name"] == ["s0", "s1", "s2", "s3"]
    assert next(it)["name"] == ["s4", "s5", "s6", "s7"]
    with pytest.raises(KeyError, match="sample 9 is broken") as info:
        next(it)
    assert any("DataLoader worker 0 while building batch 2" in n for n in info.value.__notes__)
    with pytest.raises(StopIteration):
        next(it)
    assert _wait_no_workers()


def test_a_dead_worker_is_reported_not_waited_for():
    with pytest.raises(RuntimeError, match=r"worker 1 \(pid \d+\) exited unexpectedly with exit code 3"):
        list(vd.DataLoader(Items(12, exit_at=3), batch_size=2, num_workers=2))  # batch 1: worker 1
    assert _wait_no_workers()
    ds = Items(12, exit_at=3)
    loader = vd.DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True, to_tensor=None)
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(loader)
    ds.exit_at = None  # the next epoch gets a new pool (which sees the repaired dataset)
    assert [b["name"] for b in loader][1] == ["s2", "s3"]
    loader.close()
    assert _wait_no_workers()


def test_timeout_and_early_break_stop_the_workers():
    with pytest.raises(RuntimeError, match="timed out after 0.3 s waiting for batch 0"):
        next(iter(vd.DataLoader(Items(4, sleep=3.0), batch_size=2, num_workers=1, timeout=0.3)))
    assert _wait_no_workers()
    for i, _ in enumerate(vd.DataLoader(Items(200), batch_size=2, num_workers=2)):
        if i == 2:
            break
    assert _wait_no_workers()


def test_spawn_needs_a_picklable_dataset():
    class Local(vd.Dataset):  # a local class cannot be pickled by reference
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return i
    loader = vd.DataLoader(Local(), num_workers=1, multiprocessing_context="spawn")
    with pytest.raises(TypeError, match="pickl"):
        next(iter(loader))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(num_workers=-1), ValueError, "num_workers"),
    (dict(num_workers=1.5), TypeError, "num_workers"),
    (dict(prefetch_factor=2), ValueError, "num_workers > 0"),
    (dict(persistent_workers=True), ValueError, "num_workers > 0"),
    (dict(num_workers=1, prefetch_factor=0), ValueError, "prefetch_factor"),
    (dict(num_workers=1, timeout=-1), ValueError, "timeout"),
    (dict(collate_fn=3), TypeError, "collate_fn"),
    (dict(worker_init_fn="f"), TypeError, "worker_init_fn"),
    (dict(pin_memory=None), TypeError, "pin_memory"),
    (dict(num_workers=1, multiprocessing_context="threads"), ValueError, "multiprocessing_context"),
])
def test_bad_worker_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        vd.DataLoader(Items(4), **kwargs)
