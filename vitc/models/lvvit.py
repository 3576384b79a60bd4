"""LV-ViT (Jiang et al., "All Tokens Matter: Token Labeling for Training Better Vision Transformers",
arXiv 2104.10858, Table 1; zihangJiang/TokenLabeling tlt/models/lvvit.py): a ViT with the conv stem
(nn.ConvPatchEmbed), residual branches divided by skip_lam, MLP ratio 3, no qkv bias, an aux head over
the patch tokens and MixToken in training. All of it is vitc.models.ViT options, so the pieces compose
with the others (re-attention, token BatchNorm, drop path, class_token=False with 'gap'/'map').

load_official_state_dict reads a state dict in the official repo's layout (its LV_ViT module names).
"""
import numpy as np

import vitc as _v

from .deit import _BLOCK, _expand
from .registry import register_model
from .timm_compat import merge_config
from .vit import ViT

__all__ = ["LVVIT_SHAPES", "lvvit", "official_names", "load_official_state_dict", "to_official_state_dict"]

# size: (width D, depth L, heads, skip_lam, stem width) — the official lvvit_t/s/m/l
LVVIT_SHAPES = {"tiny": (240, 12, 4, 1.0, 64), "small": (384, 16, 6, 2.0, 64), "medium": (512, 20, 8, 2.0, 64),
                "large": (768, 24, 12, 3.0, 128)}


def lvvit(size, **overrides):
    """An LV-ViT of the paper's shape at 224 px, patch 16, 1000 classes, with aux head and MixToken."""
    if size not in LVVIT_SHAPES:
        raise ValueError(f"lvvit: size must be one of {sorted(LVVIT_SHAPES)}, got {size!r}")
    dim, depth, heads, skip_lam, stem = LVVIT_SHAPES[size]
    cfg = dict(image_size=224, patch_size=16, num_classes=1000, channels=3, dim=dim, depth=depth, heads=heads,
               dim_head=dim // heads, mlp_dim=3 * dim, pool="cls", qkv_bias=False, norm_eps=1e-5, init="timm",
               patch_embed="conv", stem_width=stem, skip_lam=skip_lam, aux_head=True, mix_token=True)
    return ViT(**merge_config("lvvit", cfg, overrides))


for _size in LVVIT_SHAPES:
    register_model((lambda s: lambda **kw: lvvit(s, **kw))(_size), name=f"lvvit_{_size}")

# 28×28 grey images: patch 4 (even, for the stem) on a 7×7 token grid, a 16-channel stem
_MNIST = dict(image_size=28, patch_size=4, num_classes=10, channels=1, pool="cls", qkv_bias=False, norm_eps=1e-5,
              init="timm", patch_embed="conv", stem_width=16, aux_head=True, mix_token=True)


@register_model
def lvvit_tiny_mnist(**overrides):
    """LV-ViT for 28×28×1: dim 64, depth 4, 4 heads × 16, MLP 192, skip_lam 1."""
    return ViT(**merge_config("lvvit", dict(_MNIST, dim=64, depth=4, heads=4, dim_head=16, mlp_dim=192, skip_lam=1.0),
                              overrides))


@register_model
def lvvit_small_mnist(**overrides):
    """LV-ViT for 28×28×1: dim 96, depth 8 (deeper and narrower), 4 heads × 24, MLP 288, skip_lam 2."""
    return ViT(**merge_config("lvvit", dict(_MNIST, dim=96, depth=8, heads=4, dim_head=24, mlp_dim=288, skip_lam=2.0),
                              overrides))


# ---- the official checkpoints' layout ------------------------------------------------------------------
_STEM = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "proj")


def official_names(model):
    """vitc name -> official LV_ViT name for every entry of model.state_dict()."""
    if not hasattr(model.to_patch_embedding, "conv1"):
        raise ValueError("official LV-ViT layout: the model needs patch_embed='conv'")
    pairs = [("cls_token", "cls_token"), ("pos_embedding", "pos_embed"), ("transformer.norm", "norm"),
             ("mlp_head", "head"), ("aux_head", "aux_head"),
             ("dist_token", "dist_token"), ("dist_head", "head_dist")]  # DeiT's token, named as timm names it
    pairs += [(f"to_patch_embedding.{m}", f"patch_embed.{m}") for m in _STEM]
    for i in range(len(model.transformer.layers)):
        pairs += [(f"transformer.layers.{i}.{v}", f"blocks.{i}.{t}") for v, t in _BLOCK]
    names = _expand(pairs, model.state_dict())
    left = sorted(set(model.state_dict()) - set(names))
    if left:
        raise ValueError(f"official LV-ViT layout: no official name for {left}")
    return names


def load_official_state_dict(model, state_dict, strict=True):
    """Load a state dict in the official TokenLabeling layout (NumPy arrays or CPU torch tensors)."""
    inv = {t: v for v, t in official_names(model).items()}
    sd = {}
    for k, a in state_dict.items():
        if k not in inv:
            if strict:
                raise ValueError(f"load_official_state_dict: unexpected key {k!r} (not in this model's layout)")
            continue
        a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)
        # np.array, not ascontiguousarray, which would turn a 0-d counter into shape (1,)
        sd[inv[k]] = _v.from_numpy(np.array(a, dtype=np.int64 if k.endswith("num_batches_tracked") else np.float32,
                                            order="C"))
    return model.load_state_dict(sd, strict=strict)


def to_official_state_dict(model, tensors=None):
    """NumPy state dict in the official layout; tensors: convert this name -> tensor mapping instead of
    model.state_dict() (e.g. the gradients)."""
    names = official_names(model)
    sd = model.state_dict() if tensors is None else tensors
    return {names[k]: (v.detach().numpy() if isinstance(v, _v.Tensor) else np.asarray(v)).copy()
            for k, v in sd.items()}
