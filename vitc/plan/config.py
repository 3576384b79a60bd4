"""The planner's view of a model: the shape numbers of a ViT-family configuration, read without
building the model (and so without allocating its weights).

A configuration comes from
- a registered model name and keyword overrides: the registry function is called with
  vitc.models.vit's ``_build`` intercepted, so it hands back the keyword arguments it would give
  ``ViT`` instead of a model (vit_scaling_g_14 costs nothing to plan);
- a dict of ``ViT`` keyword arguments with the conventions of ``scaling_vit`` as defaults (MAP head,
  no class token, qkv bias, no patch norms, 224 px, 1000 classes, dim_head = dim // heads); it needs
  ``dim``, ``depth``, ``heads`` and ``mlp_dim``;
- a built ``vitc.models.ViT`` (its attributes are read).
Only the features whose memory the planner models are accepted (linear patch embedding, LayerNorm,
plain multi-head attention, no dropout or drop path); anything else is refused with the feature named.
"""
import contextlib
import dataclasses
import inspect
import numbers

__all__ = ["ModelConfig", "resolve_config"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    image_size: tuple
    patch_size: tuple
    channels: int
    num_classes: int
    dim: int
    depth: int
    heads: int
    dim_head: int
    mlp_dim: int
    pool: str = "cls"
    class_token: bool = True
    qkv_bias: bool = False
    patch_norm: bool = True
    learned_pos: bool = True
    pre_logits: int = None
    name: str = "config"

    @property
    def num_patches(self):
        return (self.image_size[0] // self.patch_size[0]) * (self.image_size[1] // self.patch_size[1])

    @property
    def tokens(self):
        return self.num_patches + int(self.class_token)

    @property
    def patch_dim(self):
        return self.channels * self.patch_size[0] * self.patch_size[1]

    @property
    def inner(self):
        return self.heads * self.dim_head

    @property
    def project_out(self):  # lucidrains: no output projection when one head spans the width
        return not (self.heads == 1 and self.dim_head == self.dim)

    def param_shapes(self):
        """Every parameter's shape, in the model's registration order (the optimizer's flat layout
        does not depend on the order for the byte counts the planner needs)."""
        d, f, inner, pd = self.dim, self.mlp_dim, self.inner, self.patch_dim
        shapes = []
        if self.patch_norm:
            shapes += [(pd,), (pd,), (d, pd), (d,), (d,), (d,)]
        else:
            shapes += [(d, pd), (d,)]
        if self.learned_pos:
            shapes.append((1, self.tokens, d))
        if self.class_token:
            shapes.append((1, 1, d))
        for _ in range(self.depth):
            shapes += [(d,), (d,), (3 * inner, d)] + ([(3 * inner,)] if self.qkv_bias else [])
            if self.project_out:
                shapes += [(d, inner), (d,)]
            shapes += [(d,), (d,), (f, d), (f,), (d, f), (d,)]
        shapes += [(d,), (d,)]  # final norm
        if self.pool == "map":
            shapes += [(1, 1, d), (d, d), (d,), (2 * d, d), (2 * d,), (d, d), (d,), (d,), (d,),
                       (f, d), (f,), (d, f), (d,)]
        head_in = d
        if self.pre_logits is not None:
            shapes += [(self.pre_logits, d), (self.pre_logits,)]
            head_in = self.pre_logits
        shapes += [(self.num_classes, head_in), (self.num_classes,)]
        return shapes

    def vit_kwargs(self):
        """Keyword arguments of a vitc.models.ViT with this shape (for measuring it)."""
        return dict(image_size=self.image_size, patch_size=self.patch_size, channels=self.channels,
                    num_classes=self.num_classes, dim=self.dim, depth=self.depth, heads=self.heads,
                    dim_head=self.dim_head, mlp_dim=self.mlp_dim, pool=self.pool, class_token=self.class_token,
                    qkv_bias=self.qkv_bias, patch_norm=self.patch_norm,
                    pos_emb="learn" if self.learned_pos else "sincos1d", pre_logits=self.pre_logits)

    def num_parameters(self):
        total = 0
        for s in self.param_shapes():
            n = 1
            for v in s:
                n *= v
            total += n
        return total


# the scaling_vit conventions a dict configuration starts from (vitc.models.vit.scaling_vit)
_DICT_DEFAULTS = dict(image_size=224, patch_size=14, channels=3, num_classes=1000, pool="map", class_token=False,
                      qkv_bias=True, patch_norm=False, pos_emb="learn")
_UNSUPPORTED = dict(norm=("layer",), ffn_norm=(None,), attn=("mhsa",), patch_embed=("linear",), aux_head=(False,),
                    mix_token=(False,), attn_reuse_from=(None,))


def _pair(v, what):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (int(v), int(v))
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and
            all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1 for x in v)):
        raise ValueError(f"plan: {what} must be a positive int or a pair of them, got {v!r}")
    return int(v[0]), int(v[1])


