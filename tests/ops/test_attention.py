"""Attention ops against PyTorch: the fused multi-head attention on the packed qkv projection
(ViT, arXiv 2010.11929) and scaled_dot_product_attention, forward, attention maps, gradients, dropout, errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import (assert_close, assert_same_at_1_and_2_threads, at_thread_counts, check_allocation_failures, check_op,
                     rand)

RTOL, ATOL = 1e-4, 1e-5  # vitc's float32 parity tolerance for GEMM/attention outputs


def torch_mha(qkv, heads, scale=None, mult=None):
    """The reference with explicit torch ops (softmax(q·kᵀ·scale)·v per head); mult (B, H, T, T) injects
    vitc's dropout multipliers (0 or 1/(1-p)) between the softmax and the product with v."""
    B, T, C = qkv.shape
    Dh = C // (3 * heads)
    q, k, v = qkv.reshape(B, T, 3, heads, Dh).permute(2, 0, 3, 1, 4)
    s = Dh ** -0.5 if scale is None else scale
    a = torch.softmax(q @ k.transpose(-1, -2) * s, dim=-1)
    a_drop = a if mult is None else a * mult
    return (a_drop @ v).transpose(1, 2).reshape(B, T, heads * Dh), a


def vitc_mha(heads, **kw):
    return lambda x: vitc.multi_head_attention_packed(x, heads, **kw)


def torch_ref(heads, **kw):
    return lambda x: torch_mha(x, heads, **kw)


# ---- fused multi-head attention ---------------------------------------------------------------

SHAPES = [(1, 1, 1, 8), (5, 1, 3, 8), (1, 17, 8, 64), (5, 17, 3, 32), (2, 65, 1, 64), (1, 65, 8, 8),
          (2, 9, 2, 12), (3, 6, 3, 1)]


@pytest.mark.parametrize("B,T,H,Dh", SHAPES)
def test_packed_outputs_maps_and_grad(B, T, H, Dh):
    x = rand(B, T, 3 * H * Dh, low=-2, high=2)
    # both outputs get a random upstream gradient, so the map's gradient path is checked too
    check_op(vitc_mha(H, need_weights=True), torch_ref(H), [x], rtol=RTOL, atol=ATOL, grad_rtol=RTOL,
             grad_atol=ATOL, fd=T * H * Dh <= 4096)


@pytest.mark.parametrize("B,T,H,Dh", [(2, 17, 8, 64), (1, 65, 3, 32)])
def test_packed_without_weights(B, T, H, Dh):
    x = rand(B, T, 3 * H * Dh, low=-2, high=2)
    check_op(vitc_mha(H), lambda t: torch_mha(t, H)[0], [x], rtol=RTOL, atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL,
             fd=False)


def test_packed_seed_shape():
    """the seed ViT's attention: B=100, T=17, H=8, Dh=64"""
    x = rand(100, 17, 3 * 8 * 64, low=-1.5, high=1.5)
    check_op(vitc_mha(8, need_weights=True), torch_ref(8), [x], rtol=RTOL, atol=ATOL, grad_rtol=RTOL,
             grad_atol=ATOL, fd=False)


@pytest.mark.parametrize("scale", [0.3, -0.7, 0.0, 2.0])
def test_packed_scale(scale):
    x = rand(2, 9, 3 * 2 * 16)
    check_op(vitc_mha(2, scale=scale, need_weights=True), torch_ref(2, scale=scale), [x], rtol=RTOL, atol=ATOL,
             grad_rtol=RTOL, grad_atol=ATOL)


def test_packed_noncontiguous_transposed():
    # a transposed (B, T, C) view: last-dim stride != 1, copied once inside the op
    check_op(vitc_mha(2, need_weights=True), torch_ref(2), [rand(3, 11, 3 * 2 * 8)], noncontig=True, rtol=RTOL,
             atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL)


def test_packed_strided_view_read_in_place():
    """a (T, B, C) buffer seen as (B, T, C): unit last stride, rows B·C apart, batches C apart"""
    B, T, H, Dh = 3, 10, 2, 16
    C = 3 * H * Dh
    base = rand(T, B, C)
    view = lambda t: t.transpose(0, 1)
    vb = vitc.from_numpy(base.copy())
    vb.requires_grad = True
    tb = torch.from_numpy(base.copy()).requires_grad_(True)
    vx, tx = view(vb), view(tb)
    assert not vx.is_contiguous()
    vo, va = vitc.multi_head_attention_packed(vx, H, need_weights=True)
    to, ta = torch_mha(tx, H)
    assert_close(vo.detach().numpy(), to.detach().numpy(), RTOL, ATOL, "out")
    assert_close(va.detach().numpy(), ta.detach().numpy(), RTOL, ATOL, "attention map")
    g = rand(B, T, H * Dh)
    vo.backward(vitc.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(vb.grad.numpy(), tb.grad.numpy(), RTOL, ATOL, "grad of the base")


def test_packed_maps_are_probabilities():
    x = rand(2, 33, 3 * 4 * 16, low=-3, high=3)
    with vitc.no_grad():
        out, a = vitc.multi_head_attention_packed(vitc.from_numpy(x), 4, need_weights=True)
    a = a.numpy()
    assert a.shape == (2, 4, 33, 33) and out.shape == (2, 33, 64)
    assert (a >= 0).all()
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)


def test_packed_large_logits_stable():
    x = rand(2, 12, 3 * 2 * 8, low=-40, high=40)  # scores of order 1e3: needs the max subtraction
    check_op(vitc_mha(2, need_weights=True), torch_ref(2), [x], rtol=RTOL, atol=ATOL, grad=True, fd=False,
             grad_rtol=1e-3, grad_atol=1e-4)


