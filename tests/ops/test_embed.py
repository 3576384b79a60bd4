"""patchify / unpatchify (SPEC §1.1) against the einops-equivalent torch code, forward and backward."""
import numpy as np
import pytest

import vitc
from opcheck import check_allocation_failures, check_op, rand

RNG = np.random.default_rng(11)


def torch_patchify(x, p1, p2):
    """einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' in plain torch."""
    B, C, H, W = x.shape
    h, w = H // p1, W // p2
    return x.reshape(B, C, h, p1, w, p2).permute(0, 2, 4, 3, 5, 1).reshape(B, h * w, p1 * p2 * C)


def torch_unpatchify(t, p1, p2, h, w):
    B, N, D = t.shape
    C = D // (p1 * p2)
    return t.reshape(B, h, w, p1, p2, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, h * p1, w * p2)


@pytest.mark.parametrize("shape,p", [
    ((2, 3, 8, 12), (2, 4)),
    ((1, 1, 28, 28), 7),        # seed 004's MNIST model: 16 patches of 49
    ((3, 3, 32, 32), 16),
    ((2, 3, 32, 32), 4),
    ((2, 5, 6, 6), 1),
    ((2, 2, 6, 9), (6, 9)),     # one patch
    ((0, 3, 8, 8), 4),          # empty batch
    ((64, 3, 32, 32), 4),       # large: parallel rows
])
def test_patchify(shape, p):
    p1, p2 = (p, p) if isinstance(p, int) else p
    x = rand(*shape, rng=RNG)
    out = check_op(lambda x: vitc.patchify(x, p), lambda x: torch_patchify(x, p1, p2), [x], fd=np.prod(shape) < 5000)
    B, C, H, W = shape
    assert tuple(out[0].shape) == (B, (H // p1) * (W // p2), p1 * p2 * C)
    check_op(lambda x: vitc.patchify(x, p), lambda x: torch_patchify(x, p1, p2), [x], noncontig=True, fd=False)


def test_patchify_spec_formula():
    """token n = i·(W/p2) + j, feature f = (a·p2 + b)·C + c holds x[·, c, i·p1 + a, j·p2 + b]."""
    B, C, H, W, p1, p2 = 2, 3, 6, 8, 3, 2
    x = rand(B, C, H, W, rng=RNG)
    t = vitc.patchify(vitc.from_numpy(x), (p1, p2)).numpy()
    for bb in range(B):
        for i in range(H // p1):
            for j in range(W // p2):
                for a in range(p1):
                    for b in range(p2):
                        for c in range(C):
                            assert t[bb, i * (W // p2) + j, (a * p2 + b) * C + c] == x[bb, c, i * p1 + a, j * p2 + b]


def test_patchify_channels_last_view():
    x = np.ascontiguousarray(rand(2, 3, 8, 8, rng=RNG).transpose(0, 2, 3, 1))
    check_op(lambda x: vitc.patchify(x.permute(0, 3, 1, 2), 4),
             lambda x: torch_patchify(x.permute(0, 3, 1, 2), 4, 4), [x])


def test_patchify_then_linear_equals_strided_conv():
    """SPEC §1.1: a linear layer on patches is a conv with kernel = stride = P when
    W_lin[:, (a·P2 + b)·C + c] = W_conv[:, c, a, b]."""
    x, wc, b = rand(2, 3, 8, 12, rng=RNG), rand(5, 3, 2, 4, rng=RNG), rand(5, rng=RNG)
    wl = np.ascontiguousarray(wc.transpose(0, 2, 3, 1).reshape(5, -1))
    X, B = vitc.from_numpy(x), vitc.from_numpy(b)
    lin = vitc.linear(vitc.patchify(X, (2, 4)), vitc.from_numpy(wl), B).numpy()
    conv = vitc.conv2d(X, vitc.from_numpy(wc), B, stride=(2, 4)).numpy()
    np.testing.assert_allclose(lin, conv.reshape(2, 5, -1).transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,p,grid", [
    ((2, 6, 24), (2, 4), (2, 3)),
    ((3, 16, 49), 7, 4),
    ((1, 4, 12), 1, (2, 2)),
])
def test_unpatchify(shape, p, grid):
    p1, p2 = (p, p) if isinstance(p, int) else p
    h, w = (grid, grid) if isinstance(grid, int) else grid
    t = rand(*shape, rng=RNG)
    check_op(lambda t: vitc.unpatchify(t, p, grid), lambda t: torch_unpatchify(t, p1, p2, h, w), [t])
    check_op(lambda t: vitc.unpatchify(t, p, grid), lambda t: torch_unpatchify(t, p1, p2, h, w), [t],
             noncontig=True, fd=False)


def test_round_trip():
    x = rand(2, 3, 8, 12, rng=RNG)
    t = vitc.patchify(vitc.from_numpy(x), (4, 3))
    np.testing.assert_array_equal(vitc.unpatchify(t, (4, 3), (2, 4)).numpy(), x)


def test_patchify_errors():
    x = vitc.zeros(2, 3, 8, 12)
    with pytest.raises(ValueError, match=r"image size \(8, 12\) must be divisible by the patch size \(3, 3\)"):
        vitc.patchify(x, 3)
    with pytest.raises(ValueError, match=r"\(8, 12\).*\(4, 5\)"):
        vitc.patchify(x, (4, 5))
    with pytest.raises(ValueError, match="patch size must be positive"):
        vitc.patchify(x, 0)
    with pytest.raises(ValueError, match="4-d"):
        vitc.patchify(vitc.zeros(3, 8, 12), 4)
    with pytest.raises(ValueError, match="pair"):
        vitc.patchify(x, (2, 2, 2))
    with pytest.raises(TypeError, match="patch_size"):
        vitc.patchify(x, 2.0)
    with pytest.raises(TypeError, match="x must be a vitc.Tensor"):
        vitc.patchify(np.zeros((2, 3, 8, 8), np.float32), 4)
    with pytest.raises(TypeError, match="float32"):
        vitc.patchify(vitc.from_numpy(np.zeros((2, 3, 8, 8), np.int64)), 4)
    t = vitc.zeros(2, 6, 24)
    with pytest.raises(ValueError, match="does not hold the 6 tokens"):
        vitc.unpatchify(t, 2, (2, 2))
    with pytest.raises(ValueError, match="not a multiple of p1·p2"):
        vitc.unpatchify(t, 5, (2, 3))
    with pytest.raises(ValueError, match="3-d"):
        vitc.unpatchify(vitc.zeros(6, 24), 2, (2, 3))


def test_allocation_failures_and_leaks():
    x = rand(2, 3, 8, 8, rng=RNG)

    def run():
        v = vitc.from_numpy(x.copy())
        v.requires_grad = True
        t = vitc.patchify(v.permute(0, 1, 3, 2), 4)
        (vitc.unpatchify(t, 4, 2) * 2.0).sum().backward()
    check_allocation_failures(run, attempts=100, min_failures=4)
