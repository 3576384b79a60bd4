"""Indexing against PyTorch: __getitem__ in every form (forward, backward, finite differences),
__setitem__, gather, index_select, masked_select, nonzero, and the errors they must raise."""
import numpy as np
import pytest
import torch

import vitc
from opcheck import check_op, rand

RNG = np.random.default_rng(3)


def _keys(key):
    """The same key for vitc and torch: NumPy int/bool arrays become each side's tensors."""
    def conv(k, lib):
        if isinstance(k, np.ndarray):
            return vitc.from_numpy(k.copy()) if lib == "v" else torch.from_numpy(k.copy())
        return k
    if isinstance(key, tuple):
        return tuple(conv(k, "v") for k in key), tuple(conv(k, "t") for k in key)
    return conv(key, "v"), conv(key, "t")


def check_key(key, shape=(4, 5, 6), noncontig=False):
    vk, tk = _keys(key)
    check_op(lambda x: x[vk], lambda x: x[tk], [rand(*shape)], noncontig=noncontig)


n = 2
BASIC = [
    (slice(None), 0), (Ellipsis, slice(1, None)), (0, slice(None), None), slice(1, -1, 2), (slice(None), slice(None, n + 1)),
    -1, 3, (1, -2, 3), (None, Ellipsis, None), (Ellipsis,), (), (slice(-100, 100),), (slice(None), None, slice(None, None, 2), -1),
    (slice(None, None, 3), slice(4, 1)), slice(10, 20), (Ellipsis, 0), (Ellipsis, None, 2), (0, 0, 0), (slice(1, 2), slice(None), slice(5, 6)),
    (slice(None), slice(None, None, 10)), (slice(3, None, 2), Ellipsis, slice(None, None, 4)), True, (0, None, None, 1),
]


@pytest.mark.parametrize("key", BASIC, ids=[repr(k) for k in BASIC])
def test_getitem_basic(key):
    check_key(key)


@pytest.mark.parametrize("key", [(slice(None), 0), (Ellipsis, slice(1, None)), (slice(1, -1, 2), slice(None), 1),
                                 (None, 2, slice(None, None, 2))], ids=repr)
def test_getitem_basic_noncontiguous(key):
    check_key(key, noncontig=True)


def test_getitem_is_a_view():
    a = vitc.from_numpy(np.arange(24, dtype=np.float32).reshape(4, 6))
    v = a[1:, ::2]
    assert v.shape == (3, 3) and v.stride() == (6, 2) and v.storage_offset() == 6
    assert a[:, 0].data_ptr() == a.data_ptr()
    assert a[0, None].shape == (1, 6)


def test_getitem_false_and_size1():
    check_key(False, shape=(3, 2))
    check_key((0, slice(None), 0), shape=(1, 3, 1))
    check_key((slice(None), -1), shape=(1, 1))
    check_key(slice(None, None, 2), shape=(0, 3))


def test_chained_views():
    check_op(lambda x: x.transpose(0, 1)[1:, ::2], lambda x: x.transpose(0, 1)[1:, ::2], [rand(4, 5, 3)])
    check_op(lambda x: x[1:][:, 2:][..., ::2][0], lambda x: x[1:][:, 2:][..., ::2][0], [rand(4, 5, 6)], noncontig=True)
    # a slice of an expanded (overlapping) view: gradients of the repeated rows add up in the expand
    check_op(lambda x: x.expand(5, 4, 3)[1:4, ::2], lambda x: x.expand(5, 4, 3)[1:4, ::2], [rand(1, 4, 3)])
    check_op(lambda x: x.expand(6, 3)[:, 1], lambda x: x.expand(6, 3)[:, 1], [rand(1, 3)])


ADVANCED = [
    np.array([1, 0, 1, 3]), (slice(None), np.array([2, 0, 2])), np.array([[0, 1], [1, 1]]), (slice(None), 1, np.array([0, -3])),
    (np.array([0, 1]), slice(None), np.array([1, 2])), (np.array([0, 1]), np.array([1, 2])), (0, np.array([1, 2]), np.array([0, 3])),
    (np.array([[0], [3]]), np.array([1, 2, 4])), np.array([-1, -4]), (Ellipsis, np.array([5, 0, 5, 5])), np.array([], dtype=np.int64),
    (np.array([0, 2]), None, np.array([1, 2])), (slice(1, 3), np.array([4, 4]), slice(None, None, 2)), (None, np.array([3])),
]