def test_packed_grad_of_map_only():
    """gradient reaching the op only through the returned maps (none through out)"""
    x = rand(2, 7, 3 * 2 * 8)
    vx = vitc.from_numpy(x.copy())
    vx.requires_grad = True
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    w = rand(2, 2, 7, 7)
    (vitc.multi_head_attention_packed(vx, 2, need_weights=True)[1] * vitc.from_numpy(w)).sum().backward()
    (torch_mha(tx, 2)[1] * torch.from_numpy(w)).sum().backward()
    assert_close(vx.grad.numpy(), tx.grad.numpy(), RTOL, ATOL, "grad through the maps")


@pytest.mark.parametrize("shape", [(0, 5, 3 * 2 * 8), (3, 0, 3 * 2 * 8), (8, 0, 3 * 2 * 8)])  # (8, 0, ·): images enough to stage, nothing in them
def test_packed_empty(shape):
    x = vitc.from_numpy(np.zeros(shape, np.float32))
    x.requires_grad = True
    out, a = vitc.multi_head_attention_packed(x, 2, need_weights=True)
    assert out.shape == (shape[0], shape[1], 16) and a.shape == (shape[0], 2, shape[1], shape[1])
    out.sum().backward()
    assert x.grad.shape == shape


def test_packed_thread_count_invariant():
    x = rand(6, 33, 3 * 4 * 32)
    g = rand(6, 33, 4 * 32)

    def run():
        vx = vitc.from_numpy(x.copy())
        vx.requires_grad = True
        out = vitc.multi_head_attention_packed(vx, 4)
        out.backward(vitc.from_numpy(g))
        return out.detach().numpy().copy(), vx.grad.numpy().copy()
    assert_same_at_1_and_2_threads(run)


@pytest.mark.parametrize("strided", [False, True])
def test_image_staging_matches_per_head_path(strided):
    """With B >= 4 per thread the op stages each image's rows in scratch and runs its heads there
    (attention/packed.c, by_image); with fewer images it reads per head in place. At B = 5 one thread
    stages and two threads do not: outputs, maps and gradients, dropout included, must agree
    bitwise, for a contiguous qkv and for a row-strided view (rows B·C apart)."""
    B, T, H, Dh, p = 5, 17, 4, 16, 0.2
    C = 3 * H * Dh
    x = rand(T, B, C) if strided else rand(B, T, C)
    g, ga = rand(B, T, H * Dh), rand(B, H, T, T)

    def run():
        base = vitc.from_numpy(x.copy())
        base.requires_grad = True
        vx = base.transpose(0, 1) if strided else base
        vitc.manual_seed(7)
        out, a = vitc.multi_head_attention_packed(vx, H, dropout_p=p, need_weights=True)
        ((out * vitc.from_numpy(g)).sum() + (a * vitc.from_numpy(ga)).sum()).backward()
        return [t.numpy().copy() for t in (out.detach(), a.detach(), base.grad)]
    assert_same_at_1_and_2_threads(run)


# ---- dropout on the attention maps ---------------------------------------------------------------

def _packed_multipliers(B, T, H, Dh, p, seed):
    """vitc's dropout multipliers, read back through the op itself: with v[b, j, head h] = e_j
    (one-hot on channel j, needs T <= Dh), out[b, i, h·Dh + j] = A[b,h,i,j]·mult[b,h,i,j]."""
    assert T <= Dh
    x = rand(B, T, 3 * H * Dh, rng=np.random.default_rng(seed))
    v = np.zeros((B, T, H, Dh), np.float32)
    for j in range(T):
        v[:, j, :, j] = 1.0
    x[:, :, 2 * H * Dh:] = v.reshape(B, T, H * Dh)
    vitc.manual_seed(seed)
    with vitc.no_grad():
        out, a = vitc.multi_head_attention_packed(vitc.from_numpy(x), H, dropout_p=p, need_weights=True)
    out = out.numpy().reshape(B, T, H, Dh)[..., :T].transpose(0, 2, 1, 3)  # (B, H, T, T)
    mult = out / a.numpy()
    keep = 1.0 / (1.0 - p)
    assert np.all(np.isclose(mult, 0.0, atol=1e-5) | np.isclose(mult, keep, rtol=1e-5)), "multipliers not {0, 1/(1-p)}"
    return np.where(mult > 0.5 * keep, keep, 0.0).astype(np.float32)


def test_dropout_matches_torch_with_injected_mask():
    B, T, H, Dh, p, seed = 3, 9, 2, 16, 0.3, 1234
    mult = _packed_multipliers(B, T, H, Dh, p, seed)
    assert 0.05 < (mult == 0).mean() < 0.6  # it does drop, and not everything
    x = rand(B, T, 3 * H * Dh, low=-2, high=2)

    def vfn(t):
        vitc.manual_seed(seed)  # same counters every call (forward, finite differences)
        return vitc.multi_head_attention_packed(t, H, dropout_p=p, need_weights=True)

    check_op(vfn, lambda t: torch_mha(t, H, mult=torch.from_numpy(mult)), [x], rtol=RTOL, atol=ATOL,
             grad_rtol=RTOL, grad_atol=ATOL)


