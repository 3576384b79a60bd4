"""Ops from several Python threads (issue 19): gradients accumulated into a shared leaf lose no
update, the thread count set by set_num_threads applies in every thread, and running models from
2 or 4 threads gives the results of running them one after the other."""
import threading

import numpy as np
import pytest

import vitc
from vitc import nn


def _run_threads(fns):
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    ts = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture
def threads_restored():
    n = vitc.get_num_threads()
    yield
    vitc.set_num_threads(n)


@pytest.mark.parametrize("nthreads", [2, 4])
def test_concurrent_backward_into_one_leaf_loses_nothing(nthreads):
    """each thread adds k * 1 per element per pass: the sum is exact in float32"""
    w = vitc.zeros(256, 256)
    w.requires_grad = True
    reps = 300 if nthreads == 2 else 150
    xs = [vitc.full((256, 256), float(k + 1)) for k in range(nthreads)]

    def work(x):
        def run():
            for _ in range(reps):
                (w * x).sum().backward()
        return run
    _run_threads([work(x) for x in xs])
    expected = reps * sum(range(1, nthreads + 1))
    np.testing.assert_array_equal(w.grad.numpy(), np.full((256, 256), expected, np.float32))


def test_grad_reset_while_other_threads_accumulate():
    """w.grad = None from one thread while others accumulate: no crash, and a final pass is exact"""
    w = vitc.zeros(512, 64)
    w.requires_grad = True
    x = vitc.ones(512, 64)
    stop = threading.Event()

    def accumulate():
        for _ in range(100):
            (w * x).sum().backward()

    def reset():
        while not stop.is_set():
            w.grad = None
    t = threading.Thread(target=reset)
    t.start()
    try:
        _run_threads([accumulate, accumulate])
    finally:
        stop.set()
        t.join()
    w.grad = None
    (w * x).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones((512, 64), np.float32))


def test_concurrent_backward_through_one_graph_is_refused_or_exact():
    """two threads backward through the same graph: each pass either runs alone (and adds its
    gradient exactly once) or is refused with a RuntimeError, never a silent mix"""
    w = vitc.zeros(128, 128)
    w.requires_grad = True
    x = vitc.from_numpy(np.arange(128 * 128, dtype=np.float32).reshape(128, 128) % 7)
    y = vitc.tanh(w * x + 1.0).sum()
    done = []

    def run():
        for _ in range(50):
            try:
                y.backward(retain_graph=True)
                done.append(1)
            except RuntimeError as e:
                assert "another thread" in str(e)
    _run_threads([run, run])
    one = vitc.zeros(128, 128)
    one.requires_grad = True
    vitc.tanh(one * x + 1.0).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), len(done) * one.grad.numpy(), rtol=1e-5)
    assert done


def test_set_num_threads_reaches_other_threads(threads_restored):
    """OpenMP's thread count is per thread; vitc's is per process: an op run from a thread that
    never called set_num_threads uses the process's count (read back without syncing)"""
    seen = {}
    go, ready = threading.Event(), threading.Event()

    def worker():
        vitc.ones(4096) + 1.0
        seen["first"] = vitc._C._omp_max_threads()
        ready.set()
        go.wait()
        vitc.ones(4096) + 1.0
        seen["second"] = vitc._C._omp_max_threads()
    vitc.set_num_threads(1)
    t = threading.Thread(target=worker)
    t.start()
    ready.wait()
    vitc.set_num_threads(3)  # changed while the thread lives: its next op picks it up
    go.set()
    t.join()
    assert seen == {"first": 1, "second": 3}, seen
    assert vitc.get_num_threads() == 3


def _model(seed):
    vitc.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 10))


def _inputs(k):
    rng = np.random.default_rng(k)
    return rng.standard_normal((256, 32)).astype(np.float32)


def _step(model, x_np):
    """forward + backward; returns (output, input gradient), and leaves parameter grads"""
    x = vitc.from_numpy(x_np.copy())
    x.requires_grad = True
    y = model(x)
    (y * y).mean().backward()
    return y.detach().numpy().copy(), x.grad.numpy().copy()


@pytest.mark.parametrize("nthreads", [2, 4])
@pytest.mark.parametrize("shared", [True, False])
def test_models_in_threads_match_sequential(nthreads, shared, threads_restored):
    vitc.set_num_threads(2)
    xs = [_inputs(k) for k in range(nthreads)]
    models = [_model(0)] if shared else [_model(k) for k in range(nthreads)]
    pick = (lambda k: models[0]) if shared else (lambda k: models[k])
    seq = [_step(pick(k), xs[k]) for k in range(nthreads)]
    seq_grads = [[p.grad.numpy().copy() for p in m.parameters()] for m in models]
    for m in models:
        for p in m.parameters():
            p.grad = None
    par = [None] * nthreads

    def work(k):
        def run():
            par[k] = _step(pick(k), xs[k])
        return run
    _run_threads([work(k) for k in range(nthreads)])
    for k in range(nthreads):
        np.testing.assert_array_equal(par[k][0], seq[k][0])
        np.testing.assert_array_equal(par[k][1], seq[k][1])
    for m, grads in zip(models, seq_grads):
        for p, g in zip(m.parameters(), grads):
            if shared and nthreads > 2:  # the order of the additions into .grad differs
                np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(p.grad.numpy(), g)
