"""Adam with bfloat16 moments and the modified Adafactor against NumPy models of the optax /
big_vision semantics (tests/optim/_optax_model.py), against timm's AdafactorBigVision, plus the
factoring rule, gradient clipping, state_bytes, state_dict round trips and bad input."""
import os
import sys

import numpy as np
import pytest
import torch

import vitc
from vitc import nn, optim
from vitc.optim.adafactor import factored_axes

sys.path.insert(0, os.path.dirname(__file__))
import _optax_model as ref  # noqa: E402

# 1-d; small 2-d (second dim < 32: full V); large 2-d both ways round; equal sides; 3-d; 4-d
SHAPES = [(7,), (5, 20), (48, 40), (40, 48), (33, 33), (3, 40, 36), (36, 3, 4, 40), (64, 2, 48)]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    ps = [nn.Parameter(vitc.from_numpy(rng.standard_normal(s).astype(np.float32))) for s in SHAPES]
    grads = [[(rng.standard_normal(s) * rng.uniform(0.1, 3.0, size=s[-1:])).astype(np.float32) for s in SHAPES]
             for _ in range(6)]
    return ps, grads


def _within_bf16_ulp(got, want, what, terms=0.0):
    """|got − want| ≤ one bfloat16 ulp of want, plus float32 rounding of the summed terms (where
    β·m and (1−β)·u cancel, a last-bit difference of the float32 sum is large relative to it)."""
    err = np.abs(got.astype(np.float64) - want)
    ok = err <= ref.bf16_ulp(want) * 1.0001 + 4 * 2.0 ** -24 * np.asarray(terms) + 1e-30
    assert ok.all(), f"{what}: {np.count_nonzero(~ok)} elements differ by more than one bfloat16 ulp"


def _state_np(opt, p, name, shape):
    """A state buffer as float32 NumPy (zeros before the first step)."""
    st = opt.state.get(p) if p in opt.state else None
    if not st:
        return np.zeros(shape, np.float32)
    v = st[name]
    return (v.float() if v.dtype is vitc.bfloat16 else v).numpy().copy()


@pytest.mark.parametrize("decoupled,wd,nu_bf16", [(False, 0.0, False), (True, 0.05, False), (False, 0.01, True)])
def test_adam_bf16_moments_follow_the_optax_model(decoupled, wd, nu_bf16):
    """Each step, from vitc's own state: new moments within one bfloat16 ulp of the model's (the
    float32 formulas round differently in the last bit, which can move a bf16 rounding), the
    parameters to float32 rounding."""
    ps, grads = _params()
    cls = optim.AdamW if decoupled else optim.Adam
    opt = cls(ps, lr=1e-2, weight_decay=wd, mu_dtype=vitc.bfloat16, nu_dtype=vitc.bfloat16 if nu_bf16 else None)
    for t, gs in enumerate(grads, 1):
        before = [(p.detach().numpy().copy(), _state_np(opt, p, "exp_avg", p.shape),
                   _state_np(opt, p, "exp_avg_sq", p.shape)) for p in ps]
        for p, g in zip(ps, gs):
            p.grad = vitc.from_numpy(g.copy())
        opt.step()
        for i, (p, (p0, m0, v0), g) in enumerate(zip(ps, before, gs)):
            pm, m, v = ref.adam(p0, m0, v0, g, t, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled, True, nu_bf16)
            st = opt.state[p]
            assert st["exp_avg"].dtype is vitc.bfloat16
            assert st["exp_avg_sq"].dtype is (vitc.bfloat16 if nu_bf16 else vitc.float32)
            _within_bf16_ulp(st["exp_avg"].float().numpy(), m, f"exp_avg of {SHAPES[i]} at step {t}",
                             np.abs(0.9 * m0) + np.abs(0.1 * g))
            if nu_bf16:
                _within_bf16_ulp(st["exp_avg_sq"].float().numpy(), v, f"exp_avg_sq of {SHAPES[i]} at step {t}")
            else:
                np.testing.assert_allclose(st["exp_avg_sq"].numpy(), v, rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(p.detach().numpy(), pm, rtol=1e-5, atol=1e-6, err_msg=str(SHAPES[i]))


def test_adam_steps_with_the_unrounded_moment():
    # one step from zero state: m̃ = 0.1·g exactly representable or not, the update is lr·sign(g)·(1 ± ε)
    p = nn.Parameter(vitc.zeros(3))
    opt = optim.Adam([p], lr=0.1, mu_dtype=vitc.bfloat16)
    g = np.array([1.00390625 * 3, -0.7, 1e-3], np.float32)  # 0.1·g is not a bfloat16 number
    p.grad = vitc.from_numpy(g)
    opt.step()
    want = -0.1 * (0.1 * g / 0.1) / (np.sqrt(0.001 * g * g / 0.001) + 1e-8)
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-6)  # rounding m first would be off by ~2^-9
    assert not np.array_equal(opt.state[p]["exp_avg"].float().numpy(), np.float32(0.1) * g)


