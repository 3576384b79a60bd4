"""Training compute of a ViT, counted analytically (the x-axis of Zhai et al., "Scaling Vision
Transformers", arXiv 2106.04560 §2 / Fig. 1, where compute is in FLOPs of training).

What is counted: the matrix multiplications only, 2 FLOPs per multiply-add —
  patch embedding   N·(C·p²)·D            per image, N patch tokens
  per block         qkv T·D·3I, scores T·T·I, attention·values T·T·I, output projection T·I·D,
                    MLP 2·T·D·F             (T = N + prefix tokens, I = heads·dim_head, F = MLP width)
  MAP pooling       q I·D (one probe), k and v N·D·2I, scores and values 2·N·I, projection I·D, MLP 2·D·F
  pre-logits        D·R (when a pre_logits layer of width R exists)
  head              D·K
Not counted: LayerNorm, softmax, GELU, residual and bias adds, the position embedding, the
optimizer update (all linear in the parameter or activation count, a few percent at these sizes).
vitc.plan's step-time model takes its FLOPs from here (vitc/plan/timing.py): one counter.
Training = 3 × forward: the backward pass multiplies by the two transposed operands of every matmul
(the usual 2 : 1 ratio; Kaplan et al. 2020 §2.1 use the same factor). This slightly over-counts: the
gradient of the image through the patch embedding is never needed (one patch-embedding forward per
image, under 1 % here); tests/eval/test_flops.py checks both against torch.utils.flop_counter.
"""
import numbers

__all__ = ["vit_forward_flops", "vit_train_flops", "vit_flop_breakdown"]

_KEYS = ("image_size", "patch_size", "channels", "dim", "depth", "heads", "dim_head", "mlp_dim", "num_classes")


def _pair(v, name):
    if isinstance(v, (tuple, list)) and len(v) == 2:
        a, b = v
    else:
        a = b = v
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < 1:
            raise ValueError(f"vit_train_flops: {name} must be a positive int or a pair of them, got {v!r}")
    return int(a), int(b)


def _config_of(model_or_config):
    """The shape numbers of a vitc ViT instance or of a dict of ViT keyword arguments."""
    m = model_or_config
    if isinstance(m, dict):
        missing = [k for k in ("image_size", "patch_size", "dim", "depth", "heads", "mlp_dim", "num_classes")
                   if k not in m]
        if missing:
            raise ValueError(f"vit_train_flops: config is missing {missing}")
        cfg = {k: m.get(k) for k in _KEYS}
        cfg["channels"] = m.get("channels", 3)
        cfg["dim_head"] = m.get("dim_head", 64)
        cfg["pool"] = m.get("pool", "cls")
        cfg["class_token"] = m.get("class_token", True)
        cfg["pre_logits"] = m.get("pre_logits")
        unsupported = {k: m[k] for k in ("attn", "patch_embed", "aux_head", "talking_heads")
                       if k in m and m[k] not in ("mhsa", "linear", False, None)}
    else:
        tr = getattr(m, "transformer", None)
        if tr is None or not hasattr(m, "patch_size") or not hasattr(m, "mlp_head"):
            raise TypeError(f"vit_train_flops: expects a vitc ViT or a dict of its keyword arguments, got "
                            f"{type(m).__name__}")
        attn = tr.layers[0].attn
        cfg = _config_from_modules(m)
        unsupported = {}
        if getattr(m, "aux_head", None) is not None:
            unsupported["aux_head"] = True
        if any(b.attn.attn != "mhsa" or getattr(b.attn, "talk_pre", None) is not None for b in tr.layers):
            unsupported["attn"] = attn.attn
        if type(m.to_patch_embedding).__name__ != "Sequential":
            unsupported["patch_embed"] = "conv"
    if unsupported:
        raise ValueError(f"vit_train_flops: counts the plain ViT family only (MHSA blocks, linear patch "
                         f"embedding, no aux head); unsupported: {unsupported}")
    cfg["image_size"] = _pair(cfg["image_size"], "image_size")
    cfg["patch_size"] = _pair(cfg["patch_size"], "patch_size")
    for k in ("channels", "dim", "depth", "heads", "dim_head", "mlp_dim", "num_classes"):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"vit_train_flops: {k} must be a positive int, got {v!r}")
    (ih, iw), (ph, pw) = cfg["image_size"], cfg["patch_size"]
    if ih % ph or iw % pw:
        raise ValueError(f"vit_train_flops: image_size {ih}x{iw} is not divisible by patch_size {ph}x{pw}")
    if cfg["pool"] not in ("cls", "mean", "gap", "map"):
        raise ValueError(f"vit_train_flops: pool must be 'cls', 'mean', 'gap' or 'map', got {cfg['pool']!r}")
    if cfg["pool"] == "map" and cfg["dim"] % cfg["heads"]:
        raise ValueError(f"vit_train_flops: pool='map' needs heads ({cfg['heads']}) dividing dim ({cfg['dim']})")
    return cfg


