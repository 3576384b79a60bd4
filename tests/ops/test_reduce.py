"""Reductions against PyTorch, forward and backward, plus finite differences and bad input."""
import numpy as np
import pytest
import torch

import vitc
from opcheck import assert_same_at_1_and_2_threads, check_allocation_failures, check_op, rand


RNG = np.random.default_rng(7)
# torch warns when n - correction <= 0 (NaN results are compared on purpose)
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom")


def spaced(*shape, step=0.05):
    """Distinct values at least `step` apart (no ties, so max/min survive the finite difference)."""
    n = int(np.prod(shape)) if shape else 1
    return (RNG.permutation(n).astype(np.float32) * step - n * step / 2).reshape(shape)


def _all(t):
    return tuple(range(t.ndim))


# (name, vitc fn(x, dim, keepdim), torch fn(x, dim, keepdim)); dim None = all dims
SUMLIKE = [
    ("sum", lambda x, d, k: vitc.sum(x, d, k), lambda x, d, k: torch.sum(x, d if d is not None else _all(x), k)),
    ("mean", lambda x, d, k: vitc.mean(x, d, k), lambda x, d, k: torch.mean(x, d if d is not None else _all(x), k)),
    ("var", lambda x, d, k: vitc.var(x, d, keepdim=k), lambda x, d, k: torch.var(x, d, keepdim=k)),
    ("std", lambda x, d, k: vitc.std(x, d, keepdim=k), lambda x, d, k: torch.std(x, d, keepdim=k)),
    ("amax", lambda x, d, k: vitc.amax(x, d if d is not None else (), k),
     lambda x, d, k: torch.amax(x, d if d is not None else (), k)),
    ("amin", lambda x, d, k: vitc.amin(x, d if d is not None else (), k),
     lambda x, d, k: torch.amin(x, d if d is not None else (), k)),
    ("logsumexp", lambda x, d, k: vitc.logsumexp(x, d if d is not None else _all(x), k),
     lambda x, d, k: torch.logsumexp(x, d if d is not None else _all(x), k)),
]
DIMS = [((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), 2), ((3, 4, 5), -1), ((3, 4, 5), (0, 2)), ((3, 4, 5), (1, 2)),
        ((3, 4, 5), (-1, 0)), ((3, 4, 5), None), ((2, 1, 3, 4), (0, 2)), ((6,), 0), ((1, 7), 1), ((4, 1), 1),
        ((2, 3, 2, 3), (1, 3))]


