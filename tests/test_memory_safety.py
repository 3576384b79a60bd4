"""Memory ownership (issue 19): no tensor writes into read-only memory, no in-place write is
silently wrong when its destination repeats elements (expanded) or overlaps its source.
Rules in csrc/core/tensor.h (6 and 7)."""
import numpy as np
import pytest

import vitc
from vitc import nn, optim


def _readonly_arrays(tmp_path):
    """read-only arrays of every origin: bytes, a mode='r' memmap, a flag cleared by hand"""
    f = tmp_path / "weights.bin"
    np.arange(12, dtype=np.float32).tofile(f)
    flagged = np.arange(12, dtype=np.float32)
    flagged.flags.writeable = False
    return {
        "frombuffer": np.frombuffer(np.arange(12, dtype=np.float32).tobytes(), np.float32),
        "memmap": np.memmap(f, dtype=np.float32, mode="r", shape=(12,)),
        "flagged": flagged,
    }


@pytest.mark.parametrize("origin", ["frombuffer", "memmap", "flagged"])
@pytest.mark.parametrize("write", ["fill_", "zero_", "copy_", "setitem", "sgd", "adamw", "numpy"])
def test_readonly_array_is_copied_and_never_written(tmp_path, origin, write):
    arr = _readonly_arrays(tmp_path)[origin]
    before = np.array(arr, copy=True)
    t = vitc.from_numpy(arr)
    assert t.data_ptr() != arr.ctypes.data  # its own memory, not the read-only bytes
    np.testing.assert_array_equal(t.numpy(), before)
    if write == "fill_":
        t.fill_(2.0)
    elif write == "zero_":
        t.zero_()
    elif write == "copy_":
        t.copy_(vitc.ones(12))
    elif write == "setitem":
        t[3:5] = 7.0
    elif write == "numpy":
        view = t.numpy()
        assert view.flags.writeable  # the copy is writable memory, so handing out a writable view is safe
        view[:] = 5.0
        np.testing.assert_array_equal(t.numpy(), np.full(12, 5.0, np.float32))
    else:
        p = nn.Parameter(vitc.from_numpy(arr))
        opt = (optim.SGD([p], lr=0.5) if write == "sgd" else optim.AdamW([p], lr=0.5))
        (p * p).sum().backward()
        opt.step()
        assert not np.array_equal(p.detach().numpy(), before)
    np.testing.assert_array_equal(np.asarray(arr), before)  # the read-only memory is untouched


def test_readonly_buffers_through_load_state_dict(tmp_path):
    """a model loaded from read-only (e.g. memory-mapped) arrays trains without touching them"""
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    sd = {}
    for k, v in model.state_dict().items():
        a = v.numpy()
        sd[k] = np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape)
        assert not sd[k].flags.writeable
    saved = {k: v.copy() for k, v in sd.items()}
    model.load_state_dict(sd, assign=True)
    opt = optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(vitc.randn(8, 4)).sum().backward()  # BatchNorm updates its running stats in place
    opt.step()
    for k in sd:
        np.testing.assert_array_equal(sd[k], saved[k])


def test_writable_array_stays_shared():
    a = np.zeros(6, np.float32)
    t = vitc.from_numpy(a)
    assert t.data_ptr() == a.ctypes.data
    t.fill_(3.0)
    np.testing.assert_array_equal(a, np.full(6, 3.0, np.float32))


# ---- overlapping copies ------------------------------------------------------------------------

def _views(base):
    """pairs (dst, src) of views of one 4x4 storage that overlap without being the same view"""
    return {
        "transpose": (lambda x: x, lambda x: x.T),
        "shift_down": (lambda x: x[1:], lambda x: x[:-1]),
        "shift_up": (lambda x: x[:-1], lambda x: x[1:]),
        "cols": (lambda x: x[:, 1:], lambda x: x[:, :-1]),
        "row_broadcast": (lambda x: x, lambda x: x[2]),
        "flat_shift": (lambda x: x.reshape(16)[3:], lambda x: x.reshape(16)[:-3]),
        "same": (lambda x: x, lambda x: x),
    }


@pytest.mark.parametrize("case", list(_views(None)))
def test_overlapping_copy_matches_numpy(case):
    dst_of, src_of = _views(None)[case]
    ref = np.arange(16, dtype=np.float32).reshape(4, 4)
    x = vitc.from_numpy(ref.copy())
    d, s = dst_of(ref), src_of(ref)
    d[...] = s  # NumPy copies through a temporary when they overlap
    dst_of(x).copy_(src_of(x))
    np.testing.assert_array_equal(x.numpy(), ref)


def test_overlapping_copy_across_dtypes():
    x = vitc.from_numpy(np.arange(16, dtype=np.float32))
    x[1:].copy_(x[:-1].to(vitc.int64))
    np.testing.assert_array_equal(x.numpy(), np.concatenate([[0], np.arange(15)]).astype(np.float32))