def test_dropout_determinism_and_modes():
    x = vitc.from_numpy(rand(2, 17, 3 * 3 * 32))
    with vitc.no_grad():
        vitc.manual_seed(5)
        a = vitc.multi_head_attention_packed(x, 3, dropout_p=0.25).numpy()
        vitc.manual_seed(5)
        b = vitc.multi_head_attention_packed(x, 3, dropout_p=0.25).numpy()
        c = vitc.multi_head_attention_packed(x, 3, dropout_p=0.25).numpy()  # RNG advanced: new mask
        vitc.manual_seed(6)
        d = vitc.multi_head_attention_packed(x, 3, dropout_p=0.25).numpy()
        off = vitc.multi_head_attention_packed(x, 3, dropout_p=0.25, training=False).numpy()
        plain = vitc.multi_head_attention_packed(x, 3).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    np.testing.assert_array_equal(off, plain)


def test_dropout_rate():
    p = 0.4
    mult = _packed_multipliers(4, 16, 4, 16, p, seed=99)
    assert abs((mult == 0).mean() - p) < 0.05  # 4096 draws: 5 sigma is about 0.04


def test_dropout_p_one():
    x = rand(2, 5, 3 * 2 * 8)
    check_op(vitc_mha(2, dropout_p=1.0), lambda t: torch_mha(t, 2)[0] * 0.0, [x], fd=False)


# ---- errors ------------------------------------------------------------------------------------

def test_packed_errors():
    x = vitc.from_numpy(rand(2, 5, 48))
    with pytest.raises(ValueError, match="not a positive multiple of 3\\*heads = 15"):
        vitc.multi_head_attention_packed(x, 5)
    with pytest.raises(ValueError, match="heads must be positive"):
        vitc.multi_head_attention_packed(x, 0)
    with pytest.raises(ValueError, match="heads must be positive"):
        vitc.multi_head_attention_packed(x, -2)
    with pytest.raises(TypeError, match="heads must be an int"):
        vitc.multi_head_attention_packed(x, 2.0)
    with pytest.raises(ValueError, match="must be 3-d"):
        vitc.multi_head_attention_packed(vitc.from_numpy(rand(5, 48)), 2)
    with pytest.raises(ValueError, match="must be 3-d"):
        vitc.multi_head_attention_packed(vitc.from_numpy(rand(1, 2, 5, 48)), 2)
    with pytest.raises(TypeError, match="float32"):
        vitc.multi_head_attention_packed(vitc.from_numpy(np.ones((2, 5, 48), np.int64)), 2)
    with pytest.raises(TypeError, match="must be a vitc.Tensor"):
        vitc.multi_head_attention_packed(np.ones((2, 5, 48), np.float32), 2)
    with pytest.raises(ValueError, match="dropout_p"):
        vitc.multi_head_attention_packed(x, 2, dropout_p=1.5)
    with pytest.raises(TypeError, match="scale"):
        vitc.multi_head_attention_packed(x, 2, scale="big")
    with pytest.raises(ValueError, match="positive multiple"):
        vitc.multi_head_attention_packed(vitc.from_numpy(np.zeros((2, 5, 0), np.float32)), 2)


def test_packed_allocation_failures_do_not_leak():
    x = vitc.from_numpy(rand(2, 9, 3 * 2 * 8))
    x.requires_grad = True
    g = vitc.from_numpy(rand(2, 9, 16))

    def run():
        x.grad = None
        vitc.multi_head_attention_packed(x, 2, dropout_p=0.2, need_weights=True)[0].backward(g)
    check_allocation_failures(run, attempts=12)


# ---- qkv_attention: the projection and attention in one op -------------------------------------

def torch_qkv_mha(heads, **kw):
    return lambda x, w, b=None: torch_mha(F.linear(x, w, b), heads, **kw)


def vitc_qkv_mha(heads, **kw):
    return lambda x, w, b=None: vitc.qkv_attention(x, w, b, heads, **kw)


# (B, T, dim, heads, Dh, bias): B = 8 stages whole images at 1 and 2 threads (the fused
# projection), B = 5 at 1 thread only, B = 2 never (linear, then attention); dim 400 spans two K
# blocks of the packed weight
QKV_SHAPES = [(8, 17, 64, 8, 64, False), (8, 9, 12, 2, 8, True), (5, 9, 12, 2, 8, True), (2, 9, 12, 2, 8, True),
              (4, 3, 7, 1, 5, True), (8, 1, 3, 1, 1, False), (8, 4, 400, 1, 8, True)]


def _fused_equals_plain(run):
    """run(fused) returns arrays; the fused and the separate-op runs must agree bit for bit, at 1
    and at 2 threads"""
    one_f, two_f = at_thread_counts(lambda: run(True))
    one_p, two_p = at_thread_counts(lambda: run(False))
    for got, want in zip(one_f + two_f, one_p + two_p):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("B,T,D,H,Dh,bias", QKV_SHAPES)
def test_qkv_attention_matches_torch(B, T, D, H, Dh, bias):
    C, r = 3 * H * Dh, D ** -0.5  # weights ~ U(±dim^-1/2), as Linear's init: logits of order one
    inputs = [rand(B, T, D, low=-2, high=2), rand(C, D, low=-r, high=r)] + ([rand(C)] if bias else [])
    check_op(vitc_qkv_mha(H, need_weights=True), torch_qkv_mha(H), inputs, rtol=RTOL, atol=ATOL, grad_rtol=2e-4,
             grad_atol=2e-5, fd=B * T * D <= 1024)


