"""Local timm checkpoints into vitc ViTs: read (.safetensors, .pth, .npz), adapt, load.

vitc never downloads: ``create_model(name, pretrained_file=path)`` (or ``load_pretrained(model, path)``)
reads a file already on disk. Adaptations, as timm's ``checkpoint_filter_fn`` / ``load_pretrained`` do
(huggingface/pytorch-image-models, timm/models/vision_transformer.py and timm/models/_builder.py):
- position embedding: resampled to the model's patch grid when the grid differs (prefix tokens kept),
  ``resample_abs_pos_embed`` below, timm/layers/pos_embed.py's rule;
- classifier: when the checkpoint's class count differs from the model's, the model keeps its own
  freshly initialised head (and distillation head);
- input channels: a 3-channel patch kernel is summed for 1 channel, or repeated and scaled by
  3 / in_chans otherwise (timm/models/_manipulate.py ``adapt_input_conv``'s rule).
"""
import math
import os

import numpy as np

import vitc as _v

__all__ = ["load_pretrained", "read_checkpoint", "resample_abs_pos_embed", "adapt_input_channels",
           "npz_to_timm_state_dict"]

_HEADS = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")


# ---- resampling: PyTorch F.interpolate(align_corners=False) rules, on NumPy ---------------------------------
def _filter(kind, antialias):
    """(kernel, half-width in input pixels at scale 1). Bicubic: Keys' cubic with a = -0.5 on the
    antialiased path and a = -0.75 on the plain one (the constants PyTorch uses on each path,
    aten/src/ATen/native/UpSample.h)."""
    if kind == "bilinear":
        return (lambda x: np.maximum(0.0, 1.0 - np.abs(x))), 1.0
    a = -0.5 if antialias else -0.75

    def cubic(x):
        x = np.abs(x)
        return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))
    return cubic, 2.0


