"""matmul and linear on vt_k_gemm (csrc/ops/gemm.c): the thin products that run on vitc's own
kernel (plain A, K <= 1536, m·n·k >= 65536) and the ones that go to OpenBLAS, against torch,
forward and backward, over the tile remainders (rows mod 6, columns mod 16 and mod 8), strided
operands and bias; results independent of the thread count."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import vitc
from opcheck import check_op, rand

# (rows, in, out): rows·in·out >= 65536 with in <= 1536 is our kernel in forward
SHAPES = [(97, 64, 1536 // 8), (200, 64, 17), (13, 512, 33), (1700 // 10, 64, 100), (7, 100, 9), (61, 129, 15),
          (6, 96, 16), (5, 96, 8), (301, 24, 1), (3, 2, 5)]


@pytest.mark.parametrize("rows,din,dout", SHAPES)
def test_linear_matches_torch(rows, din, dout):
    inputs = [rand(rows, din), rand(dout, din), rand(dout)]
    check_op(vitc.linear, TF.linear, inputs, rtol=1e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=5e-5, fd=False)


@pytest.mark.parametrize("m,k,n", [(97, 64, 200), (13, 33, 47), (120, 512, 24), (64, 600, 64), (7, 8, 9),
                                   (70, 1536, 20), (40, 1600, 16)])
@pytest.mark.parametrize("noncontig", [False, True])
def test_matmul_matches_torch(m, k, n, noncontig):
    check_op(vitc.matmul, torch.matmul, [rand(m, k), rand(k, n)], rtol=1e-5, atol=2e-5, grad_rtol=1e-4,
             grad_atol=5e-5, fd=False, noncontig=noncontig)


def test_batched_and_row_strided_operands():
    check_op(vitc.matmul, torch.matmul, [rand(4, 37, 64), rand(64, 50)], rtol=1e-5, atol=2e-5, fd=False)
    check_op(vitc.matmul, torch.matmul, [rand(3, 37, 64), rand(3, 64, 50)], rtol=1e-5, atol=2e-5, fd=False)
    # A a column slice of a wider matrix: row stride 100 > k = 64 goes to the kernel as lda
    wide = rand(150, 100)
    a, b = vitc.from_numpy(wide)[:, :64], vitc.from_numpy(rand(64, 40))
    np.testing.assert_allclose(vitc.matmul(a, b).numpy(), wide[:, :64] @ b.numpy(), rtol=1e-5, atol=2e-5)


def test_finite_differences_on_the_own_kernel():
    check_op(vitc.linear, TF.linear, [rand(50, 64), rand(40, 64), rand(40)], fd=True)


def _run(env, code):
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True,
                         check=True)
    return out.stdout


def test_thread_count_and_blas_fallback():
    code = ("import numpy as np, vitc, sys; r = np.random.default_rng(0);"
            "a = vitc.from_numpy(r.standard_normal((1000, 64)).astype(np.float32));"
            "w = vitc.from_numpy(r.standard_normal((300, 64)).astype(np.float32));"
            "sys.stdout.write(vitc.linear(a, w).numpy().tobytes().hex())")
    one, two = (_run({"OMP_NUM_THREADS": t}, code) for t in ("1", "2"))
    assert one == two  # each element is summed by one thread in a fixed order
    blas = np.frombuffer(bytes.fromhex(_run({"VITC_GEMM": "blas"}, code)), np.float32)
    np.testing.assert_allclose(np.frombuffer(bytes.fromhex(one), np.float32), blas, rtol=1e-5, atol=1e-5)


def test_baseline_isa_kernel():
    code = ("import numpy as np, vitc, sys; r = np.random.default_rng(1);"
            "a = r.standard_normal((203, 70)).astype(np.float32); b = r.standard_normal((70, 45)).astype(np.float32);"
            "d = vitc.matmul(vitc.from_numpy(a), vitc.from_numpy(b)).numpy() - a.astype(np.float64) @ b;"
            "sys.stdout.write(str(float(np.abs(d).max())))")
    assert float(_run({"VITC_ISA": "baseline"}, code)) < 1e-4


@pytest.mark.parametrize("mode", ["own", "blas"])
def test_forced_paths_agree_with_float64(mode):
    """_gemm_mode forces every product onto one path (what bench/gemm.py compares): both give the
    float64 product, transposed operands and K beyond the default own-kernel range included"""
    r = np.random.default_rng(2)
    try:
        vitc._C._gemm_mode(mode)
        for m, k, n in [(60, 1700, 70), (33, 40, 17), (200, 2000, 9)]:
            a, b = r.standard_normal((k, m)).astype(np.float32), r.standard_normal((n, k)).astype(np.float32)
            got = vitc.matmul(vitc.from_numpy(a).t(), vitc.from_numpy(b).t()).numpy()  # Aᵀ·Bᵀ: both transposed
            ref = a.T.astype(np.float64) @ b.T
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    finally:
        vitc._C._gemm_mode("auto")


# weight gradients (Aᵀ·B, K long) run on the AVX-512 kernel (kernels/gemm_at512.c) where it may run
AT512 = vitc._C._attn_kernel_isa() == "avx512"


def _weight_gradient_path(otherwise):
    return "own-at512" if AT512 else otherwise


def test_gemm_mode_rejects_unknown_names():
    with pytest.raises(ValueError, match="'auto', 'blas' or 'own'"):
        vitc._C._gemm_mode("fastest")
    assert vitc._C._gemm_auto_path(False, 1700, 64, 1536) == "own"
    assert vitc._C._gemm_auto_path(True, 1536, 64, 1700) == _weight_gradient_path("blas-mirrored")
    assert vitc._C._gemm_auto_path(True, 64, 512, 1700) == _weight_gradient_path("blas")


WIDENING = [(1700, 1536, 64), (300, 400, 20), (401, 97, 31)]
_WIDENING_CODE = """
import numpy as np, vitc, sys
k, m, n = {k}, {m}, {n}
r = np.random.default_rng(3)
a, b = r.standard_normal((k, m)).astype(np.float32), r.standard_normal((k, n)).astype(np.float32)
got = vitc.matmul(vitc.from_numpy(a).t(), vitc.from_numpy(b)).numpy()
np.testing.assert_allclose(got, a.T.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))
x, w = vitc.from_numpy(b), vitc.from_numpy(r.standard_normal((m, n)).astype(np.float32))
w.requires_grad = True
(vitc.linear(x, w) * vitc.from_numpy(a)).sum().backward()  # dW = aᵀ·b
np.testing.assert_allclose(w.grad.numpy(), a.T.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))
sys.stdout.write(vitc._C._gemm_auto_path(True, m, n, k))
"""


@pytest.mark.parametrize("k,m,n", WIDENING)
def test_widening_weight_gradient_mirrored(k, m, n):
    """Aᵀ·B with m >= 3n goes to OpenBLAS as its mirror Bᵀ·A, transposed back (gemm.c,
    mirror_wins), where the AVX-512 weight-gradient kernel does not run (VITC_ISA=avx2 here): the
    same product, through matmul and through linear's weight gradient"""
    assert _run({"VITC_ISA": "avx2"}, _WIDENING_CODE.format(k=k, m=m, n=n)) == "blas-mirrored"


