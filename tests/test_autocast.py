"""vitc.autocast (bf16 GEMMs, f32 accumulation; vitc/amp.py, csrc/kernels/gemm_bf16.c): the GEMM
against NumPy with inputs rounded to bf16, both kernels (AVX512-BF16 and the f32 fallback), a small
ViT's forward and backward against float32 and against torch.autocast, the switch's state."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import vitc
from vitc import _C

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))
from torch_vit import TorchViT, copy_weights  # noqa: E402

NATIVE = _C._bf16_gemm_kernel(None) == "avx512bf16"
KERNELS = ["fallback"] + (["auto"] if NATIVE else [])


def round_bf16(x):
    """float32 -> nearest bfloat16 (ties to even), as float64: core/bf16.h's rule"""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.fixture
def kernel(request):
    _C._bf16_gemm_kernel(request.param)
    yield request.param
    _C._bf16_gemm_kernel("auto")


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 33, 5), (13, 31, 3), (100, 65, 77), (97, 200, 769),
                                   (25, 47, 1537)])
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_equals_numpy_on_bf16_rounded_inputs(kernel, m, n, k, ta, tb):
    rng = np.random.default_rng(m * 1000 + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    va, vb = vitc.from_numpy(a), vitc.from_numpy(b)
    va, vb = (va.t() if ta else va), (vb.t() if tb else vb)
    with vitc.autocast("cpu", dtype=vitc.bfloat16):
        y = vitc.matmul(va, vb).numpy()
    ar, br = round_bf16(a.T if ta else a), round_bf16(b.T if tb else b)
    ref, scale = ar @ br, np.abs(ar) @ np.abs(br)
    # the products are exact in f32: only k f32 additions round (|error| <= k·2^-24·sum|a·b|)
    assert np.all(np.abs(y - ref) <= k * 2.0 ** -24 * scale + 1e-30)
    # and the inputs really were rounded: the f32 product is farther from the bf16 reference
    f32 = a.T.astype(np.float64) if ta else a.astype(np.float64)
    f32 = f32 @ (b.T.astype(np.float64) if tb else b.astype(np.float64))
    if k > 1:
        assert np.abs(f32 - ref).max() > 100 * np.abs(y - ref).max()


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_linear_with_bias_and_batched_matmul(kernel):
    rng = np.random.default_rng(1)
    x, w, bias = (rng.standard_normal(s).astype(np.float32) for s in ((3, 17, 40), (23, 40), (23,)))
    q, kk = (rng.standard_normal((2, 3, 9, 20)).astype(np.float32) for _ in range(2))
    with vitc.autocast():
        y = vitc.nn.functional.linear(vitc.from_numpy(x), vitc.from_numpy(w), vitc.from_numpy(bias)).numpy()
        s = vitc.matmul(vitc.from_numpy(q), vitc.from_numpy(kk).transpose(-1, -2)).numpy()
    np.testing.assert_allclose(y, round_bf16(x) @ round_bf16(w).T + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, round_bf16(q) @ np.swapaxes(round_bf16(kk), -1, -2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_fused_ffn_packed_panels(kernel):
    """linear_gelu_linear multiplies through packed panels (gemm.h); widths 48 and 24 leave an odd
    count of 16-column strips, whose last 32-column bf16 strip is packed from its first half"""
    rng = np.random.default_rng(4)
    x, w1, b1, w2, b2 = (rng.standard_normal(s).astype(np.float32) for s in ((2, 37, 40), (48, 40), (48,), (24, 48),
                                                                             (24,)))
    with vitc.autocast():
        y = vitc.linear_gelu_linear(*(vitc.from_numpy(t) for t in (x, w1, b1, w2, b2))).numpy()
    h = torch.nn.functional.gelu(torch.from_numpy(round_bf16(x) @ round_bf16(w1).T + b1)).numpy()
    ref = round_bf16(h.astype(np.float32)) @ round_bf16(w2).T + b2
    # h is rounded to bf16 before the second product, so a last-bit difference in h may move it by
    # one bf16 step (2^-8 relative) in a few places
    np.testing.assert_allclose(y, ref, rtol=0, atol=48 * 2.0 ** -8 * np.abs(h).max() * np.abs(w2).max())
    assert np.abs(y - ref).mean() < 1e-4 * np.abs(ref).mean()


def test_result_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(2)
    a, b = vitc.from_numpy(rng.standard_normal((400, 900)).astype(np.float32)), vitc.from_numpy(
        rng.standard_normal((900, 300)).astype(np.float32))
    n0 = vitc.get_num_threads()
    out = []
    try:
        for n in (1, 2, 3):
            vitc.set_num_threads(n)
            with vitc.autocast():
                out.append(vitc.matmul(a, b).numpy())
                out.append(vitc.matmul(a.t().contiguous().t(), b).numpy())  # transposed A
    finally:
        vitc.set_num_threads(n0)
    for o in out[2::2]:
        np.testing.assert_array_equal(o, out[0])
    for o in out[3::2]:
        np.testing.assert_array_equal(o, out[1])


@pytest.mark.skipif(not NATIVE, reason="this CPU has no AVX512-BF16")
def test_fallback_equals_the_avx512bf16_kernel_within_rounding():
    rng = np.random.default_rng(3)
    a, b = (vitc.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in ((150, 700), (700, 90)))
    outs = []
    for kern in ("auto", "fallback"):
        _C._bf16_gemm_kernel(kern)
        try:
            with vitc.autocast():
                outs.append(vitc.matmul(a, b).numpy())
        finally:
            _C._bf16_gemm_kernel("auto")
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=700 * 2.0 ** -24 * 40)
    assert not np.array_equal(outs[0], vitc.matmul(a, b).numpy())


def test_baseline_isa_selects_the_fallback():
    code = "import vitc; print(vitc.amp.bf16_kernel())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, VITC_ISA="baseline"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fallback"


# ---- the switch -------------------------------------------------------------------------------

def test_flag_is_scoped_nested_restored_on_exceptions_and_decorates():
    assert not vitc.is_autocast_enabled()
    with vitc.autocast("cpu", dtype=vitc.bfloat16):
        assert vitc.is_autocast_enabled()
        with vitc.autocast(enabled=False):
            assert not vitc.is_autocast_enabled()
        assert vitc.is_autocast_enabled()
    assert not vitc.is_autocast_enabled()
    with pytest.raises(ZeroDivisionError):
        with vitc.autocast():
            1 / 0
    assert not vitc.is_autocast_enabled()

    @vitc.autocast()
    def inside():
        return vitc.is_autocast_enabled()
    assert inside() and not vitc.is_autocast_enabled()
    ctx = vitc.autocast()  # one object entered twice (re-entrant)
    with ctx:
        with ctx:
            pass
        assert vitc.is_autocast_enabled()
    assert not vitc.is_autocast_enabled()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="device_type"):
        vitc.autocast("cuda")
    with pytest.raises(ValueError, match="bfloat16"):
        vitc.autocast("cpu", dtype=vitc.float32)
    with pytest.raises(TypeError, match="enabled"):
        vitc.autocast(enabled=1)
    with pytest.raises(ValueError):
        _C._bf16_gemm_kernel("avx2")


# ---- a small ViT ----------------------------------------------------------------------------

CFG = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=2, heads=4, dim_head=16,
           mlp_dim=128)