def test_adam_f32_path_unchanged_and_bf16_halves_the_state():
    ps, grads = _params()
    a = optim.Adam([nn.Parameter(vitc.from_numpy(p.detach().numpy().copy())) for p in ps], lr=1e-2)
    b = optim.Adam([nn.Parameter(vitc.from_numpy(p.detach().numpy().copy())) for p in ps], lr=1e-2, mu_dtype=vitc.bfloat16)
    c = optim.Adam([nn.Parameter(vitc.from_numpy(p.detach().numpy().copy())) for p in ps], lr=1e-2, mu_dtype=vitc.bfloat16,
                   nu_dtype=vitc.bfloat16)
    n = sum(p.numel() for p in ps)
    assert (a.state_bytes(), b.state_bytes(), c.state_bytes()) == (8 * n, 6 * n, 4 * n)
    tp = [torch.nn.Parameter(torch.from_numpy(p.detach().numpy().copy())) for p in ps]
    topt = torch.optim.Adam(tp, lr=1e-2, foreach=False)
    for gs in grads:
        for p, t, g in zip(a.param_groups[0]["params"], tp, gs):
            p.grad, t.grad = vitc.from_numpy(g.copy()), torch.from_numpy(g.copy())
        a.step()
        topt.step()
    for p, t in zip(a.param_groups[0]["params"], tp):
        np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_bf16_second_moment_stops_decaying():
    """Why the paper keeps v in float32: after the gradient scale drops 10×, v must decay by β2 = 0.999
    per step towards g²; in bfloat16 each step's relative change (~1e-3) is below half an ulp
    (2^-9 ≈ 2e-3), the rounding puts v back where it was, and the step size stays 10× too small."""
    p32, p16 = nn.Parameter(vitc.zeros(4)), nn.Parameter(vitc.zeros(4))
    o32 = optim.Adam([p32], lr=1e-3)
    o16 = optim.Adam([p16], lr=1e-3, nu_dtype=vitc.bfloat16)
    for step in range(6000):
        g = np.full(4, 1.0 if step < 1000 else 0.1, np.float32)
        p32.grad, p16.grad = vitc.from_numpy(g.copy()), vitc.from_numpy(g.copy())
        o32.step()
        o16.step()
    v32 = o32.state[p32]["exp_avg_sq"].numpy()
    v16 = o16.state[p16]["exp_avg_sq"].float().numpy()
    frozen = np.float32(ref.bf16(np.float32(0.999 * v16[0] + 0.001 * 0.01)))
    assert frozen == v16[0]  # a fixed point of the rounded recursion far above g² = 0.01
    assert v32[0] < 0.02 and v16[0] > 10 * v32[0]  # float32 v is near g² = 0.01 (0.999^5000 ≈ 0.007)
    # so the bf16-v step stays over 3× smaller than the float32 one (it should be equal by now)
    assert np.abs(p32.detach().numpy()[0] - p16.detach().numpy()[0]) > 0.5


def _adafactor_state_np(opt, p, shape):
    st = opt.state.get(p) if p in opt.state else None
    model = ref.adafactor_state(shape)
    if st:
        for k, name in [("m", "exp_avg"), ("v", "exp_avg_sq"), ("r", "exp_avg_sq_row"), ("c", "exp_avg_sq_col")]:
            if k in model:
                model[k] = _state_np(opt, p, name, shape)
    return model


