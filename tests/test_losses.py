"""vitc.losses against PyTorch computations of the same formulas (DeiT eqs. 2 and 3): values and gradients
(≤1e-5), finite differences, the teacher kinds (vitc Module, torch Module, NumPy callable), bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import check_op, rand
from vitc import nn
from vitc.losses import (DistillationLoss, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, hard_distillation,
                         soft_distillation)

B, K = 6, 5
TOL = dict(rtol=1e-5, atol=1e-6, grad_rtol=1e-5, grad_atol=1e-6)


def _labels(seed=0):
    return np.random.default_rng(seed).integers(0, K, B).astype(np.int64)


def _soft_targets(seed=0):
    p = np.random.default_rng(seed).uniform(0, 1, (B, K)).astype(np.float32)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def torch_soft(zs, zt, tau, reduction):
    """DeiT's code: F.kl_div(log_softmax(zs/τ), log_softmax(zt/τ), 'sum', log_target=True)·τ²/(B·K)."""
    kl = F.kl_div(F.log_softmax(zs / tau, 1), F.log_softmax(zt / tau, 1), reduction="sum", log_target=True)
    return kl * tau * tau / (zs.numel() if reduction == "element_mean" else zs.shape[0])


def test_label_smoothing_cross_entropy():
    y = _labels()
    check_op(lambda z: LabelSmoothingCrossEntropy(0.1)(z, vitc.from_numpy(y)),
             lambda z: F.cross_entropy(z, torch.from_numpy(y), label_smoothing=0.1), [rand(B, K, low=-3, high=3)],
             **TOL)
    # ε/K on every class: the smoothed target written out
    z = rand(B, K)
    tgt = np.full((B, K), 0.1 / K, np.float32)
    tgt[np.arange(B), y] += 0.9
    ref = -(tgt * torch.log_softmax(torch.from_numpy(z), 1).numpy()).sum(1).mean()
    got = LabelSmoothingCrossEntropy(0.1)(vitc.from_numpy(z), vitc.from_numpy(y)).item()
    assert got == pytest.approx(ref, rel=1e-5)


def test_soft_target_cross_entropy():
    y = _soft_targets()
    check_op(lambda z: SoftTargetCrossEntropy()(z, vitc.from_numpy(y)),
             lambda z: torch.sum(-torch.from_numpy(y) * F.log_softmax(z, -1), -1).mean(), [rand(B, K, low=-3, high=3)],
             **TOL)


@pytest.mark.parametrize("reduction", ["element_mean", "batchmean"])
@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_distillation_value_and_gradient(reduction, tau):
    zt = rand(B, K, low=-4, high=4)
    check_op(lambda zs: soft_distillation(zs, vitc.from_numpy(zt), tau, reduction),
             lambda zs: torch_soft(zs, torch.from_numpy(zt), tau, reduction), [rand(B, K, low=-4, high=4)], **TOL)


def test_soft_distillation_closed_form_gradient_and_no_teacher_gradient():
    zs, zt = rand(B, K, low=-2, high=2), rand(B, K, low=-2, high=2)
    vs, vt = vitc.from_numpy(zs.copy()), vitc.from_numpy(zt.copy())
    vs.requires_grad = vt.requires_grad = True
    tau = 3.0
    soft_distillation(vs, vt, tau).backward()
    ps = torch.softmax(torch.from_numpy(zs) / tau, 1).numpy()
    pt = torch.softmax(torch.from_numpy(zt) / tau, 1).numpy()
    # soft distillation's ∂L/∂z_dist
    np.testing.assert_allclose(vs.grad.numpy(), tau / (B * K) * (ps - pt), rtol=1e-5, atol=1e-7)
    assert vt.grad is None  # the teacher is a constant
    same = vitc.from_numpy(zs)
    assert soft_distillation(same, same, tau).item() == pytest.approx(0.0, abs=1e-7)


def test_hard_distillation():
    zt = rand(B, K, low=-4, high=4)
    zt[0, 1] = zt[0, 3] = zt[0].max() + 1  # a tie: the first index wins, as torch.argmax
    check_op(lambda zs: hard_distillation(zs, vitc.from_numpy(zt)),
             lambda zs: F.cross_entropy(zs, torch.from_numpy(zt).argmax(1)), [rand(B, K, low=-3, high=3)], **TOL)
    assert int(vitc.argmax(vitc.from_numpy(zt), 1).numpy()[0]) == 1


def _torch_total(zc, zd, zt, y, kind, alpha, tau, eps=0.1):
    base = F.cross_entropy(zc, torch.from_numpy(y), label_smoothing=eps)
    if kind == "soft":
        dist = torch_soft(zd, zt, tau, "element_mean")
    else:
        dist = F.cross_entropy(zd, zt.argmax(1))
    return base * (1 - alpha) + dist * alpha


@pytest.mark.parametrize("kind,alpha", [("soft", None), ("soft", 0.7), ("hard", None), ("hard", 0.2)])
def test_distillation_loss_matches_torch(kind, alpha):
    y, zt = _labels(1), rand(B, K, low=-3, high=3)
    loss = DistillationLoss(LabelSmoothingCrossEntropy(0.1), lambda x: vitc.from_numpy(zt), kind, alpha, tau=3.0)
    a = {"soft": 0.1, "hard": 0.5}[kind] if alpha is None else alpha
    assert loss.alpha == a
    x = vitc.zeros(B, 3)
    check_op(lambda zc, zd: loss(x, (zc, zd), vitc.from_numpy(y)),
             lambda zc, zd: _torch_total(zc, zd, torch.from_numpy(zt), y, kind, a, 3.0),
             [rand(B, K, low=-3, high=3), rand(B, K, low=-3, high=3)], **TOL)