@pytest.mark.parametrize("k,m,n", WIDENING)
def test_widening_weight_gradient_default_path(k, m, n):
    """the same products on this machine's default path (the AVX-512 kernel where it runs)"""
    assert _run({}, _WIDENING_CODE.format(k=k, m=m, n=n)) == _weight_gradient_path("blas-mirrored")


@pytest.mark.parametrize("m,n,k", [(128, 64, 1700), (64, 100, 600), (576, 192, 700), (200, 70, 512)])
def test_weight_gradient_chunks_are_thread_independent(m, n, k):
    """Aᵀ·B with a long K: on OpenBLAS in an even number of equal chunks (gemm.c, blas_chunk), the
    narrow ones in two halves, the mirrored 576-wide one in 6; on the AVX-512 kernel in parts of K
    fixed by K (gemm_at512.c); right, and the same bits at 1 and 2 threads"""
    r = np.random.default_rng(5)
    a, b = r.standard_normal((k, m)).astype(np.float32), r.standard_normal((k, n)).astype(np.float32)
    before = vitc.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            vitc.set_num_threads(t)
            outs.append(vitc.matmul(vitc.from_numpy(a).t(), vitc.from_numpy(b)).numpy())
    finally:
        vitc.set_num_threads(before)
    np.testing.assert_allclose(outs[0], a.T.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    assert np.array_equal(outs[0], outs[1])


def test_large_plain_products_take_the_own_kernel():
    """DeiT-Tiny's forward and input-gradient products (m·n·k > 2e8, K <= 1536) run on the own
    kernel; weight gradients and K > 1536 stay on OpenBLAS"""
    assert vitc._C._gemm_auto_path(False, 6304, 768, 192) == "own"
    assert vitc._C._gemm_auto_path(False, 6304, 192, 768) == "own"
    assert vitc._C._gemm_auto_path(False, 6304, 192, 2048) == "blas"
    assert vitc._C._gemm_auto_path(True, 192, 768, 6304) == _weight_gradient_path("blas")


@pytest.mark.skipif(not AT512, reason="the AVX-512 weight-gradient kernel needs AVX-512")
@pytest.mark.parametrize("m", [1, 7, 8, 9, 97])
@pytest.mark.parametrize("n,k", [(1, 1700), (17, 256), (32, 511), (33, 512), (45, 1023), (64, 1024), (70, 40)])
def test_at512_tails_against_float64(m, n, k):
    """gemm_at512.c over its remainders: panels of 8 columns of A (m mod 8), strips of 32 of B
    (n mod 32: masked lanes in both halves), K in 1, 2 or 4 parts and blocks of unequal sizes; every
    size forced onto it (_gemm_mode('own')); A and B read through row strides wider than m and n;
    the same bits at 1 and 2 threads"""
    r = np.random.default_rng(m * 1000 + n)
    wide_a = r.standard_normal((k, m + 5)).astype(np.float32)
    wide_b = r.standard_normal((k, n + 3)).astype(np.float32)
    ref = wide_a[:, :m].T.astype(np.float64) @ wide_b[:, :n]
    before = vitc.get_num_threads()
    outs = []
    try:
        vitc._C._gemm_mode("own")
        for t in (1, 2):
            vitc.set_num_threads(t)
            a, b = vitc.from_numpy(wide_a)[:, :m], vitc.from_numpy(wide_b)[:, :n]
            outs.append(vitc.matmul(a.t(), b).numpy())
    finally:
        vitc._C._gemm_mode("auto")
        vitc.set_num_threads(before)
    np.testing.assert_allclose(outs[0], ref, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.skipif(not AT512, reason="the AVX-512 weight-gradient kernel needs AVX-512")
def test_at512_linear_weight_gradient_matches_torch():
    """a linear layer's weight gradient at LV-ViT-Tiny's FFN shapes (K = 6400 rows) on the default
    path, against torch"""
    r = np.random.default_rng(11)
    for din, dout in [(64, 192), (192, 64)]:
        assert vitc._C._gemm_auto_path(True, dout, din, 6400) == "own-at512"
        x, w, g = (r.standard_normal(s).astype(np.float32) for s in ((6400, din), (dout, din), (6400, dout)))
        vx, vw = vitc.from_numpy(x), vitc.from_numpy(w)
        vw.requires_grad = True
        (vitc.linear(vx, vw) * vitc.from_numpy(g)).sum().backward()
        tw = torch.from_numpy(w).requires_grad_()
        (TF.linear(torch.from_numpy(x), tw) * torch.from_numpy(g)).sum().backward()
        np.testing.assert_allclose(vw.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("out", [1, 8, 9, 17, 45, 200])
def test_bias_added_in_the_kernels_store(out):
    """linear's bias is added by the own kernel as it stores its first K block (gemm.c, tile mode 3)
    instead of a fill of y beforehand: with one K block (in <= 384) that is bias + x·Wᵀ rounded once,
    so linear(x, w, b) equals linear(x, w) + b bit for bit, over full and part-valid column strips;
    beyond one block it still equals the fill-first form (the same as the OpenBLAS path to rounding)"""
    r = np.random.default_rng(out)
    x, w, b = r.standard_normal((700, 64)).astype(np.float32), r.standard_normal((out, 64)).astype(np.float32), \
        r.standard_normal(out).astype(np.float32)
    vx, vw, vb = vitc.from_numpy(x), vitc.from_numpy(w), vitc.from_numpy(b)
    if 700 * out * 64 >= 65536:
        assert vitc._C._gemm_auto_path(False, 700, out, 64) == "own"
    assert np.array_equal(vitc.linear(vx, vw, vb).numpy(), (vitc.linear(vx, vw) + vb).numpy())
    xl, wl = r.standard_normal((300, 1000)).astype(np.float32), r.standard_normal((out, 1000)).astype(np.float32)
    got = vitc.linear(vitc.from_numpy(xl), vitc.from_numpy(wl), vb).numpy()
    np.testing.assert_allclose(got, xl.astype(np.float64) @ wl.T + b, rtol=1e-4, atol=1e-3)