def test_qkv_attention_seed_shape():
    """the seed ViT: B = 100 images of 17 tokens, dim 64, 8 heads of 64, no qkv bias"""
    check_op(vitc_qkv_mha(8), lambda x, w: torch_mha(F.linear(x, w), 8)[0],
             [rand(100, 17, 64, low=-2, high=2), rand(1536, 64, low=-0.125, high=0.125)], rtol=RTOL, atol=ATOL,
             grad_rtol=2e-4, grad_atol=2e-5, fd=False)


@pytest.mark.parametrize("strided", [False, True])
def test_qkv_attention_is_linear_then_attention_bitwise(strided):
    """The fused projection runs the same tile kernel as the linear's own GEMM, k ascending, so
    outputs, maps and all gradients equal linear + multi_head_attention_packed bit for bit, dropout
    and a bias included, at 1 and 2 threads; strided: a (T, B, dim) input seen as (B, T, dim) and a
    transposed weight buffer."""
    B, T, D, H, Dh, p = 8, 17, 24, 4, 16, 0.2
    C = 3 * H * Dh
    x = rand(T, B, D) if strided else rand(B, T, D)
    w = rand(D, C, low=-0.3, high=0.3) if strided else rand(C, D, low=-0.3, high=0.3)
    b, g, ga = rand(C), rand(B, T, H * Dh), rand(B, H, T, T)

    def run(fused):
        leaves = [vitc.from_numpy(a.copy()).requires_grad_() for a in (x, w, b)]
        vx, vw = (leaves[0].transpose(0, 1), leaves[1].t()) if strided else leaves[:2]
        vitc.manual_seed(3)
        if fused:
            out, a = vitc.qkv_attention(vx, vw, leaves[2], H, dropout_p=p, need_weights=True)
        else:
            out, a = vitc.multi_head_attention_packed(vitc.linear(vx, vw, leaves[2]), H, dropout_p=p,
                                                      need_weights=True)
        ((out * vitc.from_numpy(g)).sum() + (a * vitc.from_numpy(ga)).sum()).backward()
        return [t.numpy().copy() for t in [out.detach(), a.detach()] + [leaf.grad for leaf in leaves]]
    _fused_equals_plain(run)


def test_qkv_attention_without_grad_holds_no_projection():
    """Under no_grad the fused path never makes the (B, T, 3·heads·Dh) projection: its peak is
    lower than linear + attention by at least that tensor less the packed weight."""
    B, T, D, H, Dh = 16, 17, 64, 8, 64
    x, w = vitc.from_numpy(rand(B, T, D)), vitc.from_numpy(rand(3 * H * Dh, D))

    def peak(fn):
        vitc._C.reset_peak()
        before = vitc._C.alloc_stats()["live"]
        out = fn()
        return vitc._C.alloc_stats()["peak"] - before, out
    with vitc.no_grad():
        fused, o1 = peak(lambda: vitc.qkv_attention(x, w, None, H))
        plain, o2 = peak(lambda: vitc.multi_head_attention_packed(vitc.linear(x, w), H))
    np.testing.assert_array_equal(o1.numpy(), o2.numpy())
    qkv_bytes, panel_bytes = 4 * B * T * 3 * H * Dh, 4 * 3 * H * Dh * D
    assert plain - fused >= qkv_bytes - panel_bytes, (plain, fused)


def test_qkv_attention_partial_grads():
    """only the weight, only the input, and nothing at all requiring a gradient"""
    x, w, b = rand(8, 5, 6), rand(12, 6), rand(12)
    check_op(vitc_qkv_mha(2), lambda *a: torch_qkv_mha(2)(*a)[0], [x, w, b], grad_inputs=[1], rtol=RTOL, atol=ATOL,
             fd=False)
    check_op(vitc_qkv_mha(2), lambda *a: torch_qkv_mha(2)(*a)[0], [x, w, b], grad_inputs=[0], rtol=RTOL, atol=ATOL,
             fd=False)
    check_op(vitc_qkv_mha(2), lambda *a: torch_qkv_mha(2)(*a)[0], [x, w, b], grad=False, rtol=RTOL, atol=ATOL)


def test_qkv_attention_errors():
    x, w, b = vitc.from_numpy(rand(2, 5, 6)), vitc.from_numpy(rand(12, 6)), vitc.from_numpy(rand(12))
    with pytest.raises(ValueError, match=r"input must be \(B, T, dim\) and weight"):
        vitc.qkv_attention(x, vitc.from_numpy(rand(12, 7)), b, 2)
    with pytest.raises(ValueError, match=r"input must be \(B, T, dim\)"):
        vitc.qkv_attention(vitc.from_numpy(rand(5, 6)), w, b, 2)
    with pytest.raises(ValueError, match=r"bias must have shape \(12,\)"):
        vitc.qkv_attention(x, w, vitc.from_numpy(rand(13)), 2)
    with pytest.raises(ValueError, match="not a positive multiple of 3\\*heads = 15"):
        vitc.qkv_attention(x, w, b, 5)
    with pytest.raises(ValueError, match="heads must be positive"):
        vitc.qkv_attention(x, w, b, 0)
    with pytest.raises(TypeError, match="float32"):
        vitc.qkv_attention(vitc.from_numpy(np.ones((2, 5, 6), np.int64)), w, b, 2)
    with pytest.raises(TypeError, match="weight must be a vitc.Tensor"):
        vitc.qkv_attention(x, None, b, 2)
    with pytest.raises(TypeError, match="bias must be a vitc.Tensor"):
        vitc.qkv_attention(x, w, np.ones(12, np.float32), 2)
    with pytest.raises(ValueError, match="dropout_p"):
        vitc.qkv_attention(x, w, b, 2, dropout_p=-0.1)