@pytest.mark.parametrize("name,vf,tf", SUMLIKE, ids=[s[0] for s in SUMLIKE])
@pytest.mark.parametrize("shape,dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduce_dims(name, vf, tf, shape, dim, keepdim):
    x = spaced(*shape) if name in ("amax", "amin") else rand(*shape)
    dims = range(len(shape)) if dim is None else [dim] if isinstance(dim, int) else dim
    n = int(np.prod([shape[d] for d in dims]))
    # var/std of one element is NaN (n - 1 = 0) in both libraries: no finite difference then
    # std is curved where the spread is small: a smaller finite-difference step
    check_op(lambda t: vf(t, dim, keepdim), lambda t: tf(t, dim, keepdim), [x], fd=n > 1 or name not in ("var", "std"),
             fd_eps=1e-3 if name == "std" else 1e-2)


@pytest.mark.parametrize("name,vf,tf", SUMLIKE, ids=[s[0] for s in SUMLIKE])
@pytest.mark.parametrize("dim", [0, 1, -1, (0, 1), None])
def test_reduce_noncontiguous(name, vf, tf, dim):
    x = spaced(3, 4, 6) if name in ("amax", "amin") else rand(3, 4, 6)
    check_op(lambda t: vf(t, dim, False), lambda t: tf(t, dim, False), [x], noncontig=True,
             fd_eps=1e-3 if name == "std" else 1e-2)


@pytest.mark.parametrize("name,vf,tf", SUMLIKE, ids=[s[0] for s in SUMLIKE])
def test_reduce_zero_dim(name, vf, tf):
    x = np.array(0.7, dtype=np.float32)
    if name in ("var", "std"):  # n - 1 = 0: NaN in both
        check_op(lambda t: vf(t, None, False), lambda t: tf(t, None, False), [x], grad=False)
        return
    check_op(lambda t: vf(t, None, False), lambda t: tf(t, None, False), [x])
    check_op(lambda t: vf(t, 0, True), lambda t: tf(t, 0, True), [x])


@pytest.mark.parametrize("name,vf,tf", SUMLIKE, ids=[s[0] for s in SUMLIKE])
@pytest.mark.parametrize("shape,dim", [((20, 1000), 1), ((12000,), None), ((1000, 13), 0), ((4, 3000, 2), 1),
                                       ((2, 300, 300), (1, 2))])
def test_reduce_large(name, vf, tf, shape, dim):
    x = rand(*shape, low=-2, high=3)
    check_op(lambda t: vf(t, dim, False), lambda t: tf(t, dim, False), [x], rtol=1e-4, atol=1e-5, fd=False)


def test_large_all_reduce_fd_and_threads():
    x = rand(100, 150)
    check_op(lambda t: vitc.var(t), lambda t: torch.var(t), [x], rtol=1e-4)
    big = vitc.from_numpy(rand(400, 700))
    fns = (vitc.sum, vitc.var, vitc.amax, lambda t: vitc.logsumexp(t, (0, 1)), lambda t: vitc.mean(t, 0),
           lambda t: vitc.std(t, 1))
    assert_same_at_1_and_2_threads(lambda: [f(big).numpy().copy() for f in fns])  # any thread count, same bits


@pytest.mark.parametrize("kw", [dict(unbiased=False), dict(unbiased=True), dict(correction=0), dict(correction=2),
                                dict(correction=0.5)])
@pytest.mark.parametrize("op", ["var", "std"])
def test_var_correction(op, kw):
    x = rand(4, 9)
    vf, tf = getattr(vitc, op), getattr(torch, op)
    check_op(lambda t: vf(t, 1, **kw), lambda t: tf(t, 1, **kw), [x])
    check_op(lambda t: vf(t, **kw), lambda t: tf(t, **kw), [x])


def test_var_positional_unbiased_and_methods():
    a = rand(5, 6)
    x, t = vitc.from_numpy(a), torch.from_numpy(a)
    np.testing.assert_allclose(vitc.var(x, False).numpy(), torch.var(t, False).numpy(), rtol=1e-5)
    np.testing.assert_allclose(x.std(1, False, True).numpy(), t.std(1, False, True).numpy(), rtol=1e-5)
    np.testing.assert_allclose(x.var(0, correction=0).numpy(), t.var(0, correction=0).numpy(), rtol=1e-5)


def test_std_of_constant_has_zero_grad():
    x = vitc.ones(4, 3, requires_grad=True)
    vitc.std(x, 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((4, 3), np.float32))


def test_var_single_element_is_nan_like_torch():
    a = rand(3, 1)
    np.testing.assert_array_equal(np.isnan(vitc.var(vitc.from_numpy(a), 1).numpy()),
                                  np.isnan(torch.var(torch.from_numpy(a), 1).numpy()))


# ---- max / min ----

@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("shape,dim", [((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), -1), ((7,), 0), ((1, 6), 0),
                                       ((2, 1, 3), 1), ((), 0)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_dim(op, shape, dim, keepdim):
    x = spaced(*shape)
    vf, tf = getattr(vitc, op), getattr(torch, op)
    out = check_op(lambda t: tuple(vf(t, dim, keepdim)), lambda t: tuple(tf(t, dim, keepdim)), [x])
    assert out[1].dtype is vitc.int64


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_dim_noncontiguous_large(op):
    vf, tf = getattr(vitc, op), getattr(torch, op)
    check_op(lambda t: tuple(vf(t, 0)), lambda t: tuple(tf(t, 0)), [spaced(5, 7)], noncontig=True)
    check_op(lambda t: tuple(vf(t, 1)), lambda t: tuple(tf(t, 1)), [spaced(20, 1000, step=1e-3)], fd=False)
    check_op(lambda t: tuple(vf(t, 0)), lambda t: tuple(tf(t, 0)), [spaced(3000, 7, step=1e-3)], fd=False)
    check_op(lambda t: tuple(vf(t, 1)), lambda t: tuple(tf(t, 1)), [spaced(2, 30000, 2, step=1e-3)], fd=False)


def test_max_named_tuple():
    x = vitc.from_numpy(spaced(3, 4))
    r = vitc.max(x, 1)
    values, indices = r
    assert r.values is values and r.indices is indices and r[0] is values
    assert x.max(dim=1, keepdim=True).values.shape == (3, 1)
    assert x.min(0).indices.shape == (4,)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("shape", [(3, 4), (17,), (), (2, 3, 4)])
def test_max_min_all(op, shape):
    vf, tf = getattr(vitc, op), getattr(torch, op)
    check_op(vf, tf, [spaced(*shape)])
    if len(shape) >= 2:
        check_op(vf, tf, [spaced(*shape)], noncontig=True)
    check_op(lambda t: getattr(t, op)(), lambda t: getattr(t, op)(), [spaced(*shape)])


TIES = np.array([[1., 3., 3., 2.], [5., 0., 5., 5.], [-1., -1., -2., -2.]], np.float32)


@pytest.mark.parametrize("vf,tf", [
    (vitc.max, torch.max), (vitc.min, torch.min),
    (lambda t: vitc.amax(t, 1), lambda t: torch.amax(t, 1)), (lambda t: vitc.amin(t, 0), lambda t: torch.amin(t, 0)),
    (lambda t: vitc.amax(t), lambda t: torch.amax(t)),
    (lambda t: tuple(vitc.max(t, 1)), lambda t: tuple(torch.max(t, 1))),
    (lambda t: tuple(vitc.min(t, 0)), lambda t: tuple(torch.min(t, 0))),
], ids=["max", "min", "amax1", "amin0", "amax_all", "max_dim", "min_dim"])
def test_ties_match_torch(vf, tf):
    """max()/amax share the gradient evenly among ties; max(dim) gives it all to the first index."""
    check_op(vf, tf, [TIES], fd=False)


def test_nan_handling_matches_torch():
    a = np.array([[1., np.nan, 3., np.nan], [2., 0., 1., 2.]], np.float32)
    for vf, tf in [(vitc.max, torch.max), (vitc.min, torch.min), (lambda t: vitc.amax(t, 1), lambda t: torch.amax(t, 1)),
                   (lambda t: tuple(vitc.max(t, 1)), lambda t: tuple(torch.max(t, 1))),
                   (lambda t: tuple(vitc.min(t, 1)), lambda t: tuple(torch.min(t, 1))),
                   (lambda t: vitc.logsumexp(t, 1), lambda t: torch.logsumexp(t, 1))]:
        check_op(vf, tf, [a], fd=False)
    x, t = vitc.from_numpy(a), torch.from_numpy(a)
    assert vitc.argmax(x).item() == torch.argmax(t).item() == 1
    np.testing.assert_array_equal(vitc.argmin(x, 1).numpy(), torch.argmin(t, 1).numpy())


# ---- argmax / argmin ----

@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("shape,dim", [((3, 4, 5), 0), ((3, 4, 5), 2), ((3, 4, 5), -2), ((3, 4, 5), None),
                                       ((8,), None), ((), None), ((), 0), ((1, 1), 1)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_argmax_argmin(op, shape, dim, keepdim):
    a = rand(*shape)
    x, t = vitc.from_numpy(a), torch.from_numpy(a)
    v, r = getattr(vitc, op)(x, dim, keepdim), getattr(torch, op)(t, dim, keepdim)
    assert v.dtype is vitc.int64 and v.requires_grad is False
    np.testing.assert_array_equal(v.numpy(), r.numpy())
    assert v.shape == tuple(r.shape)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_ties_noncontig_large(op):
    a = np.round(rand(6, 50) * 2).astype(np.float32)  # many ties: first index wins
    for dim in (0, 1, None):
        np.testing.assert_array_equal(getattr(vitc, op)(vitc.from_numpy(a), dim).numpy(),
                                      getattr(torch, op)(torch.from_numpy(a), dim).numpy())
    b = np.ascontiguousarray(a.T)
    xt, tt = vitc.from_numpy(b).transpose(0, 1), torch.from_numpy(b).transpose(0, 1)
    for dim in (0, 1, None):
        np.testing.assert_array_equal(getattr(xt, op)(dim).numpy(), getattr(tt, op)(dim).numpy())
    big = spaced(50000, step=1e-3)
    assert getattr(vitc, op)(vitc.from_numpy(big)).item() == getattr(torch, op)(torch.from_numpy(big)).item()


# ---- logsumexp ----

def test_logsumexp_stable_and_infinite():
    a = np.array([[1000., 1000.5, 999.], [-1000., -1001., -999.5]], np.float32)
    check_op(lambda t: vitc.logsumexp(t, 1), lambda t: torch.logsumexp(t, 1), [a], fd=False)
    inf = np.array([[-np.inf, -np.inf], [np.inf, 0.], [-np.inf, 1.]], np.float32)
    np.testing.assert_array_equal(vitc.logsumexp(vitc.from_numpy(inf), 1).numpy(),
                                  torch.logsumexp(torch.from_numpy(inf), 1).numpy())


# ---- empty tensors ----

@pytest.mark.parametrize("vf,tf", [
    (lambda t: vitc.sum(t), lambda t: torch.sum(t)),
    (lambda t: vitc.sum(t, 0), lambda t: torch.sum(t, 0)),
    (lambda t: vitc.sum(t, 1), lambda t: torch.sum(t, 1)),
    (lambda t: vitc.mean(t, 0), lambda t: torch.mean(t, 0)),
    (lambda t: vitc.mean(t), lambda t: torch.mean(t)),
    (lambda t: vitc.var(t, 0), lambda t: torch.var(t, 0)),
    (lambda t: vitc.std(t), lambda t: torch.std(t)),
    (lambda t: vitc.logsumexp(t, 0), lambda t: torch.logsumexp(t, 0)),
    (lambda t: vitc.amax(t, 1), lambda t: torch.amax(t, 1)),
    (lambda t: tuple(vitc.max(t, 1)), lambda t: tuple(torch.max(t, 1))),
    (lambda t: vitc.argmin(t, 1), lambda t: torch.argmin(t, 1)),
], ids=["sum", "sum0", "sum1", "mean0", "mean", "var0", "std", "lse0", "amax1", "max1", "argmin1"])
def test_empty_matches_torch(vf, tf, request):
    grad = "argmin" not in request.node.callspec.id
    check_op(vf, tf, [np.zeros((0, 3), np.float32)], fd=False, grad=grad)


@pytest.mark.parametrize("fn,exc", [
    (lambda x: vitc.max(x), RuntimeError), (lambda x: vitc.min(x), RuntimeError),
    (lambda x: vitc.amax(x), RuntimeError), (lambda x: vitc.max(x, 0), IndexError),
    (lambda x: vitc.amin(x, 0), IndexError), (lambda x: vitc.argmax(x), IndexError),
    (lambda x: vitc.argmin(x, 0), IndexError),
])
def test_empty_extremes_raise(fn, exc):
    with pytest.raises(exc, match="non-zero size|numel"):
        fn(vitc.zeros(0, 3))


# ---- bad input ----

@pytest.mark.parametrize("fn", [
    lambda x: vitc.sum(x, 3), lambda x: vitc.mean(x, -4), lambda x: vitc.var(x, 5), lambda x: vitc.std(x, (0, 3)),
    lambda x: vitc.max(x, 3), lambda x: vitc.min(x, -4), lambda x: vitc.amax(x, 3), lambda x: vitc.argmax(x, 3),
    lambda x: vitc.logsumexp(x, 7)])
def test_dim_out_of_range(fn):
    x = vitc.zeros(2, 3, 4)
    with pytest.raises(IndexError, match="out of range"):
        fn(x)
    with pytest.raises(ValueError):  # vitc.IndexError is also a ValueError
        fn(x)


@pytest.mark.parametrize("fn", [lambda x: vitc.sum(x, (0, 0)), lambda x: vitc.var(x, (1, -2)),
                                lambda x: vitc.amax(x, (2, 2)), lambda x: vitc.logsumexp(x, (0, -3))])
def test_repeated_dim(fn):
    with pytest.raises(ValueError, match="more than once"):
        fn(vitc.zeros(2, 3, 4))


@pytest.mark.parametrize("fn", [
    lambda x: vitc.sum(x, 1.0), lambda x: vitc.var(x, "a"), lambda x: vitc.max(x, (0, 1)),
    lambda x: vitc.argmax(x, 0.5), lambda x: vitc.max(x, keepdim=True), lambda x: vitc.var(x, 0, True, correction=1),
    lambda x: vitc.var(x, unbiased=1), lambda x: vitc.max(x, x), lambda x: vitc.amin(x, [0, True])])
def test_bad_arguments(fn):
    with pytest.raises(TypeError):
        fn(vitc.zeros(2, 3))


@pytest.mark.parametrize("fn", [vitc.var, vitc.std, vitc.max, vitc.amax, vitc.argmin, lambda x: vitc.logsumexp(x, 0),
                                lambda x: vitc.max(x, 0), vitc.mean])
def test_int_tensor_type_error(fn):
    with pytest.raises(TypeError, match="float32"):
        fn(vitc.tensor([1, 2, 3]))
    with pytest.raises(TypeError):
        fn(np.ones(3, np.float32))


def test_int_sum_and_sum_to_still_work():
    assert vitc.sum(vitc.tensor([1, 2, 3])).item() == 6
    assert vitc.tensor([[1, 2], [3, 4]]).sum(0).tolist() == [4, 6]
    # broadcasting backward goes through vt_k_sum_to
    a, b = rand(5, 3, 4), rand(3, 1)
    check_op(lambda x, y: x * y, lambda x, y: x * y, [a, b])
    a, b = rand(40000, 3), rand(3)
    check_op(lambda x, y: x + y, lambda x, y: x + y, [a, b], grad_rtol=1e-4, fd=False)


def test_methods_registered():
    x = vitc.from_numpy(spaced(3, 4))
    for name in ("sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp"):
        assert callable(getattr(x, name)) and name in vitc._ops.reduce.__all__ and hasattr(vitc, name)
    assert x.logsumexp(1).shape == (3,) and x.amax(0, True).shape == (1, 4) and x.argmax(1).shape == (3,)


# ---- allocation failure: MemoryError, nothing leaked ----

def _no_leak_under_oom(fn, shape=(6, 5, 4)):
    arr = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def run():
        x = vitc.from_numpy(arr.copy()).requires_grad_()
        (fn(x) * 2.0).sum().backward()

    check_allocation_failures(run, attempts=40)


@pytest.mark.parametrize("fn", [lambda x: vitc.var(x, (0, 2)), lambda x: vitc.std(x, 1, keepdim=True),
                                lambda x: vitc.amax(x, 1), vitc.max, lambda x: vitc.max(x, 1).values,
                                lambda x: vitc.logsumexp(x, -1), lambda x: vitc.mean(x.transpose(0, 2), 0),
                                lambda x: vitc.argmin(x, 1).float().sum() + x.sum()],
                         ids=["var", "std", "amax", "max", "max_dim", "logsumexp", "mean", "argmin"])
def test_allocation_failure_raises_and_leaks_nothing(fn):
    _no_leak_under_oom(fn)


def test_precision_long_reductions():
    a = (np.random.default_rng(3).random(1_000_000) + 1).astype(np.float32)
    ref = a.astype(np.float64).sum()
    assert abs(float(vitc.sum(vitc.from_numpy(a))) - ref) <= 1e-6 * ref
    b = a.reshape(500, 2000)
    np.testing.assert_allclose(vitc.var(vitc.from_numpy(b), 1).numpy(), b.astype(np.float64).var(1, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(vitc.sum(vitc.from_numpy(b), 0).numpy(), b.astype(np.float64).sum(0), rtol=1e-6)


@pytest.mark.parametrize("vf,tf", [
    (lambda t: vitc.var(t, 2).transpose(0, 1), lambda t: torch.var(t, 2).transpose(0, 1)),
    (lambda t: vitc.max(t, 2).values.transpose(0, 1), lambda t: torch.max(t, 2).values.transpose(0, 1)),
    (lambda t: vitc.amin(t, 1, True).transpose(0, 2), lambda t: torch.amin(t, 1, True).transpose(0, 2)),
    (lambda t: vitc.logsumexp(t, 0).transpose(0, 1), lambda t: torch.logsumexp(t, 0).transpose(0, 1)),
    (lambda t: vitc.sum(t, 1).transpose(0, 1), lambda t: torch.sum(t, 1).transpose(0, 1)),
], ids=["var", "max_dim", "amin", "logsumexp", "sum"])
def test_noncontiguous_upstream_gradient(vf, tf):
    check_op(vf, tf, [spaced(3, 4, 5)])
