"""Step time from the op-level work of one training step and this machine's measured rates
(vitc.plan.calibration). Per op, forward + backward:
- a Linear of R rows, k inputs, n outputs: 6·R·k·n FLOPs (forward 2Rkn, backward 4Rkn);
- qkv_attention (B images, T tokens, H heads of Dh, HD = H·Dh): the projections 6·R·D·3HD +
  6·R·HD·D and the attention itself 12·B·H·T²·Dh (QKᵀ and A·V forward, four products backward);
- linear_gelu_linear: 12·R·D·F;
each at the rate calibrated for that op at the same sqrt(in·out) width (piecewise linear in log2 of
the width, clamped at the grid's ends); LayerNorm and the elementwise adds (residuals, position
embedding, the patch copy) per element; a fixed cost per autograd op; the optimizer per parameter.
"""
import dataclasses
import math

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
    B, T, N, D, F, H, Dh = batch, cfg.tokens, cfg.num_patches, cfg.dim, cfg.mlp_dim, cfg.heads, cfg.dim_head
    HD, R, K = cfg.inner, batch * cfg.tokens, cfg.num_classes
    parts, flops = {}, 0.0

    def add(label, seconds):
        parts[label] = parts.get(label, 0.0) + seconds

    def linear(label, rows, k, n, table="linear_s_per_flop"):
        nonlocal flops
        f = 6.0 * rows * k * n
        flops += f
        add(label, f * _interp(rates[table], math.sqrt(k * n)))

    ops = 0
    # patch embedding
    linear("patch embed", B * N, cfg.patch_dim, D)
    add("elementwise", (B * N * cfg.patch_dim + 2 * R * D) * rates["add_s_per_element"])  # patchify, cat, + pos
    ops += 4
    if cfg.patch_norm:
        add("layer norm", (B * N * (cfg.patch_dim + D)) * rates["layer_norm_s_per_element"])
        ops += 2
    for _ in range(cfg.depth):
        add("layer norm", 2 * R * D * rates["layer_norm_s_per_element"])
        f = 6.0 * R * D * 3 * HD + (6.0 * R * HD * D if cfg.project_out else 0.0) + 12.0 * B * H * T * T * Dh
        flops += f
        add("attention", f * _interp(rates["attention_s_per_flop"], math.sqrt(D * HD)))
        f = 12.0 * R * D * F
        flops += f
        add("mlp", f * _interp(rates["mlp_s_per_flop"], math.sqrt(D * F)))
        add("elementwise", 2 * R * D * rates["add_s_per_element"])
        ops += 6
    add("layer norm", R * D * rates["layer_norm_s_per_element"])
    ops += 4
    if cfg.pool == "map":
        linear("head", B * N, D, 2 * D)
        linear("head", B, D, D)
        linear("head", B, D, F)
        linear("head", B, F, D)
        f = 12.0 * B * H * N * (D // H)
        flops += f
        add("head", f * _interp(rates["linear_s_per_flop"], D))
        ops += 10
    elif cfg.pool in ("mean", "gap"):
        add("elementwise", R * D * rates["add_s_per_element"])
    if cfg.pre_logits is not None:
        linear("head", B, D, cfg.pre_logits)
        ops += 2
    linear("head", B, cfg.pre_logits or D, K)
    add("op overhead", ops * rates["op_overhead_s"])
    add("optimizer step", cfg.num_parameters() * rates["optimizer_s_per_param"][_OPT_RATE_NAME[optimizer]])
    return TimeBreakdown(parts=parts, flops=flops)
