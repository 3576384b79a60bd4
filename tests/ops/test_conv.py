"""conv2d and the 2-d pools against PyTorch (forward, input/weight/bias gradients), finite
differences, and the inputs that must raise."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import assert_close, at_thread_counts, check_allocation_failures, check_op, rand

RNG = np.random.default_rng(7)
TOL = dict(rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-4)


def conv_inputs(N, C, H, W, O, k, groups, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rand(N, C, H, W, rng=RNG)
    w = rand(O, C // groups, kh, kw, rng=RNG) / np.float32(np.sqrt(C // groups * kh * kw))
    return [x, w] + ([rand(O, rng=RNG)] if bias else [])


def conv_fns(**kw):
    def v(x, w, b=None):
        return vitc.conv2d(x, w, b, **kw)

    def t(x, w, b=None):
        return F.conv2d(x, w, b, **kw)
    return v, t


# N, C, H, W, O, kernel, stride, padding, dilation, groups, bias
CONV_CASES = [
    (1, 3, 8, 8, 4, 1, 1, 0, 1, 1, True),              # pointwise: the image is its own col
    (3, 4, 7, 9, 6, 1, 1, 0, 1, 2, False),             # pointwise, grouped
    (2, 3, 6, 5, 4, 1, 2, 1, 1, 1, True),              # 1x1 strided + padded (not pointwise)
    (2, 3, 5, 6, 4, 1, 1, 1, 1, 1, True),              # stride 1, padding > kernel extent: col2im dx
    (2, 3, 5, 6, 4, 3, 1, (3, 1), 1, 1, False),        # same, in one direction only
    (2, 3, 9, 9, 5, 3, 1, 1, 1, 1, True),
    (3, 3, 10, 11, 4, 3, 2, 1, 1, 1, True),
    (1, 2, 13, 12, 3, 3, 4, 3, 1, 1, True),
    (2, 3, 16, 16, 8, 7, 2, 3, 1, 1, False),
    (1, 3, 9, 10, 2, 7, 1, 0, 1, 1, True),
    (2, 4, 12, 10, 4, 3, 1, 2, 2, 1, True),            # dilation 2
    (2, 4, 11, 11, 4, 3, 2, 0, 2, 2, True),            # dilation + stride + groups
    (2, 6, 9, 8, 6, 3, 1, 1, 1, 6, True),              # depthwise
    (2, 6, 9, 8, 12, 3, 2, 1, 1, 6, False),            # depthwise, channel multiplier 2
    (3, 4, 8, 11, 6, (2, 5), (1, 2), (0, 2), (2, 1), 2, True),  # everything non-square
    (3, 2, 5, 5, 3, 5, 1, 0, 1, 1, True),              # kernel covers the whole input
    (2, 3, 8, 8, 4, 4, 4, 0, 1, 1, True),              # stride == kernel (patch embedding)
    (1, 1, 4, 4, 2, 7, 1, 3, 1, 1, True),              # kernel larger than the input, padded
    (3, 3, 64, 64, 4, 7, 2, 3, 1, 1, True),            # 32x32 outputs: 2 images per GEMM, 2 chunks
    (3, 2, 48, 48, 3, 3, 1, 1, 1, 1, True),            # >= 2048 columns per image: one per GEMM
    (3, 3, 48, 48, 4, 1, 1, 0, 1, 1, True),            # pointwise, one image per GEMM, in parallel
    (4, 4, 48, 45, 4, 3, 1, 1, 1, 4, True),            # depthwise, one image per GEMM
    (5, 2, 40, 40, 3, 3, 1, 1, 1, 1, False),           # 3 chunks of 2, 2, 1 images
    (2, 16, 64, 64, 4, 3, 1, 1, 1, 1, True),           # col built in 3 row blocks per image
    (1, 16, 64, 64, 4, 3, 1, 1, 1, 1, True),           # one image: row blocks shared by threads
    (2, 16, 128, 128, 4, 3, 2, 1, 1, 2, True),         # strided, grouped, row blocks
    (2, 128, 48, 48, 8, 1, 1, 0, 1, 1, True),          # pointwise in 2 row blocks
]


@pytest.mark.parametrize("N,C,H,W,O,k,s,p,d,g,bias", CONV_CASES)
def test_conv2d(N, C, H, W, O, k, s, p, d, g, bias):
    v, t = conv_fns(stride=s, padding=p, dilation=d, groups=g)
    check_op(v, t, conv_inputs(N, C, H, W, O, k, g, bias), fd=H * W <= 256, **TOL)


@pytest.mark.parametrize("case", [CONV_CASES[4], CONV_CASES[10], CONV_CASES[12], CONV_CASES[16]])
def test_conv2d_noncontiguous(case):
    N, C, H, W, O, k, s, p, d, g, bias = case
    v, t = conv_fns(stride=s, padding=p, dilation=d, groups=g)
    check_op(v, t, conv_inputs(N, C, H, W, O, k, g, bias), noncontig=True, fd=False, **TOL)


@pytest.mark.parametrize("case", [(3, 3, 64, 64, 4, 7, 2, 3), (1, 16, 64, 64, 4, 3, 1, 1)])
def test_conv2d_finite_difference_large(case):
    """The parallel multi-chunk and row-block paths against finite differences."""
    N, C, H, W, O, k, s, p = case
    v, t = conv_fns(stride=s, padding=p)
    check_op(v, t, conv_inputs(N, C, H, W, O, k, 1, True), fd_eps=3e-2, **TOL)


def test_conv2d_channels_last_view():
    """A channels-last (N, H, W, C) array seen as NCHW through permute."""
    x, w, b = conv_inputs(3, 5, 12, 14, 4, 3, 1, True)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    v, t = conv_fns(padding=1, stride=2)
    check_op(lambda x, w, b: v(x.permute(0, 3, 1, 2), w, b),
             lambda x, w, b: t(x.permute(0, 3, 1, 2), w, b), [x, w, b], **TOL)


def test_lvvit_stem_shapes():
    """SPEC §5.1 conv stem at 32x32, P = 8: 7x7/2 p3 3->64, 3x3 p1 64->64 twice, 4x4/4 64->D with bias,
    flattened to tokens; compared as one composite (ReLU between convs, BN left out)."""
    x = rand(2, 3, 32, 32, rng=RNG)
    ws = [rand(64, 3, 7, 7, rng=RNG) / 10, rand(64, 64, 3, 3, rng=RNG) / 24, rand(64, 64, 3, 3, rng=RNG) / 24,
          rand(32, 64, 4, 4, rng=RNG) / 32, rand(32, rng=RNG)]

    def stem(lib, relu):
        def f(x, w1, w2, w3, w4, b4):
            h = relu(lib.conv2d(x, w1, None, stride=2, padding=3))
            assert tuple(h.shape) == (2, 64, 16, 16)
            h = relu(lib.conv2d(h, w2, None, padding=1))
            h = relu(lib.conv2d(h, w3, None, padding=1))
            h = lib.conv2d(h, w4, b4, stride=4)
            assert tuple(h.shape) == (2, 32, 4, 4)
            return h.reshape(2, 32, 16).permute(0, 2, 1)
        return f
    check_op(stem(vitc, lambda h: vitc.clamp(h, min=0.0)), stem(F, torch.relu), [x] + ws, fd=False, rtol=1e-4, atol=1e-5,
             grad_rtol=1e-3, grad_atol=1e-4)


def test_stem_first_conv_weight_grad_only():
    """The stem's first conv: images need no gradient, only the weight does."""
    v, t = conv_fns(stride=2, padding=3)
    check_op(v, t, conv_inputs(2, 3, 32, 32, 16, 7, 1, False), grad_inputs=[1], **TOL)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("k,d", [(3, 1), (4, 1), (2, 3), ((4, 3), (1, 2))])
