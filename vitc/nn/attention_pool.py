"""Multi-head attention pooling (MAP): the class-token-free head of Zhai et al., "Scaling Vision
Transformers" (arXiv 2106.04560 §3.2), as big_vision's models/vit.py MAPHead builds it.

A learned probe p (1, 1, D) is the single query of one multi-head attention over the encoder's
tokens X (B, N, D): q = p·W_q + b_q, [K | V] = X·W_kv + b_kv, o = concat_h softmax(q_h K_hᵀ/√Dh) V_h,
o ← o·W_o + b_o; then y = o + MLP(LN(o)), with no norm before the attention. Output (B, D).
The math equals timm's AttentionPoolLatent(latent_len=1, pool_type='token'); the probe starts
xavier-uniform as in big_vision.
"""
import vitc as _v

from . import init
from .._checks import expect_int
from .linear import Linear
from .module import Module
from .normalization import LayerNorm
from .parameter import Parameter
from .transformer import FeedForward

__all__ = ["MAPHead"]


class MAPHead(Module):
    """MAPHead(dim, heads, mlp_dim, norm_eps=1e-6, qkv_bias=True): (B, N, dim) tokens -> (B, dim)."""

    def __init__(self, dim, heads, mlp_dim, norm_eps=1e-6, qkv_bias=True):
        super().__init__()
        expect_int(dim, "MAPHead", "dim", 1)
        expect_int(heads, "MAPHead", "heads", 1)
        expect_int(mlp_dim, "MAPHead", "mlp_dim", 1)
        if dim % heads:
            raise ValueError(f"MAPHead: heads ({heads}) must divide dim ({dim})")
        self.dim, self.heads = dim, heads
        self.probe = Parameter(_v.zeros(1, 1, dim))
        init.xavier_uniform_(self.probe)
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.kv = Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.norm = LayerNorm(dim, eps=norm_eps)
        self.mlp = FeedForward(dim, mlp_dim)

    def forward(self, x):
        if not isinstance(x, _v.Tensor) or x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"MAPHead expects tokens of shape (B, N, {self.dim}), got "
                             f"{tuple(x.shape) if isinstance(x, _v.Tensor) else type(x).__name__}")
        b, n, d = x.shape
        h, dh = self.heads, d // self.heads
        q = self.q(self.probe).reshape(1, 1, h, dh).transpose(1, 2)          # (1, H, 1, Dh), broadcast over B
        kv = self.kv(x).reshape(b, n, 2, h, dh).permute(2, 0, 3, 1, 4)      # (2, B, H, N, Dh)
        o = _v.scaled_dot_product_attention(q, kv[0], kv[1])                # (B, H, 1, Dh)
        o = self.proj(o.transpose(1, 2).reshape(b, 1, d))
        return (o + self.mlp(self.norm(o)))[:, 0]

    def extra_repr(self):
        return f"dim={self.dim}, heads={self.heads}"