@pytest.mark.parametrize("key", ADVANCED, ids=[repr(k) for k in ADVANCED])
def test_getitem_advanced(key):
    check_key(key)


@pytest.mark.parametrize("key", ADVANCED[:8], ids=[repr(k) for k in ADVANCED[:8]])
def test_getitem_advanced_noncontiguous(key):
    check_key(key, noncontig=True)


def test_getitem_list_index():
    a = rand(5, 3)
    check_op(lambda x: x[[4, 0, 4]], lambda x: x[torch.tensor([4, 0, 4])], [a])
    check_op(lambda x: x[:, [2, 2]], lambda x: x[:, [2, 2]], [a])
    check_op(lambda x: x[[True, False, True, True, False]], lambda x: x[torch.tensor([True, False, True, True, False])], [a])


MASKS = [((4, 5, 6), (4, 5, 6), ()), ((4, 5, 6), (4,), ()), ((4, 5, 6), (5,), (slice(None),)), ((4, 5, 6), (4, 5), ()),
         ((4, 5, 6), (5, 6), (0,)), ((4, 5, 6), (5, 6), (Ellipsis,)), ((3, 0), (3, 0), ())]


@pytest.mark.parametrize("shape,mshape,prefix", MASKS)
def test_getitem_mask(shape, mshape, prefix):
    m = RNG.random(mshape) > 0.4
    check_key(prefix + (m,), shape=shape)
    if len(shape) >= 2 and 0 not in shape:
        check_key(prefix + (m,), shape=shape, noncontig=True)


def test_getitem_mask_then_index():
    m = np.array([True, False, True, True])
    check_key((m, slice(None), np.array([0, 5, 1])))
    check_key((m, 2))
    check_key((np.array([1, 3, 0]), m[:3] | True, 1), shape=(4, 3, 2))


def test_getitem_int_tensor_scalar():
    a = rand(4, 3)
    check_op(lambda x: x[vitc.tensor(2)], lambda x: x[torch.tensor(2)], [a])
    check_op(lambda x: x[np.int64(1), np.int32(-1)], lambda x: x[1, -1], [a])


def test_getitem_int64_and_bool_tensors():
    x = np.arange(12).reshape(3, 4)
    v = vitc.from_numpy(x.copy())
    np.testing.assert_array_equal(v[1:, ::2].numpy(), x[1:, ::2])
    np.testing.assert_array_equal(v[[2, 0]].numpy(), x[[2, 0]])
    np.testing.assert_array_equal(v[v > 5].numpy(), x[x > 5])
    b = vitc.from_numpy(x > 4)
    np.testing.assert_array_equal(b[:, 1].numpy(), (x > 4)[:, 1])
    np.testing.assert_array_equal(b[[0, 2], 1:].numpy(), (x > 4)[[0, 2], 1:])


def test_iteration_uses_getitem():
    v = vitc.from_numpy(np.arange(6, dtype=np.float32).reshape(3, 2))
    assert [r.tolist() for r in v] == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize("key", [1.5, "a", {}, vitc.tensor([1.0]), [1.0, 2.5], object(), (slice(None), 0.0), [[0, 1], [2]]],
                         ids=repr)
def test_getitem_bad_type(key):
    v = vitc.zeros(3, 4)
    with pytest.raises(TypeError):
        v[key]


def test_getitem_out_of_range():
    v = vitc.zeros(3, 4)
    for key in [3, -4, (0, 4), (slice(None), -5), vitc.tensor([0, 3]), (slice(None), [4]), ([0, 1], [1, 2, 3]),
                (0, 0, 0), (Ellipsis, 0, Ellipsis), vitc.zeros(2, dtype=vitc.bool), [-4]]:
        with pytest.raises(vitc.IndexError):
            v[key]
    with pytest.raises(IndexError, match="out of bounds for dimension 0 with size 3"):
        v[3]
    with pytest.raises(ValueError):  # vitc.IndexError is also a ValueError
        v[:, 7]
    with pytest.raises(IndexError, match="too many indices"):
        v[0, 0, 0]
    with pytest.raises(ValueError, match="step"):
        v[::-1]
    with pytest.raises(ValueError, match="step"):
        v[::0]


