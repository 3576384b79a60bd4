"""Norm ops (layer_norm, batch_norm, token_batch_norm) against PyTorch, forward and backward,
running statistics, finite differences and bad inputs."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import assert_close, assert_same_at_1_and_2_threads, check_allocation_failures, check_op, rand

RNG = np.random.default_rng(7)


def _v(a, grad=False):
    t = vitc.from_numpy(np.ascontiguousarray(a).copy())
    t.requires_grad = grad
    return t


def _t(a, grad=False):
    return torch.from_numpy(np.ascontiguousarray(a).copy()).requires_grad_(grad)


# ---- layer_norm ---------------------------------------------------------------------------------

LN_CASES = [((4, 7), (7,)), ((2, 3, 8), (8,)), ((2, 3, 4, 5), (4, 5)), ((1, 6), (6,)), ((3, 1), (1,)),
            ((5,), (5,)), ((0, 5), (5,)), ((2, 0, 3), (3,)),
            ((19, 37), (37,)),  # rows in blocks of 8 and a 3-row rest; 8-lane sums and a 5-value rest
            ((13, 64), (64,)), ((3, 5, 96), (96,))]  # short rows eight at a time (lane sums), a 5-row and 7-row rest


@pytest.mark.parametrize("shape,ns", LN_CASES)
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm_parity(shape, ns, affine):
    x = rand(*shape, low=-2, high=3)
    w, b = rand(*ns, low=0.5, high=1.5), rand(*ns)
    ins = [x] + ([w] if affine in ("both", "weight") else []) + ([b] if affine in ("both", "bias") else [])

    def call(fn, *a):
        wa = a[1] if affine in ("both", "weight") else None
        ba = a[-1] if affine in ("both", "bias") else None
        return fn(a[0], ns, wa, ba, 1e-5)

    check_op(lambda *a: call(vitc.layer_norm, *a), lambda *a: call(F.layer_norm, *a), ins, rtol=1e-5, atol=1e-5,
             grad_rtol=1e-4, grad_atol=1e-4 if ns == (1,) else 1e-5, fd=0 not in shape, fd_rtol=3e-2)


def test_layer_norm_noncontiguous():
    x, w, b = rand(6, 9), rand(9), rand(9)  # x is fed as a transposed (strided) view
    check_op(lambda x, w, b: vitc.layer_norm(x, 9, w, b), lambda x, w, b: F.layer_norm(x, (9,), w, b),
             [x, w, b], noncontig=True, atol=1e-5, fd_rtol=3e-2)


def test_layer_norm_eps_and_size_one_rows():
    x = rand(4, 1)  # D = 1: x̂ = 0, output = bias, exact zero gradient (torch's is rounding noise · rstd)
    check_op(lambda x: vitc.layer_norm(x, (1,), eps=1e-6), lambda x: F.layer_norm(x, (1,), eps=1e-6), [x],
             grad_atol=1e-3)
    x = rand(3, 16)
    check_op(lambda x: vitc.layer_norm(x, (16,), eps=1e-6), lambda x: F.layer_norm(x, (16,), eps=1e-6), [x],
             atol=1e-5)


def test_layer_norm_large_rows_parallel():
    x, w, b = rand(3, 20000, low=-4, high=5), rand(20000), rand(20000)
    check_op(lambda x, w, b: vitc.layer_norm(x, (20000,), w, b), lambda x, w, b: F.layer_norm(x, (20000,), w, b),
             [x, w, b], rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-5, fd=False)
    x = rand(300, 256)  # many rows: the parallel row loop and the chunked dγ/dβ reduction
    w, b = rand(256), rand(256)
    check_op(lambda x, w, b: vitc.layer_norm(x, (256,), w, b), lambda x, w, b: F.layer_norm(x, (256,), w, b),
             [x, w, b], rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-4, fd=False)


def test_layer_norm_large_offset_is_stable():
    # mean 1e4 with unit spread: float64 reference, no cancellation in the variance
    x = (1e4 + RNG.standard_normal((8, 64))).astype(np.float32)
    ref = F.layer_norm(torch.from_numpy(x).double(), (64,)).numpy()
    assert_close(vitc.layer_norm(_v(x), (64,)).numpy(), ref, 1e-3, 1e-3, "layer_norm at mean 1e4")


@pytest.mark.parametrize("d", [64, 37])
def test_layer_norm_nan_stays_in_its_row(d):
    # the short-row path (d = 64) computes eight rows' statistics in one vector: a NaN must not leak
    x = rand(11, d)
    x[3, 5] = np.nan
    x[9, 0] = np.inf
    y = vitc.layer_norm(_v(x), (d,)).numpy()
    bad = ~np.isfinite(y).all(axis=1)
    assert bad.tolist() == [r in (3, 9) for r in range(11)]
    assert np.isnan(y[3]).all()


def test_layer_norm_errors():
    x = _v(rand(2, 3, 4))
    with pytest.raises(ValueError, match="weight has shape"):
        vitc.layer_norm(x, (4,), _v(rand(5)))
    with pytest.raises(ValueError, match="bias has shape"):
        vitc.layer_norm(x, (4,), None, _v(rand(4, 1)))
    with pytest.raises(ValueError, match="normalized_shape"):
        vitc.layer_norm(x, (3,))
    with pytest.raises(ValueError, match="normalized_shape"):
        vitc.layer_norm(x, (1, 2, 3, 4))
    with pytest.raises(TypeError, match="input must be float32"):
        vitc.layer_norm(vitc.zeros(2, 4, dtype=vitc.int64), (4,))
    with pytest.raises(TypeError, match="weight must be float32"):
        vitc.layer_norm(x, (4,), vitc.ones(4, dtype=vitc.int64))
    with pytest.raises(TypeError, match="normalized_shape"):
        vitc.layer_norm(x, "4")
    with pytest.raises(ValueError, match="eps"):
        vitc.layer_norm(x, (4,), eps=-1.0)
    with pytest.raises(ValueError, match="must not be empty"):
        vitc.layer_norm(x, ())


# ---- batch_norm ---------------------------------------------------------------------------------

BN_SHAPES = [(8, 3), (4, 3, 5), (2, 3, 4, 5), (2, 1, 3), (3, 20, 2)]


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_parity(shape, affine):
    C = shape[1]
    x = rand(*shape, low=-1, high=3)
    ins = [x] + ([rand(C, low=0.5, high=1.5), rand(C)] if affine else [])

    def call(fn, x, *wb):
        return fn(x, None, None, *(wb or (None, None)), training=True, eps=1e-5)

    check_op(lambda *a: call(vitc.batch_norm, *a), lambda *a: call(F.batch_norm, *a), ins, rtol=1e-5, atol=1e-5,
             grad_rtol=1e-4, grad_atol=1e-5, fd_rtol=3e-2)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_eval_parity(shape):
    C = shape[1]
    rm, rv = rand(C), rand(C, low=0.5, high=2.0)
    x, w, b = rand(*shape), rand(C), rand(C)
    vr, tr = (_v(rm), _v(rv)), (_t(rm), _t(rv))
    check_op(lambda x, w, b: vitc.batch_norm(x, *vr, w, b, training=False),
             lambda x, w, b: F.batch_norm(x, *tr, w, b, training=False), [x, w, b], atol=1e-5)
    # eval never touches the running statistics
    assert_close(vr[0].numpy(), rm, 0, 0, "running_mean")
    assert_close(vr[1].numpy(), rv, 0, 0, "running_var")


def test_batch_norm_noncontiguous():
    w, b = rand(5), rand(5)  # x is fed as a transposed (strided) view
    check_op(lambda x, w, b: vitc.batch_norm(x, None, None, w, b, training=True),
             lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [rand(4, 5, 6), w, b],
             noncontig=True, atol=1e-5, fd_rtol=3e-2)


@pytest.mark.parametrize("shape", [(16, 3), (6, 4, 7), (3, 5, 4, 6)])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batch_norm_running_stats(shape, momentum):
    C = shape[1]
    vrm, vrv = vitc.zeros(C), vitc.ones(C)
    trm, trv = torch.zeros(C), torch.ones(C)
    for step in range(5):
        x = (RNG.standard_normal(shape) * (1 + step) + step).astype(np.float32)
        y = vitc.batch_norm(_v(x), vrm, vrv, training=True, momentum=momentum)
        ty = F.batch_norm(_t(x), trm, trv, training=True, momentum=momentum)
        assert_close(y.numpy(), ty.numpy(), 1e-5, 1e-5, f"output at step {step}")
        assert_close(vrm.numpy(), trm.numpy(), 1e-6, 1e-6, f"running_mean at step {step}")
        assert_close(vrv.numpy(), trv.numpy(), 1e-6, 1e-6, f"running_var at step {step}")
    x = rand(*shape)  # eval with the accumulated statistics
    assert_close(vitc.batch_norm(_v(x), vrm, vrv).numpy(), F.batch_norm(_t(x), trm, trv).numpy(), 1e-5, 1e-5, "eval")


def test_batch_norm_many_values_per_channel():
    # n = 8·40·40 = 12800 values per channel
    x = (RNG.standard_normal((8, 4, 40, 40)) * 2 + 3).astype(np.float32)
    w, b = rand(4), rand(4)
    vrm, vrv, trm, trv = vitc.zeros(4), vitc.ones(4), torch.zeros(4), torch.ones(4)
    check_op(lambda x, w, b: vitc.batch_norm(x, None, None, w, b, training=True),
             lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b],
             rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-5, fd=False)
    vitc.batch_norm(_v(x), vrm, vrv, training=True)
    F.batch_norm(_t(x), trm, trv, training=True)
    assert_close(vrm.numpy(), trm.numpy(), 1e-6, 1e-6, "running_mean")
    assert_close(vrv.numpy(), trv.numpy(), 1e-6, 1e-6, "running_var")
    # (N, C) with 20000 rows: column reductions. Against a float64 reference vitc is within 1e-6;
    # torch's own error here reaches ~2e-5 (its float32 variance of a mean-5 column), hence atol
    x2 = (RNG.standard_normal((20000, 3)) + 5).astype(np.float32)
    x64 = x2.astype(np.float64)
    ref = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    assert_close(vitc.batch_norm(_v(x2), None, None, training=True).numpy(), ref, 0, 2e-6, "float64 reference")
    check_op(lambda x: vitc.batch_norm(x, None, None, training=True),
             lambda x: F.batch_norm(x, None, None, training=True), [x2], rtol=1e-4, atol=5e-5, fd=False)


def test_batch_norm_large_offset_is_stable():
    # mean 1e4, unit spread: compare with float64 torch (statistics and output must not cancel)
    for shape, fn, ref in (((6, 3, 40), vitc.batch_norm, lambda x, rm, rv: F.batch_norm(x, rm, rv, training=True)),
                           ((5, 30, 4), vitc.token_batch_norm,
                            lambda x, rm, rv: F.batch_norm(x.transpose(1, 2), rm, rv, training=True).transpose(1, 2))):
        x = (1e4 + RNG.standard_normal(shape)).astype(np.float32)
        C = shape[1] if fn is vitc.batch_norm else shape[2]
        rm, rv = vitc.zeros(C), vitc.ones(C)
        trm, trv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
        y = fn(_v(x), rm, rv, training=True)
        ty = ref(torch.from_numpy(x).double(), trm, trv)
        assert_close(y.numpy(), ty.numpy(), 1e-3, 2e-3, "output at mean 1e4")
        assert_close(rv.numpy(), trv.numpy(), 1e-3, 1e-4, "running_var at mean 1e4")
        assert_close(rm.numpy(), trm.numpy(), 1e-6, 0, "running_mean at mean 1e4")


def test_batch_norm_backward_uses_saved_stats():
    # eval backward must not see a running_var changed after the forward
    x, rv = rand(5, 3), rand(3, low=0.5, high=2)
    vx, vrm, vrv = _v(x, True), vitc.zeros(3), _v(rv)
    y = vitc.batch_norm(vx, vrm, vrv)
    with vitc.no_grad():
        vrv.fill_(100.0)
    y.sum().backward()
    tx = _t(x, True)
    F.batch_norm(tx, torch.zeros(3), _t(rv)).sum().backward()
    assert_close(vx.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-6, "grad")


def test_batch_norm_empty_batch():
    rm, rv = vitc.zeros(3), vitc.ones(3)
    y = vitc.batch_norm(vitc.zeros(0, 3), rm, rv, training=True)
    assert y.shape == (0, 3)
    assert_close(rm.numpy(), np.zeros(3, np.float32), 0, 0, "running_mean untouched")


def test_batch_norm_errors():
    x = _v(rand(4, 3, 2))
    rm, rv = vitc.zeros(3), vitc.ones(3)
    with pytest.raises(ValueError, match="weight has shape"):
        vitc.batch_norm(x, rm, rv, _v(rand(4)), training=True)
    with pytest.raises(ValueError, match="bias has shape"):
        vitc.batch_norm(x, rm, rv, None, _v(rand(3, 1)), training=True)
    with pytest.raises(TypeError, match="input must be float32"):
        vitc.batch_norm(vitc.zeros(4, 3, dtype=vitc.int64), rm, rv, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        vitc.batch_norm(_v(rand(1, 3)), rm, rv, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        vitc.batch_norm(_v(rand(1, 3, 1)), None, None, training=True)
    vitc.batch_norm(_v(rand(1, 3)), rm, rv, training=False)  # one value is fine in eval
    with pytest.raises(ValueError, match=r"running_mean has shape \(4,\)"):
        vitc.batch_norm(x, vitc.zeros(4), rv, training=True)
    with pytest.raises(ValueError, match="running_var has shape"):
        vitc.batch_norm(x, rm, vitc.ones(3, 1), training=True)
    with pytest.raises(TypeError, match="running_var must be float32"):
        vitc.batch_norm(x, rm, vitc.ones(3, dtype=vitc.int64), training=True)
    with pytest.raises(RuntimeError, match="must not require grad"):
        vitc.batch_norm(x, vitc.zeros(3, requires_grad=True), rv, training=True)
    with pytest.raises(ValueError, match="required when training is False"):
        vitc.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="both be given"):
        vitc.batch_norm(x, rm, None, training=True)
    with pytest.raises(ValueError, match="shares memory"):
        vitc.batch_norm(x, rm, rm, training=True)
    with pytest.raises(ValueError, match=r"shape \(N, C, \*\)"):
        vitc.batch_norm(_v(rand(3)), vitc.zeros(3), vitc.ones(3))
    with pytest.raises(TypeError, match="momentum"):
        vitc.batch_norm(x, rm, rv, training=True, momentum=None)
    # a failing call leaves the running statistics untouched
    assert_close(rm.numpy(), np.zeros(3, np.float32), 0, 0, "running_mean")
    assert_close(rv.numpy(), np.ones(3, np.float32), 0, 0, "running_var")


# ---- token_batch_norm ---------------------------------------------------------------------------

def _bn1d_ref(F_, momentum=0.1, affine=True):
    m = torch.nn.BatchNorm1d(F_, momentum=momentum, affine=affine)
    return m


@pytest.mark.parametrize("shape", [(4, 5, 6), (2, 17, 64), (3, 1, 4), (1, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_token_batch_norm_vs_batchnorm1d(shape, affine):
    B, T, Fd = shape
    ref = torch.nn.BatchNorm1d(Fd, affine=affine)
    w0, b0 = rand(Fd, low=0.5, high=1.5), rand(Fd)
    if affine:
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(w0))
            ref.bias.copy_(torch.from_numpy(b0))
    vw, vb = (_v(w0, True), _v(b0, True)) if affine else (None, None)
    vrm, vrv = vitc.zeros(Fd), vitc.ones(Fd)
    for step in range(3):
        x = (RNG.standard_normal(shape) * (step + 1) - step).astype(np.float32)
        g = RNG.standard_normal(shape).astype(np.float32)
        vx, tx = _v(x, True), _t(x, True)
        y = vitc.token_batch_norm(vx, vrm, vrv, vw, vb, training=True)
        ref.train()
        ty = ref(tx.transpose(1, 2)).transpose(1, 2)
        assert_close(y.detach().numpy(), ty.detach().numpy(), 1e-5, 1e-5, "output")
        (y * _v(g)).sum().backward()
        (ty * _t(g)).sum().backward()
        assert_close(vx.grad.numpy(), tx.grad.numpy(), 1e-4, 1e-5, "grad x")
        if affine:
            assert_close(vw.grad.numpy(), ref.weight.grad.numpy(), 1e-4, 1e-5, "grad weight")
            assert_close(vb.grad.numpy(), ref.bias.grad.numpy(), 1e-4, 1e-5, "grad bias")
        assert_close(vrm.numpy(), ref.running_mean.numpy(), 1e-6, 1e-6, "running_mean")
        assert_close(vrv.numpy(), ref.running_var.numpy(), 1e-6, 1e-6, "running_var")
    # eval mode
    x = rand(*shape)
    ref.eval()
    ty = ref(_t(x).transpose(1, 2)).transpose(1, 2)
    y = vitc.token_batch_norm(_v(x), vrm, vrv, vw, vb, training=False)
    assert_close(y.detach().numpy(), ty.detach().numpy(), 1e-5, 1e-5, "eval output")


def test_token_batch_norm_check_op_train_eval():
    x, w, b = rand(3, 7, 5, low=-1, high=2), rand(5), rand(5)
    check_op(lambda x, w, b: vitc.token_batch_norm(x, None, None, w, b, training=True),
             lambda x, w, b: F.batch_norm(x.transpose(1, 2), None, None, w, b, training=True).transpose(1, 2),
             [x, w, b], atol=1e-5, fd_rtol=3e-2)
    rm, rv = rand(5), rand(5, low=0.5, high=2)
    check_op(lambda x, w, b: vitc.token_batch_norm(x, _v(rm), _v(rv), w, b),
             lambda x, w, b: F.batch_norm(x.transpose(1, 2), _t(rm), _t(rv), w, b).transpose(1, 2),
             [x, w, b], atol=1e-5)


def test_token_batch_norm_noncontiguous():
    # a (B, F, T) tensor viewed as (B, T, F)
    w, b = rand(4), rand(4)
    check_op(lambda x, w, b: vitc.token_batch_norm(x, None, None, w, b, training=True),
             lambda x, w, b: F.batch_norm(x.transpose(1, 2), None, None, w, b, training=True).transpose(1, 2),
             [rand(3, 6, 4), w, b], noncontig=True, atol=1e-5, fd_rtol=3e-2)


def test_token_batch_norm_many_rows():
    # B·T = 100·128 = 12800 values per feature
    x = (RNG.standard_normal((100, 128, 16)) * 3 + 1).astype(np.float32)
    w, b = rand(16), rand(16)
    check_op(lambda x, w, b: vitc.token_batch_norm(x, None, None, w, b, training=True),
             lambda x, w, b: F.batch_norm(x.transpose(1, 2), None, None, w, b, training=True).transpose(1, 2),
             [x, w, b], rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-5, fd=False)


def test_token_batch_norm_errors():
    rm, rv = vitc.zeros(4), vitc.ones(4)
    with pytest.raises(ValueError, match=r"\(B, T, F\)"):
        vitc.token_batch_norm(_v(rand(5, 4)), rm, rv, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        vitc.token_batch_norm(_v(rand(1, 1, 4)), rm, rv, training=True)
    with pytest.raises(ValueError, match="weight has shape"):
        vitc.token_batch_norm(_v(rand(2, 3, 4)), rm, rv, _v(rand(3)), training=True)
    with pytest.raises(ValueError, match="running_mean has shape"):
        vitc.token_batch_norm(_v(rand(2, 3, 4)), vitc.zeros(3), rv, training=True)
    with pytest.raises(TypeError, match="input must be float32"):
        vitc.token_batch_norm(vitc.zeros(2, 3, 4, dtype=vitc.int64), rm, rv, training=True)


# ---- memory: no leaks, allocation failures raise MemoryError and leak nothing -------------------

def _norm_workload():
    x = _v(rand(4, 3, 5), True)
    w, b = _v(rand(5), True), _v(rand(5), True)
    wc, bc = _v(rand(3), True), _v(rand(3), True)
    rm, rv = vitc.zeros(3), vitc.ones(3)
    rm5, rv5 = vitc.zeros(5), vitc.ones(5)
    y = vitc.layer_norm(x, (5,), w, b).sum()
    y = y + vitc.batch_norm(x, rm, rv, wc, bc, training=True).sum()
    y = y + vitc.batch_norm(x, rm, rv, wc, bc, training=False).sum()
    y = y + vitc.token_batch_norm(x, rm5, rv5, w, b, training=True).sum()
    y.backward()


def test_norm_no_leaks_and_allocation_failures():
    check_allocation_failures(_norm_workload, attempts=60)


def test_norm_results_do_not_depend_on_thread_count():
    x, w = rand(64, 40, 96), rand(96)
    xt = rand(6, 3, 50, 60)

    def run():
        vx, vw = _v(x, True), _v(w, True)
        y = vitc.layer_norm(vx, (96,), vw)
        y.backward(_v(x))
        rm, rv = vitc.zeros(96), vitc.ones(96)
        t = vitc.token_batch_norm(_v(x), rm, rv, training=True)
        b = vitc.batch_norm(_v(xt), None, None, training=True)
        return [a.detach().numpy().copy() for a in (y, vx.grad, vw.grad, t, rm, rv, b)]

    assert_same_at_1_and_2_threads(run)
