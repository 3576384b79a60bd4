"""Step time from the op-level work of one training step and this machine's measured rates
(vitc.plan.calibration). The FLOPs are vitc.eval.flops' count (the one ViT FLOP counter: forward matmul
FLOPs by part, training = 3 x forward, i.e. a Linear of R rows, k inputs, n outputs costs 6·R·k·n), and
each part runs at the rate calibrated for its op at its sqrt(in·out) width (piecewise linear in log2 of
the width, clamped at the grid's ends): the patch embedding and the head Linears, qkv_attention (the
projections and the attention itself), linear_gelu_linear (the MLP); LayerNorm and the elementwise adds (residuals, position
embedding, the patch copy) per element; a fixed cost per autograd op; the optimizer per parameter.
"""
import dataclasses
import math

from ..eval.flops import vit_flop_breakdown

__all__ = ["TimeBreakdown", "time_breakdown"]

_OPT_RATE_NAME = {"adam": "adam", "adamw": "adam", "adam_bf16m": "adam_bf16m", "adam_bf16": "adam_bf16m",
                  "adafactor": "adafactor", "sgd": "sgd", "sgd_momentum": "sgd"}


def _interp(table, x):
    """Piecewise-linear in log2(x) through a {str(width): value} table, clamped at its ends."""
    pts = sorted((int(k), v) for k, v in table.items())
    if x <= pts[0][0]:
        return pts[0][1]
    if x >= pts[-1][0]:
        return pts[-1][1]
    lx = math.log2(x)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            t = (lx - math.log2(x0)) / (math.log2(x1) - math.log2(x0))
            return y0 + t * (y1 - y0)
    return pts[-1][1]


@dataclasses.dataclass
class TimeBreakdown:
    parts: dict     # seconds by op class
    flops: float    # forward + backward FLOPs of the step (GEMMs and attention)

    @property
    def total(self):
        return sum(self.parts.values())


def time_breakdown(cfg, batch, optimizer, rates):
    B, N, D, F, HD, R = batch, cfg.num_patches, cfg.dim, cfg.mlp_dim, cfg.inner, batch * cfg.tokens
    fwd = vit_flop_breakdown(cfg.vit_kwargs())  # forward FLOPs of one image by part
    parts, flops = {}, 0.0

    def add(label, seconds):
        parts[label] = parts.get(label, 0.0) + seconds

    def matmuls(label, keys, width, table="linear_s_per_flop"):
        nonlocal flops
        f = 3.0 * B * sum(fwd[k] for k in keys)  # forward + backward
        flops += f
        add(label, f * _interp(rates[table], width))

    ops = 0
    matmuls("patch embed", ["patch_embed"], math.sqrt(cfg.patch_dim * D))
    add("elementwise", (B * N * cfg.patch_dim + 2 * R * D) * rates["add_s_per_element"])  # patchify, cat, + pos
    ops += 4
    if cfg.patch_norm:
        add("layer norm", (B * N * (cfg.patch_dim + D)) * rates["layer_norm_s_per_element"])
        ops += 2
    matmuls("attention", ["qkv", "attn_scores", "attn_values", "attn_proj"], math.sqrt(D * HD), "attention_s_per_flop")
    matmuls("mlp", ["mlp"], math.sqrt(D * F), "mlp_s_per_flop")
    add("layer norm", cfg.depth * 2 * R * D * rates["layer_norm_s_per_element"])
    add("elementwise", cfg.depth * 2 * R * D * rates["add_s_per_element"])
    ops += 6 * cfg.depth
    add("layer norm", R * D * rates["layer_norm_s_per_element"])
    ops += 4
    if cfg.pool == "map":
        matmuls("head", ["map_head"], D)
        ops += 10
    elif cfg.pool in ("mean", "gap"):
        add("elementwise", R * D * rates["add_s_per_element"])
    if cfg.pre_logits is not None:
        matmuls("head", ["pre_logits"], math.sqrt(D * cfg.pre_logits))
        ops += 2
    matmuls("head", ["head"], math.sqrt((cfg.pre_logits or D) * cfg.num_classes))
    add("op overhead", ops * rates["op_overhead_s"])
    add("optimizer step", cfg.num_parameters() * rates["optimizer_s_per_param"][_OPT_RATE_NAME[optimizer]])
    return TimeBreakdown(parts=parts, flops=flops)
