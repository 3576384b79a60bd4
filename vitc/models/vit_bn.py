"""ViT with BatchNorm over tokens (the ViT+BatchNorm article;
its code anindyahepth/BatchNorm_in_Transformers_CV, Jul–Aug 2024).

ViTBNFFN: the ViT of vitc.models.vit with the FFN's LayerNorm replaced by a token BatchNorm between the FFN's
first Linear and its GELU (attention keeps its pre-norm LayerNorm; patch embedding and final norm
unchanged).
ViTBN: every LayerNorm becomes a token BatchNorm: patch embedding BN(patch_dim) → Linear → BN(dim),
attention pre-norm BN(dim), the FFN of ViTBNFFN, final BN(dim).
Both have a qkv bias, as the article-era code (nn.Linear default).

bn_first_block_only=True reproduces the article's models: until 2024-08-27 the authors'
Transformer.forward returned norm(x) from inside the block loop, so only the first of `depth`
blocks ran (docs/choices.md; checked in model/vitbnffn.py and model/vitbn.py of the authors' repository,
revisions 5fcc4ac / 99a16b1 of 2024-07-29 to 3663c1b of 2024-08-25: `return self.norm(x)` indented
under `for attn, ff in self.layers:`). The remaining blocks keep their parameters (same parameter count and
state_dict as the correct model) but take no part in the forward pass.
"""
from .registry import register_model
from .timm_compat import accepts_timm_names, merge_config
from .vit import ViT

__all__ = ["ViTBNFFN", "ViTBN"]


class ViTBNFFN(ViT):
    """ViT with token BatchNorm in every FFN (the article's ViTBNFFN, anindyahepth/BatchNorm_in_Transformers_CV): ViT's keyword-only
    arguments (image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, pool='cls', channels=3,
    dim_head=64, dropout=0., emb_dropout=0., pos_emb='learn', ...) with qkv_bias=True by default, and
    bn_first_block_only=False (True: the article's code before 2024-08-27, where only block 0 ran)."""

    _norm, _ffn_norm = "layer", "batch"

    @accepts_timm_names
    def __init__(self, *, qkv_bias=True, bn_first_block_only=False, **kwargs):
        for k in ("norm", "ffn_norm"):
            if k in kwargs:
                raise TypeError(f"{type(self).__name__}: {k} is fixed by the model and cannot be passed")
        super().__init__(qkv_bias=qkv_bias, norm=self._norm, ffn_norm=self._ffn_norm, **kwargs)
        self.bn_first_block_only = bool(bn_first_block_only)
        self.transformer.first_block_only = self.bn_first_block_only

    def extra_repr(self):
        return f"bn_first_block_only={self.bn_first_block_only}" if self.bn_first_block_only else ""


class ViTBN(ViTBNFFN):
    """ViTBN: ViTBNFFN's signature; token BatchNorm in place of every LayerNorm."""

    _norm = "batch"


_SEED = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8, dim_head=64,
             mlp_dim=128, pool="cls", dropout=0.0, emb_dropout=0.0, pos_emb="learn")


def _build(cls, overrides, **fixed):
    return cls(**merge_config(cls.__name__, dict(_SEED, **fixed), overrides))


@register_model
def vit_bnffn_seed_mnist(**overrides):
    """Seed 004's ViTBNFFN for 28×28 grey images (the ViT's sizes: patch 7, dim 64, depth 6, 8×64 heads, MLP 128)."""
    return _build(ViTBNFFN, overrides)


@register_model
def vit_bn_seed_mnist(**overrides):
    """Seed 004's ViTBN for 28×28 grey images."""
    return _build(ViTBN, overrides)


@register_model
def vit_bnffn_seed_mnist_article(**overrides):
    """The article's ViTBNFFN as its code ran: only the first of the 6 blocks (bn_first_block_only=True)."""
    return _build(ViTBNFFN, overrides, bn_first_block_only=True)


@register_model
def vit_bn_seed_mnist_article(**overrides):
    """The article's ViTBN as its code ran: only the first of the 6 blocks (bn_first_block_only=True)."""
    return _build(ViTBN, overrides, bn_first_block_only=True)
