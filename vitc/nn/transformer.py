"""Transformer building blocks of a ViT (lucidrains/vit-pytorch vit_pytorch/vit.py, Aug 2023):
Patchify, Attention, FeedForward, TransformerBlock (pre-norm) and Transformer (blocks + final norm).

norm='layer' | 'batch' picks LayerNorm or the article's token BatchNorm (docs/choices.md) for every norm
of a block stack; ffn_norm='batch' moves the FFN's norm between its first Linear and the GELU
(the ViTBNFFN/ViTBN FFN of anindyahepth/BatchNorm_in_Transformers_CV, model/vitbnffn.py)."""
import vitc as _v

from .._checks import expect_fits_memory, expect_int, expect_number, expect_pair, expect_probability, expect_size
from .activation import GELU
from .container import ModuleList, Sequential
from .dropout import Dropout, DropPath
from .linear import Identity, Linear
from .module import Module
from .normalization import BatchNorm2d, LayerNorm, TokenBatchNorm
from .parameter import Parameter

__all__ = ["Patchify", "Attention", "FeedForward", "TransformerBlock", "Transformer", "make_norm"]

_NORMS = ("layer", "batch")


def make_norm(kind, dim, eps=1e-5):
    """'layer': LayerNorm(dim) over the last dim; 'batch': TokenBatchNorm(dim), statistics per feature
    over all B·T tokens (the article's Batch_Norm)."""
    if kind == "layer":
        return LayerNorm(dim, eps=eps)
    if kind == "batch":
        return TokenBatchNorm(dim, eps=eps)
    raise ValueError(f"norm must be one of {_NORMS}, got {kind!r}")


