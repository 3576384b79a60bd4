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
from vitc._checks import expect_fits_memory, expect_int, expect_number, expect_pair, expect_size, type_name as _type_name
from vitc.nn.mix_token import MixTokenPlan, TokenLabelingOutput, draw_mixtoken
from vitc.nn.patch_embed import ConvPatchEmbed
from vitc.nn.transformer import make_norm

from .registry import register_model
from .timm_compat import accepts_timm_names, merge_config

__all__ = ["ViT", "posemb_sincos_1d", "SCALING_SHAPES", "scaling_vit"]

_POS_EMB = ("learn", "pe1d", "sincos1d", "sincos1d_article")
_POOLS = ("cls", "mean", "gap", "map")
_PATCH_EMBEDS = ("linear", "conv")
_INFER = ("aux", "cls")


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
    """The Vision Transformer (Dosovitskiy et al., arXiv 2010.11929; lucidrains/vit-pytorch vit.py as seed 004's
    article copied it; timm's models/vision_transformer.py for the timm options). Keyword-only arguments:
    image_size, patch_size (int or (h, w)), num_classes, dim, depth, heads, mlp_dim, pool='cls', channels=3,
    dim_head=64, dropout=0., emb_dropout=0., pos_emb='learn', and the options below.

    forward(img): img a vitc.Tensor (B, channels, H, W) float32 with (H, W) = image_size; returns the
    logits (B, num_classes) (see aux_head and DeiT for the other outputs).

    pool: 'cls' (token 0), 'mean' (mean over all N+1 tokens, the article's rule), 'gap' (mean of the N
    patch tokens) or 'map' (multi-head attention pooling over the patch tokens, nn.MAPHead).
    Scaling-ViT head options (Zhai et al. 2021 §3.2): class_token=False (no class token; pool 'gap'
    or 'map'), pre_logits=n (Linear+tanh representation layer before the head; default none),
    head_zero_init (zero head kernel), head_bias_init (constant head bias, e.g. -10).
    pos_emb: 'learn' (N(0,1) init), 'pe1d' / 'sincos1d_article' (the article's fixed sin-cos),
    'sincos1d' (lucidrains' fixed sin-cos).
    Extra options: qkv_bias, norm_eps (LayerNorm ε), patch_norm (the LNs around the patch
    Linear), drop_path (stochastic-depth rate, default 0: block i of depth L drops its
    residual branches with probability drop_path·i/(L−1), 0 for the first block up to drop_path for the
    last, timm's linear drop_path_rate schedule over depth), gelu ('none' exact | 'tanh'),
    init ('torch': PyTorch defaults + N(0,1) cls/pos, as lucidrains and the article;
    'timm': trunc-normal(.02) Linear weights and cls/pos, zero biases, as timm's VisionTransformer),
    norm ('layer' | 'batch': every norm, patch embedding's included, is LayerNorm or token
    BatchNorm, the article's ViTBN), ffn_norm (None | 'batch': the FFN's norm sits after its first Linear,
    the article's ViTBNFFN; see vitc.models.ViTBNFFN / ViTBN).
    fc_norm=True: the final norm moves after the pooling (timm's fc_norm, its default with global_pool='avg');
    forward_features then returns the un-normalised tokens.
    timm's keyword names (img_size, in_chans, embed_dim, num_heads, mlp_ratio, drop_path_rate, global_pool,
    ...) are accepted too: see vitc.models.timm_compat.
    forward(img, return_attention=True) also returns the per-block attention maps.
    DeepViT (arXiv 2103.11886): attn 'mhsa' | 'reattention' (or one name per block), reattn_norm 'batch' |
    'layer' | 'none', reattn_bias, reattn_scale; attn_reuse_from=r: blocks after r reuse block r's maps.
    LV-ViT (arXiv 2104.10858; zihangJiang/TokenLabeling): patch_embed 'linear' (the options above) | 'conv'
    (nn.ConvPatchEmbed, the 4-conv stem, stem_width channels; patch_norm does not apply), skip_lam (every
    residual branch divided by it), aux_head=True (a Linear over the patch tokens: in training forward
    returns TokenLabelingOutput(cls_logits, token_logits, lam) for losses.TokenLabelingLoss; in eval the
    logits are z_cls + 0.5·max over tokens of z_tok, or z_cls alone with infer='cls'), mix_token=True
    (MixToken in training, needs aux_head; forward(img, mix_draw=(λ, cx, cy)) injects the draws).
    """

    num_prefix_tokens = 1  # tokens before the patches: cls (DeiT adds a distillation token, models/deit.py)

    @accepts_timm_names
    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, pool="cls", channels=3,
                 dim_head=64, dropout=0.0, emb_dropout=0.0, pos_emb="learn", qkv_bias=False, norm_eps=1e-5,
                 patch_norm=True, drop_path=0.0, gelu="none", init="torch", norm="layer", ffn_norm=None,
                 attn="mhsa", reattn_norm="batch", reattn_bias=True, reattn_scale=False, attn_reuse_from=None,
                 class_token=True, pre_logits=None, head_zero_init=False, head_bias_init=None,
                 patch_embed="linear", stem_width=64, skip_lam=1.0, aux_head=False, mix_token=False, infer="aux",
                 fc_norm=False):
        super().__init__()
        ih, iw = expect_pair(image_size, "ViT", "image_size", minimum=1)
        ph, pw = expect_pair(patch_size, "ViT", "patch_size", minimum=1)
        for name, v in (("image_size", ih), ("image_size", iw), ("patch_size", ph), ("patch_size", pw)):
            expect_size(v, "ViT", name)
        if ih % ph or iw % pw:
            raise ValueError(f"ViT: image dimensions {ih}x{iw} must be divisible by the patch size {ph}x{pw}")
        if pool not in _POOLS:
            raise ValueError(f"ViT: pool must be one of {_POOLS} ('cls' token, 'mean' of all tokens, 'gap' mean of "
                             f"the patch tokens, 'map' attention pooling), got {pool!r}")
        if not class_token and pool == "cls":
            raise ValueError("ViT: pool='cls' reads the class token; with class_token=False use pool='gap' or 'map'")
        if pos_emb not in _POS_EMB:
            raise ValueError(f"ViT: pos_emb must be one of {_POS_EMB}, got {pos_emb!r}")
        if init not in ("torch", "timm"):
            raise ValueError(f"ViT: init must be 'torch' or 'timm', got {init!r}")
        for name, v in (("num_classes", num_classes), ("dim", dim), ("depth", depth), ("heads", heads),
                        ("mlp_dim", mlp_dim), ("channels", channels), ("dim_head", dim_head)):
            expect_size(v, "ViT", name)
        expect_number(dropout, "ViT", "dropout", 0.0, 1.0)
        expect_number(emb_dropout, "ViT", "emb_dropout", 0.0, 1.0)
        if patch_embed not in _PATCH_EMBEDS:
            raise ValueError(f"ViT: patch_embed must be one of {_PATCH_EMBEDS}, got {patch_embed!r}")
        if infer not in _INFER:
            raise ValueError(f"ViT: infer must be one of {_INFER}, got {infer!r}")
        if mix_token and not aux_head:
            raise ValueError("ViT: mix_token=True needs aux_head=True (the token logits are swapped back after "
                             "the mix and trained on the token labels)")
        expect_fits_memory((ih // ph) * (iw // pw) * dim, "ViT",  # the position embedding, before it is built
                           f"image_size={(ih, iw)}, patch_size={(ph, pw)}, dim={dim}")
        self.grid_size = (ih // ph, iw // pw)
        self.mix_token, self.infer = bool(mix_token), infer
        self.image_size, self.patch_size, self.channels = (ih, iw), (ph, pw), channels
        self.num_patches = (ih // ph) * (iw // pw)
        self.class_token = bool(class_token)
        if not self.class_token:  # an instance attribute: DeiT keeps its distillation token
            self.num_prefix_tokens = type(self).num_prefix_tokens - 1
        self.pool, self.pos_emb, self.init_mode = pool, pos_emb, init
        patch_dim = channels * ph * pw
        if patch_embed == "conv":
            self.to_patch_embedding = ConvPatchEmbed((ih, iw), (ph, pw), channels, dim, stem_width)
        else:
            layers = [nn.Patchify((ph, pw))]
            if patch_norm:
                layers += [make_norm(norm, patch_dim, norm_eps), nn.Linear(patch_dim, dim),
                           make_norm(norm, dim, norm_eps)]
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
        if self.class_token:
            self.cls_token = nn.Parameter(_v.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = nn.Transformer(dim, depth, heads, dim_head, mlp_dim, dropout=dropout, drop_path=drop_path,
                                          qkv_bias=qkv_bias, norm_eps=norm_eps, gelu=gelu, norm=norm, ffn_norm=ffn_norm,
                                          attn=attn, reattn_norm=reattn_norm, reattn_bias=reattn_bias,
                                          reattn_scale=reattn_scale, attn_reuse_from=attn_reuse_from,
                                          skip_lam=skip_lam)
        self.fc_norm = None
        if fc_norm:  # timm's fc_norm: the final norm after pooling, none before (timm vision_transformer.py)
            if norm != "layer" or pool == "mean":
                raise ValueError("ViT: fc_norm=True needs norm='layer' and pool 'cls', 'gap' or 'map'")
            self.transformer.norm = nn.Identity()
            self.fc_norm = make_norm(norm, dim, norm_eps)
        if pool == "map":
            if dim % heads:
                raise ValueError(f"ViT: pool='map' runs {heads} heads over width {dim}; heads must divide dim")
            self.attn_pool = nn.MAPHead(dim, heads, mlp_dim, norm_eps=norm_eps)
        # pre_logits=n: Linear(dim, n) + tanh before the head (the original ViT's representation layer);
        # Zhai et al. 2021 §3.2 drop it (None)
        if pre_logits is None:
            self.to_latent, head_in = nn.Identity(), dim
        else:
            head_in = expect_int(pre_logits, "ViT", "pre_logits", 1)
            self.to_latent = nn.Sequential(nn.Linear(dim, head_in), nn.Tanh())
        self.mlp_head = nn.Linear(head_in, num_classes)
        # LV-ViT's aux head: one Linear shared by all patch tokens (TokenLabeling lvvit.py `aux_head`)
        self.aux_head = nn.Linear(dim, num_classes) if aux_head else None
        if init == "timm":
            self._init_timm()
        if head_zero_init:  # big_vision's head kernel starts at zero
            nn.init.zeros_(self.mlp_head.weight)
        if head_bias_init is not None:  # e.g. -10 for sigmoid cross-entropy (big_vision scaling-laws config)
            nn.init.constant_(self.mlp_head.bias, expect_number(head_bias_init, "ViT", "head_bias_init"))

    def _init_timm(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    init.zeros_(m.bias)
        if isinstance(self.pos_embedding, nn.Parameter):
            init.trunc_normal_(self.pos_embedding, std=0.02)
        if self.class_token:
            init.trunc_normal_(self.cls_token, std=0.02)

    def _check_input(self, img):
        want = (self.channels,) + self.image_size
        if not isinstance(img, _v.Tensor):
            raise TypeError(f"ViT expects a vitc.Tensor image batch, got {_type_name(img)}")
        if img.ndim != 4 or tuple(img.shape[1:]) != want:
            raise ValueError(f"ViT expects images of shape (B, {want[0]}, {want[1]}, {want[2]}) "
                             f"(image_size={self.image_size}, channels={self.channels}), got {tuple(img.shape)}")

    def _prefix_tokens(self, b):
        """The tokens put before the patch tokens, each (b, 1, dim)."""
        return (self.cls_token.expand(b, -1, -1),) if self.class_token else ()

    def forward_features(self, img, return_attention=False, mix=None):
        """Tokens after the final LayerNorm, (B, N+1, dim) [, attention maps]; mix (a MixTokenPlan)
        mixes the patch tokens before the prefix tokens and the position embedding join."""
        self._check_input(img)
        x = self.to_patch_embedding(img)
        if mix is not None:
            x = mix.apply(x)
        prefix = self._prefix_tokens(x.shape[0])
        if prefix:
            x = _v.cat((*prefix, x), dim=1)
        x = x + self.pos_embedding
        x = self.dropout(x)
        return self.transformer(x, return_attention=return_attention)

    def forward(self, img, return_attention=False, mix_draw=None):
        mix = self._mix_plan(img, mix_draw)
        res = self.forward_features(img, return_attention=return_attention, mix=mix)
        x, maps = res if return_attention else (res, None)
        logits = self._with_aux(self.mlp_head(self.to_latent(self.pool_tokens(x))), x, mix)
        return (logits, maps) if return_attention else logits

    def _mix_plan(self, img, mix_draw):
        """This batch's MixToken (training with mix_token only), from injected or fresh draws."""
        if not (self.mix_token and self.training):
            if mix_draw is not None:
                raise ValueError("ViT: mix_draw is used only in training mode with mix_token=True")
            return None
        self._check_input(img)
        b = img.shape[0]
        lam, cx, cy = draw_mixtoken(self.grid_size) if mix_draw is None else mix_draw
        return MixTokenPlan(b, self.grid_size, lam, cx, cy)

    def _with_aux(self, logits, x, mix):
        """Without an aux head: the logits. With one: TokenLabelingOutput in training, else the
        reference's inference rule z_cls + 0.5·max_i z_i (infer='aux') or z_cls (infer='cls')."""
        if self.aux_head is None:
            return logits
        if not self.training and self.infer == "cls":
            return logits
        patches = x[:, self.num_prefix_tokens:] if self.num_prefix_tokens else x
        z_tok = self.aux_head(patches)
        if not self.training:
            return logits + 0.5 * _v.amax(z_tok, dim=1)
        if mix is not None:  # swap the boxed logits back: token i now lines up with its own image's label
            z_tok = mix.apply(z_tok)
        return TokenLabelingOutput(logits, z_tok, mix.lam if mix is not None else 1.0)


    def pool_tokens(self, x):
        """(B, T, dim) final tokens -> (B, dim): 'cls' token 0, 'mean' all tokens, 'gap' the mean of the
        patch tokens, 'map' attention pooling over the patch tokens."""
        pooled = self._pool(x)
        return pooled if self.fc_norm is None else self.fc_norm(pooled)

    def _pool(self, x):
        if self.pool == "cls":
            return x[:, 0]
        if self.pool == "mean":
            return x.mean(dim=1)
        patches = x[:, self.num_prefix_tokens:] if self.num_prefix_tokens else x
        return patches.mean(dim=1) if self.pool == "gap" else self.attn_pool(patches)


def _build(defaults, overrides):
    return ViT(**merge_config("ViT", defaults, overrides))


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
def vit_base_patch16_224(**overrides):
    """timm's ViT-B/16: dim 768, depth 12, 12 heads × 64, MLP 3072."""
    return _build(dict(image_size=224, patch_size=16, num_classes=1000, channels=3, dim=768, depth=12, heads=12,
                       dim_head=64, mlp_dim=3072, pool="cls", qkv_bias=True, norm_eps=1e-6, patch_norm=False,
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


# Zhai et al., "Scaling Vision Transformers" (arXiv 2106.04560), Table 2: width, depth, MLP width, heads
# (the same numbers as big_vision's models/vit.py decode_variant).
SCALING_SHAPES = {"Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6), "M": (512, 12, 2048, 8), "B": (768, 12, 3072, 12),
                  "L": (1024, 24, 4096, 16), "H": (1280, 32, 5120, 16), "g": (1408, 40, 6144, 16),
                  "G": (1664, 48, 8192, 16)}


def scaling_vit(variant, **overrides):
    """A ViT of the paper's family by its name, 'B/16' style (size/patch; case matters: g ≠ G), with the
    paper's head: no class token, MAP pooling, no pre-logits layer, zero-init head, LN ε 1e-6, qkv bias,
    a linear patch embedding without norms, timm-style init, 224 px, 1000 classes. Keyword arguments
    override any of these (e.g. pool='gap', image_size=28, channels=1, num_classes=10)."""
    if not isinstance(variant, str) or "/" not in variant:
        raise ValueError(f"scaling_vit: variant must look like 'B/16' (one of {sorted(SCALING_SHAPES)} / patch), "
                         f"got {variant!r}")
    size, patch = variant.split("/", 1)
    if size not in SCALING_SHAPES or not patch.isdigit() or int(patch) < 1:
        raise ValueError(f"scaling_vit: unknown variant {variant!r}; sizes are {sorted(SCALING_SHAPES)}, the patch a "
                         "positive int")
    width, depth, mlp, heads = SCALING_SHAPES[size]
    return _build(dict(image_size=224, patch_size=int(patch), num_classes=1000, channels=3, dim=width, depth=depth,
                       heads=heads, dim_head=width // heads, mlp_dim=mlp, pool="map", class_token=False,
                       qkv_bias=True, norm_eps=1e-6, patch_norm=False, init="timm", head_zero_init=True), overrides)


def _register_scaling(size, patch):
    def build(**overrides):
        return scaling_vit(f"{size}/{patch}", **overrides)
    build.__doc__ = f"ViT-{size}/{patch} of Zhai et al. 2021 (Table 2), MAP head, no class token: see scaling_vit."
    register_model(build, name=f"vit_scaling_{size}_{patch}")


for _size, _patch in (("Ti", 16), ("S", 16), ("M", 16), ("B", 16), ("L", 16), ("H", 14), ("g", 14), ("G", 14)):
    _register_scaling(_size, _patch)
