"""Model registry: register_model decorator, create_model(name, **overrides), list_models()."""
import fnmatch

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_MODELS = {}


def register_model(fn=None, *, name=None):
    """Register a model constructor under its function name (or ``name``): @register_model."""
    def wrap(f):
        key = name or f.__name__
        if not callable(f):
            raise TypeError(f"register_model: {f!r} is not callable")
        if key in _MODELS and _MODELS[key] is not f:
            raise ValueError(f"register_model: a model named {key!r} is already registered")
        _MODELS[key] = f
        return f
    return wrap(fn) if fn is not None else wrap


def list_models(pattern="*"):
    """Sorted names of the registered models matching a shell-style pattern."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_model(name):
    return name in _MODELS


def create_model(name, pretrained=False, pretrained_file=None, **overrides):
    """Build the registered model ``name``; keyword arguments override its configuration (vitc's or
    timm's names, see vitc.models.timm_compat).
    pretrained_file=path: load a local timm checkpoint (.safetensors, .pth, .npz) into it, adapting the
    position embedding, the head and the input channels (vitc.models.pretrained.load_pretrained);
    pretrained=True needs pretrained_file: vitc never downloads (pretrained_file alone is enough).
    over_smoothing=dict(cos=α, cons=α, mix=α, talking_heads=bool, ...) returns it wrapped in
    vitc.oversmoothing.OverSmoothing (the losses against over-smoothing)."""
    if not isinstance(name, str):
        raise TypeError(f"create_model: model name must be a str, got {type(name).__name__}")
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    if pretrained and pretrained_file is None:
        raise ValueError(f"create_model({name!r}, pretrained=True): vitc never downloads weights; pass "
                         "pretrained_file=<path to a local timm checkpoint (.safetensors, .pth or .npz)>")
    over_smoothing = overrides.pop("over_smoothing", None)
    model = _MODELS[name](**overrides)
    if pretrained_file is not None:
        from .pretrained import load_pretrained
        load_pretrained(model, pretrained_file)
    if over_smoothing is None or over_smoothing is False:
        return model
    # over_smoothing=dict(cos=, cons=, mix=, talking_heads=, ...): the model wrapped by vitc.oversmoothing
    from vitc.oversmoothing import OverSmoothing
    return OverSmoothing.wrap(model, **({} if over_smoothing is True else dict(over_smoothing)))