@pytest.mark.parametrize("wd,m_bf16", [(0.0, True), (0.3, True), (0.1, False)])
def test_adafactor_follows_the_big_vision_model(wd, m_bf16):
    """Each step from vitc's own state: R, C, V to float32 rounding (means in double here and in C),
    the momentum within one bfloat16 ulp, the parameters to float32 rounding."""
    ps, grads = _params(1)
    opt = optim.Adafactor(ps, lr=0.05, weight_decay=wd, momentum_dtype=vitc.bfloat16 if m_bf16 else vitc.float32)
    for c, gs in enumerate(grads):
        before = [(p.detach().numpy().copy(), _adafactor_state_np(opt, p, s)) for p, s in zip(ps, SHAPES)]
        for p, g in zip(ps, gs):
            p.grad = vitc.from_numpy(g.copy())
        opt.step()
        for i, (p, (p0, st), g) in enumerate(zip(ps, before, gs)):
            pm = ref.adafactor(p0, st, g, c, 0.05, wd, m_bf16=m_bf16)
            s = opt.state[p]
            assert int(s["step"].item()) == c + 1
            if "v" in st:
                assert set(s) == {"step", "exp_avg", "exp_avg_sq"}
                np.testing.assert_allclose(s["exp_avg_sq"].numpy(), st["v"], rtol=2e-6)
            else:
                assert set(s) == {"step", "exp_avg", "exp_avg_sq_row", "exp_avg_sq_col"}
                np.testing.assert_allclose(s["exp_avg_sq_row"].numpy(), st["r"], rtol=2e-6)
                np.testing.assert_allclose(s["exp_avg_sq_col"].numpy(), st["c"], rtol=2e-6)
            if m_bf16:
                _within_bf16_ulp(s["exp_avg"].float().numpy(), st["m"], f"exp_avg of {SHAPES[i]} at step {c}",
                                 st["terms"])
            else:
                np.testing.assert_allclose(s["exp_avg"].numpy(), st["m"], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(p.detach().numpy(), pm, rtol=1e-5, atol=1e-6, err_msg=str(SHAPES[i]))


def test_adafactor_against_timm_adafactor_big_vision():
    from timm.optim.adafactor_bv import AdafactorBigVision

    ps, grads = _params(2)
    tp = [torch.nn.Parameter(torch.from_numpy(p.detach().numpy().copy())) for p in ps]
    lr, wd = 0.02, 0.1
    opt = optim.Adafactor(ps, lr=lr, weight_decay=wd)
    topt = AdafactorBigVision(tp, lr=lr, weight_decay=wd, min_dim_size_to_factor=32)
    for gs in grads:
        before = [p.detach().numpy().copy() for p in ps]
        for p, t, g in zip(ps, tp, gs):
            p.grad, t.grad = vitc.from_numpy(g.copy()), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, t, b) in enumerate(zip(ps, tp, before)):
            # timm rounds Û to bf16, runs the EMA in bf16 and steps with the rounded m: rtol 1e-2
            # (its bf16 EMA carries absolute errors of a few bf16 ulps of the largest |m|: atol 1e-2·lr)
            np.testing.assert_allclose(p.detach().numpy() - b, t.detach().numpy() - b, rtol=1e-2, atol=1e-2 * lr,
                                       err_msg=str(SHAPES[i]))
            p.detach().copy_(vitc.from_numpy(t.detach().numpy().copy()))  # same start for the next step
    for p, t in zip(ps, tp):
        st, tst = opt.state[p], topt.state[t]
        if "exp_avg_sq_row" in st:
            np.testing.assert_allclose(st["exp_avg_sq_row"].numpy().reshape(-1),
                                       tst["exp_avg_sq_r"].numpy().reshape(-1), rtol=1e-4)
            np.testing.assert_allclose(st["exp_avg_sq_col"].numpy().reshape(-1),
                                       tst["exp_avg_sq_c"].numpy().reshape(-1), rtol=1e-4)