@pytest.mark.parametrize("B", [8, 2])  # fused and unfused paths
@pytest.mark.parametrize("proj", [False, True])
def test_qkv_attention_allocation_failures_do_not_leak(B, proj):
    leaves = [vitc.from_numpy(a).requires_grad_() for a in (rand(B, 9, 8), rand(48, 8), rand(5, 16), rand(5))]
    x, w, wo, bo = leaves
    g = vitc.from_numpy(rand(B, 9, 5 if proj else 16))

    def step():
        for t in leaves:
            t.grad = None
        kw = dict(proj_weight=wo, proj_bias=bo) if proj else {}
        vitc.qkv_attention(x, w, None, 2, dropout_p=0.2, need_weights=True, **kw)[0].backward(g)
        for t in leaves:
            t.grad = None
    check_allocation_failures(step)


# ---- qkv_attention with the output projection ---------------------------------------------------

def torch_qkv_mha_proj(heads):
    def f(x, w, b, wo, bo=None):
        out, a = torch_mha(F.linear(x, w, b), heads)
        return F.linear(out, wo, bo), a
    return f


def vitc_qkv_mha_proj(heads, **kw):
    return lambda x, w, b, wo, bo=None: vitc.qkv_attention(x, w, b, heads, proj_weight=wo, proj_bias=bo, **kw)


@pytest.mark.parametrize("B,T,D,H,Dh,bias,Do", [(8, 17, 64, 8, 64, True, 64), (8, 9, 12, 2, 8, False, 5),
                                                (2, 9, 12, 2, 8, True, 7), (8, 4, 40, 2, 200, True, 9)])
def test_qkv_attention_proj_matches_torch(B, T, D, H, Dh, bias, Do):
    """with proj_weight the op ends in out·W_oᵀ + b_o (timm's attn.proj); HD = 400 spans two K blocks"""
    C, HD = 3 * H * Dh, H * Dh
    inputs = [rand(B, T, D, low=-2, high=2), rand(C, D, low=-D ** -0.5, high=D ** -0.5), rand(C),
              rand(Do, HD, low=-HD ** -0.5, high=HD ** -0.5)] + ([rand(Do)] if bias else [])
    check_op(vitc_qkv_mha_proj(H, need_weights=True), torch_qkv_mha_proj(H), inputs, rtol=RTOL, atol=ATOL,
             grad_rtol=2e-4, grad_atol=2e-5, fd=B * T * D <= 1024)


@pytest.mark.parametrize("strided", [False, True])
def test_qkv_attention_proj_is_three_ops_bitwise(strided):
    """fused (both projections per image) against linear + attention + linear, bit for bit at 1 and
    2 threads, with dropout, the maps' gradient and a transposed W_o buffer"""
    B, T, D, H, Dh, Do, p = 8, 17, 24, 4, 16, 20, 0.2
    C, HD = 3 * H * Dh, H * Dh
    arrays = [rand(B, T, D), rand(C, D, low=-0.3, high=0.3), rand(C),
              rand(HD, Do, low=-0.2, high=0.2) if strided else rand(Do, HD, low=-0.2, high=0.2), rand(Do)]
    g, ga = rand(B, T, Do), rand(B, H, T, T)

    def run(fused):
        leaves = [vitc.from_numpy(a.copy()).requires_grad_() for a in arrays]
        x, w, b, wo, bo = leaves
        wo = wo.t() if strided else wo
        vitc.manual_seed(3)
        if fused:
            y, a = vitc.qkv_attention(x, w, b, H, dropout_p=p, need_weights=True, proj_weight=wo, proj_bias=bo)
        else:
            out, a = vitc.multi_head_attention_packed(vitc.linear(x, w, b), H, dropout_p=p, need_weights=True)
            y = vitc.linear(out, wo, bo)
        ((y * vitc.from_numpy(g)).sum() + (a * vitc.from_numpy(ga)).sum()).backward()
        return [t.numpy().copy() for t in [y.detach(), a.detach()] + [leaf.grad for leaf in leaves]]
    _fused_equals_plain(run)


def test_qkv_attention_proj_errors():
    x, w, b = vitc.from_numpy(rand(2, 5, 6)), vitc.from_numpy(rand(12, 6)), vitc.from_numpy(rand(12))
    with pytest.raises(ValueError, match=r"proj_weight must be \(out_dim, heads\*head_dim = 4\)"):
        vitc.qkv_attention(x, w, b, 2, proj_weight=vitc.from_numpy(rand(6, 5)))
    with pytest.raises(ValueError, match=r"proj_bias must have shape \(6,\)"):
        vitc.qkv_attention(x, w, b, 2, proj_weight=vitc.from_numpy(rand(6, 4)), proj_bias=vitc.from_numpy(rand(4)))
    with pytest.raises(ValueError, match="proj_bias needs proj_weight"):
        vitc.qkv_attention(x, w, b, 2, proj_bias=vitc.from_numpy(rand(6)))
    with pytest.raises(TypeError, match="proj_weight must be a vitc.Tensor"):
        vitc.qkv_attention(x, w, b, 2, proj_weight=np.ones((6, 4), np.float32))


# ---- scaled_dot_product_attention ----------------------------------------------------------------

def sdpa_pair(**kw):
    vk = dict(kw)
    return (lambda q, k, v: vitc.scaled_dot_product_attention(q, k, v, **vk),
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw))