def test_conv2d_padding_same(k, d):
    v, t = conv_fns(padding="same", dilation=d)
    check_op(v, t, conv_inputs(2, 3, 7, 8, 4, k, 1, True), **TOL)
    assert tuple(v(*[vitc.from_numpy(a) for a in conv_inputs(2, 3, 7, 8, 4, k, 1, True)]).shape) == (2, 4, 7, 8)


def test_conv2d_padding_valid_and_pairs():
    v, t = conv_fns(padding="valid", stride=[2, 1])
    check_op(v, t, conv_inputs(2, 3, 7, 8, 4, 3, 1, True), **TOL)
    v, t = conv_fns(padding=[2, 0], stride=(1, 3), dilation=[1, 2])
    check_op(v, t, conv_inputs(2, 3, 7, 8, 4, 3, 1, False), **TOL)


def test_conv2d_unbatched():
    x, w, b = conv_inputs(1, 3, 6, 7, 4, 3, 1, True)
    v, t = conv_fns(padding=1)
    out = check_op(v, t, [x[0], w, b], **TOL)
    assert tuple(out[0].shape) == (4, 6, 7)


def test_conv2d_empty_batch():
    v, t = conv_fns(padding=1)
    check_op(v, t, conv_inputs(0, 3, 6, 7, 4, 3, 1, True), fd=False, **TOL)