class Patchify(Module):
    """(B, C, H, W) -> (B, N, P1·P2·C), einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' (lucidrains' vit.py)."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = expect_pair(patch_size, "Patchify", "patch_size", minimum=1)

    def forward(self, input):
        if input.ndim != 4:
            raise ValueError(f"Patchify: expected a (B, C, H, W) image batch, got shape {tuple(input.shape)}")
        p1, p2 = self.patch_size
        if input.shape[2] % p1 or input.shape[3] % p2:
            raise ValueError(f"Patchify: image size {tuple(input.shape[2:])} is not divisible by the patch size "
                             f"{self.patch_size}")
        return _v.patchify(input, self.patch_size)

    def extra_repr(self):
        return f"patch_size={self.patch_size}"


class Attention(Module):
    """Multi-head self-attention (lucidrains/vit-pytorch): to_qkv -> fused attention -> to_out.

    inner = heads·dim_head; scale dim_head^-1/2; attention-map dropout `dropout`; to_out =
    Linear(inner, dim) + Dropout, or Identity when heads == 1 and dim_head == dim (as lucidrains).
    attn='reattention': DeepViT re-attention (arXiv 2103.11886 eq. 3; dvit_repo models/layers.py): the
    heads' maps mixed by a learnable
    reattn_weight Θ (heads, heads) (+ reattn_bias θ when reattn_bias), then reattn_norm over the head
    axis — 'batch' (BatchNorm2d(heads), official dvit_repo), 'layer' (LayerNorm(heads), lucidrains) or
    'none' — optionally times dim_head^-1/2 (reattn_scale, DeepViT-S's transform_scale); one fused op.
    Θ, θ init U(±1/√heads) (the official Conv2d(heads, heads, 1) default).
    forward(x, return_attention=True) also returns the maps (B, heads, T, T) that multiply v
    (post-softmax pre-dropout A for 'mhsa', Â for 'reattention'); forward(x, reuse_map=M) multiplies
    this block's v with maps M of another block instead (attention reuse, DeepViT section 5;
    docs/choices.md).
    With record_attention = True every forward keeps its maps (detached) in last_attention, and the
    per-head softmax maps in last_softmax (the same tensor for 'mhsa'; A before the mixing for
    'reattention' and talking heads).
    talking_heads=True (or add_talking_heads() later): talking-heads attention (Shazeer et al., arXiv
    2003.02436), the default of the over-smoothing reference model (ChengyueGongR/PatchVisionTransformer
    deit/models.py, use_talk): bias-free head-mixing maps talk_pre, talk_post (heads, heads), applied
    to the logits before the softmax and to the maps after it; composed from vitc ops ('mhsa' only).
    """

    def __init__(self, dim, heads=8, dim_head=64, dropout=0.0, qkv_bias=False, attn="mhsa", reattn_norm="batch",
                 reattn_bias=True, reattn_scale=False, talking_heads=False):
        super().__init__()
        who = "Attention"
        self.dim = expect_size(dim, who, "dim")
        self.heads = expect_size(heads, who, "heads")
        self.dim_head = expect_size(dim_head, who, "dim_head")
        expect_fits_memory(4 * dim * heads * dim_head, who, f"dim={dim}, heads={heads}, dim_head={dim_head}")
        self.attn_drop = expect_probability(dropout, who, "dropout")
        if attn not in ("mhsa", "reattention"):
            raise ValueError(f"{who}: attn must be 'mhsa' or 'reattention', got {attn!r}")
        self.attn = attn
        inner = heads * dim_head
        self.scale = dim_head ** -0.5
        self.to_qkv = Linear(dim, inner * 3, bias=qkv_bias)
        if attn == "reattention":
            if reattn_norm not in ("batch", "layer", "none"):
                raise ValueError(f"{who}: reattn_norm must be 'batch', 'layer' or 'none', got {reattn_norm!r}")
            self.reattn_norm_kind = reattn_norm
            self.reattn_scale = bool(reattn_scale)
            bound = heads ** -0.5
            self.reattn_weight = Parameter(_v.rand(heads, heads) * (2 * bound) - bound)
            if reattn_bias:
                self.reattn_bias = Parameter(_v.rand(heads) * (2 * bound) - bound)
            else:
                self.register_parameter("reattn_bias", None)
            self.reattn_norm = (BatchNorm2d(heads) if reattn_norm == "batch" else
                                LayerNorm(heads) if reattn_norm == "layer" else Identity())
        project_out = not (heads == 1 and dim_head == dim)
        self.to_out = Sequential(Linear(inner, dim), Dropout(dropout)) if project_out else Identity()
        self.record_attention = False
        self.last_attention = self.last_softmax = None
        self.talk_pre = self.talk_post = None
        if talking_heads:
            self.add_talking_heads()

    def add_talking_heads(self):
        """Give this 'mhsa' layer talking heads: talk_pre, talk_post ~ U(±1/√heads) (nn.Linear's default)."""
        if self.attn != "mhsa":
            raise ValueError(f"Attention: talking heads apply to 'mhsa' attention, not {self.attn!r}")
        if self.talk_pre is None:
            bound = self.heads ** -0.5
            self.talk_pre = Parameter(_v.rand(self.heads, self.heads) * (2 * bound) - bound)
            self.talk_post = Parameter(_v.rand(self.heads, self.heads) * (2 * bound) - bound)
        return self

    @staticmethod
    def _mix_heads(a, weight):
        """a (B, H, T, T) -> Σ_h weight[g, h]·a[:, h] (a bias-free Linear over the head axis)"""
        return _v.matmul(a.permute(0, 2, 3, 1), weight.t()).permute(0, 3, 1, 2)

    def _talking_heads(self, qkv):
        b, t, _ = qkv.shape
        q, k, v = qkv.reshape(b, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4).unbind(0)
        logits = self._mix_heads(_v.matmul(q, k.transpose(-2, -1)) * self.scale, self.talk_pre)
        soft = _v.softmax(logits, dim=-1)
        attn = self._mix_heads(soft, self.talk_post)
        out = _v.matmul(_v.dropout(attn, self.attn_drop, self.training), v)
        return out.transpose(1, 2).reshape(b, t, self.heads * self.dim_head), attn, soft

    @staticmethod
    def _plain(m, kind=Linear):
        """m is still exactly a `kind` with no hooks, so it can run inside qkv_attention; otherwise
        it is called as a module (its hooks run)."""
        return type(m) is kind and not (m._forward_hooks or m._forward_pre_hooks)

    def _reattention(self, qkv, need_weights, softmax=False):
        norm, kind = self.reattn_norm, self.reattn_norm_kind
        kw = {}
        if kind == "batch":
            use_batch, factor = norm._factor()
            rm, rv = norm._stats()
            kw = dict(running_mean=rm, running_var=rv, training=use_batch, momentum=factor, eps=norm.eps)
        elif kind == "layer":
            kw = dict(eps=norm.eps)
        if kind != "none":
            kw.update(norm_weight=norm.weight, norm_bias=norm.bias)
        return _v.reattention_packed(qkv, self.heads, self.reattn_weight, self.reattn_bias, norm=kind,
                                     scale=self.scale, dropout_p=self.attn_drop if self.training else 0.0,
                                     transform_scale=self.scale if self.reattn_scale else None,
                                     need_weights=need_weights, return_softmax=softmax, **kw)

    def forward(self, x, return_attention=False, reuse_map=None):
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"Attention(dim={self.dim}): expected input of shape (B, T, {self.dim}), "
                             f"got {tuple(x.shape)}")
        need = return_attention or self.record_attention
        fused_out = False
        if reuse_map is None and self.talk_pre is not None:
            out, attn, soft = self._talking_heads(self.to_qkv(x))
            if self.record_attention:
                self.last_softmax = soft.detach()
        elif reuse_map is None and self.attn == "mhsa" and self._plain(self.to_qkv):
            # to_out's Linear joins the op too when it is a plain Linear inside a hook-free to_out
            lin = self.to_out[0] if self._plain(self.to_out, Sequential) and len(self.to_out) else None
            fused_out = lin is not None and self._plain(lin)
            res = _v.qkv_attention(x, self.to_qkv.weight, self.to_qkv.bias, self.heads, scale=self.scale,
                                   dropout_p=self.attn_drop, training=self.training, need_weights=need,
                                   proj_weight=lin.weight if fused_out else None,
                                   proj_bias=lin.bias if fused_out else None)
            out, attn = res if need else (res, None)
        else:
            qkv = self.to_qkv(x)
            if reuse_map is not None:
                out, attn = _v.attention_apply(qkv, reuse_map, self.heads), reuse_map
            elif self.attn == "reattention":
                res = self._reattention(qkv, need, softmax=self.record_attention)
                out, attn = res[:2] if need else (res, None)
                if self.record_attention:
                    self.last_softmax = res[2].detach()
            else:
                res = _v.multi_head_attention_packed(qkv, self.heads, scale=self.scale, dropout_p=self.attn_drop,
                                                     training=self.training, need_weights=need)
                out, attn = res if need else (res, None)
        if self.record_attention:
            self.last_attention = attn.detach()
            if (self.attn != "reattention" and self.talk_pre is None) or reuse_map is not None:
                self.last_softmax = self.last_attention
        if fused_out:  # to_out's Linear ran inside the op; the rest of to_out (its Dropout) runs here
            for m in list(self.to_out._modules.values())[1:]:
                out = m(out)
        else:
            out = self.to_out(out)
        return (out, attn) if return_attention else out

    def extra_repr(self):
        extra = f", attn={self.attn!r}, reattn_norm={self.reattn_norm_kind!r}" if self.attn == "reattention" else ""
        extra += ", talking_heads=True" if self.talk_pre is not None else ""
        return f"heads={self.heads}, dim_head={self.dim_head}, attn_drop={self.attn_drop}{extra}"


