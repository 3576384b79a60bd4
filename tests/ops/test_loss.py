"""Loss ops (cross_entropy, nll_loss, binary_cross_entropy_with_logits, kl_div, mse_loss) against
PyTorch: values and input gradients for every reduction, finite differences, bad targets."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import (assert_close, assert_same_at_1_and_2_threads, check_allocation_failures, check_op,
                     finite_difference, rand)

RNG = np.random.default_rng(11)
REDUCTIONS = ["none", "mean", "sum"]


def labels(shape, K, ignore=None, frac=0.25):
    t = RNG.integers(0, K, size=shape).astype(np.int64)
    if ignore is not None:
        t[RNG.uniform(size=shape) < frac] = ignore
    return t


def probs(N, K, *rest):
    p = RNG.dirichlet(np.ones(K), size=(N,) + rest).astype(np.float32)  # (N, *rest, K)
    return np.ascontiguousarray(np.moveaxis(p, -1, 1))                   # (N, K, *rest)


def _v(a):
    return vitc.from_numpy(np.ascontiguousarray(a).copy())


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a).copy())


# ---- cross_entropy ------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("N,K", [(6, 5), (1, 3), (9, 1), (4, 10), (3, 16), (3, 17)])  # rows of <= 16 classes padded to 16 lanes
def test_cross_entropy_class_indices(reduction, ls, N, K):
    x, t = rand(N, K, low=-3, high=3), labels((N,), K)
    check_op(lambda x, t: vitc.cross_entropy(x, t, reduction=reduction, label_smoothing=ls),
             lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=ls), [x, t],
             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.1, 0.5])
def test_cross_entropy_soft_targets(reduction, ls):
    x, y = rand(7, 6, low=-3, high=3), probs(7, 6)
    # the target gets a gradient too (torch's: w·(1−ε)·(lse − x))
    check_op(lambda x, y: vitc.cross_entropy(x, y, reduction=reduction, label_smoothing=ls),
             lambda x, y: F.cross_entropy(x, y, reduction=reduction, label_smoothing=ls), [x, y],
             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("ignore", [-100, 2])
def test_cross_entropy_ignore_index(reduction, ls, ignore):
    x, t = rand(12, 5, low=-2, high=2), labels((12,), 5, ignore=ignore, frac=0.3)
    t[0] = ignore
    check_op(lambda x, t: vitc.cross_entropy(x, t, reduction=reduction, label_smoothing=ls, ignore_index=ignore),
             lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=ls, ignore_index=ignore),
             [x, t], rtol=1e-5, atol=1e-6)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    x, t = rand(3, 4), np.full(3, -100, np.int64)
    v = vitc.cross_entropy(_v(x), _v(t)).numpy()
    assert np.isnan(v) and np.isnan(F.cross_entropy(_t(x), _t(t)).numpy())
    assert_close(vitc.cross_entropy(_v(x), _v(t), reduction="sum").numpy(), np.float32(0), 0, 0, "sum")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.2])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_class_weights(reduction, ls, soft):
    K = 5
    x, w = rand(8, K, low=-2, high=2), rand(K, low=0.2, high=2.0)
    tgt = probs(8, K) if soft else labels((8,), K, ignore=-100, frac=0.2)
    check_op(lambda x, t, w: vitc.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=ls),
             lambda x, t, w: F.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=ls),
             [x, tgt, w], grad_inputs=[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial(reduction):
    # input (N, K, d1, d2), targets (N, d1, d2) or (N, K, d1, d2): strided class dim, no transpose
    x = rand(3, 5, 4, 2, low=-2, high=2)
    t = labels((3, 4, 2), 5, ignore=-100, frac=0.2)
    check_op(lambda x, t: vitc.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1),
             lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1), [x, t], atol=1e-6)
    y = probs(3, 5, 4, 2)
    check_op(lambda x, y: vitc.cross_entropy(x, y, reduction=reduction, label_smoothing=0.1),
             lambda x, y: F.cross_entropy(x, y, reduction=reduction, label_smoothing=0.1), [x, y], atol=1e-6)
    x3, t3 = rand(2, 4, 6), labels((2, 6), 4)
    check_op(lambda x, t: vitc.cross_entropy(x, t, reduction=reduction),
             lambda x, t: F.cross_entropy(x, t, reduction=reduction), [x3, t3], atol=1e-6)


def test_cross_entropy_unbatched():
    # input (K,) with a 0-d class index (built by hand: opcheck's np.ascontiguousarray makes 0-d 1-d)
    x = rand(6)
    for red in REDUCTIONS:
        vx = _v(x)
        vx.requires_grad = True
        tx = _t(x).requires_grad_()
        v = vitc.cross_entropy(vx, vitc.tensor(2), reduction=red, label_smoothing=0.1)
        r = F.cross_entropy(tx, torch.tensor(2), reduction=red, label_smoothing=0.1)
        assert v.shape == tuple(r.shape) == ()
        assert_close(v.detach().numpy(), r.detach().numpy(), 1e-6, 1e-6, "unbatched loss")
        v.backward()
        r.backward()
        assert_close(vx.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-6, "unbatched grad")
    y = probs(1, 6)[0]
    check_op(lambda x, y: vitc.cross_entropy(x, y), lambda x, y: F.cross_entropy(x, y), [x, y])


def test_cross_entropy_noncontiguous():
    x = rand(5, 7)
    check_op(lambda x, t: vitc.cross_entropy(x, t, label_smoothing=0.1),
             lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1), [x, labels((5,), 7)], noncontig=True)
    check_op(lambda x, y: vitc.cross_entropy(x, y), lambda x, y: F.cross_entropy(x, y), [x, probs(5, 7)],
             noncontig=True)


@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_large(soft):
    N, K = 512, 1000
    x = (RNG.standard_normal((N, K)) * 3).astype(np.float32)
    tgt = probs(N, K) if soft else labels((N,), K)
    for red in REDUCTIONS:
        check_op(lambda x, t: vitc.cross_entropy(x, t, reduction=red, label_smoothing=0.1),
                 lambda x, t: F.cross_entropy(x, t, reduction=red, label_smoothing=0.1), [x, tgt],
                 rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-6, fd=False, grad_inputs=[0])


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy_extreme_logits(ls):
    x = (RNG.choice([-1e4, 1e4], size=(6, 5)) + RNG.uniform(-3, 3, (6, 5))).astype(np.float32)
    x[0] = 1e4  # a row of ties
    x[1] = -1e4
    t = labels((6,), 5)
    y = probs(6, 5)
    for tgt in (t, y):
        for red in REDUCTIONS:
            vx = _v(x)
            vx.requires_grad = True
            tx = _t(x).requires_grad_()
            v = vitc.cross_entropy(vx, _v(tgt), reduction=red, label_smoothing=ls)
            r = F.cross_entropy(tx, _t(tgt), reduction=red, label_smoothing=ls)
            assert np.all(np.isfinite(v.detach().numpy()))
            assert_close(v.detach().numpy(), r.detach().numpy(), 1e-5, 1e-2, "extreme logits loss")
            v.sum().backward()
            r.sum().backward()
            assert np.all(np.isfinite(vx.grad.numpy()))
            assert_close(vx.grad.numpy(), tx.grad.numpy(), 1e-4, 1e-6, "extreme logits grad")


@pytest.mark.parametrize("K", [10, 40])
def test_cross_entropy_nan_logit_gives_nan_row(K):
    x, y = rand(4, K), probs(4, K)
    x[2, 3] = np.nan
    v = vitc.cross_entropy(_v(x), _v(y), reduction="none").numpy()
    assert np.isnan(v[2]) and np.isfinite(np.delete(v, 2)).all()


def test_cross_entropy_finite_differences_hard_smoothing():
    # check_op includes a central-difference check; make it explicit on a bigger, smoothed case
    x, t = rand(10, 8, low=-2, high=2), labels((10,), 8, ignore=-100)
    check_op(lambda x, t: vitc.cross_entropy(x, t, label_smoothing=0.3),
             lambda x, t: F.cross_entropy(x, t, label_smoothing=0.3), [x, t], fd_eps=5e-3, fd_rtol=1e-2)


def test_cross_entropy_bad_targets():
    x = _v(rand(4, 5))
    with pytest.raises(IndexError, match="target 5 is out of bounds for 5 classes"):
        vitc.cross_entropy(x, _v(np.array([0, 1, 5, 2])))
    with pytest.raises(ValueError, match="target -1 is out of bounds"):  # vitc.IndexError is a ValueError too
        vitc.cross_entropy(x, _v(np.array([0, -1, 1, 2])))
    with pytest.raises(IndexError, match="target 7"):
        vitc.cross_entropy(x, _v(np.array([0, 1, 7, 2])), reduction="none", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"class-index target has shape \(3,\), expected \(4,\)"):
        vitc.cross_entropy(x, _v(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="class-index target has shape"):
        vitc.cross_entropy(x, _v(np.zeros((4, 1), np.int64)))
    with pytest.raises(ValueError, match=r"float \(probability\) target has shape \(4, 6\)"):
        vitc.cross_entropy(x, _v(rand(4, 6)))
    with pytest.raises(TypeError, match="class-index targets must be int64, got float32"):
        vitc.cross_entropy(x, _v(np.array([0.0, 1.0, 2.0, 3.0], np.float32)))
    with pytest.raises(TypeError, match="target must be int64 class indices or float32"):
        vitc.cross_entropy(x, _v(np.array([True, False, True, True])))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        vitc.cross_entropy(x, _v(np.zeros(4, np.int64)), label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        vitc.cross_entropy(x, _v(np.zeros(4, np.int64)), label_smoothing=-0.1)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        vitc.cross_entropy(x, _v(np.zeros(4, np.int64)), reduction="avg")
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(5,\)"):
        vitc.cross_entropy(x, _v(np.zeros(4, np.int64)), weight=_v(rand(4)))
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        vitc.cross_entropy(x, _v(probs(4, 5)), ignore_index=1)
    with pytest.raises(TypeError, match="input must be float32"):
        vitc.cross_entropy(vitc.zeros(4, 5, dtype=vitc.int64), _v(np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match="unbatched input"):
        vitc.cross_entropy(_v(rand(5)), _v(np.zeros(2, np.int64)))
    with pytest.raises(TypeError, match="target must be a vitc.Tensor"):
        vitc.cross_entropy(x, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="no classes"):
        vitc.cross_entropy(vitc.zeros(4, 0), _v(np.zeros(4, np.int64)))


def test_cross_entropy_weight_grad_not_implemented():
    w = _v(rand(5, low=0.5, high=1))
    w.requires_grad = True
    x = _v(rand(3, 5))
    x.requires_grad = True
    loss = vitc.cross_entropy(x, _v(np.array([0, 1, 2])), weight=w)
    with pytest.raises(RuntimeError, match="derivative for 'weight' is not implemented"):
        loss.backward()


# ---- nll_loss -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(reduction, weighted):
    x, t, w = rand(9, 6, low=-4, high=0), labels((9,), 6, ignore=-100, frac=0.2), rand(6, low=0.3, high=2)
    if weighted:
        check_op(lambda x, t, w: vitc.nll_loss(x, t, weight=w, reduction=reduction),
                 lambda x, t, w: F.nll_loss(x, t, weight=w, reduction=reduction), [x, t, w], grad_inputs=[0])
    else:
        check_op(lambda x, t: vitc.nll_loss(x, t, reduction=reduction),
                 lambda x, t: F.nll_loss(x, t, reduction=reduction), [x, t])
    xs, ts = rand(2, 6, 3, 2), labels((2, 3, 2), 6, ignore=1)
    check_op(lambda x, t: vitc.nll_loss(x, t, reduction=reduction, ignore_index=1),
             lambda x, t: F.nll_loss(x, t, reduction=reduction, ignore_index=1), [xs, ts])


def test_nll_loss_matches_cross_entropy_on_log_softmax():
    x, t = rand(6, 4), labels((6,), 4)
    lp = torch.log_softmax(_t(x), 1).numpy()
    assert_close(vitc.nll_loss(_v(lp), _v(t)).numpy(), vitc.cross_entropy(_v(x), _v(t)).numpy(), 1e-6, 1e-6, "nll")


def test_nll_loss_errors():
    x = _v(rand(3, 4))
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes"):
        vitc.nll_loss(x, _v(np.array([0, 4, 1])))
    with pytest.raises(TypeError, match="target must be int64 class indices, got float32"):
        vitc.nll_loss(x, _v(rand(3, 4)))
    with pytest.raises(TypeError, match="class-index targets must be int64"):
        vitc.nll_loss(x, _v(rand(3)))
    with pytest.raises(ValueError, match="class-index target has shape"):
        vitc.nll_loss(x, _v(np.zeros(2, np.int64)))


# ---- binary_cross_entropy_with_logits -----------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 3), (7,), (), (2, 3, 4), (0, 3)])
def test_bce_with_logits(reduction, shape):
    z, y = rand(*shape, low=-6, high=6), rand(*shape, low=0, high=1)
    check_op(lambda z, y: vitc.binary_cross_entropy_with_logits(z, y, reduction=reduction),
             lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction=reduction), [z, y], atol=1e-6,
             fd=0 not in shape)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_weights(reduction):
    z, y = rand(5, 4, low=-5, high=5), rand(5, 4, low=0, high=1)
    w, pw = rand(4, low=0.2, high=2), rand(4, low=0.5, high=3)
    check_op(lambda z, y, w, pw: vitc.binary_cross_entropy_with_logits(z, y, w, reduction=reduction, pos_weight=pw),
             lambda z, y, w, pw: F.binary_cross_entropy_with_logits(z, y, w, reduction=reduction, pos_weight=pw),
             [z, y, w, pw], atol=1e-6, grad_atol=1e-5, grad_inputs=[0, 1])
    w2 = rand(5, 1, low=0.2, high=2)
    check_op(lambda z, y, w: vitc.binary_cross_entropy_with_logits(z, y, w, reduction=reduction),
             lambda z, y, w: F.binary_cross_entropy_with_logits(z, y, w, reduction=reduction), [z, y, w2], atol=1e-6,
             grad_inputs=[0, 1])
    # torch refuses gradients for weight and pos_weight; vitc gives them: finite differences
    ups = [rand(*((5, 4) if reduction == "none" else ()))]
    finite_difference(lambda z, y, w, pw: vitc.binary_cross_entropy_with_logits(z, y, w, reduction=reduction,
                                                                                 pos_weight=pw),
                      [z, y, w2, pw], [False, False, True, True], ups)


def test_bce_with_logits_noncontiguous_and_extreme():
    check_op(lambda z, y: vitc.binary_cross_entropy_with_logits(z, y),
             lambda z, y: F.binary_cross_entropy_with_logits(z, y), [rand(4, 6, low=-3, high=3), rand(4, 6, low=0, high=1)],
             noncontig=True)
    z = np.array([[-1e4, 1e4, -80.0, 80.0, 0.0, 30.0]], np.float32)
    y = np.array([[0.3, 0.7, 1.0, 0.0, 0.5, 1.0]], np.float32)
    for red in REDUCTIONS:
        check_op(lambda z, y: vitc.binary_cross_entropy_with_logits(z, y, reduction=red),
                 lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction=red), [z, y], rtol=1e-5, atol=1e-3,
                 fd=False)
        assert np.all(np.isfinite(vitc.binary_cross_entropy_with_logits(_v(z), _v(y), reduction=red).numpy()))


def test_bce_with_logits_errors():
    with pytest.raises(ValueError, match=r"target size \(3,\) must be the same as input size \(2, 3\)"):
        vitc.binary_cross_entropy_with_logits(_v(rand(2, 3)), _v(rand(3)))
    with pytest.raises(ValueError, match="pos_weight of shape"):
        vitc.binary_cross_entropy_with_logits(_v(rand(2, 3)), _v(rand(2, 3)), pos_weight=_v(rand(4)))
    with pytest.raises(TypeError, match="target must be float32"):
        vitc.binary_cross_entropy_with_logits(_v(rand(2, 3)), vitc.zeros(2, 3, dtype=vitc.int64))


# ---- kl_div -------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:reduction. .mean. divides")
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    inp = np.log(probs(6, 5)).astype(np.float32)
    p = 0.5 * probs(6, 5) + 0.1  # away from 0 so finite differences stay in the domain of log
    tgt = np.log(p).astype(np.float32) if log_target else p
    check_op(lambda a, b: vitc.kl_div(a, b, reduction=reduction, log_target=log_target),
             lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target), [inp, tgt], atol=1e-6,
             fd_eps=1e-3)


def test_kl_div_zero_targets_and_broadcast():
    inp = np.log(probs(4, 3)).astype(np.float32)
    tgt = probs(4, 3)
    tgt[0, 1] = 0.0  # 0·log 0 = 0 in the value; the gradient w.r.t. input is −target
    check_op(lambda a, b: vitc.kl_div(a, b, reduction="sum"), lambda a, b: F.kl_div(a, b, reduction="sum"),
             [inp, tgt], grad_inputs=[0], fd=False)
    check_op(lambda a, b: vitc.kl_div(a, b, reduction="batchmean"), lambda a, b: F.kl_div(a, b, reduction="batchmean"),
             [inp, tgt[:1].copy() + 0.1], atol=1e-6)


def test_kl_div_deit_soft_distillation_formula():
    # DeiT's soft distillation (arXiv 2012.12877 eq. 2, facebookresearch/deit:losses.py):
    # F.kl_div(log_softmax(zs/τ), log_softmax(zt/τ), 'sum', log_target=True)·τ²/(B·K)
    zs, zt, tau = rand(4, 10, low=-3, high=3), rand(4, 10, low=-3, high=3), 3.0
    ls = torch.log_softmax(_t(zs) / tau, 1).numpy()
    lt = torch.log_softmax(_t(zt) / tau, 1).numpy()
    v = vitc.kl_div(_v(ls), _v(lt), reduction="sum", log_target=True).numpy() * tau * tau / 40
    r = F.kl_div(_t(ls), _t(lt), reduction="sum", log_target=True).numpy() * tau * tau / 40
    assert_close(v, r, 1e-5, 1e-7, "distillation")


def test_kl_div_errors():
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        vitc.kl_div(_v(rand(2, 3)), _v(rand(2, 3)), reduction="batch")
    with pytest.raises(ValueError, match="cannot be broadcast"):
        vitc.kl_div(_v(rand(2, 3)), _v(rand(2, 4)))
    with pytest.raises(TypeError, match="target must be float32"):
        vitc.kl_div(_v(rand(2, 3)), vitc.zeros(2, 3, dtype=vitc.int64))


# ---- mse_loss -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 3), (), (2, 3, 5), (0, 2)])
def test_mse_loss(reduction, shape):
    check_op(lambda a, b: vitc.mse_loss(a, b, reduction=reduction),
             lambda a, b: F.mse_loss(a, b, reduction=reduction), [rand(*shape), rand(*shape)], fd=0 not in shape)


def test_mse_loss_broadcast_noncontig_large():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for red in REDUCTIONS:
            check_op(lambda a, b: vitc.mse_loss(a, b, reduction=red), lambda a, b: F.mse_loss(a, b, reduction=red),
                     [rand(4, 3), rand(3)])
        with pytest.warns(UserWarning, match="different to the input size"):
            vitc.mse_loss(_v(rand(4, 3)), _v(rand(3)))
    check_op(lambda a, b: vitc.mse_loss(a, b), lambda a, b: F.mse_loss(a, b), [rand(5, 6), rand(5, 6)], noncontig=True)
    check_op(lambda a, b: vitc.mse_loss(a, b, reduction="sum"), lambda a, b: F.mse_loss(a, b, reduction="sum"),
             [rand(200, 300), rand(200, 300)], rtol=1e-4, fd=False)


def test_mse_loss_errors():
    with pytest.raises(ValueError, match="cannot be broadcast"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vitc.mse_loss(_v(rand(2, 3)), _v(rand(4)))
    with pytest.raises(TypeError, match="input must be float32"):
        vitc.mse_loss(vitc.zeros(3, dtype=vitc.int64), _v(rand(3)))


def test_legacy_reduction_args():
    x, t = _v(rand(4, 3)), _v(labels((4,), 3))
    assert vitc.cross_entropy(x, t, reduce=False).shape == (4,)
    assert_close(vitc.cross_entropy(x, t, size_average=False).numpy(),
                 vitc.cross_entropy(x, t, reduction="sum").numpy(), 0, 0, "size_average=False")


# ---- memory: no leaks, allocation failures raise MemoryError and leak nothing -------------------

def _loss_workload():
    x = _v(rand(4, 5, 2))
    x.requires_grad = True
    x2 = _v(rand(4, 5))
    x2.requires_grad = True
    y = vitc.cross_entropy(x, _v(labels((4, 2), 5)), label_smoothing=0.1)
    y = y + vitc.cross_entropy(x2, _v(probs(4, 5)), weight=_v(rand(5, low=0.5, high=1)))
    y = y + vitc.nll_loss(x2, _v(labels((4,), 5)), reduction="sum")
    y = y + vitc.binary_cross_entropy_with_logits(x2, _v(rand(4, 5, low=0, high=1)), pos_weight=_v(rand(5)))
    y = y + vitc.kl_div(x2, _v(rand(1, 5, low=0.1, high=1)), reduction="batchmean")
    y = y + vitc.mse_loss(x2, _v(rand(4, 5)))
    y.backward()


def test_loss_no_leaks_and_allocation_failures():
    check_allocation_failures(_loss_workload, attempts=80)


def test_loss_results_do_not_depend_on_thread_count():
    x, t, y = rand(300, 200), labels((300,), 200), probs(300, 200)

    def run():
        vx = _v(x)
        vx.requires_grad = True
        a = vitc.cross_entropy(vx, _v(t), label_smoothing=0.1, reduction="sum")
        b = vitc.cross_entropy(vx, _v(y))
        (a + b).backward()
        c = vitc.mse_loss(_v(x), _v(x[::-1].copy()), reduction="sum")
        return [v.detach().numpy().copy() for v in (a, b, vx.grad, c)]

    assert_same_at_1_and_2_threads(run)
