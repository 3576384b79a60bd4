"""Fuzz of memory ownership (issue 19): random in-place writes (fill_, zero_, copy_, slice
assignment) into random views (transposed, sliced with steps, selected, expanded, zero-size) of
tensors over writable, read-only or vitc-owned memory, from sources that may alias the
destination. NumPy is the reference: `dst[...] = src` there reads overlapping sources through a
temporary. Every case must either give NumPy's bytes or raise the documented error with nothing
written, leave read-only memory untouched, and leak no allocator bytes. scripts/fuzz_memory.py
runs the same check on many more random cases; scripts/sanitize.sh runs this file under ASan."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import vitc

ORIGINS = ("writable", "readonly", "vitc")
WRITES = ("fill_", "zero_", "copy_", "setitem")


def apply_view(t, a, step):
    """one view step on a vitc tensor t and its NumPy twin a (the same geometry)"""
    kind = step[0]
    if kind == "transpose":
        _, d0, d1 = step
        return t.transpose(d0, d1), np.swapaxes(a, d0, d1)
    if kind == "slice":
        _, dim, start, stop, stride = step
        key = (slice(None),) * dim + (slice(start, stop, stride),)
        return t[key], a[key]
    if kind == "select":
        _, dim, i = step
        key = (slice(None),) * dim + (i,)
        return t[key], a[key]
    if kind == "unsqueeze":
        _, dim = step
        return t.unsqueeze(dim), np.expand_dims(a, dim)
    if kind == "expand":
        _, dim, size = step
        shape, strides = list(a.shape), list(a.strides)
        shape[dim], strides[dim] = size, 0
        return t.expand(*shape), np.lib.stride_tricks.as_strided(a, shape, strides)
    raise AssertionError(kind)


def possible_steps(shape, draw_int):
    """the view steps valid on `shape`; draw_int(lo, hi) picks numbers"""
    nd = len(shape)
    steps = []
    if nd >= 2:
        steps.append(("transpose", draw_int(0, nd - 1), draw_int(0, nd - 1)))
    if nd >= 1:
        dim = draw_int(0, nd - 1)
        n = shape[dim]
        start = draw_int(0, n)
        stop = draw_int(start, n)  # empty only when stop == start
        steps.append(("slice", dim, start, stop, draw_int(1, 3)))
        if n > 0 and nd >= 2:
            steps.append(("select", dim, draw_int(0, n - 1)))
        ones = [d for d in range(nd) if shape[d] == 1]
        if ones:
            steps.append(("expand", ones[draw_int(0, len(ones) - 1)], draw_int(0, 4)))
    if nd < 4:
        steps.append(("unsqueeze", draw_int(0, nd)))
    return steps


def make_view(t, a, choices):
    """apply a list of step choices (indices into possible_steps, and the numbers they draw)"""
    for pick, nums in choices:
        it = itertools.cycle(nums)
        steps = possible_steps(a.shape, lambda lo, hi: lo + next(it) % (hi - lo + 1))
        if not steps:
            break
        t, a = apply_view(t, a, steps[pick % len(steps)])
    return t, a


def expanded(a):
    return a.size > 0 and any(s == 0 and n > 1 for s, n in zip(a.strides, a.shape))


def base_tensor(origin, values):
    if origin == "writable":
        arr = values.copy()
        return vitc.from_numpy(arr), arr
    if origin == "readonly":
        arr = np.frombuffer(values.tobytes(), np.float32).reshape(values.shape)
        return vitc.from_numpy(arr), arr
    return vitc.from_numpy(values) + 0.0, None  # memory from vitc's allocator


def check_case(case):
    """run one case; returns the number of vitc calls it made. Raises AssertionError on a
    mismatch (a crash would end the process)."""
    shape, origin, write, dst_choices, src_mode, src_choices, value = case
    live0 = vitc.memory_stats()["live_bytes"]
    values = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) + 1.0
    base, arr = base_tensor(origin, values)
    frozen = None if arr is None or arr.flags.writeable else arr.copy()
    ref = values.copy()
    dst, dref = make_view(base, ref, dst_choices)
    calls = 1 + len(dst_choices)
    if src_mode == "alias":  # a view of the destination's own storage
        src, sref = make_view(base, ref, src_choices)
    else:
        other = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * -1.0
        src, sref = make_view(vitc.from_numpy(other.copy()), other, src_choices)
    calls += len(src_choices)
    sref = np.array(sref, copy=True)  # NumPy's semantics: the source as it was before the write
    fits = write in ("fill_", "zero_") or _broadcasts(sref.shape, dref.shape, write == "setitem")
    if expanded(dref) or not fits:
        with pytest.raises(RuntimeError if expanded(dref) else ValueError):
            _write(dst, src, write, value)
    else:
        _write(dst, src, write, value)
        # NumPy twin: dref is a view of ref (unless it is a broadcast read-only view, handled above)
        if write == "fill_":
            dref[...] = value
        elif write == "zero_":
            dref[...] = 0.0
        else:
            dref[...] = sref
    calls += 1
    np.testing.assert_array_equal(base.numpy(), ref)
    if frozen is not None:
        np.testing.assert_array_equal(arr, frozen)
    del base, dst, src
    assert vitc.memory_stats()["live_bytes"] == live0, "a case leaked allocator bytes"
    return calls


def _broadcasts(src, dst, drop_leading_ones):
    while drop_leading_ones and len(src) > len(dst) and src[0] == 1:  # assignment drops them (NumPy too)
        src = src[1:]
    try:
        return np.broadcast_shapes(src, dst) == tuple(dst)
    except ValueError:
        return False


def _write(dst, src, write, value):
    if write == "fill_":
        dst.fill_(value)
    elif write == "zero_":
        dst.zero_()
    elif write == "copy_":
        dst.copy_(src)
    else:
        dst[...] = src


step_choice = st.tuples(st.integers(0, 5), st.lists(st.integers(0, 10 ** 6), min_size=4, max_size=4))
cases = st.tuples(
    st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),  # 0: zero-size tensors
    st.sampled_from(ORIGINS),
    st.sampled_from(WRITES),
    st.lists(step_choice, max_size=4),
    st.sampled_from(("alias", "other")),
    st.lists(step_choice, max_size=4),
    st.floats(-4, 4, width=32),
)


@settings(max_examples=400, deadline=None)
@given(cases)
def test_fuzz_inplace_writes_match_numpy(case):
    check_case(case)


def random_case(rng):
    """a case like the strategy's, from a NumPy Generator (scripts/fuzz_memory.py)"""
    def choices():
        return [(int(rng.integers(0, 6)), [int(v) for v in rng.integers(0, 10 ** 6, 4)])
                for _ in range(int(rng.integers(0, 5)))]
    shape = tuple(int(s) for s in rng.choice(6, int(rng.integers(1, 4)), p=[0.04, 0.24, 0.18, 0.18, 0.18, 0.18]))
    return (shape, ORIGINS[rng.integers(0, 3)], WRITES[rng.integers(0, 4)], choices(),
            ("alias", "other")[rng.integers(0, 2)], choices(), float(np.float32(rng.uniform(-4, 4))))