class FeedForward(Module):
    """Linear(dim, hidden) -> GELU -> Dropout -> Linear(hidden, dim) -> Dropout (lucidrains' vit.py).

    mid_norm='batch' | 'layer': the article's FFN (model/vitbnffn.py) Linear -> norm(hidden) -> GELU ->
    Dropout -> Linear, with no dropout after the second Linear.

    Without a mid norm and with no dropout to apply (p = 0 or eval mode) the three layers run as
    one op, vitc.linear_gelu_linear, which keeps one hidden activation for backward instead of two;
    the parameters stay in net.0 and net.3 (same state dict as the unfused layers).
    """

    def __init__(self, dim, hidden_dim, dropout=0.0, approximate="none", mid_norm=None, norm_eps=1e-5):
        super().__init__()
        expect_size(dim, "FeedForward", "dim")
        expect_size(hidden_dim, "FeedForward", "hidden_dim")
        expect_fits_memory(2 * dim * hidden_dim, "FeedForward", f"dim={dim}, hidden_dim={hidden_dim}")
        self.fusable = mid_norm is None
        if mid_norm is None:
            self.net = Sequential(Linear(dim, hidden_dim), GELU(approximate), Dropout(dropout),
                                  Linear(hidden_dim, dim), Dropout(dropout))
        else:
            self.net = Sequential(Linear(dim, hidden_dim), make_norm(mid_norm, hidden_dim, norm_eps),
                                  GELU(approximate), Dropout(dropout), Linear(hidden_dim, dim))

    def forward(self, x):
        if self.fusable and not (self.training and self.net[2].p > 0):
            fc1, fc2 = self.net[0], self.net[3]
            return _v.linear_gelu_linear(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, self.net[1].approximate)
        return self.net(x)