def test_factoring_rule():
    assert factored_axes((768, 3072)) == (1, 0)  # (out, in) fc1: R over in, C over out
    assert factored_axes((3072, 768)) == (0, 1)
    assert factored_axes((768, 768)) == (1, 0)  # equal sides: the earlier axis is d1
    assert factored_axes((768, 3, 16, 16)) is None or factored_axes((768, 3, 16, 16)) == (0, 3)
    assert factored_axes((768, 3, 16, 16), 16) == (0, 3)
    assert factored_axes((768, 3, 16, 16)) is None  # second-largest 16 < 32
    assert factored_axes((64, 31)) is None and factored_axes((64,)) is None
    assert factored_axes((12, 64, 768)) == (2, 1)
    for s in [(768, 3072), (12, 64, 768), (5, 40, 3, 36), (48, 48, 48)]:
        assert factored_axes(s) == ref.factored_axes(s)
    p = nn.Parameter(vitc.zeros(40, 48))
    opt = optim.Adafactor([p])
    p.grad = vitc.ones(40, 48)
    opt.step()
    st = opt.state[p]
    assert st["exp_avg_sq_row"].shape == (40,) and st["exp_avg_sq_col"].shape == (48,)
    assert opt.state_bytes() == 2 * 40 * 48 + 4 * (40 + 48)


def test_zero_size_parameters_are_skipped():
    ps = [nn.Parameter(vitc.zeros(64, 0, 48)), nn.Parameter(vitc.zeros(0, 64)), nn.Parameter(vitc.ones(3))]
    opt = optim.Adafactor(ps, lr=0.1)
    for p in ps:
        p.grad = vitc.ones(p.shape)
    opt.step()
    assert ps[0].shape == (64, 0, 48) and ps[2].detach().numpy().tolist() != [1.0, 1.0, 1.0]
    # (64, 0, 48): d0 = 0 (64), d1 = 2 (48); nothing to average, so zero-size statistics
    assert opt.state[ps[0]]["exp_avg_sq_row"].shape == (0, 48) and opt.state[ps[0]]["exp_avg_sq_col"].shape == (64, 0)