# ---- setitem --------------------------------------------------------------------------------

SET = [
    ((slice(None), 0), 5.0), ((Ellipsis, slice(1, None)), np.float32(2.5)), (slice(1, -1, 2), "row"), (0, "full"),
    ((slice(None), slice(None, 3)), "bcast"), (np.array([2, 0]), "idx"), ((slice(None), np.array([1, 1, 3])), -1.0),
    ("mask", 0.0), ("mask", "maskvals"), ((np.array([0, 2]), np.array([1, 3])), "pair"), ((0, None), 7.0), (Ellipsis, 3.0),
    ((1, np.array([0, 4])), "col"),
]


@pytest.mark.parametrize("key,val", SET, ids=[repr(s) for s in SET])
def test_setitem(key, val):
    a = rand(4, 5)
    if isinstance(key, str):
        key = a > 0.2
    vk, tk = _keys(key)
    v, t = vitc.from_numpy(a.copy()), torch.from_numpy(a.copy())
    shape = tuple(t[tk].shape)
    if val == "row":
        val = rand(5)
    elif val in ("full", "idx", "pair", "maskvals", "col"):
        val = rand(*shape)
    elif val == "bcast":
        val = rand(1, 3)
    if isinstance(val, np.ndarray):
        v[vk] = vitc.from_numpy(val)
        t[tk] = torch.from_numpy(val)
    else:
        v[vk] = val
        t[tk] = float(val)
    np.testing.assert_array_equal(v.numpy(), t.numpy())


def test_setitem_views_and_dtypes():
    a = np.zeros((3, 4), np.float32)
    v = vitc.from_numpy(a)
    v[1] = vitc.tensor([1, 2, 3, 4])  # int64 value into float32
    v.T[2, 1:] = 9  # through a transposed view
    v[0][::2] = vitc.ones(1, 2)  # leading 1s of the value are dropped
    expect = np.zeros((3, 4), np.float32)
    expect[1] = [1, 2, 3, 4]
    expect.T[2, 1:] = 9
    expect[0][::2] = 1
    np.testing.assert_array_equal(a, expect)  # wrote through to the shared NumPy memory
    i = vitc.zeros(4, dtype=vitc.int64)
    i[[1, 3]] = 7
    b = vitc.zeros(2, 2, dtype=vitc.bool)
    b[:, 0] = True
    assert i.tolist() == [0, 7, 0, 7] and b.tolist() == [[True, False], [True, False]]
    w = vitc.zeros(5)
    w[[1, 1, 1]] = vitc.tensor([1.0, 2.0, 3.0])  # repeated index: the last value wins
    assert w.tolist() == [0, 3, 0, 0, 0]


def test_setitem_overlapping_source():
    x = vitc.arange(6).float()
    x[1:] = x[:-1]
    assert x.tolist() == [0, 0, 1, 2, 3, 4]
    y = vitc.arange(6).float()
    y[[0, 1, 2]] = y[3:]
    assert y.tolist() == [3, 4, 5, 3, 4, 5]