SDPA_SHAPES = [((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 8)),
               ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)),      # different S and Ev
               ((4, 7, 16), (4, 9, 16), (4, 9, 16)),            # 3-d
               ((7, 16), (9, 16), (9, 20)),                     # 2-d
               ((1, 3, 4, 8), (2, 3, 5, 8), (2, 1, 5, 8)),      # broadcast batch dims
               ((1, 17, 64), (1, 17, 64), (1, 17, 64)),
               ((2, 1, 1, 3), (2, 1, 1, 3), (2, 1, 1, 3))]


@pytest.mark.parametrize("sq,sk,sv", SDPA_SHAPES)
def test_sdpa_matches_torch(sq, sk, sv):
    vf, tf = sdpa_pair()
    check_op(vf, tf, [rand(*sq), rand(*sk), rand(*sv)], rtol=RTOL, atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL)


def test_sdpa_noncontiguous():
    vf, tf = sdpa_pair()
    check_op(vf, tf, [rand(2, 6, 8), rand(2, 7, 8), rand(2, 7, 9)], noncontig=True, rtol=RTOL, atol=ATOL,
             grad_rtol=RTOL, grad_atol=ATOL)


def test_sdpa_permuted_views():
    """views whose copies (last-dim stride != 1) have other batch strides than the originals"""
    vf, tf = sdpa_pair()
    bases = [rand(8, 2, 6), rand(8, 2, 7), rand(9, 7, 2)]
    vl = [vitc.from_numpy(b.copy()) for b in bases]
    tl = [torch.from_numpy(b.copy()) for b in bases]
    for t in vl + tl:
        t.requires_grad_(True) if isinstance(t, torch.Tensor) else setattr(t, "requires_grad", True)
    views = lambda q, k, v: (q.permute(1, 2, 0), k.permute(1, 2, 0), v.permute(2, 1, 0))
    vo = vf(*views(*vl))
    to = tf(*views(*tl))
    assert_close(vo.detach().numpy(), to.detach().numpy(), RTOL, ATOL, "out")
    g = rand(*to.shape)
    vo.backward(vitc.from_numpy(g))
    to.backward(torch.from_numpy(g))
    for i, (a, b) in enumerate(zip(vl, tl)):
        assert_close(a.grad.numpy(), b.grad.numpy(), RTOL, ATOL, f"grad {i}")


@pytest.mark.parametrize("scale", [0.25, -1.0])
def test_sdpa_scale(scale):
    vf, tf = sdpa_pair(scale=scale)
    check_op(vf, tf, [rand(2, 5, 8), rand(2, 6, 8), rand(2, 6, 4)], rtol=RTOL, atol=ATOL, grad_rtol=RTOL,
             grad_atol=ATOL)


@pytest.mark.parametrize("L,S", [(5, 5), (3, 6), (6, 3)])
def test_sdpa_causal(L, S):
    vf, tf = sdpa_pair(is_causal=True)
    check_op(vf, tf, [rand(2, L, 8), rand(2, S, 8), rand(2, S, 8)], rtol=RTOL, atol=ATOL, grad_rtol=RTOL,
             grad_atol=ATOL)


@pytest.mark.parametrize("mshape", [(4, 6), (2, 1, 4, 6), (1, 6), (1, 3, 1, 6)])
def test_sdpa_bool_mask(mshape):
    rng = np.random.default_rng(3)
    m = rng.random(mshape) < 0.7
    m[..., 0] = True
    vm, tm = vitc.from_numpy(m), torch.from_numpy(m)
    check_op(lambda q, k, v: vitc.scaled_dot_product_attention(q, k, v, attn_mask=vm),
             lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=tm),
             [rand(2, 3, 4, 8), rand(2, 3, 6, 8), rand(2, 3, 6, 5)], rtol=RTOL, atol=ATOL, grad_rtol=RTOL,
             grad_atol=ATOL)


def test_sdpa_fully_masked_rows_are_zero():
    m = np.ones((4, 6), bool)
    m[1] = False
    fm = np.zeros((4, 6), np.float32)
    fm[2] = -np.inf
    for mask in (m, fm):
        vm, tm = vitc.from_numpy(mask), torch.from_numpy(mask)
        out = check_op(lambda q, k, v: vitc.scaled_dot_product_attention(q, k, v, attn_mask=vm),
                       lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=tm),
                       [rand(2, 4, 8), rand(2, 6, 8), rand(2, 6, 5)], rtol=RTOL, atol=ATOL, fd=False)
        row = 1 if mask.dtype == bool else 2
        assert np.all(out[0].detach().numpy()[:, row] == 0)


@pytest.mark.parametrize("mshape", [(2, 3, 4, 6), (4, 6), (3, 1, 6)])
def test_sdpa_float_mask_with_grad(mshape):
    vf, tf = sdpa_pair()
    check_op(lambda q, k, v, m: vitc.scaled_dot_product_attention(q, k, v, attn_mask=m),
             lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
             [rand(2, 3, 4, 8), rand(2, 3, 6, 8), rand(2, 3, 6, 5), rand(*mshape, low=-2, high=1)], rtol=RTOL,
             atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL)


def test_sdpa_no_grad_inputs_subset():
    """only value needs a gradient: the softmax backward is skipped, dv still right"""
    q, k, v = rand(2, 5, 8), rand(2, 6, 8), rand(2, 6, 4)
    vf, tf = sdpa_pair()
    check_op(vf, tf, [q, k, v], grad_inputs=[2], rtol=RTOL, atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL)
    check_op(vf, tf, [q, k, v], grad_inputs=[0], rtol=RTOL, atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL)


