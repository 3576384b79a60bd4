"""MultiheadAttention with torch.nn.MultiheadAttention's constructor, parameter names (in_proj_weight,
in_proj_bias, out_proj; q/k/v_proj_weight when kdim/vdim differ), so a torch state_dict loads, and
its forward: (output, attention weights or None).

The attention itself runs on vitc's fused ops (csrc/ops/attention/): self-attention without masks
(query is key is value) is one qkv_attention node (projections, attention, output projection);
everything else projects with linear and calls scaled_dot_product_attention with the masks merged
into one additive mask. Only when attention weights are asked for together with masks or separate
key/value inputs are the weights formed explicitly (softmax(q·kᵀ/√d + mask), dropout, ·v), as
torch's own need_weights path does.
"""
import math

import vitc as _v

from . import init
from .._checks import expect_int, expect_probability, expect_tensor
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["MultiheadAttention"]


def _additive(mask, who, name):
    """A float mask to add to the scores: bool True (not allowed to attend) becomes -inf."""
    expect_tensor(mask, who, name)
    if mask.dtype is _v.bool:
        return _v.masked_fill(_v.zeros(*mask.shape), mask, float("-inf"))
    if mask.dtype is not _v.float32:
        raise TypeError(f"{who}: {name} must be a bool or float32 tensor, got {mask.dtype!r}")
    return mask


class MultiheadAttention(Module):
    """Multi-head attention (Vaswani et al. 2017, §3.2.2) as torch.nn.MultiheadAttention.

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False): query (L, N, E), key/value (S, N, kdim/vdim), or
    batch first (N, L, E) with batch_first=True, or unbatched (L, E). key_padding_mask (N, S) and
    attn_mask (L, S) or (N·heads, L, S): bool (True = may not attend) or float (added to the scores).
    Returns (output like query, weights (N, L, S) averaged over heads, (N, heads, L, S) with
    average_attn_weights=False, or None with need_weights=False). is_causal is torch's hint that
    attn_mask is causal (attn_mask is still required). add_bias_kv and add_zero_attn raise
    NotImplementedError.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        who = "MultiheadAttention"
        self.embed_dim = expect_int(embed_dim, who, "embed_dim", minimum=1)
        self.num_heads = expect_int(num_heads, who, "num_heads", minimum=1)
        if embed_dim % num_heads:
            raise ValueError(f"{who}: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(f"{who}: {'add_bias_kv' if add_bias_kv else 'add_zero_attn'}=True is not "
                                      "supported")
        if device not in (None, "cpu") or dtype not in (None, _v.float32):
            raise ValueError(f"{who}: vitc runs float32 on the CPU (device={device!r}, dtype={dtype!r})")
        self.kdim = embed_dim if kdim is None else expect_int(kdim, who, "kdim", minimum=1)
        self.vdim = embed_dim if vdim is None else expect_int(vdim, who, "vdim", minimum=1)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout = expect_probability(dropout, who, "dropout")
        self.batch_first = bool(batch_first)
        self.head_dim = embed_dim // num_heads
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(_v.empty(3 * embed_dim, embed_dim))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(_v.empty(embed_dim, embed_dim))
            self.k_proj_weight = Parameter(_v.empty(embed_dim, self.kdim))
            self.v_proj_weight = Parameter(_v.empty(embed_dim, self.vdim))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(_v.empty(3 * embed_dim))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self._reset_parameters()

    def _reset_parameters(self):
        # torch's init: xavier_uniform_ on the input projections, zero biases
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _projection(self, i):
        E = self.embed_dim
        w = self.in_proj_weight[i * E:(i + 1) * E] if self._qkv_same_embed_dim else \
            (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[i]
        b = self.in_proj_bias[i * E:(i + 1) * E] if self.in_proj_bias is not None else None
        return w, b

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        who = "MultiheadAttention"
        for t, n in ((query, "query"), (key, "key"), (value, "value")):
            expect_tensor(t, who, n)
        if is_causal and attn_mask is None:
            raise RuntimeError(f"{who}: is_causal is a hint that attn_mask is causal; pass the attn_mask too")
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"{who}: query, key and value must all be 3-d (batched) or 2-d (unbatched), got "
                             f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        self_attention = query is key and key is value
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        N, L, E = query.shape
        S = key.shape[1]
        if E != self.embed_dim or key.shape[2] != self.kdim or value.shape[2] != self.vdim:
            raise ValueError(f"{who}: expected query/key/value features {self.embed_dim}/{self.kdim}/{self.vdim}, "
                             f"got {E}/{key.shape[2]}/{value.shape[2]}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != N:
            raise ValueError(f"{who}: key {tuple(key.shape)} and value {tuple(value.shape)} must match query's "
                             f"batch {N} and each other's length")
        mask = self._merged_mask(key_padding_mask, attn_mask, N, L, S, batched)
        p = self.dropout if self.training else 0.0
        H = self.num_heads
        weights = None
        if self_attention and mask is None and self._qkv_same_embed_dim:
            res = _v.qkv_attention(query.contiguous(), self.in_proj_weight, self.in_proj_bias, H, dropout_p=p,
                                   training=self.training, need_weights=need_weights,
                                   proj_weight=self.out_proj.weight, proj_bias=self.out_proj.bias)
            out, weights = res if need_weights else (res, None)
        else:
            q, k, v = (_v.linear(t, *self._projection(i)).reshape(N, -1, H, self.head_dim).transpose(1, 2)
                       for i, t in enumerate((query, key, value)))
            if need_weights:
                scores = _v.matmul(q * (1.0 / math.sqrt(self.head_dim)), k.transpose(-2, -1))
                weights = _v.softmax(scores if mask is None else scores + mask, dim=-1)
                ctx = _v.matmul(_v.dropout(weights, p, training=p > 0) if p > 0 else weights, v)
            else:
                ctx = _v.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            out = self.out_proj(ctx.transpose(1, 2).reshape(N, L, E))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            return out.squeeze(0), (weights.squeeze(0) if weights is not None else None)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _merged_mask(self, key_padding_mask, attn_mask, N, L, S, batched):
        """One additive float mask broadcasting to (N, heads, L, S), or None."""
        who = "MultiheadAttention"
        H, mask = self.num_heads, None
        if attn_mask is not None:
            m = _additive(attn_mask, who, "attn_mask")
            if m.ndim == 2 and tuple(m.shape) == (L, S):
                mask = m.reshape(1, 1, L, S)
            elif m.ndim == 3 and tuple(m.shape) == (N * H, L, S):
                mask = m.reshape(N, H, L, S)
            else:
                raise ValueError(f"{who}: attn_mask must have shape ({L}, {S}) or ({N * H}, {L}, {S}), got "
                                 f"{tuple(m.shape)}")
        if key_padding_mask is not None:
            m = _additive(key_padding_mask, who, "key_padding_mask")
            want = (N, S) if batched else (S,)
            if tuple(m.shape) != want:
                raise ValueError(f"{who}: key_padding_mask must have shape {want}, got {tuple(m.shape)}")
            m = m.reshape(N, 1, 1, S)
            mask = m if mask is None else mask + m
        return mask

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