def _positive_int(v, what):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
        raise ValueError(f"plan: {what} must be a positive int, got {v!r}")
    return int(v)


def _vit_defaults():
    from vitc.models.vit import ViT
    sig = inspect.signature(ViT.__init__)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def from_kwargs(kwargs, name="config"):
    """A ModelConfig from ``ViT`` keyword arguments (the ones ``ViT`` would receive)."""
    cfg = _vit_defaults()
    cfg.update(kwargs)
    for key, allowed in _UNSUPPORTED.items():
        if cfg.get(key) not in allowed:
            raise ValueError(f"plan: {name}: {key}={cfg.get(key)!r} is not modelled by the planner "
                             f"(it plans {key}={allowed[0]!r})")
    for key in ("dropout", "emb_dropout", "drop_path"):
        if cfg.get(key, 0.0) not in (0, 0.0):
            raise ValueError(f"plan: {name}: {key}={cfg[key]!r}: the planner models training without dropout")
    if cfg.get("skip_lam", 1.0) != 1.0:
        raise ValueError(f"plan: {name}: skip_lam={cfg['skip_lam']!r} is not modelled (it plans skip_lam=1)")
    for key in ("image_size", "patch_size", "num_classes", "dim", "depth", "heads", "mlp_dim"):
        if key not in cfg:
            raise ValueError(f"plan: {name}: the configuration needs {key!r}")
    image, patch = _pair(cfg["image_size"], "image_size"), _pair(cfg["patch_size"], "patch_size")
    if image[0] % patch[0] or image[1] % patch[1]:
        raise ValueError(f"plan: {name}: image size {image} is not divisible by the patch size {patch}")
    dim, heads = _positive_int(cfg["dim"], "dim"), _positive_int(cfg["heads"], "heads")
    pool = cfg.get("pool", "cls")
    if pool not in ("cls", "mean", "gap", "map"):
        raise ValueError(f"plan: {name}: pool must be 'cls', 'mean', 'gap' or 'map', got {pool!r}")
    class_token = bool(cfg.get("class_token", True))
    if pool == "cls" and not class_token:
        raise ValueError(f"plan: {name}: pool='cls' needs the class token")
    if pool == "map" and dim % heads:
        raise ValueError(f"plan: {name}: heads ({heads}) must divide the width dim ({dim}) for the MAP head")
    pre = cfg.get("pre_logits")
    return ModelConfig(image_size=image, patch_size=patch, channels=_positive_int(cfg.get("channels", 3), "channels"),
                       num_classes=_positive_int(cfg["num_classes"], "num_classes"), dim=dim,
                       depth=_positive_int(cfg["depth"], "depth"), heads=heads,
                       dim_head=_positive_int(cfg.get("dim_head", 64), "dim_head"),
                       mlp_dim=_positive_int(cfg["mlp_dim"], "mlp_dim"), pool=pool, class_token=class_token,
                       qkv_bias=bool(cfg.get("qkv_bias", False)), patch_norm=bool(cfg.get("patch_norm", True)),
                       learned_pos=cfg.get("pos_emb", "learn") == "learn",
                       pre_logits=None if pre is None else _positive_int(pre, "pre_logits"), name=name)


