"""Attention: the fused multi-head self-attention on a packed qkv projection (SPEC §1.4) and
torch.nn.functional.scaled_dot_product_attention (csrc/ops/attention.c)."""
import numbers

from .._checks import expect_int, expect_probability, expect_tensor
from .._tensor import _call

__all__ = ['multi_head_attention_packed', 'qkv_attention', 'reattention_packed', 'attention_apply', 'scaled_dot_product_attention']

_REATTN_NORMS = {'none': 0, 'batch': 1, 'layer': 2}


def _check_scale(scale, who):
    if scale is None:
        return 1, 0.0
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
        raise TypeError(f"{who}: scale must be a number or None, got {type(scale).__name__}")
    return 0, float(scale)


def multi_head_attention_packed(qkv, heads, scale=None, dropout_p=0.0, training=True, need_weights=False):
    """Multi-head self-attention straight from the packed projection qkv (B, T, 3·heads·Dh).

    The last dim holds q, k, v as three consecutive heads·Dh chunks; head h owns channels
    [h·Dh, (h+1)·Dh) of each (timm's reshape(B, T, 3, heads, Dh)). Per head A = softmax(q·kᵀ·scale)
    (scale defaults to Dh**-0.5), A' = dropout(A) when training, out = A'·v; heads are concatenated
    head-major into (B, T, heads·Dh). With need_weights, returns (out, A), A (B, heads, T, T) the
    post-softmax, pre-dropout maps (differentiable). One autograd node; nothing is permuted.
    """
    who = "multi_head_attention_packed"
    expect_tensor(qkv, who, "qkv")
    expect_int(heads, who, "heads", minimum=1)
    default, s = _check_scale(scale, who)
    p = expect_probability(dropout_p, who, "dropout_p")
    return _call("attention", (qkv,), (int(heads), int(bool(need_weights)), default),
                 (s, p if training else 0.0))


def qkv_attention(input, weight, bias, heads, scale=None, dropout_p=0.0, training=True, need_weights=False,
                  proj_weight=None, proj_bias=None):
    """The qkv projection, multi-head self-attention and (with proj_weight) the output projection as
    one op: linear(multi_head_attention_packed(linear(input, weight, bias), heads, ...), proj_weight,
    proj_bias). input (B, T, dim), weight (3·heads·Dh, dim), bias (3·heads·Dh,) or None, proj_weight
    (out_dim, heads·Dh), proj_bias (out_dim,) or None. Same result and gradients; where the attention
    runs image by image (small images, enough of them), each image's projections are computed
    straight into and out of the attention's working buffers instead of through whole tensors.
    """
    who = "qkv_attention"
    expect_tensor(input, who, "input")
    expect_tensor(weight, who, "weight")
    for t, what in ((bias, "bias"), (proj_weight, "proj_weight"), (proj_bias, "proj_bias")):
        if t is not None:
            expect_tensor(t, who, what)
    if proj_bias is not None and proj_weight is None:
        raise ValueError(f"{who}: proj_bias needs proj_weight")
    expect_int(heads, who, "heads", minimum=1)
    default, s = _check_scale(scale, who)
    p = expect_probability(dropout_p, who, "dropout_p")
    proj = proj_weight is not None
    return _call("qkv_attention", (input, weight, bias) + ((proj_weight, proj_bias) if proj else ()),
                 (int(heads), int(bool(need_weights)), default, int(proj)), (s, p if training else 0.0))


