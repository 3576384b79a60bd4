"""conv2d with kernel = stride, unpadded, one group (csrc/ops/conv/patch.c: a GEMM per image over
its patches) against PyTorch: forward, input, weight and bias gradients, including the trailing rows
and columns PyTorch's floor leaves out of every window (zero gradient); the same bits at any thread
count. conv.c sends only some such convs there (large cols, shapes the phase path does not take), so
these tests force it with VITC_CONV_PATCH=1 (read at each call), but for one case the rule picks."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch.nn.functional as F

import vitc
from opcheck import at_thread_counts, check_allocation_failures, check_op, rand

from test_conv_direct import RNG, TOL, _inputs  # the same (x, w[, b]) draws; its file runs first


@pytest.fixture(autouse=True)
def _patch_path(monkeypatch):
    monkeypatch.setenv("VITC_CONV_PATCH", "1")


def _fns(k):
    return (lambda x, w, b=None: vitc.conv2d(x, w, b, stride=k)), (lambda x, w, b=None: F.conv2d(x, w, b, stride=k))


# N, C, H, W, O, kernel (= stride), bias
PATCH_CASES = [
    (1, 3, 8, 8, 72, 2, True),          # batch 1: fewer images than threads, the GEMMs thread themselves
    (2, 16, 14, 14, 64, 2, True),       # LV-ViT-Tiny-MNIST's projection (the phase path's on AVX-512)
    (2, 16, 15, 13, 70, 2, True),       # non-square, odd sizes: the last row and column are in no window
    (3, 2, 9, 11, 66, 4, True),         # kernel 4, 1 and 3 pixels left over
    (2, 3, 21, 16, 80, 7, False),       # kernel 7, 2 columns left over
    (2, 4, 10, 12, 68, (2, 3), True),   # non-square kernel and stride
    (1, 3, 32, 48, 192, 16, True),      # a DeiT-style 16×16 patch embedding (K = 768)
    (9, 1, 4, 4, 65, (1, 2), True),     # 1×2 patches, 9 images: dW in 8 runs of images
]


@pytest.mark.parametrize("N,C,H,W,O,k,bias", PATCH_CASES)
def test_patch_conv_matches_torch(N, C, H, W, O, k, bias):
    v, t = _fns(k)
    check_op(v, t, _inputs(N, C, H, W, O, k, bias), fd=False, **TOL)


def test_patch_conv_chosen_by_the_rule(monkeypatch):
    monkeypatch.delenv("VITC_CONV_PATCH")  # DeiT's 16×16 patches of 3 channels: col 768 × 196
    v, t = _fns(16)
    check_op(v, t, _inputs(2, 3, 224, 230, 72, 16, True), fd=False, **TOL)


def test_patch_conv_pixels_in_no_window_get_zero_gradient():
    x, w, b = _inputs(2, 3, 11, 9, 72, 4, True)
    xv = vitc.from_numpy(x)
    xv.requires_grad = True
    vitc.conv2d(xv, vitc.from_numpy(w), vitc.from_numpy(b), stride=4).sum().backward()
    g = xv.grad.numpy()
    assert np.all(g[:, :, 8:, :] == 0) and np.all(g[:, :, :, 8:] == 0)
    assert np.all(g[:, :, :8, :8] != 0)


@pytest.mark.parametrize("grad_inputs", [[0], [1], [1, 2]])
def test_patch_conv_one_gradient_alone(grad_inputs):
    v, t = _fns(2)
    check_op(v, t, _inputs(3, 4, 12, 10, 96, 2, True), fd=False, grad_inputs=grad_inputs, **TOL)


def test_patch_conv_empty_batch():
    v, t = _fns(2)
    check_op(v, t, _inputs(0, 3, 6, 8, 72, 2, True), fd=False, **TOL)


@pytest.mark.parametrize("N", [1, 5])  # one image: threaded GEMMs; five: a GEMM per image on each thread
def test_patch_conv_allocation_failures_and_leaks(N):
    arrs = _inputs(N, 3, 8, 10, 80, 2, True)

    def run():
        x, w, b = [vitc.from_numpy(a.copy()) for a in arrs]
        x.requires_grad = w.requires_grad = b.requires_grad = True
        vitc.conv2d(x, w, b, stride=2).sum().backward()
    check_allocation_failures(run, attempts=200, min_failures=4)


def test_patch_conv_bits_do_not_depend_on_threads():
    x, w, b = _inputs(11, 3, 20, 18, 96, 4, True)
    gy = rand(11, 96, 5, 4, rng=RNG)

    def run():
        xv, wv, bv = vitc.from_numpy(x), vitc.from_numpy(w.copy()), vitc.from_numpy(b.copy())
        xv.requires_grad = wv.requires_grad = bv.requires_grad = True
        y = vitc.conv2d(xv, wv, bv, stride=4)
        (y * vitc.from_numpy(gy)).sum().backward()
        return y.detach().numpy(), xv.grad.numpy(), wv.grad.numpy(), bv.grad.numpy()
    first, *rest = at_thread_counts(run, (1, 2, 3))
    for other in rest:
        for a, b_ in zip(first, other):
            np.testing.assert_array_equal(a, b_)


def test_avx2_build_of_the_patch_path():
    # the GEMMs' AVX2 kernels (VITC_ISA=avx2 on an AVX-512 machine), LV-ViT's projection among the shapes
    code = r"""
import numpy as np, torch, vitc
rng = np.random.default_rng(5)
worst = 0.0
for N, C, H, W, O, k in ((4, 16, 14, 14, 64, 2), (3, 5, 9, 10, 12, 2), (2, 1, 28, 27, 64, 7)):
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    gy = rng.standard_normal((N, O, H // k, W // k)).astype(np.float32)
    def run():
        xv, wv, bv = (vitc.from_numpy(a.copy()) for a in (x, w, b))
        xv.requires_grad = wv.requires_grad = bv.requires_grad = True
        (vitc.conv2d(xv, wv, bv, stride=k) * vitc.from_numpy(gy)).sum().backward()
        return [vitc.conv2d(xv.detach(), wv.detach(), bv.detach(), stride=k).numpy(), xv.grad.numpy(),
                wv.grad.numpy(), bv.grad.numpy()]
    outs = []
    for nt in (1, 2, 3):
        vitc.set_num_threads(nt)
        outs.append(run())
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            assert np.array_equal(a, c), "bits differ across thread counts"
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=k)
    (ty * torch.from_numpy(gy)).sum().backward()
    for mine, ref in zip(outs[0], (ty.detach(), tx.grad, tw.grad, tb.grad)):
        ref = ref.numpy()
        worst = max(worst, float(np.abs(mine - ref).max() / (1 + np.abs(ref).max())))
print(worst)
"""
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, VITC_ISA="avx2", VITC_CONV_PATCH="1"), capture_output=True,
                         text=True, check=True)
    assert float(out.stdout) < 1e-5