def test_distillation_type_none_and_single_head():
    y = _labels(2)
    z = rand(B, K)
    none = DistillationLoss(LabelSmoothingCrossEntropy(0.1))
    assert none(vitc.zeros(B, 3), (vitc.from_numpy(z), vitc.from_numpy(z * 2)), vitc.from_numpy(y)).item() == \
        pytest.approx(F.cross_entropy(torch.from_numpy(z), torch.from_numpy(y), label_smoothing=0.1).item(), rel=1e-6)
    # a model without distillation token distils through its class head ("usual distillation")
    zt = rand(B, K)
    loss = DistillationLoss(LabelSmoothingCrossEntropy(0.1), lambda x: zt, "soft", 0.5, 2.0)  # NumPy teacher output
    ref = _torch_total(torch.from_numpy(z), torch.from_numpy(z), torch.from_numpy(zt), y, "soft", 0.5, 2.0)
    assert loss(vitc.zeros(B, 3), vitc.from_numpy(z), vitc.from_numpy(y)).item() == pytest.approx(ref.item(), rel=1e-5)


def test_mixed_targets_use_soft_target_base():
    y, zt = _soft_targets(3), rand(B, K)
    loss = DistillationLoss(SoftTargetCrossEntropy(), lambda x: vitc.from_numpy(zt), "hard")
    zc, zd = rand(B, K), rand(B, K)
    ref = (0.5 * torch.sum(-torch.from_numpy(y) * F.log_softmax(torch.from_numpy(zc), -1), -1).mean()
           + 0.5 * F.cross_entropy(torch.from_numpy(zd), torch.from_numpy(zt).argmax(1)))
    got = loss(vitc.zeros(B, 1), (vitc.from_numpy(zc), vitc.from_numpy(zd)), vitc.from_numpy(y)).item()
    assert got == pytest.approx(ref.item(), rel=1e-5)


def test_teachers_vitc_module_and_torch_module_agree():
    vitc.manual_seed(0)
    vt = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, K))  # dropout: eval mode matters
    tt = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, K))
    tt.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in vt.state_dict().items()})
    vt.train(), tt.train()
    x = vitc.from_numpy(rand(B, 8))
    y = vitc.from_numpy(_labels(4))
    zc = vitc.from_numpy(rand(B, K))
    zd = vitc.from_numpy(rand(B, K))
    zd.requires_grad = True
    la = DistillationLoss(LabelSmoothingCrossEntropy(0.1), vt, "soft", 0.5)
    lb = DistillationLoss(LabelSmoothingCrossEntropy(0.1), tt, "soft", 0.5)
    a = la(x, (zc, zd), y)
    b = lb(x, (zc, zd), y)
    assert not vt.training and not tt.training  # the teachers were put in eval mode
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    with vitc.no_grad():
        zt = vt(x)
    assert a.item() == pytest.approx(DistillationLoss(LabelSmoothingCrossEntropy(0.1), lambda _: zt, "soft", 0.5)(
        x, (zc, zd), y).item(), rel=1e-6)
    a.backward()
    assert zd.grad is not None and all(p.grad is None for p in vt.parameters())  # no grad into the teacher
    assert not list(la.parameters())  # the teacher is not part of the loss module


def test_bad_input():
    y = vitc.from_numpy(_labels())
    base = LabelSmoothingCrossEntropy(0.1)
    z = vitc.from_numpy(rand(B, K))
    wrong = DistillationLoss(base, lambda x: vitc.zeros(B, K + 1), "soft")
    with pytest.raises(ValueError, match=r"teacher's output has shape \(6, 6\).*\(6, 5\).*number of classes"):
        wrong(vitc.zeros(B, 2), (z, z), y)
    with pytest.raises(ValueError, match="teacher logits have shape"):
        soft_distillation(z, vitc.zeros(B, K + 1))
    with pytest.raises(ValueError, match="teacher logits have shape"):
        hard_distillation(z, vitc.zeros(B - 1, K))
    for tau in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            DistillationLoss(base, lambda x: z, "soft", tau=tau)
        with pytest.raises(ValueError, match="tau"):
            soft_distillation(z, z, tau)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"alpha .* in \[0, 1\]"):
            DistillationLoss(base, lambda x: z, "hard", alpha=alpha)
    with pytest.raises(ValueError, match="distillation_type must be one of"):
        DistillationLoss(base, lambda x: z, "medium")
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillationLoss(base, None, "soft")
    with pytest.raises(ValueError, match="kl_reduction"):
        DistillationLoss(base, lambda x: z, "soft", kl_reduction="mean")
    with pytest.raises(ValueError, match="reduction"):
        soft_distillation(z, z, 1.0, "sum")
    with pytest.raises(TypeError, match="teacher returned a str"):
        DistillationLoss(base, lambda x: "logits", "soft")(vitc.zeros(B, 2), z, y)
    with pytest.raises(TypeError, match="teacher must be"):
        DistillationLoss(base, 3, "soft")
    with pytest.raises(ValueError, match=r"\(logits_cls, logits_dist\)"):
        DistillationLoss(base)(vitc.zeros(B, 2), (z, z, z), y)
    with pytest.raises(TypeError, match="SoftTargetCrossEntropy"):
        base(z, vitc.from_numpy(_soft_targets()))
    with pytest.raises(TypeError, match="float32 class probabilities"):
        SoftTargetCrossEntropy()(z, y)
    with pytest.raises(ValueError, match=r"shape \(B, K\)"):
        hard_distillation(vitc.zeros(B), vitc.zeros(B))
    with pytest.raises(ValueError, match="smoothing"):
        LabelSmoothingCrossEntropy(1.0)