def from_dict(spec):
    """A ModelConfig from a dict with scaling_vit's conventions as defaults (dim_head = dim // heads)."""
    spec = dict(spec)
    for key in ("dim", "depth", "heads", "mlp_dim"):
        if key not in spec:
            raise ValueError(f"plan: a config dict needs {key!r} (got keys {sorted(spec)})")
    dim, heads = _positive_int(spec["dim"], "dim"), _positive_int(spec["heads"], "heads")
    if "dim_head" not in spec:
        if dim % heads:
            raise ValueError(f"plan: heads ({heads}) must divide the width dim ({dim}); "
                             f"pass dim_head to use a different head width")
        spec["dim_head"] = dim // heads
    name = spec.pop("name", f"dim{dim}_depth{spec['depth']}_mlp{spec['mlp_dim']}")
    return from_kwargs(dict(_DICT_DEFAULTS, **spec), name=name)


class _Captured(Exception):
    def __init__(self, cfg):
        super().__init__("configuration captured")
        self.cfg = cfg


@contextlib.contextmanager
def _capture_build():
    """Within: vitc.models.vit._build raises _Captured(its keyword arguments) instead of building."""
    from vitc.models import vit

    def capture(defaults, overrides):
        raise _Captured(dict(defaults, **overrides))
    saved = vit._build
    vit._build = capture
    try:
        yield
    finally:
        vit._build = saved


def from_registered(name, kwargs=None):
    from vitc.models import registry
    if not isinstance(name, str):
        raise TypeError(f"plan: a model name must be a str, got {type(name).__name__}")
    if not registry.is_model(name):
        raise ValueError(f"plan: unknown model {name!r}; available: {', '.join(registry.list_models())}")
    kwargs = dict(kwargs or {})
    if "over_smoothing" in kwargs:
        raise ValueError("plan: over_smoothing wrappers are not modelled by the planner")
    with _capture_build():
        try:
            registry._MODELS[name](**kwargs)
        except _Captured as c:
            return from_kwargs(c.cfg, name=name)
    raise ValueError(f"plan: model {name!r} is not built by vitc.models.vit's ViT; the planner models ViT-family "
                     "models only")


def from_model(model):
    from vitc.models.vit import ViT
    if type(model) is not ViT:
        raise ValueError(f"plan: the planner models vitc.models.ViT instances, got {type(model).__name__}")
    blk = model.transformer.layers[0]
    emb = model.to_patch_embedding
    from vitc import nn
    linear = [m for m in emb if isinstance(m, nn.Linear)]
    cfg = dict(image_size=model.image_size, patch_size=model.patch_size, channels=model.channels,
               num_classes=model.mlp_head.out_features, dim=blk.attn.dim, depth=len(model.transformer.layers),
               heads=blk.attn.heads, dim_head=blk.attn.dim_head, mlp_dim=blk.ff.net[0].out_features, pool=model.pool,
               class_token=model.class_token, qkv_bias=blk.attn.to_qkv.bias is not None,
               patch_norm=len(emb) > 2, pos_emb="learn" if isinstance(model.pos_embedding, nn.Parameter) else "fixed",
               pre_logits=None if isinstance(model.to_latent, nn.Identity) else model.to_latent[0].out_features)
    if not linear or blk.attn.attn != "mhsa" or model.aux_head is not None:
        raise ValueError("plan: this ViT uses a feature the planner does not model (conv stem, re-attention or an "
                         "aux head)")
    return from_kwargs(cfg, name=type(model).__name__)


def resolve_config(model_or_config, model_kwargs=None):
    """ModelConfig from a name (+ kwargs), a dict, a ModelConfig or a built ViT."""
    if isinstance(model_or_config, ModelConfig):
        return model_or_config
    if isinstance(model_or_config, str):
        return from_registered(model_or_config, model_kwargs)
    if model_kwargs:
        raise ValueError("plan: model_kwargs apply to a registered model name only")
    if isinstance(model_or_config, dict):
        return from_dict(model_or_config)
    from vitc.nn import Module
    if isinstance(model_or_config, Module):
        return from_model(model_or_config)
    raise TypeError(f"plan: expected a model name, a config dict, a ModelConfig or a vitc ViT, "
                    f"got {type(model_or_config).__name__}")
