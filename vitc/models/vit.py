"""Vision Transformer (lucidrains/vit-pytorch vit_pytorch/vit.py, Aug-2023 layout, as the ViT+BatchNorm
article uses it).

image (B, C, H, W) -> patches (B, N, P1·P2·C) -> LN -> Linear -> LN -> prepend cls -> + position
embedding -> dropout -> depth pre-norm blocks -> final LN -> cls token or mean of all N+1 tokens
-> Linear head. Keyword-only arguments with the article's names, so its ``get_model()`` runs with
vitc in place of torch.
"""
import numpy as np

import vitc as _v
from vitc import nn
from vitc.nn import init
from vitc._checks import expect_int, expect_number, expect_pair
from vitc.nn.transformer import make_norm

from .registry import register_model

__all__ = ["ViT", "posemb_sincos_1d"]

_POS_EMB = ("learn", "pe1d", "sincos1d", "sincos1d_article")


def posemb_sincos_1d(n, dim, temperature=10000.0, variant="lucidrains"):
    """Fixed 1-d sin-cos position embedding (n, dim), float32 (lucidrains'
    posemb_sincos_1d, vit_pytorch/simple_vit_1d.py): two halves [sin | cos].

    variant 'lucidrains': ω_k = T^(−k/(D/2−1)); 'article' (seed 004's pe1d): ω_k = T^(−(k+1)/(D/2)).
    """
    if dim % 2:
        raise ValueError(f"posemb_sincos_1d: dim must be even, got {dim}")
    half = dim // 2
    k = np.arange(half, dtype=np.float32)
    if variant == "lucidrains":
        if half < 2:
            raise ValueError(f"posemb_sincos_1d: dim must be >= 4, got {dim}")
        expo = k / np.float32(half - 1)
    elif variant == "article":
        expo = (k + np.float32(1)) / np.float32(half)
    else:
        raise ValueError(f"posemb_sincos_1d: variant must be 'lucidrains' or 'article', got {variant!r}")
    omega = (np.float32(1) / np.power(np.float32(temperature), expo, dtype=np.float32)).astype(np.float32)
    pos = np.arange(n, dtype=np.float32)[:, None] * omega[None, :]
    return np.concatenate([np.sin(pos), np.cos(pos)], axis=1).astype(np.float32)