def test_sdpa_dropout_with_injected_mask():
    B, L, S, E, p, seed = 3, 5, 6, 8, 0.35, 77
    q, k = rand(B, L, E), rand(B, S, E)
    eye = np.tile(np.eye(S, dtype=np.float32), (B, 1, 1))  # v = I: out = dropout(P)
    vitc.manual_seed(seed)
    with vitc.no_grad():
        dropped = vitc.scaled_dot_product_attention(vitc.from_numpy(q), vitc.from_numpy(k), vitc.from_numpy(eye),
                                                    dropout_p=p).numpy()
        plain = vitc.scaled_dot_product_attention(vitc.from_numpy(q), vitc.from_numpy(k),
                                                  vitc.from_numpy(eye)).numpy()
    mult = dropped / plain
    keep = 1 / (1 - p)
    assert np.all(np.isclose(mult, 0, atol=1e-5) | np.isclose(mult, keep, rtol=1e-5))
    mult = torch.from_numpy(np.where(mult > 0.5 * keep, keep, 0.0).astype(np.float32))
    assert 0 < (mult == 0).float().mean() < 1

    def vfn(q_, k_, v_):
        vitc.manual_seed(seed)
        return vitc.scaled_dot_product_attention(q_, k_, v_, dropout_p=p)

    def tfn(q_, k_, v_):
        a = torch.softmax(q_ @ k_.transpose(-1, -2) * E ** -0.5, -1)
        return (a * mult) @ v_

    check_op(vfn, tfn, [q, k, rand(B, S, 7)], rtol=RTOL, atol=ATOL, grad_rtol=RTOL, grad_atol=ATOL)


def test_sdpa_errors():
    q, k, v = (vitc.from_numpy(rand(2, 4, 8)) for _ in range(3))
    with pytest.raises(ValueError, match="do not fit"):
        vitc.scaled_dot_product_attention(q, vitc.from_numpy(rand(2, 4, 7)), v)
    with pytest.raises(ValueError, match="do not fit"):
        vitc.scaled_dot_product_attention(q, k, vitc.from_numpy(rand(2, 5, 8)))
    with pytest.raises(ValueError, match="broadcast"):
        vitc.scaled_dot_product_attention(vitc.from_numpy(rand(3, 4, 8)), k, v)
    with pytest.raises(ValueError, match="attn_mask of shape \\(3, 4\\)"):
        vitc.scaled_dot_product_attention(q, k, v, attn_mask=vitc.from_numpy(np.ones((3, 4), bool)))
    with pytest.raises(ValueError, match="attn_mask of shape"):
        vitc.scaled_dot_product_attention(q, k, v, attn_mask=vitc.from_numpy(np.ones((3, 2, 4, 4), bool)))
    with pytest.raises(ValueError, match="is_causal"):
        vitc.scaled_dot_product_attention(q, k, v, attn_mask=vitc.from_numpy(np.ones((4, 4), bool)), is_causal=True)
    with pytest.raises(TypeError, match="bool or float32"):
        vitc.scaled_dot_product_attention(q, k, v, attn_mask=vitc.from_numpy(np.ones((4, 4), np.int64)))
    with pytest.raises(TypeError, match="float32"):
        vitc.scaled_dot_product_attention(vitc.from_numpy(np.ones((2, 4, 8), np.int64)), k, v)
    with pytest.raises(ValueError, match="at least 2 dims"):
        vitc.scaled_dot_product_attention(vitc.from_numpy(rand(8)), k, v)
    with pytest.raises(ValueError, match="dropout_p"):
        vitc.scaled_dot_product_attention(q, k, v, dropout_p=-0.1)
    with pytest.raises(ValueError, match="enable_gqa"):
        vitc.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    with pytest.raises(TypeError, match="vitc.Tensor"):
        vitc.scaled_dot_product_attention(q, k, None)


# ---- the portable (non-AVX2) kernels, in a fresh process -----------------------------------------

BASELINE_SCRIPT = r"""
import numpy as np, vitc
rng = np.random.default_rng(0)
worst = 0.0
for B, T, H, Dh in [(2, 17, 3, 64), (1, 13, 2, 12), (2, 40, 1, 8)]:
    x = rng.uniform(-1, 1, (B, T, 3 * H * Dh)).astype(np.float32)
    vx = vitc.from_numpy(x.copy()); vx.requires_grad = True
    out, a = vitc.multi_head_attention_packed(vx, H, need_weights=True)
    g = rng.uniform(-1, 1, out.shape).astype(np.float32)
    out.backward(vitc.from_numpy(g))
    xd = x.astype(np.float64).reshape(B, T, 3, H, Dh).transpose(2, 0, 3, 1, 4)
    q, k, v = xd
    s = q @ k.swapaxes(-1, -2) * Dh ** -0.5
    p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, H * Dh)
    go = g.astype(np.float64).reshape(B, T, H, Dh).transpose(0, 2, 1, 3)
    dp = go @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dq, dk, dv = ds @ k * Dh ** -0.5, ds.swapaxes(-1, -2) @ q * Dh ** -0.5, p.swapaxes(-1, -2) @ go
    dx = np.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * H * Dh)
    for got, want in ((out.detach().numpy(), o), (a.detach().numpy(), p), (vx.grad.numpy(), dx)):
        worst = max(worst, float(np.max(np.abs(got - want) / (1e-5 + 1e-4 * np.abs(want)))))
print(worst)
"""


def test_baseline_kernels_subprocess():
    env = dict(os.environ, VITC_ISA="baseline", OMP_NUM_THREADS="2")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(vitc.__file__)), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", BASELINE_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip()) <= 1.0  # every element within atol 1e-5 + rtol 1e-4 of float64