def _vit_grads(vm, x, y, amp, backward_amp=None):
    vm.zero_grad()
    with vitc.autocast(enabled=amp):
        z = vm(vitc.from_numpy(x))
        loss = vitc.cross_entropy(z, vitc.from_numpy(y))
    with vitc.autocast(enabled=amp if backward_amp is None else backward_amp):
        loss.backward()
    return z.detach().numpy(), {n: p.grad.numpy().copy() for n, p in vm.named_parameters()}


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def vit_case():
    vitc.manual_seed(0)
    vm = vitc.models.ViT(**CFG)
    tm = copy_weights(vm, TorchViT(**CFG))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int64)
    return vm, tm, x, y


def _torch_grads(tm, x, y, amp):
    tm.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        z = tm(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(y))
    loss.backward()
    return z.detach().float().numpy(), {n: p.grad.numpy() for n, p in tm.named_parameters()}


def test_vit_forward_backward_near_float32_and_torch_autocast(vit_case):
    vm, tm, x, y = vit_case
    z32, g32 = _vit_grads(vm, x, y, False)
    z16, g16 = _vit_grads(vm, x, y, True)
    tz16, tg16 = _torch_grads(tm, x, y, True)
    # bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 %). Measured: logits 0.29 % of
    # their largest from f32, 0.32 % from torch.autocast's; gradients at most 0.57 % of their
    # largest entry from f32 and 2.2 % from torch.autocast's (which is itself 2.2 % from torch f32)
    assert 0 < _rel(z16, z32) < 0.01 and _rel(z16, tz16) < 0.01
    for n in g32:
        assert _rel(g16[n], g32[n]) < 0.02, n
        assert _rel(g16[n], tg16[n]) < 0.05, n
    assert any(not np.array_equal(g16[n], g32[n]) for n in g32)
    # vitc's bf16 GEMMs return f32 (torch's return bf16): no farther from f32 than torch's are
    tz32, tg32 = _torch_grads(tm, x, y, False)
    assert _rel(z16, z32) <= _rel(tz16, tz32)