class ViT(nn.Module):
    """ViT(*, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, pool='cls', channels=3,
    dim_head=64, dropout=0., emb_dropout=0., pos_emb='learn', ...)

    pool: 'cls' (token 0) or 'mean' (mean over all N+1 tokens, the article's rule).
    pos_emb: 'learn' (N(0,1) init), 'pe1d' / 'sincos1d_article' (the article's fixed sin-cos),
    'sincos1d' (lucidrains' fixed sin-cos).
    Extra options: qkv_bias, norm_eps (LayerNorm ε), patch_norm (the LNs around the patch
    Linear), drop_path (stochastic depth of the last block), gelu ('none' exact | 'tanh'),
    init ('torch': PyTorch defaults + N(0,1) cls/pos, as lucidrains and the article;
    'timm': trunc-normal(.02) Linear weights and cls/pos, zero biases, as timm's VisionTransformer),
    norm ('layer' | 'batch': every norm, patch embedding's included, is LayerNorm or token
    BatchNorm, the article's ViTBN), ffn_norm (None | 'batch': the FFN's norm sits after its first Linear,
    the article's ViTBNFFN; see vitc.models.ViTBNFFN / ViTBN).
    forward(img, return_attention=True) also returns the per-block attention maps.
    DeepViT (arXiv 2103.11886): attn 'mhsa' | 'reattention' (or one name per block), reattn_norm 'batch' |
    'layer' | 'none', reattn_bias, reattn_scale; attn_reuse_from=r: blocks after r reuse block r's maps.
    """

    num_prefix_tokens = 1  # tokens before the patches: cls (DeiT adds a distillation token, models/deit.py)

    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, pool="cls", channels=3,
                 dim_head=64, dropout=0.0, emb_dropout=0.0, pos_emb="learn", qkv_bias=False, norm_eps=1e-5,
                 patch_norm=True, drop_path=0.0, gelu="none", init="torch", norm="layer", ffn_norm=None,
                 attn="mhsa", reattn_norm="batch", reattn_bias=True, reattn_scale=False, attn_reuse_from=None):
        super().__init__()
        ih, iw = expect_pair(image_size, "ViT", "image_size", minimum=1)
        ph, pw = expect_pair(patch_size, "ViT", "patch_size", minimum=1)
        if ih % ph or iw % pw:
            raise ValueError(f"ViT: image dimensions {ih}x{iw} must be divisible by the patch size {ph}x{pw}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"ViT: pool type must be either 'cls' (cls token) or 'mean' (mean pooling), got {pool!r}")
        if pos_emb not in _POS_EMB:
            raise ValueError(f"ViT: pos_emb must be one of {_POS_EMB}, got {pos_emb!r}")
        if init not in ("torch", "timm"):
            raise ValueError(f"ViT: init must be 'torch' or 'timm', got {init!r}")
        for name, v in (("num_classes", num_classes), ("dim", dim), ("depth", depth), ("heads", heads),
                        ("mlp_dim", mlp_dim), ("channels", channels), ("dim_head", dim_head)):
            expect_int(v, "ViT", name, 1)
        expect_number(dropout, "ViT", "dropout", 0.0, 1.0)
        expect_number(emb_dropout, "ViT", "emb_dropout", 0.0, 1.0)
        self.image_size, self.patch_size, self.channels = (ih, iw), (ph, pw), channels
        self.num_patches = (ih // ph) * (iw // pw)
        self.pool, self.pos_emb, self.init_mode = pool, pos_emb, init
        patch_dim = channels * ph * pw
        layers = [nn.Patchify((ph, pw))]
        if patch_norm:
            layers += [make_norm(norm, patch_dim, norm_eps), nn.Linear(patch_dim, dim), make_norm(norm, dim, norm_eps)]
        else:
            layers += [nn.Linear(patch_dim, dim)]
        self.to_patch_embedding = nn.Sequential(*layers)
        n_tok = self.num_patches + self.num_prefix_tokens
        if pos_emb == "learn":
            self.pos_embedding = nn.Parameter(_v.randn(1, n_tok, dim))
        else:
            variant = "lucidrains" if pos_emb == "sincos1d" else "article"
            pe = posemb_sincos_1d(n_tok, dim, variant=variant)[None]
            self.register_buffer("pos_embedding", _v.from_numpy(np.ascontiguousarray(pe)), persistent=False)
        self.cls_token = nn.Parameter(_v.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = nn.Transformer(dim, depth, heads, dim_head, mlp_dim, dropout=dropout, drop_path=drop_path,
                                          qkv_bias=qkv_bias, norm_eps=norm_eps, gelu=gelu, norm=norm, ffn_norm=ffn_norm,
                                          attn=attn, reattn_norm=reattn_norm, reattn_bias=reattn_bias,
                                          reattn_scale=reattn_scale, attn_reuse_from=attn_reuse_from)
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Linear(dim, num_classes)
        if init == "timm":
            self._init_timm()

    def _init_timm(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    init.zeros_(m.bias)
        if isinstance(self.pos_embedding, nn.Parameter):
            init.trunc_normal_(self.pos_embedding, std=0.02)
        init.trunc_normal_(self.cls_token, std=0.02)

    def _check_input(self, img):
        want = (self.channels,) + self.image_size
        if not isinstance(img, _v.Tensor):
            raise TypeError(f"ViT expects a vitc.Tensor image batch, got {type(img).__name__}")
        if img.ndim != 4 or tuple(img.shape[1:]) != want:
            raise ValueError(f"ViT expects images of shape (B, {want[0]}, {want[1]}, {want[2]}) "
                             f"(image_size={self.image_size}, channels={self.channels}), got {tuple(img.shape)}")

    def _prefix_tokens(self, b):
        """The tokens put before the patch tokens, each (b, 1, dim)."""
        return (self.cls_token.expand(b, -1, -1),)

    def forward_features(self, img, return_attention=False):
        """Tokens after the final LayerNorm, (B, N+1, dim) [, attention maps]."""
        self._check_input(img)
        x = self.to_patch_embedding(img)
        x = _v.cat((*self._prefix_tokens(x.shape[0]), x), dim=1)
        x = x + self.pos_embedding
        x = self.dropout(x)
        return self.transformer(x, return_attention=return_attention)

    def forward(self, img, return_attention=False):
        res = self.forward_features(img, return_attention=return_attention)
        x, maps = res if return_attention else (res, None)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        logits = self.mlp_head(self.to_latent(x))
        return (logits, maps) if return_attention else logits


def _build(defaults, overrides):
    cfg = dict(defaults)
    cfg.update(overrides)
    return ViT(**cfg)


@register_model
def vit_seed_mnist(**overrides):
    """Seed 004's ViT for 28×28 grey images: patch 7, dim 64, depth 6, 8 heads × 64, MLP 128, cls, learn."""
    return _build(dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8,
                       dim_head=64, mlp_dim=128, pool="cls", dropout=0.0, emb_dropout=0.0, pos_emb="learn"),
                  overrides)


@register_model
def vit_tiny_patch16_224(**overrides):
    """timm's ViT-Ti/16: dim 192, depth 12, 3 heads × 64, MLP 768, qkv bias, LN ε 1e-6, timm init."""
    return _build(dict(image_size=224, patch_size=16, num_classes=1000, channels=3, dim=192, depth=12, heads=3,
                       dim_head=64, mlp_dim=768, pool="cls", qkv_bias=True, norm_eps=1e-6, patch_norm=False,
                       init="timm"), overrides)


@register_model
def vit_small_patch16_224(**overrides):
    """timm's ViT-S/16: dim 384, depth 12, 6 heads × 64, MLP 1536."""
    return _build(dict(image_size=224, patch_size=16, num_classes=1000, channels=3, dim=384, depth=12, heads=6,
                       dim_head=64, mlp_dim=1536, pool="cls", qkv_bias=True, norm_eps=1e-6, patch_norm=False,
                       init="timm"), overrides)


@register_model
def deepvit_seed_mnist(**overrides):
    """vit_seed_mnist with DeepViT re-attention in every block (BatchNorm over heads, official)."""
    return vit_seed_mnist(**dict(dict(attn="reattention", reattn_norm="batch"), **overrides))


@register_model
def deepvit_seed_mnist_ln(**overrides):
    """vit_seed_mnist with re-attention normalised by LayerNorm over the heads (lucidrains)."""
    return vit_seed_mnist(**dict(dict(attn="reattention", reattn_norm="layer"), **overrides))


@register_model
def deepvit_mnist_d32(**overrides):
    """A 32-block ViT at dim 64 for 28×28 images (4 heads × 16, MLP 128) with re-attention in every
    block: the issue's deep model (pass attn='mhsa' for the plain baseline)."""
    return _build(dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=32, heads=4,
                       dim_head=16, mlp_dim=128, pool="cls", attn="reattention"), overrides)