def reattention_packed(qkv, heads, theta, theta_bias=None, norm='batch', norm_weight=None, norm_bias=None,
                       running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5, scale=None,
                       dropout_p=0.0, transform_scale=None, need_weights=False, return_softmax=False):
    """DeepViT re-attention (SPEC §4.1; P-DeepViT arXiv 2103.11886, official zhoudaquan/dvit_repo) from the
    packed projection qkv (B, T, 3·heads·Dh), one fused autograd node.

    Per image: A = softmax(q·kᵀ·scale) per head, A' = dropout(A) (when training), the heads mixed by
    theta (heads, heads) as Ã[g] = Σ_h theta[g, h]·A'[h] + theta_bias[g], then norm over the head axis:
    'batch' (BatchNorm2d(heads): per head over the B·T·T values; batch statistics when training,
    updating running_mean / running_var in place with the unbiased variance; running ones in eval),
    'layer' (LayerNorm over the heads at each (b, i, j)) or 'none'; norm_weight / norm_bias are the
    per-head affine γ, β. transform_scale (a number or None) multiplies the normed map. out = Â·v per
    head, heads concatenated head-major (B, T, heads·Dh). With need_weights returns (out, Â), Â
    (B, heads, T, T) the map that multiplied v (differentiable); return_softmax appends the per-head
    softmax maps A (post-softmax, pre-dropout, before the mixing) as a further output.
    """
    who = "reattention_packed"
    expect_tensor(qkv, who, "qkv")
    expect_int(heads, who, "heads", minimum=1)
    expect_tensor(theta, who, "theta")
    if tuple(theta.shape) != (heads, heads):
        raise ValueError(f"{who}: theta must have shape ({heads}, {heads}) (heads x heads), got {tuple(theta.shape)}")
    for t, n in ((theta_bias, "theta_bias"), (norm_weight, "norm_weight"), (norm_bias, "norm_bias"),
                 (running_mean, "running_mean"), (running_var, "running_var")):
        if t is not None:
            expect_tensor(t, who, n)
    if norm not in _REATTN_NORMS:
        raise ValueError(f"{who}: norm must be one of {tuple(_REATTN_NORMS)}, got {norm!r}")
    default, s = _check_scale(scale, who)
    p = expect_probability(dropout_p, who, "dropout_p")
    ts = 1.0
    if transform_scale is not None:
        if not isinstance(transform_scale, numbers.Real) or isinstance(transform_scale, bool):
            raise TypeError(f"{who}: transform_scale must be a number or None, got {type(transform_scale).__name__}")
        ts = float(transform_scale)
    for v, n in ((momentum, "momentum"), (eps, "eps")):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"{who}: {n} must be a number, got {type(v).__name__}")
    return _call("reattention", (qkv, theta, theta_bias, norm_weight, norm_bias, running_mean, running_var),
                 (int(heads), int(bool(need_weights)), default, _REATTN_NORMS[norm], int(bool(training)),
                  int(bool(return_softmax))),
                 (s, p if training else 0.0, float(momentum), float(eps), ts))


def attention_apply(qkv, maps, heads):
    """out = maps·v per head, v the third chunk of the packed projection qkv (B, T, 3·heads·Dh), maps
    (B, heads, T, T) made elsewhere (DeepViT attention reuse, SPEC §4.3: a later block multiplies its
    own v with an earlier block's maps). Heads concatenated head-major -> (B, T, heads·Dh).
    Gradients reach v and the maps (hence the block that made them)."""
    who = "attention_apply"
    expect_tensor(qkv, who, "qkv")
    expect_tensor(maps, who, "maps")
    expect_int(heads, who, "heads", minimum=1)
    return _call("attention_apply", (qkv, maps), (int(heads),))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention: softmax(q·kᵀ·scale + mask)·v.

    query (..., L, E), key (..., S, E), value (..., S, Ev), batch dims broadcast. attn_mask
    broadcasts to (..., L, S): bool (True takes part in attention) or float (added to the scores).
    is_causal masks key j > query i. Rows with every key masked give zeros (as PyTorch). Dropout
    (counter RNG, vitc.manual_seed) is applied whenever dropout_p > 0, as in PyTorch.
    """
    who = "scaled_dot_product_attention"
    for t, n in ((query, "query"), (key, "key"), (value, "value")):
        expect_tensor(t, who, n)
    if attn_mask is not None:
        expect_tensor(attn_mask, who, "attn_mask")
    if enable_gqa:
        raise ValueError(f"{who}: enable_gqa is not supported")
    default, s = _check_scale(scale, who)
    p = expect_probability(dropout_p, who, "dropout_p")
    return _call("scaled_dot_product_attention", (query, key, value, attn_mask), (int(bool(is_causal)), default),
                 (s, p))
