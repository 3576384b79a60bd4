"""Memory for time: ops that recompute in backward what they would otherwise keep for it.

Three switches, off by default, process-wide, read by each op at its forward (so a step's forward
decides what its backward recomputes); gradients are bitwise the same either way:

- ``attention_maps``: the fused attention ops keep q and k, not the (B, H, T, T) softmax maps, and
  rebuild each head's map in backward (maps requested as an output, re-attention and talking heads,
  which mix maps across heads, still keep them);
- ``qkv``: ``qkv_attention`` keeps neither its qkv projection nor the attention output before the
  output projection, and recomputes them from its input and weights;
- ``ffn``: ``linear_gelu_linear`` keeps its input, not the MLP pre-activation, and recomputes it.

DeiT-Tiny, batch 32, 2 threads, Zen 4 (bench/step_memory.py, bench/ab.py): step memory 0.82× PyTorch's
with none, 0.67× with attention_maps (+2 % step time), 0.49× with attention_maps + qkv (+9 %),
0.30× with all three (+16 %). The switches are the environment variables VITC_ATTN_RECOMPUTE,
VITC_QKV_RECOMPUTE and VITC_FFN_RECOMPUTE, so a launcher can also set them.
"""
import contextlib
import os

__all__ = ["set_recompute", "get_recompute", "recompute"]

_ENV = {"attention_maps": "VITC_ATTN_RECOMPUTE", "qkv": "VITC_QKV_RECOMPUTE", "ffn": "VITC_FFN_RECOMPUTE"}


def get_recompute():
    """{'attention_maps': bool, 'qkv': bool, 'ffn': bool}: which switches are on."""
    return {k: os.environ.get(v, "") not in ("", "0") for k, v in _ENV.items()}


def set_recompute(attention_maps=None, qkv=None, ffn=None):
    """Turn switches on (True) or off (False); None leaves one as it is. Returns the previous state."""
    before = get_recompute()
    for name, value in (("attention_maps", attention_maps), ("qkv", qkv), ("ffn", ffn)):
        if value is None:
            continue
        if not isinstance(value, bool):
            raise TypeError(f"set_recompute: {name} must be True, False or None, got {type(value).__name__}")
        os.environ[_ENV[name]] = "1" if value else "0"
    return before


@contextlib.contextmanager
def recompute(attention_maps=True, qkv=False, ffn=False):
    """``with vitc.recompute(attention_maps=True, qkv=True): loss = model(x)`` — the forwards inside
    keep less for backward (which may run after the block); the switches are restored on exit."""
    before = set_recompute(attention_maps, qkv, ffn)
    try:
        yield
    finally:
        set_recompute(**before)