@pytest.mark.parametrize("shape", [(4, 3, 48, 48), (1, 16, 64, 64)])
def test_conv2d_thread_counts_agree(shape):
    """The sequential (threaded-GEMM) path and the per-thread path agree, gradients included."""
    arrs = conv_inputs(*shape, 5, 3, 1, True)

    def run():
        x, w, b = [vitc.from_numpy(a.copy()) for a in arrs]
        for t in (x, w, b):
            t.requires_grad = True
        (vitc.conv2d(x, w, b, padding=1) * vitc.from_numpy(gy)).sum().backward()
        return [t.grad.numpy() for t in (x, w, b)]
    gy = rand(shape[0], 5, shape[2], shape[3], rng=RNG)
    one, now = at_thread_counts(run, (1, vitc.get_num_threads()))
    for a, b in zip(one, now):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_conv2d_no_grad_records_nothing():
    x, w = [vitc.from_numpy(a) for a in conv_inputs(2, 3, 6, 6, 4, 3, 1, False)]
    w.requires_grad = True
    with vitc.no_grad():
        y = vitc.conv2d(x, w)
    assert not y.requires_grad


def conv_err(x_shape, w_shape, b_shape=None, **kw):
    x = vitc.zeros(*x_shape)
    w = vitc.zeros(*w_shape)
    b = vitc.zeros(*b_shape) if b_shape else None
    return vitc.conv2d(x, w, b, **kw)


def test_conv2d_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        conv_err((1, 4, 5, 5), (6, 2, 3, 3), groups=3)
    with pytest.raises(ValueError, match=r"divisible by groups.*\(1, 4, 5, 5\)"):
        conv_err((1, 4, 5, 5), (5, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="expects 2 input channels"):
        conv_err((1, 3, 5, 5), (4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"larger than the padded input \(4, 4\).*\(1, 3, 4, 4\).*\(2, 3, 5, 5\)"):
        conv_err((1, 3, 4, 4), (2, 3, 5, 5))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), dilation=3)
    with pytest.raises(ValueError, match="stride must be positive"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="stride must be positive"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), stride=(1, -2))
    with pytest.raises(ValueError, match="padding must be non-negative"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), padding=-1)
    with pytest.raises(ValueError, match="dilation must be positive"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), dilation=0)
    with pytest.raises(ValueError, match="groups must be positive"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), groups=0)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), (3,))
    with pytest.raises(ValueError, match="4-d"):
        conv_err((1, 3, 5, 5), (2, 3, 3))
    with pytest.raises(ValueError, match="3-d .* or 4-d"):
        conv_err((3, 5), (2, 3, 3, 3))
    with pytest.raises(ValueError, match="empty kernel"):
        conv_err((1, 3, 5, 5), (2, 3, 0, 3))
    with pytest.raises(ValueError, match="no channels"):
        conv_err((1, 0, 5, 5), (2, 0, 3, 3))
    with pytest.raises(ValueError, match="not supported for strided"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), padding="same", stride=2)
    with pytest.raises(ValueError, match="'valid' or 'same'"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), padding="full")
    with pytest.raises(ValueError, match="pair"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), stride=(1, 1, 1))
    with pytest.raises(TypeError, match="stride"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), stride=1.5)
    with pytest.raises(TypeError, match="groups"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), groups=True)
    with pytest.raises(TypeError, match="input must be a vitc.Tensor"):
        vitc.conv2d(np.zeros((1, 3, 5, 5), np.float32), vitc.zeros(2, 3, 3, 3))
    with pytest.raises(TypeError, match="bias must be a vitc.Tensor or None"):
        vitc.conv2d(vitc.zeros(1, 3, 5, 5), vitc.zeros(2, 3, 3, 3), 1.0)
    xi = vitc.from_numpy(np.zeros((1, 3, 5, 5), np.int64))
    with pytest.raises(TypeError, match="float32"):
        vitc.conv2d(xi, vitc.zeros(2, 3, 3, 3))
    with pytest.raises(TypeError, match="weight must be float32"):
        vitc.conv2d(vitc.zeros(1, 3, 5, 5), vitc.from_numpy(np.zeros((2, 3, 3, 3), np.int64)))
    with pytest.raises(ValueError, match="too large"):
        conv_err((1, 3, 5, 5), (2, 3, 3, 3), stride=2 ** 40)