def test_setitem_autograd_rules():
    w = vitc.zeros(3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w[0] = 1.0
    with pytest.raises(RuntimeError, match="in-place"):
        w[w.detach() > 0] = 1.0
    y = w * 2
    with pytest.raises(RuntimeError, match="in-place"):
        y[:, 1] = 0.0
    z = vitc.zeros(3)
    with pytest.raises(RuntimeError, match="in-place"):
        z[0] = w[0, 0]
    with vitc.no_grad():
        w[0] = 1.0
        w[[1, 2], 3] = vitc.tensor([5.0, 6.0])
    assert w.requires_grad and w.is_leaf and w.grad_fn is None
    assert w.sum().item() == 15.0
    z[0] = 4.0  # nothing requires grad: allowed
    assert z.tolist() == [4, 0, 0]


def test_setitem_errors():
    v = vitc.zeros(3, 4)
    with pytest.raises(ValueError):
        v[0] = vitc.ones(3)
    with pytest.raises(ValueError):
        v[[0, 1]] = vitc.ones(3, 4)
    with pytest.raises(vitc.IndexError):
        v[5] = 1.0
    with pytest.raises(TypeError):
        v[0] = "x"
    with pytest.raises(TypeError):
        v[1.0] = 2.0
    e = vitc.zeros(1, 4).expand(3, 4)
    with pytest.raises(RuntimeError, match="memory location"):
        e[[0, 1]] = 1.0


# ---- gather / index_select / masked_select / nonzero ------------------------------------------

@pytest.mark.parametrize("shape,dim,ishape", [((5, 4), 0, (7, 4)), ((5, 4), 1, (5, 9)), ((3, 4, 5), 1, (2, 6, 3)),
                                              ((3, 4, 5), -1, (3, 4, 2)), ((6,), 0, (10,)), ((3, 4), 0, (0, 4))])
def test_gather(shape, dim, ishape):
    size = shape[dim] if shape else 1
    idx = RNG.integers(0, size, size=ishape).astype(np.int64)  # repeats: gradients must accumulate
    check_op(lambda x, i: vitc.gather(x, dim, i), lambda x, i: torch.gather(x, dim, i), [rand(*shape), idx])
    if len(shape) >= 2:
        check_op(lambda x, i: x.gather(dim, i), lambda x, i: x.gather(dim, i), [rand(*shape), idx], noncontig=True)


def test_gather_0d():
    check_op(lambda x: vitc.gather(x, 0, vitc.tensor(0)), lambda x: torch.gather(x, 0, torch.tensor(0)), [rand()],
             fd=False)  # the finite-difference pass feeds 0-d inputs as 1-d


def test_gather_int64_and_take_along_dim():
    x = np.arange(12).reshape(3, 4)
    i = np.array([[3, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(vitc.gather(vitc.from_numpy(x), 1, vitc.from_numpy(i)).numpy(), np.take_along_axis(x, i, 1))
    a = rand(3, 4)
    check_op(lambda x: vitc.take_along_dim(x, vitc.from_numpy(np.array([[1], [0], [3]])), 1),
             lambda x: torch.take_along_dim(x, torch.tensor([[1], [0], [3]]), 1), [a])


def test_gather_large_parallel():
    a = rand(300, 257)
    idx = RNG.integers(0, 300, size=(400, 257)).astype(np.int64)
    check_op(lambda x, i: vitc.gather(x, 0, i), lambda x, i: torch.gather(x, 0, i), [a, idx], fd=False)


def test_gather_errors():
    x = vitc.zeros(3, 4)
    with pytest.raises(vitc.IndexError, match="out of bounds"):
        vitc.gather(x, 1, vitc.tensor([[4]]))
    with pytest.raises(vitc.IndexError):
        vitc.gather(x, 0, vitc.tensor([[-1]]))
    with pytest.raises(TypeError, match="int64"):
        vitc.gather(x, 0, vitc.zeros(1, 1))
    with pytest.raises(ValueError, match="dimensions"):
        vitc.gather(x, 0, vitc.tensor([0]))
    with pytest.raises(ValueError, match="larger than the input"):
        vitc.gather(x, 0, vitc.zeros(1, 5, dtype=vitc.int64))
    with pytest.raises(vitc.IndexError):
        vitc.gather(x, 2, vitc.zeros(1, 1, dtype=vitc.int64))


@pytest.mark.parametrize("shape,dim,n", [((5, 4), 0, 8), ((5, 4), 1, 3), ((3, 4, 5), 1, 6), ((3, 4, 5), -1, 0),
                                         ((7,), 0, 7), ((2, 3000), 0, 5), ((3000, 3), 0, 5000),
                                         ((700, 64), 0, 1500), ((300, 100), 0, 900)])  # backward split by columns
def test_index_select(shape, dim, n):
    idx = RNG.integers(0, shape[dim], size=n).astype(np.int64)
    fd = np.prod(shape) < 5000
    check_op(lambda x, i: vitc.index_select(x, dim, i), lambda x, i: torch.index_select(x, dim, i), [rand(*shape), idx], fd=fd)
    if len(shape) >= 2:
        check_op(lambda x, i: x.index_select(dim, i), lambda x, i: x.index_select(dim, i), [rand(*shape), idx],
                 noncontig=True, fd=fd)


def test_index_select_repeated_accumulates():
    x = vitc.zeros(3, 2, requires_grad=True)
    vitc.index_select(x, 0, vitc.tensor([2, 2, 0, 2])).sum().backward()
    assert x.grad.tolist() == [[1, 1], [0, 0], [3, 3]]


@pytest.mark.parametrize("cols", [64, 100])
def test_index_select_backward_split_by_columns_is_exact(cols):
    """Over dim 0 with one outer row, the backward's scatter-add splits the columns among the threads
    and adds every column's repeated rows in index order: the bits of a serial np.add.at, at 1 and 2
    threads."""
    x = rand(600, cols)
    idx = RNG.integers(0, 600, size=2000).astype(np.int64)  # repeats
    g = rand(2000, cols)
    want = np.zeros_like(x)
    np.add.at(want, idx, g)
    before = vitc.get_num_threads()
    try:
        for threads in (1, 2):
            vitc.set_num_threads(threads)
            t = vitc.tensor(x, requires_grad=True)
            vitc.index_select(t, 0, vitc.tensor(idx)).backward(vitc.tensor(g))
            assert np.array_equal(t.grad.numpy(), want)
    finally:
        vitc.set_num_threads(before)


def test_index_select_0d_and_errors():
    check_op(lambda x: vitc.index_select(x, 0, vitc.tensor([0])), lambda x: torch.index_select(x, 0, torch.tensor([0])),
             [rand()])
    check_op(lambda x: x.index_select(1, vitc.tensor(2)), lambda x: x.index_select(1, torch.tensor(2)), [rand(3, 4)])
    x = vitc.zeros(3, 4)
    with pytest.raises(vitc.IndexError):
        vitc.index_select(x, 0, vitc.tensor([3]))
    with pytest.raises(vitc.IndexError):
        vitc.index_select(x, 0, vitc.tensor([-1]))
    with pytest.raises(ValueError):
        vitc.index_select(x, 0, vitc.zeros(2, 2, dtype=vitc.int64))
    with pytest.raises(TypeError):
        vitc.index_select(x, 0, vitc.zeros(2))
    with pytest.raises(TypeError):
        vitc.index_select([1, 2], 0, vitc.tensor([0]))


@pytest.mark.parametrize("xs,ms", [((4, 5), (4, 5)), ((4, 5), (5,)), ((1, 5), (3, 1)), ((3,), (3,)), ((2, 0), (2, 0)),
                                   ((), ())])
def test_masked_select(xs, ms):
    m = np.asarray(RNG.random(ms) > 0.5)
    check_op(lambda x, mm: vitc.masked_select(x, mm), lambda x, mm: torch.masked_select(x, mm), [rand(*xs), m], fd=xs != ())
    with pytest.raises(TypeError):
        vitc.masked_select(vitc.zeros(3), vitc.zeros(3))


def test_nonzero():
    a = RNG.random((3, 4, 5)) > 0.6
    for x in (a, a.astype(np.float32), np.zeros((2, 0), bool), np.array(True), np.ones((70000,), bool)):
        v, t = vitc.from_numpy(x.copy()), torch.from_numpy(x.copy())
        np.testing.assert_array_equal(vitc.nonzero(v).numpy(), torch.nonzero(t).numpy())
        for p, q in zip(v.nonzero(as_tuple=True), torch.nonzero(t, as_tuple=True)):
            np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_big_mask_getitem_parallel():
    a = rand(300, 400)
    m = RNG.random((300, 400)) > 0.5
    check_key(m, shape=(300, 400))
    vk, tk = _keys((m,))
    check_op(lambda x: x[vk], lambda x: x[tk], [a], fd=False)