class TransformerBlock(Module):
    """Pre-norm block: x + DP(attn(norm1 x)); x + DP(ff(norm2 x)) (DP = drop path, timm/layers/drop.py).

    norm: 'layer' | 'batch' (token BatchNorm). ffn_norm: None, or the norm put inside the FFN after
    its first Linear; then norm2 is Identity (the article's ViTBNFFN/ViTBN block).
    attn / reattn_*: see Attention; forward(x, reuse_map=M) runs the attention on maps M.
    skip_lam λ_s: each residual branch is divided by the fixed constant λ_s, x + DP(f(x))/λ_s (LV-ViT,
    arXiv 2104.10858 §3.2; TokenLabeling tlt/models/layers.py `Block`); not a learned LayerScale.
    """

    def __init__(self, dim, heads=8, dim_head=64, mlp_dim=None, dropout=0.0, drop_path=0.0, qkv_bias=False,
                 norm_eps=1e-5, gelu="none", norm="layer", ffn_norm=None, attn="mhsa", reattn_norm="batch",
                 reattn_bias=True, reattn_scale=False, skip_lam=1.0):
        super().__init__()
        self.skip_lam = expect_number(skip_lam, "TransformerBlock", "skip_lam")
        if not self.skip_lam > 0:
            raise ValueError(f"TransformerBlock: skip_lam (the residual divisor) must be > 0, got {skip_lam!r}")
        mlp_dim = 4 * dim if mlp_dim is None else mlp_dim
        self.norm1 = make_norm(norm, dim, norm_eps)
        self.attn = Attention(dim, heads=heads, dim_head=dim_head, dropout=dropout, qkv_bias=qkv_bias, attn=attn,
                              reattn_norm=reattn_norm, reattn_bias=reattn_bias, reattn_scale=reattn_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else Identity()
        self.norm2 = make_norm(norm, dim, norm_eps) if ffn_norm is None else Identity()
        self.ff = FeedForward(dim, mlp_dim, dropout=dropout, approximate=gelu, mid_norm=ffn_norm, norm_eps=norm_eps)

    def forward(self, x, return_attention=False, reuse_map=None):
        if return_attention:
            a, attn = self.attn(self.norm1(x), return_attention=True, reuse_map=reuse_map)
        else:
            a, attn = self.attn(self.norm1(x), reuse_map=reuse_map), None
        x = x + self._scaled(self.drop_path(a))
        x = x + self._scaled(self.drop_path(self.ff(self.norm2(x))))
        return (x, attn) if return_attention else x

    def _scaled(self, branch):
        return branch if self.skip_lam == 1.0 else branch / self.skip_lam


class Transformer(Module):
    """depth pre-norm blocks then a final norm (lucidrains since Aug 2023; timm's `norm`).

    drop_path is the rate of the last block; block i gets drop_path·i/(depth−1) (DeiT's linear rule,
    timm's VisionTransformer).
    norm / ffn_norm as TransformerBlock. first_block_only=True reproduces seed 004's ViTBN/ViTBNFFN
    code before 2024-08-27, whose forward returned norm(x) inside the block loop (docs/choices.md): only
    block 0 runs, the other blocks exist (parameters, state_dict) but get no gradient.
    attn: 'mhsa' | 'reattention' for every block, or a sequence of depth such names (DeepViT-S/L
    re-attend only in their last blocks); reattn_norm, reattn_bias, reattn_scale: see Attention.
    attn_reuse_from=r (0-based block index): every block after r multiplies its own v with block r's
    maps of the same forward (attention reuse, DeepViT section 5); gradients reach block r through all users.
    skip_lam: every block's residual divisor (see TransformerBlock).
    """

    def __init__(self, dim, depth, heads, dim_head, mlp_dim, dropout=0.0, drop_path=0.0, qkv_bias=False,
                 norm_eps=1e-5, gelu="none", norm="layer", ffn_norm=None, first_block_only=False, attn="mhsa",
                 reattn_norm="batch", reattn_bias=True, reattn_scale=False, attn_reuse_from=None, skip_lam=1.0):
        super().__init__()
        who = "Transformer"
        depth = expect_size(depth, who, "depth")
        for name, v in (("dim", dim), ("heads", heads), ("dim_head", dim_head)):
            expect_size(v, who, name)
        mlp = 4 * dim if mlp_dim is None else expect_size(mlp_dim, who, "mlp_dim")
        # checked before the first block is built: an absurd depth or width is refused, not allocated
        per_block = 4 * dim * heads * dim_head + 2 * dim * mlp
        expect_fits_memory(depth * per_block, who, f"depth={depth} blocks of dim={dim}, heads={heads}, "
                                                   f"dim_head={dim_head}, mlp_dim={mlp}")
        drop_path = expect_number(drop_path, "Transformer", "drop_path", 0.0, 1.0)
        if norm not in _NORMS or ffn_norm not in (None,) + _NORMS:
            raise ValueError(f"Transformer: norm must be one of {_NORMS} and ffn_norm None or one of {_NORMS}, "
                             f"got norm={norm!r}, ffn_norm={ffn_norm!r}")
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        kinds = [attn] * depth if isinstance(attn, str) else list(attn)
        if len(kinds) != depth:
            raise ValueError(f"Transformer: attn must be a name or a sequence of depth={depth} names, got {attn!r}")
        if attn_reuse_from is not None:
            attn_reuse_from = expect_int(attn_reuse_from, "Transformer", "attn_reuse_from", 0)
            if attn_reuse_from >= depth:
                raise ValueError(f"Transformer: attn_reuse_from must be a block index in [0, {depth - 1}], "
                                 f"got {attn_reuse_from}")
        self.attn_reuse_from = attn_reuse_from
        self.layers = ModuleList([TransformerBlock(dim, heads, dim_head, mlp_dim, dropout, rates[i], qkv_bias,
                                                   norm_eps, gelu, norm, ffn_norm, kinds[i], reattn_norm,
                                                   reattn_bias, reattn_scale, skip_lam)
                                  for i in range(depth)])
        self.norm = make_norm(norm, dim, norm_eps)
        self.first_block_only = bool(first_block_only)

    def forward(self, x, return_attention=False):
        maps, r, shared = [], self.attn_reuse_from, None
        for i, block in enumerate(self.layers):
            if return_attention or i == r:
                x, a = block(x, return_attention=True, reuse_map=shared)
                maps.append(a)
                shared = a if i == r else shared
            else:
                x = block(x, reuse_map=shared)
            if self.first_block_only:
                break
        x = self.norm(x)
        return (x, maps) if return_attention else x