def test_global_norm_clipping():
    ps, grads = _params(3)
    opt = optim.SGD(ps, lr=1.0, max_grad_norm=1.0)
    before = [p.detach().numpy().copy() for p in ps]
    for p, g in zip(ps, grads[0]):
        p.grad = vitc.from_numpy(g.copy())
    opt.step()
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads[0]))
    assert opt.last_grad_norm == pytest.approx(norm, rel=1e-12)
    step = [b - p.detach().numpy() for p, b in zip(ps, before)]
    assert np.sqrt(sum(float(np.sum(s.astype(np.float64) ** 2)) for s in step)) == pytest.approx(1.0, rel=1e-5)
    for s, g in zip(step, grads[0]):
        np.testing.assert_allclose(s, g / np.float32(norm), rtol=1e-5, atol=3e-7)  # p − (p − g') cancels
    # below the threshold nothing changes (torch's clip_grad_norm_ agrees on the clipped case)
    small = nn.Parameter(vitc.zeros(3))
    o2 = optim.SGD([small], lr=1.0, max_grad_norm=10.0)
    small.grad = vitc.tensor([1.0, -2.0, 2.0])
    o2.step()
    assert small.detach().numpy().tolist() == [-1.0, 2.0, -2.0] and o2.last_grad_norm == 3.0
    tp = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    for t, g in zip(tp, grads[0]):
        t.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(tp, 1.0)
    for p, t in zip(ps, tp):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", [
    lambda ps: optim.Adam(ps, lr=1e-2, mu_dtype=vitc.bfloat16, max_grad_norm=1.0),
    lambda ps: optim.Adam(ps, lr=1e-2, mu_dtype=vitc.bfloat16, nu_dtype=vitc.bfloat16),
    lambda ps: optim.Adafactor(ps, lr=1e-2, weight_decay=0.1),
])
def test_state_dict_round_trip(make, tmp_path):
    ps, grads = _params(4)
    opt = make(ps)
    for gs in grads[:3]:
        for p, g in zip(ps, gs):
            p.grad = vitc.from_numpy(g.copy())
        opt.step()
    sd = opt.state_dict()
    flat = {f"{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if k != "step"}
    vitc.io.save_safetensors(flat, tmp_path / "o.safetensors")
    back = vitc.io.load_safetensors(tmp_path / "o.safetensors")
    ps2 = [nn.Parameter(vitc.from_numpy(p.detach().numpy().copy())) for p in ps]
    opt2 = make(ps2)
    state = {i: {"step": st["step"]} for i, st in sd["state"].items()}
    for key, v in back.items():
        i, k = key.split(".", 1)
        state[int(i)][k] = v
    opt2.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    for gs in grads[3:]:
        for p, p2, g in zip(ps, ps2, gs):
            p.grad, p2.grad = vitc.from_numpy(g.copy()), vitc.from_numpy(g.copy())
        opt.step()
        opt2.step()
    for p, p2 in zip(ps, ps2):
        np.testing.assert_array_equal(p.detach().numpy(), p2.detach().numpy())
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            v2 = opt2.state_dict()["state"][i][k]
            assert v.dtype is v2.dtype
            a, b = (v.float(), v2.float()) if v.dtype is vitc.bfloat16 else (v, v2)
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_input():
    p = nn.Parameter(vitc.zeros(40, 48))
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([p], betas=(0.9, 1.0), mu_dtype=vitc.bfloat16)
    with pytest.raises(TypeError, match="mu_dtype"):
        optim.Adam([p], mu_dtype=vitc.int64)
    with pytest.raises(ValueError, match="momentum"):
        optim.Adafactor([p], momentum=1.0)
    with pytest.raises(ValueError, match="beta2_cap"):
        optim.Adafactor([p], beta2_cap=1.5)
    with pytest.raises(ValueError, match="decay_rate"):
        optim.Adafactor([p], decay_rate=-0.8)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.Adafactor([p], weight_decay=-1.0)
    with pytest.raises(ValueError, match="min_dim_size_to_factor"):
        optim.Adafactor([p], min_dim_size_to_factor=0)
    with pytest.raises(TypeError, match="momentum_dtype"):
        optim.Adafactor([p], momentum_dtype=vitc.bool)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_grad_norm"):
            optim.Adafactor([p], max_grad_norm=bad)
    with pytest.raises(TypeError, match="max_grad_norm"):
        optim.Adam([p], max_grad_norm="1")
    with pytest.raises(TypeError, match="float32"):
        optim.Adafactor([nn.Parameter(vitc.zeros(3)).detach().to(vitc.bfloat16)])
    opt = optim.Adafactor([p])
    p.grad = vitc.ones(40, 48)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg_sq_row"] = np.zeros(48, np.float32)  # the wrong factor's shape
    with pytest.raises(ValueError, match="exp_avg_sq_row"):
        opt.load_state_dict(sd)
    sd["state"][0] = {"step": 1, "exp_avg_sq": np.zeros((40, 48), np.float32)}  # factored: no full V
    with pytest.raises(ValueError, match="not a state"):
        opt.load_state_dict(sd)


def test_adafactor_kernel_refuses_inconsistent_layouts():
    from vitc._ops.optim_ops import adafactor_step

    p, g = vitc.zeros(12), vitc.ones(12)
    m, v = vitc.zeros(12, dtype=vitc.bfloat16), vitc.zeros(7)
    seg = vitc.tensor([[0, 12, 0, 1]])

    def call(fac, v=v, m=m, cap=0.999):
        return adafactor_step(p, g, m, v, seg, vitc.tensor(fac), 0.1, 0.9, 0.8, cap, 1e-30, 0.0)

    call([[0, 1, 3, 1, 4, 1, 1, 1]])  # (3, 4) factored: 4 + 3 statistics fit in 7
    with pytest.raises(ValueError, match="does not hold"):
        call([[0, 1, 3, 1, 5, 1, 1, 1]])
    with pytest.raises(IndexError, match="outside"):
        call([[1, 1, 3, 1, 4, 1, 1, 1]])
    with pytest.raises(IndexError, match="outside"):
        call([[0, 1, 1, 1, 1, 12, 0, 0]])  # a full V needs 12
    with pytest.raises(ValueError, match="fac"):
        adafactor_step(p, g, m, v, seg, vitc.tensor([[0, 1, 3]]), 0.1, 0.9, 0.8, 0.999, 1e-30, 0.0)
    with pytest.raises(ValueError, match="beta2_cap"):
        call([[0, 1, 3, 1, 4, 1, 1, 1]], cap=1.0)
    with pytest.raises(TypeError, match="bfloat16"):
        call([[0, 1, 3, 1, 4, 1, 1, 1]], v=vitc.zeros(7, dtype=vitc.bfloat16))  # the second moments stay float32
    with pytest.raises(TypeError, match="float32"):
        call([[0, 1, 3, 1, 4, 1, 1, 1]], m=vitc.zeros(12, dtype=vitc.int64))
