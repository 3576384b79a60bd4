"""DeiT: a ViT with a distillation token (Touvron et al., arXiv 2012.12877, section 4;
facebookresearch/deit models.py, timm VisionTransformerDistilled).

image -> patches -> [cls, dist, patches] + position embedding (N+2 rows) -> blocks -> final LN
    cls token  -> mlp_head  -> logits_cls   (trained on the labels)
    dist token -> dist_head -> logits_dist  (trained on the teacher, vitc.losses.DistillationLoss)
Training mode returns (logits_cls, logits_dist); eval mode fuses them (``head``):
'avg' (= 'avg_logits', the official code and timm: (z_cls + z_dist)/2, the default),
'sum_softmax' (the paper's §4 late fusion: softmax(z_cls) + softmax(z_dist)), 'cls' or 'dist'.

With LV-ViT's aux head (aux_head=True; Jiang et al., arXiv 2104.10858 §3.3) training returns
DistilledTokenLabelingOutput(cls_logits, token_logits, lam, dist_logits) for losses.TokenLabelingLoss,
and the inference rule adds the LV-ViT term a = 0.5·max_i z_i (over the patch tokens) to each head's
logits before the fusion: 'avg' gives (z_cls + z_dist)/2 + a, 'cls' gives z_cls + a (LV-ViT's rule),
'sum_softmax' softmax(z_cls + a) + softmax(z_dist + a); infer='cls' leaves the aux term out.
MixToken (mix_token=True) mixes the patch tokens only; the class and distillation tokens join after it.
"""
import numpy as np

import vitc as _v
from vitc import nn
from vitc.nn import init as nn_init
from vitc.nn.mix_token import DistilledTokenLabelingOutput

from .registry import register_model
from .timm_compat import accepts_timm_names, merge_config
from .vit import ViT, vit_base_patch16_224, vit_small_patch16_224, vit_tiny_patch16_224

__all__ = ["DeiT", "HEADS", "fuse_heads", "to_timm_state_dict", "load_timm_state_dict"]

HEADS = ("avg", "avg_logits", "sum_softmax", "cls", "dist")


def _check_head(head):
    if head not in HEADS:
        raise ValueError(f"DeiT: head must be one of {HEADS}, got {head!r}")
    return head


class DeiT(ViT):
    """A ViT with a distillation token and head (see the module docstring): ViT's keyword-only
    arguments (image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, ...) and head='avg'.
    forward(img): img (B, channels, H, W) float32; logits (B, num_classes), or the pair
    (logits_cls, logits_dist), each (B, num_classes), in training mode.

    The ViT keyword arguments (pool 'cls', or 'gap'/'map' over the patch tokens, also with
    class_token=False, when the distillation token is the only prefix token; init defaults to 'timm'
    as DeiT: trunc-normal(.02) Linear weights, cls, dist token and position embedding) plus
    ``head``, the eval-mode inference
    rule. forward(img, return_attention=False, head=None, mix_draw=None): head=None gives the tuple
    (logits_cls, logits_dist) in training mode (DistilledTokenLabelingOutput with aux_head=True) and
    ``self.head``'s fusion in eval mode; an explicit head picks that output in either mode.
    """

    num_prefix_tokens = 2  # cls, dist

    @accepts_timm_names
    def __init__(self, *, head="avg", init="timm", pool="cls", **kwargs):
        if pool == "mean":
            raise ValueError("DeiT: pool must be 'cls', 'gap' or 'map' (gap/map pool the patch tokens only); "
                             "pool='mean' would average the distillation token into the class head's input")
        super().__init__(init=init, pool=pool, **kwargs)
        self.head = _check_head(head)
        dim = self.pos_embedding.shape[-1]
        self.dist_token = nn.Parameter(_v.randn(1, 1, dim))
        self.dist_head = nn.Linear(dim, self.mlp_head.weight.shape[0])
        if init == "timm":
            nn_init.trunc_normal_(self.dist_token, std=0.02)
            nn_init.trunc_normal_(self.dist_head.weight, std=0.02)
            nn_init.zeros_(self.dist_head.bias)

    def _prefix_tokens(self, b):
        return super()._prefix_tokens(b) + (self.dist_token.expand(b, -1, -1),)

    def forward(self, img, return_attention=False, head=None, mix_draw=None):
        """head=None: the training output in training mode, ``self.head``'s fusion in eval; an explicit
        head gives that fusion in either mode (then MixToken does not run). mix_draw=(λ, cx, cy)
        injects MixToken's draws (training, mix_token=True)."""
        train_out = head is None and self.training
        if mix_draw is not None and not train_out:
            raise ValueError("DeiT: mix_draw is used only for the training output (training mode, head=None)")
        mix = self._mix_plan(img, mix_draw) if train_out else None
        res = self.forward_features(img, return_attention=return_attention, mix=mix)
        x, maps = res if return_attention else (res, None)
        # the class head reads the pooled tokens (the class token, or GAP/MAP of the patches when
        # class_token=False); the distillation head always reads the distillation token, the last prefix
        z_cls = self.mlp_head(self.to_latent(self.pool_tokens(x)))
        z_dist = self.dist_head(x[:, self.num_prefix_tokens - 1])
        want_tok = self.aux_head is not None and (train_out or self.infer == "aux")
        z_tok = self.aux_head(x[:, self.num_prefix_tokens:]) if want_tok else None
        if train_out:
            if z_tok is None:
                out = (z_cls, z_dist)
            else:  # the boxed token logits swapped back: token i lines up with its own image's label
                out = DistilledTokenLabelingOutput(z_cls, mix.apply(z_tok) if mix is not None else z_tok,
                                                   mix.lam if mix is not None else 1.0, z_dist)
        else:
            if z_tok is not None:
                bonus = 0.5 * _v.amax(z_tok, dim=1)
                z_cls, z_dist = z_cls + bonus, z_dist + bonus
            out = fuse_heads(z_cls, z_dist, self.head if head is None else head)
        return (out, maps) if return_attention else out

    def extra_repr(self):
        return f"head={self.head!r}"