# ---- the AVX-512 row kernels against the AVX2 ones, in fresh processes ---------------------------

ISA_SCRIPT = r"""
import sys
import numpy as np, vitc
rng = np.random.default_rng(3)
out = {"isa": np.array(vitc._C._attn_kernel_isa())}
# packed attention on odd sizes; (50, 16) and (40, 12) rebuild their maps in backward from saved row
# statistics (T >= 2·Dh), the rest keep them; need_weights keeps them always; cases 6 and 7 hold a NaN
for n, (B, T, H, Dh, p, weights) in enumerate([(3, 13, 2, 16, 0.0, True), (2, 17, 3, 24, 0.0, False),
                                               (2, 50, 2, 16, 0.0, False), (1, 33, 2, 64, 0.1, True),
                                               (2, 40, 1, 12, 0.0, False), (4, 23, 2, 8, 0.0, False),
                                               (2, 17, 1, 16, 0.0, True), (2, 50, 1, 16, 0.0, False),
                                               (3, 5, 2, 8, 0.0, True), (2, 16, 2, 16, 0.0, False)]):
    x = rng.uniform(-3, 3, (B, T, 3 * H * Dh)).astype(np.float32)
    if n in (6, 7):
        x[1, 3, 0] = np.nan  # a query row of NaN scores: the softmax's row with no finite entry
    vx = vitc.from_numpy(x.copy()); vx.requires_grad = True
    vitc.manual_seed(11)
    r = vitc.multi_head_attention_packed(vx, H, dropout_p=p, need_weights=weights)
    o = r[0] if weights else r
    g = rng.uniform(-1, 1, o.shape).astype(np.float32)
    (o * vitc.from_numpy(g)).sum().backward()
    out[f"x{n}"], out[f"g{n}"], out[f"o{n}"], out[f"dx{n}"] = x, g, o.detach().numpy(), vx.grad.numpy()
# sdpa with q = 0, so S is the additive mask itself: rows that are fully -inf, and gaps to the row max
# on both sides of exp's underflow point (-87.3365: smaller gives exactly 0, just above a subnormal)
L, S, E = 6, 21, 24
m = np.zeros((L, S), np.float32)
m[0, :] = -np.inf
m[1, 5:] = [-87.2, -87.33, -87.3364, -87.3366, -87.5, -100.0, -np.inf] * 2 + [-1e30, -3.0]
m[2, ::2] = -np.inf
m[3:] = rng.uniform(-90, 0, (3, S)).astype(np.float32)
q = vitc.from_numpy(np.zeros((2, L, E), np.float32)); q.requires_grad = True
k = vitc.from_numpy(rng.uniform(-1, 1, (2, S, E)).astype(np.float32)); k.requires_grad = True
v = vitc.from_numpy(rng.uniform(-1, 1, (2, S, E)).astype(np.float32)); v.requires_grad = True
y = vitc.scaled_dot_product_attention(q, k, v, attn_mask=vitc.from_numpy(m))
(y * vitc.from_numpy(rng.uniform(-1, 1, y.shape).astype(np.float32))).sum().backward()
out["sdpa"], out["dq"], out["dk"], out["dv"] = y.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()
np.savez(sys.argv[1], **out)
"""


def _has_avx512f():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx512f(), reason="this CPU has no AVX-512F")
def test_avx512_row_kernels_give_the_avx2_bits(tmp_path):
    """kernels512.c runs the softmax, its rebuild from saved statistics and its backward four rows at a
    time with AVX-512 instructions, and for rows of 9 to 64 keys fuses them with the products before
    them (q·kᵀ, dout·vᵀ) in registers, the same operations in the same order per element as the AVX2 build:
    outputs and gradients must be bitwise those of VITC_ISA=avx2 (odd T, Dh 8/12/16/24/64, dropout,
    masked rows, exp's underflow edge), and within the usual tolerance of PyTorch."""
    res = {}
    for isa in ("auto", "avx2"):
        env = dict(os.environ, VITC_ISA=isa, OMP_NUM_THREADS="2")
        env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(vitc.__file__)), env.get("PYTHONPATH", "")])
        path = tmp_path / f"{isa}.npz"
        r = subprocess.run([sys.executable, "-c", ISA_SCRIPT, str(path)], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        res[isa] = dict(np.load(path))
    assert str(res["auto"]["isa"]) == "avx512" and str(res["avx2"]["isa"]) == "avx2"
    assert res["auto"].keys() == res["avx2"].keys()
    for name in set(res["auto"]) - {"isa"}:
        np.testing.assert_array_equal(res["auto"][name], res["avx2"][name], err_msg=name)
    # and the AVX-512 results against PyTorch (the cases without dropout or NaN), forward and backward
    got = res["auto"]
    for n, H in ((0, 2), (1, 3), (2, 2), (4, 1), (5, 2), (8, 2), (9, 2)):
        tx = torch.from_numpy(got[f"x{n}"]).requires_grad_(True)
        o = torch_mha(tx, H)[0]
        (o * torch.from_numpy(got[f"g{n}"])).sum().backward()
        assert_close(got[f"o{n}"], o.detach().numpy(), RTOL, ATOL, f"output {n}")
        assert_close(got[f"dx{n}"], tx.grad.numpy(), RTOL, ATOL, f"gradient {n}")
    assert np.all(got["sdpa"][:, 0] == 0)  # the fully masked row: zeros, as PyTorch's sdpa
    assert np.all(np.isfinite(got["dq"])) and np.all(np.isfinite(got["dk"]))