def _config_from_modules(m):
    """Read the shapes off the built modules (so overrides and registry defaults are what is counted)."""
    tr = m.transformer
    block_attn = tr.layers[0].attn
    lin_in = [mod for mod in tr.layers[0].ff.modules() if type(mod).__name__ == "Linear"][0]
    pre = m.to_latent
    pre_lin = [mod for mod in pre.modules() if type(mod).__name__ == "Linear"]
    return {"image_size": tuple(m.image_size), "patch_size": tuple(m.patch_size), "channels": m.channels,
            "dim": m.mlp_head.in_features if not pre_lin else pre_lin[0].in_features, "depth": len(tr.layers),
            "heads": block_attn.heads, "dim_head": block_attn.dim_head, "mlp_dim": lin_in.out_features,
            "num_classes": m.mlp_head.out_features, "pool": m.pool, "class_token": m.class_token,
            "pre_logits": pre_lin[0].out_features if pre_lin else None}


def vit_flop_breakdown(model_or_config):
    """Forward matmul FLOPs of one image, by part: {'patch_embed', 'qkv', 'attn_scores', 'attn_values',
    'attn_proj', 'mlp', 'map_head', 'pre_logits', 'head'} (blocks summed over depth)."""
    c = _config_of(model_or_config)
    (ih, iw), (ph, pw) = c["image_size"], c["patch_size"]
    n = (ih // ph) * (iw // pw)
    t = n + (1 if c["class_token"] else 0)
    d, inner, f, depth = c["dim"], c["heads"] * c["dim_head"], c["mlp_dim"], c["depth"]
    out = {"patch_embed": 2 * n * c["channels"] * ph * pw * d,
           "qkv": depth * 2 * t * d * 3 * inner,
           "attn_scores": depth * 2 * t * t * inner,
           "attn_values": depth * 2 * t * t * inner,
           # no output projection when one head spans the width (vitc.nn.Attention's Identity to_out)
           "attn_proj": depth * 2 * t * inner * d if (c["heads"], c["dim_head"]) != (1, d) else 0,
           "mlp": depth * 2 * 2 * t * d * f}
    # nn.MAPHead: its heads split the width (dim_head = dim/heads), so its inner width is dim
    out["map_head"] = (2 * d * d + 2 * n * d * 2 * d + 2 * 2 * n * d + 2 * d * d + 2 * 2 * d * f) \
        if c["pool"] == "map" else 0
    r = c["pre_logits"]
    out["pre_logits"] = 2 * d * r if r else 0
    out["head"] = 2 * (r or d) * c["num_classes"]
    return out


def vit_forward_flops(model_or_config):
    """Forward matmul FLOPs of one image (see the module docstring for what is counted)."""
    return sum(vit_flop_breakdown(model_or_config).values())


def vit_train_flops(model_or_config, images):
    """Training FLOPs for ``images`` images seen (batch size × steps): 3 × the forward matmul FLOPs."""
    if isinstance(images, bool) or not isinstance(images, numbers.Real) or not images >= 0:
        raise ValueError(f"vit_train_flops: images must be a number >= 0, got {images!r}")
    return 3 * vit_forward_flops(model_or_config) * images