def fuse_heads(z_cls, z_dist, head):
    """One prediction from the two heads' logits (B, K): see the module docstring."""
    head = _check_head(head)
    if head == "cls":
        return z_cls
    if head == "dist":
        return z_dist
    if head == "sum_softmax":
        return _v.softmax(z_cls, -1) + _v.softmax(z_dist, -1)
    return (z_cls + z_dist) * 0.5


def _build(defaults, overrides, cls=DeiT):
    return cls(**merge_config(cls.__name__, defaults, overrides))


# timm's DeiT shapes: patch 16 Linear embedding (no patch norms), qkv bias, LN ε 1e-6, MLP 4·dim
_TIMM = dict(image_size=224, patch_size=16, num_classes=1000, channels=3, dim_head=64, qkv_bias=True, norm_eps=1e-6,
             patch_norm=False)


@register_model
def deit_tiny_distilled_patch16_224(**overrides):
    """DeiT-Ti⚗: dim 192, depth 12, 3 heads × 64, MLP 768 (timm deit_tiny_distilled_patch16_224)."""
    return _build(dict(_TIMM, dim=192, depth=12, heads=3, mlp_dim=768), overrides)


@register_model
def deit_small_distilled_patch16_224(**overrides):
    """DeiT-S⚗: dim 384, depth 12, 6 heads × 64, MLP 1536."""
    return _build(dict(_TIMM, dim=384, depth=12, heads=6, mlp_dim=1536), overrides)


@register_model
def deit_base_distilled_patch16_224(**overrides):
    """DeiT-B⚗: dim 768, depth 12, 12 heads × 64, MLP 3072."""
    return _build(dict(_TIMM, dim=768, depth=12, heads=12, mlp_dim=3072), overrides)


# timm's deit_{tiny,small,base}_patch16_224 are its plain VisionTransformer with exactly the ViT-Ti/S/B
# shapes (timm/models/deit.py builds them with _create_deit -> VisionTransformer): the same constructors
for _vit, _deit in ((vit_tiny_patch16_224, "deit_tiny_patch16_224"), (vit_small_patch16_224, "deit_small_patch16_224"),
                    (vit_base_patch16_224, "deit_base_patch16_224")):
    register_model(_vit, name=_deit)


# a DeiT-Ti-like model for 28×28 grey images (Fashion-MNIST, MNIST): 16 patches of 7×7
_MNIST = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=96, depth=4, heads=3, dim_head=32,
              mlp_dim=192, qkv_bias=True, norm_eps=1e-6, patch_norm=False)


@register_model
def deit_mnist_distilled(**overrides):
    """Small DeiT⚗ for 28×28×1: patch 7, dim 96, depth 4, 3 heads × 32, MLP 192, timm init."""
    return _build(_MNIST, overrides)


@register_model
def deit_mnist(**overrides):
    """The same small model without the distillation token (a ViT with DeiT's settings), the baseline."""
    return _build(dict(_MNIST, init="timm"), overrides, cls=ViT)