def _resample_matrix(n_in, n_out, kind, antialias):
    """(n_out, n_in) float64 weights W with out = W @ in along one axis.

    Antialiased (and plain bilinear, where both rules agree): output i is centred on input coordinate
    c = s(i + 1/2), s = n_in / n_out; the kernel is stretched by s when shrinking, cut to the input and
    its weights renormalised to sum to 1 (PyTorch's separable antialias filter, UpSampleKernel.cpp).
    Plain bicubic: four taps around x = s(i + 1/2) - 1/2 with indices clamped to the edge."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    kernel, half = _filter(kind, antialias)
    if kind == "bicubic" and not antialias:
        for i in range(n_out):
            x = s * (i + 0.5) - 0.5
            x0 = math.floor(x)
            for j in range(x0 - 1, x0 + 3):
                w[i, min(max(j, 0), n_in - 1)] += kernel(np.float64(x - j))
        return w
    stretch = s if (antialias and s > 1) else 1.0
    support = half * stretch
    for i in range(n_out):
        c = s * (i + 0.5)
        lo, hi = max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n_in)
        j = np.arange(lo, hi)
        k = kernel((j - c + 0.5) / stretch)
        w[i, lo:hi] = k / k.sum() if k.sum() != 0 else k
    return w


def resample_abs_pos_embed(posemb, new_size, num_prefix_tokens=1, old_size=None, interpolation="bicubic",
                           antialias=True):
    """A (1, prefix + H·W, D) position embedding on a new (h, w) patch grid, the prefix rows (class,
    distillation token) unchanged: the grid rows are resized as an image, as timm's
    ``resample_abs_pos_embed`` (timm/layers/pos_embed.py; F.interpolate with ``interpolation``,
    'bicubic' or 'bilinear', and ``antialias``; timm's defaults). old_size None: a square grid."""
    posemb = np.asarray(posemb)
    if posemb.ndim != 3 or posemb.shape[0] != 1:
        raise ValueError(f"resample_abs_pos_embed: expected a (1, N, D) embedding, got {posemb.shape}")
    if interpolation not in ("bicubic", "bilinear"):
        raise ValueError(f"resample_abs_pos_embed: interpolation must be 'bicubic' or 'bilinear', got "
                         f"{interpolation!r}")
    h, w = (int(n) for n in new_size)
    n_grid = posemb.shape[1] - num_prefix_tokens
    if old_size is None:
        side = math.isqrt(max(n_grid, 0))
        if side * side != n_grid:
            raise ValueError(f"resample_abs_pos_embed: {n_grid} grid rows ({posemb.shape[1]} minus "
                             f"{num_prefix_tokens} prefix) are not a square grid; pass old_size")
        old_size = (side, side)
    oh, ow = old_size
    if oh * ow != n_grid:
        raise ValueError(f"resample_abs_pos_embed: old_size {tuple(old_size)} does not match {n_grid} grid rows")
    if (oh, ow) == (h, w):
        return posemb
    grid = posemb[0, num_prefix_tokens:].astype(np.float64).reshape(oh, ow, -1)
    grid = np.einsum("ih,hwd->iwd", _resample_matrix(oh, h, interpolation, antialias), grid)
    grid = np.einsum("jw,iwd->ijd", _resample_matrix(ow, w, interpolation, antialias), grid)
    out = np.concatenate([posemb[0, :num_prefix_tokens].astype(np.float64), grid.reshape(h * w, -1)])
    return out[None].astype(posemb.dtype)


def adapt_input_channels(weight, in_chans):
    """A (D, C, p, p) patch kernel for in_chans input channels: summed over C for 1 channel, else C's
    kernels repeated and scaled by C / in_chans (timm's adapt_input_conv rule)."""
    weight = np.asarray(weight)
    c = weight.shape[1]
    if in_chans == c:
        return weight
    if in_chans == 1:
        return weight.sum(axis=1, keepdims=True)
    reps = -(-in_chans // c)
    return (np.tile(weight, (1, reps, 1, 1))[:, :in_chans] * (c / in_chans)).astype(weight.dtype)


# ---- reading files -------------------------------------------------------------------------------------
def _float32(a):
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def _unwrap(sd, path):
    """The weights inside a training checkpoint ({'model': ...} as DeiT's, {'state_dict': ...}), and
    without DistributedDataParallel's 'module.' prefix."""
    for key in ("model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not sd:
        raise ValueError(f"read_checkpoint: {path} holds no tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def _read_pth(path):
    try:
        import torch
    except ImportError:
        raise RuntimeError(f"reading {path} (a PyTorch checkpoint) needs torch: pip install torch, or convert the "
                           "file to .safetensors") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or objects weights_only refuses (we never unpickle code)
        raise ValueError(f"read_checkpoint: cannot read {path} as a PyTorch checkpoint with weights_only=True: "
                         f"{e}") from None
    if not isinstance(sd, dict):
        raise ValueError(f"read_checkpoint: {path} holds a {type(sd).__name__}, not a state dict")
    sd = _unwrap(sd, path)
    return {k: _float32(v.detach().float().numpy() if v.is_floating_point() else v.numpy())
            for k, v in sd.items() if isinstance(v, torch.Tensor)}


def read_checkpoint(path):
    """name -> NumPy array (floats as float32) from a local .safetensors, .pth/.pt/.bin (torch.load,
    weights_only=True) or .npz (Google's ViT / big_vision layout, converted to timm's names)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"pretrained_file: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        from vitc.io import load_safetensors
        tensors = load_safetensors(path)
        return _unwrap({k: _float32(t.float().numpy() if t.dtype is _v.bfloat16 else t.numpy())
                        for k, t in tensors.items()}, path)
    if ext in (".pth", ".pt", ".bin"):
        return _read_pth(path)
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"read_checkpoint: cannot read {path} as an .npz archive: {e}") from None
        return npz_to_timm_state_dict(arrays, path)
    raise ValueError(f"pretrained_file: {path}: unknown checkpoint type {ext!r}; expected .safetensors, .pth, "
                     ".pt, .bin or .npz")


def _jax_prefix(w):
    for p in ("", "opt/target/", "params/", "params/img/"):
        if p + "embedding/kernel" in w:
            return p
    raise ValueError("no 'embedding/kernel' entry (with prefix '', 'opt/target/', 'params/' or 'params/img/')")


def npz_to_timm_state_dict(arrays, path="<npz>"):
    """Google's ViT .npz (jax/flax names, as timm's vision_transformer ``_load_weights`` reads them:
    the original 'Transformer/encoderblock_i/...' layout and big_vision's, per-block or stacked
    'encoderblock' with the block index first) -> a timm state dict of float32 arrays."""
    try:
        p = _jax_prefix(arrays)
    except ValueError as e:
        raise ValueError(f"read_checkpoint: {path} is not a ViT .npz checkpoint: {e}") from None
    w = {k[len(p):]: np.asarray(v, dtype=np.float32) for k, v in arrays.items() if k.startswith(p)}
    try:
        return _jax_to_timm(w, big_vision=p.startswith("params/") or "pos_embedding" in w or
                            "Transformer/encoderblock/LayerNorm_0/scale" in w)
    except KeyError as e:
        raise ValueError(f"read_checkpoint: {path} lacks the ViT entry {p}{e.args[0]}") from None


def _jax_to_timm(w, big_vision):
    flat = lambda a: a.reshape(-1) if a.ndim == 4 and a.shape[:3] == (1, 1, 1) else a  # noqa: E731
    out = {"patch_embed.proj.weight": w["embedding/kernel"].transpose(3, 2, 0, 1),  # HWIO -> OIHW
           "patch_embed.proj.bias": w["embedding/bias"]}
    if "cls" in w:
        out["cls_token"] = w["cls"]
    pos = w["pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"]
    out["pos_embed"] = pos[None] if pos.ndim == 2 else pos
    if "Transformer/encoder_norm/scale" in w:
        out["norm.weight"], out["norm.bias"] = w["Transformer/encoder_norm/scale"], w["Transformer/encoder_norm/bias"]
    if "head/kernel" in w:
        out["head.weight"], out["head.bias"] = flat(w["head/kernel"]).T, flat(w["head/bias"])
    if "MAPHead_0/probe" in w:
        _attention_to_timm(w, "MAPHead_0/", "MultiHeadDotProductAttention_0/", out, "attn_pool.", pool=True)
        out["attn_pool.latent"] = w["MAPHead_0/probe"]
    mha, mlp, ln2 = (0, 0, 1) if big_vision else (1, 3, 2)
    stacked = "Transformer/encoderblock/LayerNorm_0/scale" in w
    depth = (w["Transformer/encoderblock/LayerNorm_0/scale"].shape[0] if stacked
             else sum(1 for k in w if k.startswith("Transformer/encoderblock_") and k.endswith("LayerNorm_0/scale")))
    for i in range(depth):
        bp, idx = ("Transformer/encoderblock/", i) if stacked else (f"Transformer/encoderblock_{i}/", None)
        get = (lambda k, bp=bp, idx=idx: w[bp + k] if idx is None else w[bp + k][idx])
        t = f"blocks.{i}."
        out[t + "norm1.weight"], out[t + "norm1.bias"] = get("LayerNorm_0/scale"), get("LayerNorm_0/bias")
        out[t + "norm2.weight"], out[t + "norm2.bias"] = get(f"LayerNorm_{ln2}/scale"), get(f"LayerNorm_{ln2}/bias")
        _attention_to_timm(get, "", f"MultiHeadDotProductAttention_{mha}/", out, t)
        for r in range(2):
            out[f"{t}mlp.fc{r + 1}.weight"] = get(f"MlpBlock_{mlp}/Dense_{r}/kernel").T
            out[f"{t}mlp.fc{r + 1}.bias"] = get(f"MlpBlock_{mlp}/Dense_{r}/bias")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _attention_to_timm(w, block, mha, out, t, pool=False):
    """Flax MultiHeadDotProductAttention kernels (query/key/value (D, heads, hd), out (heads, hd, D))
    -> timm's fused Linear weights (qkv, or q and kv for the MAP head) and proj."""
    get = w if callable(w) else (lambda k: w[k])
    q_w = {n: get(f"{block}{mha}{n}/kernel") for n in ("query", "key", "value")}
    q_b = {n: get(f"{block}{mha}{n}/bias") for n in ("query", "key", "value")}
    lin = {n: q_w[n].reshape(q_w[n].shape[0], -1).T for n in q_w}  # (heads·hd, D)
    bias = {n: q_b[n].reshape(-1) for n in q_b}
    if pool:
        out[t + "q.weight"], out[t + "q.bias"] = lin["query"], bias["query"]
        out[t + "kv.weight"] = np.concatenate([lin["key"], lin["value"]])
        out[t + "kv.bias"] = np.concatenate([bias["key"], bias["value"]])
        out[t + "norm.weight"], out[t + "norm.bias"] = get(f"{block}LayerNorm_0/scale"), get(f"{block}LayerNorm_0/bias")
        for r in range(2):
            out[f"{t}mlp.fc{r + 1}.weight"] = get(f"{block}MlpBlock_0/Dense_{r}/kernel").T
            out[f"{t}mlp.fc{r + 1}.bias"] = get(f"{block}MlpBlock_0/Dense_{r}/bias")
        proj = t + "proj."
    else:
        out[t + "attn.qkv.weight"] = np.concatenate([lin[n] for n in ("query", "key", "value")])
        out[t + "attn.qkv.bias"] = np.concatenate([bias[n] for n in ("query", "key", "value")])
        proj = t + "attn.proj."
    o = get(f"{block}{mha}out/kernel")  # (heads, hd, D)
    out[proj + "weight"] = o.reshape(-1, o.shape[-1]).T
    out[proj + "bias"] = get(f"{block}{mha}out/bias")


# ---- loading -------------------------------------------------------------------------------------------
def load_pretrained(model, path, interpolation="bicubic", antialias=True):
    """Load a local timm checkpoint into a vitc ViT/DeiT (linear patch embedding without patch norms,
    learned position embedding): position embedding resampled to the model's grid, the head kept as
    the model's own when the class count differs, the patch kernel adapted to the model's channels.
    Returns a dict saying what was adapted."""
    from .deit import load_timm_state_dict
    from .vit import ViT

    if not isinstance(model, ViT):
        raise TypeError(f"load_pretrained: timm ViT checkpoints load into vitc's ViT family, not "
                        f"{type(model).__name__}")
    sd = read_checkpoint(path)
    if "patch_embed.proj.weight" not in sd:
        own = set(model.state_dict())
        if set(sd) == own:  # a vitc checkpoint of this very model: no adaptation to do
            model.load_state_dict(sd)
            return {"layout": "vitc"}
        raise ValueError(f"pretrained_file: {os.fspath(path)} is not a timm ViT checkpoint (no "
                         f"'patch_embed.proj.weight'; first keys: {sorted(sd)[:5]})")
    info = {"layout": "timm", "pos_embed_resampled": None, "head_reinitialised": False, "in_chans_adapted": False}
    pw = sd["patch_embed.proj.weight"]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    width = model.pos_embedding.shape[-1]
    if (pw.shape[0], depth) != (width, len(model.transformer.layers)):
        raise ValueError(f"pretrained_file: the checkpoint's width {pw.shape[0]} and depth {depth} differ from the "
                         f"model's {width} and {len(model.transformer.layers)} (embed_dim= / depth=)")
    if tuple(pw.shape[2:]) != tuple(model.patch_size):
        raise ValueError(f"pretrained_file: the checkpoint's patch size {tuple(pw.shape[2:])} differs from the "
                         f"model's {tuple(model.patch_size)}; vitc does not resample patch kernels")
    if pw.shape[1] != model.channels:
        sd["patch_embed.proj.weight"] = adapt_input_channels(pw, model.channels)
        info["in_chans_adapted"] = (pw.shape[1], model.channels)
    if "pos_embed" in sd and model.pos_emb == "learn":
        prefix = int("cls_token" in sd) + int("dist_token" in sd)
        old = sd["pos_embed"]
        new = resample_abs_pos_embed(old, model.grid_size, prefix, interpolation=interpolation, antialias=antialias)
        if new is not old:
            side = math.isqrt(old.shape[1] - prefix)
            info["pos_embed_resampled"] = ((side, side), tuple(model.grid_size))
        sd["pos_embed"] = new
    n_classes = model.mlp_head.weight.shape[0]
    if "head.weight" in sd and sd["head.weight"].shape[0] != n_classes:
        info["head_reinitialised"] = (sd["head.weight"].shape[0], n_classes)
        own = model.state_dict()
        # the model's own fresh heads stand in for the checkpoint's (timm re-creates the classifier)
        sd["head.weight"], sd["head.bias"] = own["mlp_head.weight"].numpy(), own["mlp_head.bias"].numpy()
        if "head_dist.weight" in sd and "dist_head.weight" in own:
            sd["head_dist.weight"] = own["dist_head.weight"].numpy()
            sd["head_dist.bias"] = own["dist_head.bias"].numpy()
    try:
        load_timm_state_dict(model, sd)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"pretrained_file: {os.fspath(path)} does not fit {type(model).__name__}: {e}") from None
    return info