# ---- expanded destinations ---------------------------------------------------------------------

@pytest.mark.parametrize("write", ["copy_", "fill_", "zero_", "setitem", "setitem_index"])
def test_write_into_expanded_tensor_raises(write):
    base = vitc.zeros(1, 3)
    e = base.expand(2, 3)
    with pytest.raises(RuntimeError, match="single memory location|expanded"):
        if write == "copy_":
            e.copy_(vitc.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3)))
        elif write == "fill_":
            e.fill_(1.0)
        elif write == "zero_":
            e.zero_()
        elif write == "setitem":
            e[:, 1] = 4.0
        else:
            e[vitc.tensor([0, 1])] = 4.0
    np.testing.assert_array_equal(base.numpy(), np.zeros((1, 3), np.float32))


def test_expanded_size_one_or_empty_dims_are_writable():
    """stride 0 on a dimension of size 1 (or a tensor with no elements) repeats nothing"""
    a = vitc.zeros(1, 3).expand(1, 3)
    a.fill_(2.0)
    np.testing.assert_array_equal(a.numpy(), np.full((1, 3), 2.0, np.float32))
    empty = vitc.zeros(1, 0).expand(5, 0)
    empty.fill_(1.0)
    empty.copy_(vitc.zeros(5, 0))


def test_expanded_running_stats_refused():
    x = vitc.randn(8, 3)
    rm, rv = vitc.zeros(1).expand(3), vitc.ones(1).expand(3)
    with pytest.raises((RuntimeError, ValueError)):
        vitc.batch_norm(x, rm, rv, training=True)


# ---- every in-place op of the table refuses an expanded destination ----------------------------

def _call(name, tensors, ints=None, floats=None):
    return vitc._C.call(vitc._C.ops[name], tensors, ints, floats)


def _expanded(n):
    return vitc.zeros(1).expand(n)


IN_PLACE = {
    "fill_": lambda: _call("fill_", (vitc.zeros(1, 3).expand(2, 3),), None, (1.0,)),
    "copy_": lambda: _call("copy_", (vitc.zeros(1, 3).expand(2, 3), vitc.ones(2, 3))),
    "index_put_": lambda: _call("index_put_", (vitc.zeros(1, 3).expand(2, 3), vitc.tensor([0, 1]), vitc.ones(2, 2)),
                                (1, 1, 0)),
    "optim_zero": lambda: _call("optim_zero", (_expanded(4),)),
    "sgd_step": lambda: _call("sgd_step", (_expanded(4), vitc.ones(4), None, vitc.tensor([[0, 4, 0, 1]])),
                              (0, 0), (0.1, 0.0, 0.0, 0.0)),
    "adam_step": lambda: _call("adam_step", (_expanded(4), vitc.ones(4), vitc.zeros(4), vitc.zeros(4), None,
                                             vitc.tensor([[0, 4, 0, 1]])), (0, 0, 0), (0.1, 0.9, 0.999, 1e-8, 0.0)),
    "adafactor_step": lambda: _call("adafactor_step", (_expanded(4), vitc.ones(4), vitc.zeros(4), vitc.zeros(4),
                                                       vitc.tensor([[0, 4, 0, 1]]), vitc.tensor([[0, 1, 1, 1, 1, 4, 0, 0]])),
                                    None, (0.1, 0.9, 0.8, 0.999, 1e-30, 0.0)),
    "rmsprop_step": lambda: _call("rmsprop_step", (_expanded(4), vitc.ones(4), vitc.zeros(4), None, None,
                                                   vitc.tensor([[0, 4, 0, 1]])), (0, 0), (0.1, 0.99, 1e-8, 0.0, 0.0)),
    "batch_norm": lambda: vitc.batch_norm(vitc.randn(8, 3), _expanded(3), vitc.ones(1).expand(3), training=True),
    "reattention": lambda: vitc.reattention_packed(vitc.randn(2, 3, 3 * 2 * 4), 2, vitc.randn(2, 2), norm="batch",
                                                   running_mean=_expanded(2), running_var=vitc.ones(1).expand(2),
                                                   training=True),
}


@pytest.mark.parametrize("op", sorted(IN_PLACE))
def test_in_place_op_refuses_expanded_destination(op):
    with pytest.raises((RuntimeError, ValueError), match="expanded|contiguous|single memory location"):
        IN_PLACE[op]()


def test_in_place_list_covers_the_op_table():
    """ops that write into an argument: the trailing-underscore ones, optimizer steps and buffers,
    and the two that update running statistics; a new one must join IN_PLACE above"""
    writers = {n for n in vitc._C.ops if n.endswith("_") or n.endswith("_step") or n == "optim_zero"}
    assert writers | {"batch_norm", "reattention"} == set(IN_PLACE), sorted(writers)
