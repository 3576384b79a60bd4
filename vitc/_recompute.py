"""Memory for time: ops that recompute in backward what they would otherwise keep for it.

Four switches, process-wide, read by each op at its forward (so a step's forward decides what its
backward recomputes); gradients are bitwise the same either way:

- ``attention_maps``: the fused attention ops keep q and k (and each softmax row's max and 1/sum),
  not the (B, H, T, T) softmax maps, and rebuild each head's map in backward (maps requested as an
  output, re-attention and talking heads, which mix maps across heads, still keep them). Default
  ``"auto"`` (the variable unset): on where a head's map is at least as large as its q and k rows
  (T >= 2·head_dim: DeiT-Tiny and LV-ViT-Tiny-MNIST drop their maps, the seed ViT with its 17 tokens
  keeps them); True or False forces it;
- ``qkv`` (off by default): ``qkv_attention`` keeps neither its qkv projection nor the attention output before the
  output projection, and recomputes them from its input and weights;
- ``ffn`` (off by default): ``linear_gelu_linear`` keeps its input, not the MLP pre-activation, and recomputes it;
- ``layer_norm`` (on by default): an op that saves a LayerNorm's output for its backward (a ViT block's
  attention and MLP, which take their norms' outputs) keeps a reference to the LayerNorm instead, and
  the output is rebuilt from the LayerNorm's saved input right before that backward (one LayerNorm
  forward per block and norm; 116 MB less in a DeiT-Tiny step at batch 32).

DeiT-Tiny, batch 32, 2 threads, Zen 4 (bench/step_memory.py, bench/ab.py): step memory 0.79× PyTorch's
with the maps kept (attention_maps=False), 0.65× by default (maps dropped; step time 0.996 and 1.009
of keeping them, two runs), 0.60× with VITC_ATTN_RECOMPUTE=2 (the attention output before the
projection recomputed too: +4 % on the attention op, step within noise), 0.49× with attention_maps +
qkv (+9 %), 0.30× with all three (+16 %). The switches are the environment variables
VITC_ATTN_RECOMPUTE (unset: auto; 0, 1, 2), VITC_QKV_RECOMPUTE, VITC_FFN_RECOMPUTE and
VITC_LN_RECOMPUTE (unset: on; 0 off), so a launcher can also set them.
"""
import contextlib
import os

__all__ = ["set_recompute", "get_recompute", "recompute"]

_ENV = {"attention_maps": "VITC_ATTN_RECOMPUTE", "qkv": "VITC_QKV_RECOMPUTE", "ffn": "VITC_FFN_RECOMPUTE",
        "layer_norm": "VITC_LN_RECOMPUTE"}
_DEFAULT_ON = ("layer_norm",)  # unset means on


def get_recompute():
    """{'attention_maps': bool or 'auto', 'qkv': bool, 'ffn': bool, 'layer_norm': bool}: which switches
    are on ('auto': attention_maps' variable is unset, the ops decide by shape)."""
    state = {k: os.environ.get(v, "") not in (("0",) if k in _DEFAULT_ON else ("", "0")) for k, v in _ENV.items()}
    if os.environ.get(_ENV["attention_maps"], "") == "":
        state["attention_maps"] = "auto"
    return state


def set_recompute(attention_maps=None, qkv=None, ffn=None, layer_norm=None):
    """Turn switches on (True) or off (False); None leaves one as it is; attention_maps also takes
    'auto' (the default: unset the variable). Returns the previous state."""
    before = get_recompute()
    for name, value in (("attention_maps", attention_maps), ("qkv", qkv), ("ffn", ffn), ("layer_norm", layer_norm)):
        if value is None:
            continue
        if name == "attention_maps" and value == "auto":
            os.environ.pop(_ENV[name], None)
            continue
        if not isinstance(value, bool):
            also = ", or 'auto'" if name == "attention_maps" else ""
            raise TypeError(f"set_recompute: {name} must be True, False or None{also}, got {type(value).__name__}")
        os.environ[_ENV[name]] = "1" if value else "0"
    return before


@contextlib.contextmanager
def recompute(attention_maps=True, qkv=False, ffn=False, layer_norm=None):
    """``with vitc.recompute(attention_maps=True, qkv=True): loss = model(x)`` — the forwards inside
    keep less for backward (which may run after the block); the switches are restored on exit."""
    before = set_recompute(attention_maps, qkv, ffn, layer_norm)
    try:
        yield
    finally:
        set_recompute(**before)
