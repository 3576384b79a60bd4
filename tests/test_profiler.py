"""vitc.profiler: the engine's per-op timeline (forwards, backward nodes, gradient accumulation)."""
import threading

import numpy as np
import pytest

import vitc


def small_step():
    """a two-layer MLP's forward, loss and backward: linear, gelu, linear, cross_entropy"""
    vitc.manual_seed(0)
    net = vitc.nn.Sequential(vitc.nn.Linear(8, 16), vitc.nn.GELU(), vitc.nn.Linear(16, 3))
    x = vitc.randn(5, 8)
    y = vitc.tensor(np.array([0, 1, 2, 0, 1]))
    return lambda: vitc.cross_entropy(net(x), y).backward()


def test_records_forwards_backwards_and_accumulation():
    step = small_step()
    with vitc.profiler.profile(record_shapes=True) as prof:
        step()
    ev = prof.events()
    names = [(e.name, e.phase) for e in ev]
    assert names.count(("linear", "forward")) == 2
    assert names.count(("linear", "backward")) == 2
    assert ("cross_entropy", "forward") in names and ("cross_entropy", "backward") in names
    assert any(e.phase == "accumulate_grad" for e in ev)  # the parameters' .grad
    # forwards run in program order, backward nodes after every forward
    first_bwd = min(i for i, e in enumerate(ev) if e.phase == "backward")
    assert all(e.phase == "forward" for e in ev[:first_bwd])
    lin = [e for e in ev if e.name == "linear" and e.phase == "forward"]
    assert [e.shape for e in lin] == [(5, 8), (5, 16)]  # each op's first input
    assert all(e.ns >= 0 for e in ev)
    assert sum(e.ns for e in ev) <= prof.wall_ns


def test_shapes_only_when_asked_and_grouping():
    step = small_step()
    with vitc.profiler.profile() as prof:
        step()
    assert all(e.shape is None for e in prof.events())
    with pytest.raises(ValueError, match="record_shapes"):
        prof.key_averages(group_by_input_shape=True)
    rows = prof.key_averages()
    by = {r.key: r for r in rows}
    assert by["linear"].calls == 2 and by["linear_backward"].calls == 2
    assert [r.total_ns for r in rows] == sorted((r.total_ns for r in rows), reverse=True)
    with vitc.profiler.profile(record_shapes=True) as prof:
        step()
    grouped = {(r.key, r.shape): r.calls for r in prof.key_averages(group_by_input_shape=True)}
    assert grouped[("linear", (5, 8))] == 1 and grouped[("linear", (5, 16))] == 1


def test_time_is_the_kernels():
    """a 256x larger product must read longer: the timer wraps the kernel, not a constant"""
    a, b = vitc.randn(512, 512), vitc.randn(512, 512)
    s, t = vitc.randn(2, 2), vitc.randn(2, 2)
    with vitc.profiler.profile(record_shapes=True) as prof:
        for _ in range(3):
            vitc.matmul(a, b)
            vitc.matmul(s, t)
    big = sorted(e.ns for e in prof.events() if e.shape == (512, 512))
    small = sorted(e.ns for e in prof.events() if e.shape == (2, 2))
    assert len(big) == 3 and len(small) == 3
    assert big[0] > small[-1]


def test_table():
    step = small_step()
    with vitc.profiler.profile(record_shapes=True) as prof:
        step()
    text = prof.key_averages(group_by_input_shape=True).table(sort_by="count", row_limit=3)
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 1 and "calls" in lines[0] and "outside ops" in lines[-1]
    assert "linear_backward" in prof.key_averages().table()
    with pytest.raises(ValueError, match="sort_by"):
        prof.key_averages().table(sort_by="flops")
    with pytest.raises(ValueError, match="row_limit"):
        prof.key_averages().table(row_limit=-1)


def test_not_reentrant_and_stops_on_error():
    with vitc.profiler.profile() as outer:
        with pytest.raises(RuntimeError, match="already running"):
            with vitc.profiler.profile():
                pass
        vitc.add(vitc.ones(3), vitc.ones(3))
    assert [e.name for e in outer.events()] == ["add"]
    with pytest.raises(ValueError):
        with vitc.profiler.profile():
            raise ValueError("inside")
    with vitc.profiler.profile() as again:  # the failed block stopped its recording
        pass
    assert again.events() == []
    with pytest.raises(RuntimeError, match="not running"):
        vitc._C._profiler_stop()


def test_results_only_after_the_block():
    p = vitc.profiler.profile()
    with pytest.raises(RuntimeError, match="finished"):
        p.events()
    with p:
        with pytest.raises(RuntimeError, match="finished"):
            p.events()


def test_records_only_its_own_thread():
    seen = []

    def other():
        for _ in range(20):
            vitc.mul(vitc.ones(4), vitc.ones(4))
        seen.append(True)

    with vitc.profiler.profile() as prof:
        t = threading.Thread(target=other)
        t.start()
        t.join()
        vitc.add(vitc.ones(3), vitc.ones(3))
    assert seen == [True]
    assert [e.name for e in prof.events()] == ["add"]


def test_off_by_default():
    """no profiler: nothing is buffered for a later profile to hand back"""
    vitc.add(vitc.ones(3), vitc.ones(3))
    with vitc.profiler.profile() as prof:
        pass
    assert prof.events() == []
