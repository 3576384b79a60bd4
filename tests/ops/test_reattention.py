"""DeepViT re-attention (arXiv 2103.11886; zhoudaquan/dvit_repo:models/layers.py `ReAttention`) against
the formula written with torch ops: outputs, the maps Â, gradients of qkv, Θ, θ and the norm's γ/β,
running statistics, train and eval, dropout, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import assert_close, assert_same_at_1_and_2_threads, check_allocation_failures, check_op, rand
from test_attention import _packed_multipliers

RTOL, ATOL = 1e-4, 1e-5          # vitc's float32 parity tolerance for attention/norm outputs
GRTOL, GATOL = 1e-3, 1e-5        # vitc's float32 parity tolerance for gradients


def torch_reattention(qkv, heads, theta, theta_bias=None, w=None, b=None, rm=None, rv=None, norm="batch",
                      training=True, momentum=0.1, eps=1e-5, scale=None, ts=1.0, mult=None):
    """Re-attention with explicit torch ops: softmax maps, dropout multipliers injected, the head mixing
    as an einsum (a 1×1 Conv2d over heads), BatchNorm2d / LayerNorm over the head axis, then ·v."""
    B, T, C = qkv.shape
    Dh = C // (3 * heads)
    q, k, v = qkv.reshape(B, T, 3, heads, Dh).permute(2, 0, 3, 1, 4)
    s = Dh ** -0.5 if scale is None else scale
    a = torch.softmax(q @ k.transpose(-1, -2) * s, dim=-1)
    a = a if mult is None else a * mult
    at = torch.einsum("gh,bhij->bgij", theta, a)
    if theta_bias is not None:
        at = at + theta_bias[None, :, None, None]
    if norm == "batch":
        y = F.batch_norm(at, rm, rv, w, b, training, momentum, eps)
    elif norm == "layer":
        y = F.layer_norm(at.permute(0, 2, 3, 1), (heads,), w, b, eps).permute(0, 3, 1, 2)
    else:
        y = at
    y = y * ts
    return (y @ v).transpose(1, 2).reshape(B, T, heads * Dh), y


def ref64(*args, **kw):
    """torch_reattention evaluated in float64 (results cast back to float32, gradients flow to the
    float32 leaves): the batch norm over maps with small variance amplifies float32 rounding, so the
    reference is computed more accurately than either float32 implementation"""
    args = [a.double() if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a for a in args]
    kw = {k: (v.double() if isinstance(v, torch.Tensor) and k == "mult" else v) for k, v in kw.items()}
    return tuple(t.float() for t in torch_reattention(*args, **kw))


def _params(H, seed=0, affine=True, bias=True):
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(H)
    th = rng.uniform(-bound, bound, (H, H)).astype(np.float32)
    tb = rng.uniform(-bound, bound, H).astype(np.float32)
    w = rng.uniform(0.5, 1.5, H).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, H).astype(np.float32)
    return [th] + ([tb] if bias else []) + ([w, b] if affine else [])


def _fns(H, norm, bias=True, affine=True, training=True, rm=None, rv=None, **kw):
    """(vitc fn, torch fn) over (qkv, theta[, theta_bias][, weight, bias]); running stats are fresh
    copies of rm/rv each call (they are updated in place)"""
    def split(args):
        it = iter(args)
        x, th = next(it), next(it)
        tb = next(it) if bias else None
        w, b = (next(it), next(it)) if affine else (None, None)
        return x, th, tb, w, b

    def vfn(*args):
        x, th, tb, w, b = split(args)
        r = (vitc.from_numpy(rm.copy()), vitc.from_numpy(rv.copy())) if rm is not None else (None, None)
        return vitc.reattention_packed(x, H, th, tb, norm=norm, norm_weight=w, norm_bias=b, running_mean=r[0],
                                       running_var=r[1], training=training, need_weights=True, **kw)

    def tfn(*args):
        x, th, tb, w, b = split(args)
        r = (torch.from_numpy(rm.copy()).double(), torch.from_numpy(rv.copy()).double()) if rm is not None \
            else (None, None)
        tkw = dict(kw)
        tkw.pop("dropout_p", None)
        if "transform_scale" in tkw:
            tkw["ts"] = tkw.pop("transform_scale")
        return ref64(x, H, th, tb, w, b, r[0], r[1], norm=norm, training=training, **tkw)
    return vfn, tfn


NOT_DTHETA = [0, 1, 3, 4]  # batch norm in training: dθ is exactly 0, float32 returns noise (see below)
SHAPES = [(2, 5, 2, 8), (3, 17, 8, 16), (1, 9, 3, 12), (4, 1, 2, 8), (2, 33, 4, 8)]


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
@pytest.mark.parametrize("B,T,H,Dh", SHAPES)
def test_forward_maps_and_all_gradients(norm, B, T, H, Dh):
    if norm == "batch" and T == 1:
        pytest.skip("T = 1: every map is 1, the mixed map is constant over the batch and its variance 0")
    if norm == "layer" and H == 2:
        pytest.skip("LayerNorm over 2 heads maps to ±1 and is ill-conditioned where the two values meet "
                    "(d x̂/d Ã ~ eps^-1/2): float32 rounding of the input alone exceeds the tolerance")
    affine = norm != "none"
    x = rand(B, T, 3 * H * Dh, low=-2, high=2)
    # the normed maps have unit variance per head (not rows summing to 1), so Â·v sums terms of
    # size |Â|·|v|; a smaller v keeps those terms O(1), the scale ATOL assumes
    x[..., 2 * H * Dh:] *= 0.25
    vfn, tfn = _fns(H, norm, affine=affine)
    inputs = [x] + _params(H, affine=affine)
    # batch statistics remove any per-head shift, so dθ is exactly 0 in training: both frameworks
    # return cancellation noise there; it is checked to be ~0 below, and against torch in eval mode
    want = [i for i in range(len(inputs)) if not (norm == "batch" and i == 2)]
    check_op(vfn, tfn, inputs, rtol=RTOL, atol=ATOL, grad_rtol=GRTOL, grad_atol=GATOL, fd=T * H * Dh <= 600,
             grad_inputs=want)
    if norm == "batch":
        leaves = [vitc.from_numpy(a) for a in inputs]
        leaves[2].requires_grad = leaves[4].requires_grad = True
        out, amap = vfn(*leaves)
        (out * vitc.from_numpy(rand(*out.shape))).sum().backward()
        # a dθ computed from dy instead of dÃ would be as large as dβ = Σ dy
        dbeta = leaves[4].grad.numpy() if leaves[4].grad is not None else None
        assert np.abs(leaves[2].grad.numpy()).max() <= 1e-2 * np.abs(dbeta).max()


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_without_bias_and_affine(norm):
    x = rand(3, 7, 3 * 4 * 8)
    vfn, tfn = _fns(4, norm, bias=False, affine=False)
    check_op(vfn, tfn, [x] + _params(4, affine=False, bias=False), rtol=RTOL, atol=ATOL, grad_rtol=GRTOL,
             grad_atol=GATOL)


def test_eval_mode_uses_running_stats():
    H = 4
    rng = np.random.default_rng(3)
    rm = rng.uniform(-0.1, 0.1, H).astype(np.float32)
    rv = rng.uniform(0.01, 0.05, H).astype(np.float32)
    vfn, tfn = _fns(H, "batch", training=False, rm=rm, rv=rv)
    check_op(vfn, tfn, [rand(2, 9, 3 * H * 8)] + _params(H), rtol=RTOL, atol=ATOL, grad_rtol=GRTOL, grad_atol=GATOL)


def test_scale_and_transform_scale():
    H, Dh = 3, 16
    vfn, tfn = _fns(H, "batch", scale=0.3, transform_scale=Dh ** -0.5)
    check_op(vfn, tfn, [rand(2, 6, 3 * H * Dh)] + _params(H), rtol=RTOL, atol=ATOL, grad_rtol=GRTOL,
             grad_atol=GATOL, grad_inputs=NOT_DTHETA)


def test_running_stats_update_like_batchnorm2d():
    """training updates running_mean / running_var in place: momentum 0.1, unbiased variance"""
    B, T, H, Dh = 3, 10, 4, 8
    x = rand(B, T, 3 * H * Dh)
    th, tb, w, b = _params(H)
    vrm, vrv = vitc.zeros(H), vitc.ones(H)
    trm, trv = torch.zeros(H), torch.ones(H)
    for step in range(3):
        xs = x * (1 + step)
        with vitc.no_grad():
            vitc.reattention_packed(vitc.from_numpy(xs), H, vitc.from_numpy(th), vitc.from_numpy(tb),
                                    norm_weight=vitc.from_numpy(w), norm_bias=vitc.from_numpy(b), running_mean=vrm,
                                    running_var=vrv, training=True, momentum=0.2)
        torch_reattention(torch.from_numpy(xs), H, torch.from_numpy(th), torch.from_numpy(tb), torch.from_numpy(w),
                          torch.from_numpy(b), trm, trv, training=True, momentum=0.2)
    assert_close(vrm.numpy(), trm.numpy(), 1e-5, 1e-7, "running_mean")
    assert_close(vrv.numpy(), trv.numpy(), 1e-5, 1e-7, "running_var")
    # eval: the running stats normalise, and are not touched
    before = vrm.numpy().copy()
    with vitc.no_grad():
        vo = vitc.reattention_packed(vitc.from_numpy(x), H, vitc.from_numpy(th), vitc.from_numpy(tb),
                                     norm_weight=vitc.from_numpy(w), norm_bias=vitc.from_numpy(b),
                                     running_mean=vrm, running_var=vrv, training=False)
    to, _ = torch_reattention(torch.from_numpy(x), H, torch.from_numpy(th), torch.from_numpy(tb),
                              torch.from_numpy(w), torch.from_numpy(b), trm, trv, training=False)
    np.testing.assert_array_equal(vrm.numpy(), before)
    assert_close(vo.numpy(), to.numpy(), RTOL, ATOL, "eval output")


def test_dropout_matches_torch_with_injected_mask():
    """the op draws its mask with the same counters as `attention` (element (b, h, i, j))"""
    B, T, H, Dh, p, seed = 2, 9, 2, 16, 0.3, 77
    mult = _packed_multipliers(B, T, H, Dh, p, seed)
    vfn0, tfn0 = _fns(H, "batch")

    def vfn(*a):
        vitc.manual_seed(seed)
        with_p = vitc.reattention_packed(a[0], H, a[1], a[2], norm_weight=a[3], norm_bias=a[4], dropout_p=p,
                                         need_weights=True)
        return with_p

    def tfn(*a):
        return ref64(a[0], H, a[1], a[2], a[3], a[4], mult=torch.from_numpy(mult))

    check_op(vfn, tfn, [rand(B, T, 3 * H * Dh)] + _params(H), rtol=RTOL, atol=ATOL, grad_rtol=GRTOL,
             grad_atol=GATOL, grad_inputs=NOT_DTHETA)


def test_grad_through_maps_only_and_thread_invariance():
    B, T, H, Dh = 4, 17, 4, 16
    x, (th, tb, w, b) = rand(B, T, 3 * H * Dh), _params(H)
    up = rand(B, H, T, T)

    def run():
        leaves = [vitc.from_numpy(a.copy()) for a in (x, th, tb, w, b)]
        for t in leaves:
            t.requires_grad = True
        _, amap = vitc.reattention_packed(leaves[0], H, *leaves[1:3], norm_weight=leaves[3], norm_bias=leaves[4],
                                          need_weights=True)
        (amap * vitc.from_numpy(up)).sum().backward()
        return [amap.detach().numpy().copy()] + [t.grad.numpy().copy() for t in leaves]
    got = assert_same_at_1_and_2_threads(run)
    tl = [torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, th, tb, w, b)]
    _, tmap = ref64(tl[0], H, *tl[1:])
    (tmap * torch.from_numpy(up)).sum().backward()
    for k, t in enumerate(tl):
        if k == 2:  # dθ = 0 under batch statistics: float32 gives cancellation noise (torch too)
            assert np.abs(got[3]).max() <= 1e-2 * np.abs(got[5]).max()
            continue
        assert_close(got[k + 1], t.grad.numpy(), GRTOL, GATOL, f"grad {k} through the maps")


def test_allocation_failures():
    x = vitc.from_numpy(rand(2, 5, 3 * 2 * 8))
    x.requires_grad = True
    th = vitc.from_numpy(_params(2)[0])
    th.requires_grad = True

    def work():
        out, a = vitc.reattention_packed(x, 2, th, need_weights=True, dropout_p=0.1)
        (out.sum() + a.sum()).backward()
    check_allocation_failures(work)


def test_bad_input():
    x = vitc.from_numpy(rand(2, 5, 3 * 2 * 8))
    th = vitc.from_numpy(_params(2)[0])
    R = vitc.reattention_packed
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 2\)"):
        R(x, 2, vitc.zeros(3, 3))
    with pytest.raises(ValueError, match="theta"):
        R(x, 2, vitc.zeros(2, 2, 1))
    with pytest.raises(TypeError, match="theta"):
        R(x, 2, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"theta_bias has shape \(3,\)"):
        R(x, 2, th, vitc.zeros(3))
    with pytest.raises(ValueError, match="norm_weight"):
        R(x, 2, th, norm_weight=vitc.ones(4))
    with pytest.raises(ValueError, match="norm must be one of"):
        R(x, 2, th, norm="group")
    with pytest.raises(ValueError, match="multiple of 3"):
        R(vitc.from_numpy(rand(2, 5, 10)), 2, th)
    with pytest.raises(ValueError, match="3-d"):
        R(vitc.from_numpy(rand(5, 48)), 2, th)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        R(x, 2, th, training=False)
    with pytest.raises(ValueError, match="only used by the batch norm"):
        R(x, 2, th, norm="layer", running_mean=vitc.zeros(2), running_var=vitc.ones(2))
    with pytest.raises(ValueError, match="running_var has shape"):
        R(x, 2, th, running_mean=vitc.zeros(2), running_var=vitc.ones(3))
    with pytest.raises(ValueError, match="more than 1 value per head"):
        R(vitc.from_numpy(rand(1, 1, 48)), 2, th)
    with pytest.raises(ValueError, match="dropout_p"):
        R(x, 2, th, dropout_p=1.5)
    with pytest.raises(ValueError, match="norm is none"):
        R(x, 2, th, norm="none", norm_weight=vitc.ones(2))
    with pytest.raises(TypeError, match="float32"):
        R(x, 2, vitc.zeros(2, 2, dtype=vitc.int64))
    rv = vitc.ones(2)
    rv.requires_grad = True
    with pytest.raises(RuntimeError, match="must not require grad"):
        R(x, 2, th, running_mean=vitc.zeros(2), running_var=rv)


# ---- attention_apply: another block's maps times this block's v (attention reuse, arXiv 2103.11886 §5)

def torch_apply(qkv, maps, heads):
    B, T, C = qkv.shape
    Dh = C // (3 * heads)
    v = qkv.reshape(B, T, 3, heads, Dh)[:, :, 2].transpose(1, 2)
    return (maps @ v).transpose(1, 2).reshape(B, T, heads * Dh)


@pytest.mark.parametrize("B,T,H,Dh", [(2, 5, 2, 8), (3, 17, 4, 16), (1, 1, 1, 3)])
def test_attention_apply(B, T, H, Dh):
    check_op(lambda x, m: vitc.attention_apply(x, m, H), lambda x, m: torch_apply(x, m, H),
             [rand(B, T, 3 * H * Dh), rand(B, H, T, T)], rtol=RTOL, atol=ATOL, grad_rtol=GRTOL, grad_atol=GATOL)


def test_attention_apply_bad_input():
    x = vitc.from_numpy(rand(2, 5, 48))
    with pytest.raises(ValueError, match=r"maps must be \(B, heads, T, T\)"):
        vitc.attention_apply(x, vitc.zeros(2, 2, 5, 4), 2)
    with pytest.raises(ValueError, match="qkv must be"):
        vitc.attention_apply(x, vitc.zeros(2, 5, 5, 5), 5)
    with pytest.raises(TypeError, match="maps"):
        vitc.attention_apply(x, None, 2)


def test_return_softmax_maps_and_their_gradient():
    """return_softmax appends A (pre-mixing softmax maps); a gradient on it reaches qkv"""
    B, T, H, Dh = 2, 6, 3, 8
    x, th, tb, w, b = [rand(B, T, 3 * H * Dh)] + _params(H)
    x[..., 2 * H * Dh:] *= 0.25  # keep the terms of Â·v O(1) (see test_forward_maps_and_all_gradients)

    def vfn(x_, th_):
        out, amap, soft = vitc.reattention_packed(x_, H, th_, vitc.from_numpy(tb), norm_weight=vitc.from_numpy(w),
                                                  norm_bias=vitc.from_numpy(b), need_weights=True,
                                                  return_softmax=True)
        return out, amap, soft

    def tfn(x_, th_):
        q, k, _ = x_.reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
        soft = torch.softmax(q @ k.transpose(-1, -2) * Dh ** -0.5, dim=-1)
        out, amap = ref64(x_, H, th_, torch.from_numpy(tb), torch.from_numpy(w), torch.from_numpy(b))
        return out, amap, soft
    check_op(vfn, tfn, [x, th], rtol=RTOL, atol=ATOL, grad_rtol=GRTOL, grad_atol=GATOL)