def test_backward_takes_the_precision_recorded_in_forward(vit_case):
    vm, _, x, y = vit_case
    _, g_in = _vit_grads(vm, x, y, True, backward_amp=True)
    _, g_out = _vit_grads(vm, x, y, True, backward_amp=False)   # recorded in bf16, backward outside
    _, g32 = _vit_grads(vm, x, y, False, backward_amp=False)
    _, g32_in = _vit_grads(vm, x, y, False, backward_amp=True)  # recorded in f32, backward inside
    for n in g_in:
        np.testing.assert_array_equal(g_out[n], g_in[n])
        np.testing.assert_array_equal(g32_in[n], g32[n])
    assert not vitc.is_autocast_enabled()


@pytest.mark.skipif(not NATIVE, reason="this CPU has no AVX512-BF16")
def test_vit_fallback_equals_avx512bf16_within_rounding(vit_case):
    vm, _, x, y = vit_case
    z, g = _vit_grads(vm, x, y, True)
    _C._bf16_gemm_kernel("fallback")
    try:
        zf, gf = _vit_grads(vm, x, y, True)
    finally:
        _C._bf16_gemm_kernel("auto")
    assert _rel(zf, z) < 1e-5  # measured 1.1e-7 and 9.5e-7: f32 addition order only
    for n in g:
        assert _rel(gf[n], g[n]) < 1e-4, n


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
                    reason="Fashion-MNIST not installed")
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_trainer_amp_option_runs_fit_under_autocast(amp, monkeypatch, capsys):
    import vitc.train.__main__ as cli
    seen = []
    real_fit = cli.fit

    def spy(*a, **k):
        seen.append(vitc.is_autocast_enabled())
        return real_fit(*a, **k)
    monkeypatch.setattr(cli, "fit", spy)
    rc = cli.main(["--model", "vit_seed_mnist", "--model-kwargs", "depth=1", "dim=32", "heads=2", "dim_head=16",
                   "mlp_dim=64", "--epochs", "1", "--subset", "200", "--test-subset", "100", "--no-progress",
                   "--amp", amp])
    assert rc == 0 and "final test accuracy" in capsys.readouterr().out
    assert seen == [amp == "bf16"] and not vitc.is_autocast_enabled()
