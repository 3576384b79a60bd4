"""timm's keyword names for the ViT family (timm/models/vision_transformer.py, VisionTransformer.__init__,
timm 1.0.x), translated to vitc's.

    img_size -> image_size          in_chans -> channels          embed_dim -> dim
    num_heads -> heads              mlp_ratio -> mlp_dim = int(dim * mlp_ratio)
    drop_path_rate -> drop_path     (both: linear 0 .. rate over the blocks)
    pos_drop_rate -> emb_dropout    attn_drop_rate = proj_drop_rate -> dropout (vitc has one rate for both)
    drop_rate -> only 0 (timm's head dropout; vitc has none)
    global_pool 'token' -> pool 'cls', 'avg' -> pool 'gap' with fc_norm (timm norms after pooling when
    averaging), 'map' -> 'map'; '' (no pooling) is refused
    patch_size, num_classes, depth, qkv_bias, class_token, fc_norm: the same names.

timm names carry timm's defaults where vitc's differ: with embed_dim or num_heads given, the head width
is embed_dim // num_heads (vitc's own default dim_head is 64), and with embed_dim given the MLP width is
embed_dim * mlp_ratio (4 unless given). A timm name given together with its vitc name must agree.
"""
import functools

from vitc._checks import expect_number, expect_pair

__all__ = ["TIMM_NAMES", "from_timm_kwargs", "merge_config", "accepts_timm_names"]

TIMM_NAMES = {"img_size": "image_size", "in_chans": "channels", "embed_dim": "dim", "num_heads": "heads",
              "drop_path_rate": "drop_path", "pos_drop_rate": "emb_dropout", "global_pool": "pool"}
_POOLS = {"token": "cls", "avg": "gap", "map": "map"}
# timm options vitc has no counterpart for: accepted only at timm's default (which is vitc's behaviour)
_ONLY_DEFAULT = {"drop_rate": 0.0, "init_values": None, "no_embed_class": False, "pre_norm": False,
                 "final_norm": True, "reg_tokens": 0, "pos_embed": "learn", "dynamic_img_size": False,
                 "patch_drop_rate": 0.0, "qk_norm": False, "proj_bias": True}


def _same(vitc_name, a, b):
    if vitc_name in ("image_size", "patch_size"):
        return expect_pair(a, "timm names", vitc_name, 1) == expect_pair(b, "timm names", vitc_name, 1)
    return a == b


def from_timm_kwargs(who, kwargs, base=None):
    """kwargs with timm's names replaced by vitc's (see the module docstring). base: the configuration
    the kwargs override (a registered model's defaults), used for derived values such as the MLP width."""
    if not any(k in kwargs for k in (*TIMM_NAMES, *_ONLY_DEFAULT, "mlp_ratio", "attn_drop_rate", "proj_drop_rate")):
        return dict(kwargs)
    base = base or {}
    out = {k: v for k, v in kwargs.items() if k not in TIMM_NAMES}

    def put(name, value, timm_name):
        if name in kwargs and not _same(name, kwargs[name], value):
            raise ValueError(f"{who}: {timm_name}={value!r} (timm's name) and {name}={kwargs[name]!r} disagree; "
                             "pass one of them")
        out[name] = value

    for k, v in kwargs.items():
        if k in _ONLY_DEFAULT:
            out.pop(k)
            if v != _ONLY_DEFAULT[k]:
                raise ValueError(f"{who}: timm's {k}={v!r} has no vitc counterpart (only {_ONLY_DEFAULT[k]!r}, "
                                 "timm's default, is accepted)")
        elif k == "global_pool":
            if v not in _POOLS:
                raise ValueError(f"{who}: global_pool must be one of {sorted(_POOLS)} (timm's names for vitc's pool "
                                 f"'cls', 'gap', 'map'), got {v!r}; for the unpooled tokens call forward_features")
            put("pool", _POOLS[v], "global_pool")
            if v == "avg" and kwargs.get("fc_norm") is None:  # timm: fc_norm=None means 'on when averaging'
                out["fc_norm"] = True
        elif k in TIMM_NAMES:
            put(TIMM_NAMES[k], v, k)
    if out.get("fc_norm", False) is None:
        out["fc_norm"] = False
    if "attn_drop_rate" in kwargs or "proj_drop_rate" in kwargs:
        a, p = out.pop("attn_drop_rate", 0.0), out.pop("proj_drop_rate", 0.0)
        if a != p:
            raise ValueError(f"{who}: vitc's dropout is one rate for the attention map and the projections "
                             f"(timm's attn_drop_rate and proj_drop_rate together); got attn_drop_rate={a!r}, "
                             f"proj_drop_rate={p!r}")
        put("dropout", a, "attn_drop_rate")
    dim = out.get("dim", base.get("dim"))
    if "mlp_ratio" in kwargs or ("embed_dim" in kwargs and "mlp_dim" not in kwargs):
        ratio = expect_number(out.pop("mlp_ratio", 4.0), who, "mlp_ratio", 0.0)
        if dim is None:
            raise ValueError(f"{who}: mlp_ratio needs the width (embed_dim or dim)")
        put("mlp_dim", int(dim * ratio), "mlp_ratio")
    if ("embed_dim" in kwargs or "num_heads" in kwargs) and "dim_head" not in kwargs:
        heads = out.get("heads", base.get("heads"))
        if dim is not None and heads is not None:
            if not isinstance(heads, int) or heads < 1 or dim % heads:
                raise ValueError(f"{who}: embed_dim={dim} must be divisible by num_heads={heads}")
            out["dim_head"] = dim // heads
    return out


def merge_config(who, defaults, overrides):
    """A registered model's configuration: defaults updated by overrides given in vitc's or timm's names."""
    cfg = dict(defaults)
    cfg.update(from_timm_kwargs(who, overrides, base=defaults))
    return cfg


def accepts_timm_names(init):
    """Decorate a keyword-only __init__ so it also takes timm's names (translated before it runs)."""
    @functools.wraps(init)
    def wrapper(self, **kwargs):
        return init(self, **from_timm_kwargs(type(self).__name__, kwargs))
    return wrapper
