"""sigmoid_cross_entropy (big_vision utils.sigmoid_xent): one fused op against PyTorch's
binary_cross_entropy_with_logits(z, y, reduction='sum') / N, forward and backward; finite differences,
large logits, class-index targets as one-hot, bad calls, empty batch, allocation failures, thread counts,
and training with it through vitc.train.fit / evaluate."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from vitc import nn
from vitc import train as vtrain
from opcheck import assert_close, assert_same_at_1_and_2_threads, check_allocation_failures, check_op, rand

RNG = np.random.default_rng(20)


def _v(a):
    return vitc.from_numpy(np.ascontiguousarray(a).copy())


def _ref(z, y):
    return F.binary_cross_entropy_with_logits(z, y, reduction="sum") / z.shape[0]


def _ref_idx(z, t):
    return _ref(z, F.one_hot(t, z.shape[1]).to(z.dtype))


@pytest.mark.parametrize("N,K", [(6, 5), (1, 1), (3, 1000), (17, 3)])
def test_multilabel_and_soft_targets_match_torch(N, K):
    z = rand(N, K, low=-4, high=4)
    multi = (RNG.uniform(size=(N, K)) < 0.3).astype(np.float32)   # several positives per row
    soft = RNG.uniform(size=(N, K)).astype(np.float32)
    for y in (multi, soft):
        # the target's gradient too (−z/N), as torch gives for a float target
        check_op(vitc.losses.sigmoid_cross_entropy, _ref, [z, y], rtol=1e-5, atol=1e-5)


def test_class_index_targets_are_one_hot():
    z, t = rand(8, 6, low=-3, high=3), RNG.integers(0, 6, size=8).astype(np.int64)
    check_op(vitc.losses.sigmoid_cross_entropy, _ref_idx, [z, t], rtol=1e-5, atol=1e-6)
    onehot = np.eye(6, dtype=np.float32)[t]
    a = vitc.losses.sigmoid_cross_entropy(_v(z), _v(t)).item()
    b = vitc.losses.sigmoid_cross_entropy(_v(z), _v(onehot)).item()
    assert a == b


def test_trailing_dims_noncontiguous_and_module():
    # (N, K, d): summed over K and d, averaged over N (strided inputs are made contiguous)
    z, y = rand(3, 4, 5, low=-2, high=2), rand(3, 4, 5, low=0, high=1)
    check_op(vitc.losses.sigmoid_cross_entropy, _ref, [z, y], noncontig=True, atol=1e-5)
    t = RNG.integers(0, 4, size=(3, 5)).astype(np.int64)
    check_op(vitc.losses.sigmoid_cross_entropy,
             lambda z, t: _ref(z, F.one_hot(t, 4).permute(0, 2, 1).to(z.dtype)), [z, t], atol=1e-5)
    m = nn.SigmoidCrossEntropyLoss()
    assert m(_v(z), _v(y)).item() == vitc.losses.sigmoid_cross_entropy(_v(z), _v(y)).item()


def test_is_bce_sum_over_batch_size():
    # the same element kernel and the same summation as binary_cross_entropy_with_logits: with N = 1 the
    # two are bitwise equal; otherwise the quotient of the double sum differs from float(sum)/N by <= 1 ulp
    z, y = rand(1, 300, low=-5, high=5), rand(1, 300, low=0, high=1)
    assert (vitc.losses.sigmoid_cross_entropy(_v(z), _v(y)).item()
            == vitc.binary_cross_entropy_with_logits(_v(z), _v(y), reduction="sum").item())
    z, y = rand(7, 40, low=-5, high=5), rand(7, 40, low=0, high=1)
    a = np.float32(vitc.losses.sigmoid_cross_entropy(_v(z), _v(y)).item())
    b = np.float32(vitc.binary_cross_entropy_with_logits(_v(z), _v(y), reduction="sum").item()) / np.float32(7)
    assert abs(int(a.view(np.int32)) - int(b.view(np.int32))) <= 1


def test_large_logits_are_stable():
    z = np.array([[-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4, 3e38]], np.float32)
    for y in (np.zeros_like(z), np.ones_like(z), np.full_like(z, 0.5)):
        check_op(vitc.losses.sigmoid_cross_entropy, _ref, [z, y], rtol=1e-6, atol=1e-3, fd=False)
        vz = _v(z)
        vz.requires_grad = True
        loss = vitc.losses.sigmoid_cross_entropy(vz, _v(y))
        loss.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(vz.grad.numpy()))
        # σ(z) − y saturates exactly at ±1 or 0 far from 0
        assert vz.grad.numpy()[0, 0] == -y[0, 0] and vz.grad.numpy()[0, 6] == 1 - y[0, 6]


def test_bad_calls():
    f = vitc.losses.sigmoid_cross_entropy
    z = _v(rand(4, 3))
    with pytest.raises(ValueError, match="shape"):
        f(z, _v(rand(4, 2)))                         # float target of another shape
    with pytest.raises(ValueError, match="class-index target has shape"):
        f(z, _v(np.zeros(3, np.int64)))              # indices for another batch
    with pytest.raises(IndexError, match="out of bounds for 3 classes"):
        f(z, _v(np.array([0, 1, 3, 0], np.int64)))
    with pytest.raises(IndexError, match="target -1"):
        f(z, _v(np.array([0, -1, 2, 0], np.int64)))
    with pytest.raises(TypeError, match="class-index targets must be int64"):
        f(z, _v(np.zeros(4, np.float32)))
    with pytest.raises(TypeError, match="bool"):
        f(z, _v(np.zeros(4, bool)))
    with pytest.raises(TypeError, match="input"):
        f(_v(np.zeros((4, 3), np.int64)), _v(np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, K\)"):
        f(_v(rand(3)), _v(rand(3)))
    with pytest.raises(TypeError, match="target must be a vitc.Tensor"):
        f(z, np.zeros((4, 3), np.float32))


def test_empty_batch_is_nan_like_the_formula():
    # decision: sum / N with N = 0 is 0/0 = NaN (as the torch formula and cross_entropy's 'mean'), not an
    # error; the gradient is empty
    z = vitc.zeros(0, 5)
    z.requires_grad = True
    loss = vitc.losses.sigmoid_cross_entropy(z, vitc.zeros(0, 5))
    assert np.isnan(loss.item()) and np.isnan(_ref(torch.zeros(0, 5), torch.zeros(0, 5)).item())
    loss.backward()
    assert z.grad.shape == (0, 5)
    assert np.isnan(vitc.losses.sigmoid_cross_entropy(vitc.zeros(0, 5), vitc.zeros(0, dtype=vitc.int64)).item())


def _workload():
    z = _v(rand(4, 5))
    z.requires_grad = True
    y = _v(rand(4, 5, low=0, high=1))
    y.requires_grad = True
    loss = vitc.losses.sigmoid_cross_entropy(z, y) + vitc.losses.sigmoid_cross_entropy(z, _v(np.arange(4) % 5))
    loss.backward()


def test_no_leaks_and_allocation_failures():
    check_allocation_failures(_workload, attempts=80)


def test_same_bits_at_1_and_2_threads():
    z, y = rand(300, 400, low=-4, high=4), rand(300, 400, low=0, high=1)   # above the parallel threshold

    def run():
        vz = _v(z)
        vz.requires_grad = True
        loss = vitc.losses.sigmoid_cross_entropy(vz, _v(y))
        loss.backward()
        return [loss.detach().numpy().copy(), vz.grad.numpy().copy()]

    one = assert_same_at_1_and_2_threads(run)
    assert_close(one[0], _ref(torch.from_numpy(z), torch.from_numpy(y)).numpy(), 1e-5, 0, "loss")


def test_fit_and_evaluate_with_the_sigmoid_loss():
    # a linear classifier on separable synthetic data, class-index and multi-hot labels
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 8)).astype(np.float32) * 3
    def batches(n, soft):
        out = []
        for _ in range(n):
            t = rng.integers(0, 3, 16)
            x = (centers[t] + rng.standard_normal((16, 8))).astype(np.float32)
            y = np.eye(3, dtype=np.float32)[t] if soft else t.astype(np.int64)
            out.append((_v(x), _v(y)))
        return out
    for soft in (False, True):
        vitc.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 3))
        opt = vitc.optim.SGD(model.parameters(), lr=0.1)
        h = vtrain.fit(model, batches(8, soft), batches(4, soft), opt, nn.SigmoidCrossEntropyLoss(), 4,
                       progress=False, log=None)
        assert h["train_loss"][-1] < h["train_loss"][0] and h["test_accuracy"][-1] > 0.9
        ev = vtrain.evaluate(model, batches(2, soft), nn.SigmoidCrossEntropyLoss())
        assert ev["samples"] == 32 and ev["loss"] > 0