# ---- pools -----------------------------------------------------------------------------------

def spread(*shape):
    """Distinct values at least 0.1 apart, so a finite-difference step never reorders a window."""
    n = int(np.prod(shape))
    return (RNG.permutation(n).astype(np.float32) * 0.1 - 0.05 * n).reshape(shape)


# shape, kernel, stride, padding, dilation, ceil_mode
MAX_CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 3, 9, 9), 3, 2, 1, 1, False),               # the ResNet stem pool
    ((1, 2, 10, 7), (3, 2), (2, 1), (1, 0), 1, False),
    ((2, 2, 9, 9), 3, 2, 1, 1, True),
    ((2, 2, 10, 10), 3, 2, 0, 1, True),              # ceil_mode adds a clipped last window
    ((1, 3, 11, 11), 3, 2, 1, 2, False),             # dilation
    ((1, 2, 12, 9), (3, 2), 3, (1, 1), (2, 3), True),
    ((3, 6, 6), 2, 2, 0, 1, False),                  # unbatched
    ((0, 2, 6, 6), 2, 2, 0, 1, False),               # empty batch
]


@pytest.mark.parametrize("shape,k,s,p,d,ceil", MAX_CASES)
def test_max_pool2d(shape, k, s, p, d, ceil):
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    check_op(lambda x: vitc.max_pool2d(x, **kw), lambda x: F.max_pool2d(x, **kw), [spread(*shape)],
             fd=0 not in shape)
    check_op(lambda x: vitc.max_pool2d(x, return_indices=True, **kw),
             lambda x: F.max_pool2d(x, return_indices=True, **kw), [spread(*shape)], fd=False, noncontig=True)


def test_max_pool2d_ties_and_nan():
    x = RNG.integers(0, 3, size=(2, 3, 7, 7)).astype(np.float32)  # many ties: first index wins
    check_op(lambda x: vitc.max_pool2d(x, 3, 2, 1, return_indices=True),
             lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True), [x], fd=False)
    x = rand(1, 2, 6, 6, rng=RNG)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 1, 4, 5] = np.nan
    x[0, 1, 0, 0] = -np.inf
    (v, vi), (t, ti) = vitc.max_pool2d(vitc.from_numpy(x), 3, 2, 1, return_indices=True), \
        F.max_pool2d(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    assert_close(v.numpy(), t.numpy(), 0, 0, "values")
    assert_close(vi.numpy(), ti.numpy(), 0, 0, "indices")


def test_max_pool2d_window_missing_the_input():
    """A dilated window whose taps all fall in the padding gives -inf and torch's index, and no
    gradient (torch 2.x's CPU backward adds it to a pixel of the next plane instead)."""
    x = rand(2, 2, 3, 3, rng=RNG)
    check_op(lambda x: vitc.max_pool2d(x, 2, 1, 1, 4, return_indices=True),
             lambda x: F.max_pool2d(x, 2, 1, 1, 4, return_indices=True), [x], grad=False)
    v = vitc.from_numpy(x)
    v.requires_grad = True
    vitc.max_pool2d(v, 2, 1, 1, 4).sum().backward()
    assert not v.grad.numpy().any()


def test_max_pool2d_large_parallel():
    x = spread(4, 8, 32, 32)
    check_op(lambda x: vitc.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1), [x], fd=False)


# shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
AVG_CASES = [
    ((2, 3, 8, 8), 2, None, 0, False, True, None),
    ((2, 3, 9, 9), 3, 2, 1, False, True, None),
    ((2, 3, 9, 9), 3, 2, 1, False, False, None),
    ((1, 2, 10, 7), (3, 2), (2, 1), (1, 1), False, False, None),
    ((2, 2, 10, 10), 3, 2, 1, True, True, None),     # ceil_mode window past the padding
    ((2, 2, 10, 10), 3, 2, 1, True, False, None),
    ((2, 2, 9, 8), 3, 2, 1, False, True, 5),
    ((3, 6, 6), 2, 1, 1, False, True, None),          # unbatched
    ((4, 8, 32, 32), 3, 2, 1, False, False, None),    # parallel
]