# ---- timm interop --------------------------------------------------------------------------------
# vitc name -> timm name, per block i; the patch embedding needs a permutation (timm flattens
# its conv kernel as (c, a, b), vitc's patches as (a, b, c))
_BLOCK = (("norm1", "norm1"), ("attn.to_qkv", "attn.qkv"), ("attn.to_out.0", "attn.proj"), ("norm2", "norm2"),
          ("ff.net.0", "mlp.fc1"), ("ff.net.3", "mlp.fc2"))
_TOP = (("cls_token", "cls_token"), ("dist_token", "dist_token"), ("pos_embedding", "pos_embed"),
        ("to_patch_embedding.1.bias", "patch_embed.proj.bias"), ("transformer.norm", "norm"), ("mlp_head", "head"),
        ("dist_head", "head_dist"), ("fc_norm", "fc_norm"), ("attn_pool.probe", "attn_pool.latent"),
        ("attn_pool.q", "attn_pool.q"), ("attn_pool.kv", "attn_pool.kv"), ("attn_pool.proj", "attn_pool.proj"),
        ("attn_pool.norm", "attn_pool.norm"),
        ("attn_pool.mlp.net.0", "attn_pool.mlp.fc1"), ("attn_pool.mlp.net.3", "attn_pool.mlp.fc2"))
_PATCH_W = "to_patch_embedding.1.weight"


def _timm_names(model):
    if len(model.to_patch_embedding) != 2:
        raise ValueError("timm conversion: the model has patch-embedding norms (patch_norm=True), which timm's "
                         "conv patch embedding does not have")
    if model.pos_emb != "learn" or model.pool == "mean" or not isinstance(model.to_latent, nn.Identity):
        raise ValueError("timm conversion needs pos_emb='learn', pool 'cls', 'gap' or 'map' and no pre_logits layer")
    pairs = []
    for v, t in _TOP:
        pairs.append((v, t))
    for i in range(len(model.transformer.layers)):
        for v, t in _BLOCK:
            pairs.append((f"transformer.layers.{i}.{v}", f"blocks.{i}.{t}"))
    return pairs


def _expand(pairs, keys):
    """Map full parameter names (prefix rules: 'x' covers 'x', 'x.weight', 'x.bias')."""
    out = {}
    for k in keys:
        for v, t in pairs:
            if k == v:
                out[k] = t
            elif k.startswith(v + "."):
                out[k] = t + k[len(v):]
    return out


def to_timm_state_dict(model, tensors=None):
    """NumPy state dict for timm's VisionTransformer / VisionTransformerDistilled with the same shape
    (patch_norm=False, learned position embedding, heads·dim_head = dim). The patch Linear weight
    (D, P1·P2·C), feature (a·P2+b)·C + c, becomes the conv weight (D, C, P1, P2).
    tensors: convert this name -> tensor mapping instead of model.state_dict() (e.g. the gradients)."""
    sd = model.state_dict() if tensors is None else tensors
    sd = {k: (v.detach().numpy() if isinstance(v, _v.Tensor) else np.asarray(v)) for k, v in sd.items()}
    names = _expand(_timm_names(model), sd)
    missing = sorted(set(sd) - set(names) - {_PATCH_W})
    if missing:
        raise ValueError(f"timm conversion: no timm name for {missing}")
    out = {names[k]: v.copy() for k, v in sd.items() if k in names}
    w = sd[_PATCH_W]
    (p1, p2), c = model.patch_size, model.channels
    out["patch_embed.proj.weight"] = w.reshape(w.shape[0], p1, p2, c).transpose(0, 3, 1, 2).copy()
    return out


def load_timm_state_dict(model, state_dict, strict=True):
    """Load a timm state dict (NumPy arrays or anything np.asarray takes, e.g. torch tensors on the
    CPU) into a vitc ViT/DeiT of the same shape; the inverse of ``to_timm_state_dict``."""
    names = _expand(_timm_names(model), model.state_dict())
    inv = {t: v for v, t in names.items()}
    sd = {}
    for k, a in state_dict.items():
        a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float32)
        if k == "patch_embed.proj.weight":
            sd[_PATCH_W] = _v.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 3, 1).reshape(a.shape[0], -1)))
        elif k in inv:
            sd[inv[k]] = _v.from_numpy(np.ascontiguousarray(a))
        elif strict:
            raise ValueError(f"load_timm_state_dict: unexpected timm key {k!r}")
    return model.load_state_dict(sd, strict=strict)
