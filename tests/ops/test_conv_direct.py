"""conv2d's direct path (csrc/kernels/conv_direct.c: stride 1, one group, at most 32 output channels,
not 1×1) against PyTorch, forward and both gradients, with finite differences; its remainder tiles
(output channels not a multiple of 4, kernel rows not a multiple of 3); the same bits at any thread
count; the portable (baseline ISA) build of the kernel, and the AVX2 build on a machine that runs the
AVX-512 one (conv_direct512.c); strided convs through phase images (kernels/conv_phase.c), their
input gradient phase by phase on AVX-512."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import at_thread_counts, check_op, rand

RNG = np.random.default_rng(11)
TOL = dict(rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-4)


def _inputs(N, C, H, W, O, k, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rand(N, C, H, W, rng=RNG)
    w = rand(O, C, kh, kw, rng=RNG) / np.float32(np.sqrt(C * kh * kw))
    return [x, w] + ([rand(O, rng=RNG)] if bias else [])


def _fns(**kw):
    return (lambda x, w, b=None: vitc.conv2d(x, w, b, **kw)), (lambda x, w, b=None: F.conv2d(x, w, b, **kw))


# N, C, H, W, O, kernel, padding, dilation, bias
DIRECT_CASES = [
    (3, 16, 14, 14, 16, 3, 1, 1, False),        # LV-ViT-mnist's stem convs 2 and 3
    (2, 3, 9, 7, 1, 3, 1, 1, True),             # one output channel: a 1-row tile
    (2, 5, 8, 8, 2, 3, 0, 1, True),             # 2-row tile, unpadded
    (2, 4, 7, 10, 3, (2, 5), (1, 2), 1, True),  # 3-row tile, non-square kernel: taps 3 + 2 in a row
    (2, 2, 11, 9, 5, 7, 3, 1, False),           # 7 taps in a row (3 + 3 + 1), O = 4 + 1
    (1, 3, 12, 12, 7, 3, 2, 2, True),           # dilation 2
    (2, 6, 10, 9, 32, 3, (0, 2), (2, 1), True),  # the widest direct conv, padding and dilation per axis
    (1, 2, 3, 3, 6, 5, 2, 1, True),             # kernel larger than the input, padded
    (2, 3, 5, 37, 20, 3, 1, 1, True),           # rows wider than a 16-position tile (16 + 16 + 5), O = 16 + 4
]


@pytest.mark.parametrize("N,C,H,W,O,k,p,d,bias", DIRECT_CASES)
def test_direct_conv_matches_torch(N, C, H, W, O, k, p, d, bias):
    v, t = _fns(padding=p, dilation=d)
    check_op(v, t, _inputs(N, C, H, W, O, k, bias), fd=N * C * H * W <= 400, **TOL)


def test_neighbours_of_the_direct_path_still_match():
    # 33 output channels, groups 2 and 1×1 take im2col + GEMM (stride 2 with 8 channels: the phase
    # path, whose own cases are below); results as before
    for kw, args in ((dict(padding=1), (2, 4, 8, 8, 33, 3, True)), (dict(stride=2, padding=1), (2, 4, 9, 9, 8, 3, True)),
                     (dict(), (2, 4, 6, 6, 8, 1, True))):
        v, t = _fns(**kw)
        check_op(v, t, _inputs(*args), fd=False, **TOL)
    x, w = rand(2, 4, 8, 8, rng=RNG), rand(6, 2, 3, 3, rng=RNG)
    v, t = _fns(padding=1, groups=2)
    check_op(v, t, [x, w], fd=False, **TOL)


@pytest.mark.parametrize("N", [3, 11])  # fewer images than dW parts, and more (parts of 1 and 2 images)
def test_direct_conv_bits_do_not_depend_on_threads(N):
    x, w, b = _inputs(N, 16, 14, 14, 16, 3, True)
    gy = rand(N, 16, 14, 14, rng=RNG)

    def run():
        xv, wv, bv = (vitc.from_numpy(a.copy()) for a in (x, w, b))
        for a in (xv, wv, bv):
            a.requires_grad = True
        y = vitc.conv2d(xv, wv, bv, padding=1)
        (y * vitc.from_numpy(gy)).sum().backward()
        return [y.detach().numpy()] + [a.grad.numpy() for a in (xv, wv, bv)]
    first, *rest = at_thread_counts(run, (1, 2, 3))
    for other in rest:
        for a, b_ in zip(first, other):
            np.testing.assert_array_equal(a, b_)
    # and the values are PyTorch's
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.conv2d(tx, tw, tb, padding=1)
    (ty * torch.tensor(gy)).sum().backward()
    for got, want in zip(first, (ty.detach(), tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


def test_baseline_isa_build_of_the_direct_kernel():
    code = ("import numpy as np, torch, vitc, sys; r = np.random.default_rng(2);"
            "x = r.standard_normal((3, 5, 9, 8)).astype(np.float32); w = r.standard_normal((7, 5, 3, 3)).astype(np.float32);"
            "xv, wv = vitc.from_numpy(x), vitc.from_numpy(w); xv.requires_grad = wv.requires_grad = True;"
            "y = vitc.conv2d(xv, wv, None, padding=1); (y * y).sum().backward();"
            "tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True);"
            "ty = torch.nn.functional.conv2d(tx, tw, None, padding=1); (ty * ty).sum().backward();"
            "d = [np.abs(a - b.detach().numpy()).max() / (1 + np.abs(b.detach().numpy()).max()) for a, b in"
            " ((y.detach().numpy(), ty), (xv.grad.numpy(), tx.grad), (wv.grad.numpy(), tw.grad))];"
            "sys.stdout.write(str(max(d)))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, VITC_ISA="baseline"), capture_output=True,
                         text=True, check=True)
    assert float(out.stdout) < 1e-5


# strided convs with few output channels: the direct kernel over phase images (kernels/conv_phase.c)
# N, C, H, W, O, kernel, stride, padding, bias
PHASE_CASES = [
    (2, 1, 28, 28, 16, 7, 2, 3, False),            # LV-ViT-mnist's first stem conv
    (2, 3, 9, 8, 5, 3, 2, 1, True),                # odd sizes: the last phase rows read past the input
    (2, 2, 10, 11, 3, (5, 4), (2, 3), (2, 1), True),  # stride and kernel per axis, taps past the kernel
    (1, 2, 7, 7, 32, 3, 3, 0, True),               # stride 3, the widest direct conv
    (2, 2, 9, 40, 17, 5, 2, 2, True),              # output rows of 20 (16 + 4), O = 16 + 1, 5×5 over 2×2 phases
    # 16 input channels: on AVX-512 their dx runs phase by phase through the direct kernel
    (2, 16, 14, 14, 64, 2, 2, 0, True),            # LV-ViT-mnist's projection (kernel = stride; AVX-512: 64 outputs)
    (2, 16, 8, 10, 6, 2, 3, (1, 2), True),         # kernel < stride: phases no tap reaches get no gradient
    (1, 32, 9, 9, 5, 3, 2, 0, True),               # the last row and column no window reaches
]


@pytest.mark.parametrize("N,C,H,W,O,k,s,p,bias", PHASE_CASES)
def test_strided_conv_through_phases_matches_torch(N, C, H, W, O, k, s, p, bias):
    v, t = _fns(stride=s, padding=p)
    check_op(v, t, _inputs(N, C, H, W, O, k, bias), fd=N * C * H * W <= 400, **TOL)


def test_strided_conv_through_phases_bits_do_not_depend_on_threads():
    x, w = _inputs(11, 1, 28, 28, 16, 7, False)
    gy = rand(11, 16, 14, 14, rng=RNG)

    def run():
        wv = vitc.from_numpy(w.copy())
        wv.requires_grad = True
        y = vitc.conv2d(vitc.from_numpy(x), wv, None, stride=2, padding=3)
        (y * vitc.from_numpy(gy)).sum().backward()
        return y.detach().numpy(), wv.grad.numpy()
    first, *rest = at_thread_counts(run, (1, 2, 3))
    for other in rest:
        for a, b_ in zip(first, other):
            np.testing.assert_array_equal(a, b_)


def test_avx2_build_of_the_direct_kernel_on_an_avx512_machine():
    # VITC_ISA=avx2 keeps the AVX2 build where the AVX-512 one would run; its forward sums every output
    # in the same order with one FMA per tap, so the two builds agree bit for bit there
    x, w, b = _inputs(3, 16, 14, 14, 16, 3, True)
    x2, w2 = _inputs(2, 1, 28, 28, 16, 7, False)
    x3, w3, b3 = _inputs(2, 3, 5, 37, 20, 3, True)  # rows of 37: the AVX-512 build's tiles of 16, 16 and 5
    with vitc.no_grad():
        here = [vitc.conv2d(vitc.from_numpy(x), vitc.from_numpy(w), vitc.from_numpy(b), padding=1).numpy(),
                vitc.conv2d(vitc.from_numpy(x2), vitc.from_numpy(w2), None, stride=2, padding=3).numpy(),
                vitc.conv2d(vitc.from_numpy(x3), vitc.from_numpy(w3), vitc.from_numpy(b3), padding=1).numpy()]
    code = ("import numpy as np, torch, vitc, sys; a = np.load(sys.argv[1]);"
            "xv, wv, bv = (vitc.from_numpy(a[k]) for k in ('x', 'w', 'b'));"
            "xv.requires_grad = wv.requires_grad = bv.requires_grad = True;"
            "y = vitc.conv2d(xv, wv, bv, padding=1); (y * y).sum().backward();"
            "tx, tw, tb = (torch.tensor(a[k], requires_grad=True) for k in ('x', 'w', 'b'));"
            "ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1); (ty * ty).sum().backward();"
            "d = [np.abs(p - q.detach().numpy()).max() / (1 + np.abs(q.detach().numpy()).max()) for p, q in"
            " ((y.detach().numpy(), ty), (xv.grad.numpy(), tx.grad), (wv.grad.numpy(), tw.grad))];"
            "y2 = vitc.conv2d(vitc.from_numpy(a['x2']), vitc.from_numpy(a['w2']), None, stride=2, padding=3);"
            "y3 = vitc.conv2d(vitc.from_numpy(a['x3']), vitc.from_numpy(a['w3']), vitc.from_numpy(a['b3']), padding=1);"
            "np.savez(sys.argv[2], y=y.detach().numpy(), y2=y2.detach().numpy(), y3=y3.detach().numpy());"
            "sys.stdout.write(str(max(d)))")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, x=x, w=w, b=b, x2=x2, w2=w2, x3=x3, w3=w3, b3=b3)
        out = subprocess.run([sys.executable, "-c", code, src, dst], env=dict(os.environ, VITC_ISA="avx2"),
                             capture_output=True, text=True, check=True)
        assert float(out.stdout) < 1e-5
        got = np.load(dst)
        np.testing.assert_array_equal(got["y"], here[0])
        np.testing.assert_array_equal(got["y2"], here[1])
        np.testing.assert_array_equal(got["y3"], here[2])