@pytest.mark.parametrize("shape,k,s,p,ceil,cip,div", AVG_CASES)
def test_avg_pool2d(shape, k, s, p, ceil, cip, div):
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip, divisor_override=div)
    check_op(lambda x: vitc.avg_pool2d(x, **kw), lambda x: F.avg_pool2d(x, **kw), [rand(*shape, rng=RNG)],
             fd=np.prod(shape) < 2000)
    check_op(lambda x: vitc.avg_pool2d(x, **kw), lambda x: F.avg_pool2d(x, **kw), [rand(*shape, rng=RNG)],
             noncontig=True, fd=False)


@pytest.mark.parametrize("shape,out", [
    ((2, 3, 8, 8), 1),             # global average pooling
    ((2, 4, 56, 56), 1),           # a large plane (12544 summands in the torch-default eval shape scaled)
    ((2, 3, 9, 11), (3, 4)),       # windows of unequal size
    ((2, 3, 9, 11), (None, 2)),
    ((1, 2, 3, 3), 5),             # more outputs than inputs: overlapping windows
    ((3, 7, 5), (2, 3)),           # unbatched
    ((2, 3, 6, 6), (6, 6)),        # identity
])
def test_adaptive_avg_pool2d(shape, out):
    check_op(lambda x: vitc.adaptive_avg_pool2d(x, out), lambda x: F.adaptive_avg_pool2d(x, out),
             [rand(*shape, rng=RNG)], fd=np.prod(shape) < 2000)
    check_op(lambda x: vitc.adaptive_avg_pool2d(x, out), lambda x: F.adaptive_avg_pool2d(x, out),
             [rand(*shape, rng=RNG)], noncontig=True, fd=False)


def test_pool_errors():
    x = vitc.zeros(1, 2, 6, 6)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        vitc.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        vitc.avg_pool2d(x, 3, padding=(0, 2))
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        vitc.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        vitc.avg_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="dilation must be positive"):
        vitc.max_pool2d(x, 2, dilation=0)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        vitc.max_pool2d(x, 2, padding=-1)
    with pytest.raises(ValueError, match="output size is too small"):
        vitc.max_pool2d(x, 7)
    with pytest.raises(ValueError, match="output size is too small"):
        vitc.avg_pool2d(x, (2, 8))
    with pytest.raises(ValueError, match="3-d .* or 4-d"):
        vitc.max_pool2d(vitc.zeros(6, 6), 2)
    with pytest.raises(ValueError, match="3-d .* or 4-d"):
        vitc.adaptive_avg_pool2d(vitc.zeros(1, 1, 1, 6, 6), 2)
    with pytest.raises(ValueError, match="empty non-batch"):
        vitc.avg_pool2d(vitc.zeros(1, 0, 6, 6), 2)
    with pytest.raises(ValueError, match="empty non-batch"):
        vitc.adaptive_avg_pool2d(vitc.zeros(1, 2, 0, 6), 1)
    with pytest.raises(ValueError, match="divisor_override must be positive"):
        vitc.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="output_size must be non-negative"):
        vitc.adaptive_avg_pool2d(x, -1)
    with pytest.raises(ValueError, match="output_size"):
        vitc.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(TypeError, match="kernel_size"):
        vitc.max_pool2d(x, 2.0)
    with pytest.raises(TypeError, match="input must be a vitc.Tensor"):
        vitc.avg_pool2d([[1.0]], 2)
    xi = vitc.from_numpy(np.zeros((1, 2, 6, 6), np.int64))
    for f in (lambda: vitc.max_pool2d(xi, 2), lambda: vitc.avg_pool2d(xi, 2), lambda: vitc.adaptive_avg_pool2d(xi, 1)):
        with pytest.raises(TypeError, match="float32"):
            f()


def _fwd_bwd_all(arrs):
    x, w, b = [vitc.from_numpy(a.copy()) for a in arrs]
    for t in (x, w, b):
        t.requires_grad = True
    y = vitc.conv2d(x, w, b, stride=2, padding=1)
    y = vitc.max_pool2d(y, 3, 2, 1) + vitc.avg_pool2d(y, 3, 2, 1)
    (vitc.adaptive_avg_pool2d(y, 2).sum()).backward()


@pytest.mark.parametrize("arrs", [conv_inputs(2, 3, 12, 12, 4, 3, 1, True), conv_inputs(4, 3, 64, 64, 4, 3, 1, True)])
def test_allocation_failures_and_leaks(arrs):
    """Failing each allocation in turn raises MemoryError (never crashes) and leaks nothing."""
    check_allocation_failures(lambda: _fwd_bwd_all(arrs), attempts=200, min_failures=6)
