"""One configuration of the memory/speed sweep: measured (vitc.plan.measure) and predicted (vitc.plan)."""
import vitc
from vitc.plan.calibration import probe_seconds
from vitc.plan.config import from_dict
from vitc.plan.measure import measure_step
from vitc.plan.memory import memory_breakdown
from vitc.plan.timing import time_breakdown

__all__ = ["SETUPS", "grid", "run_one", "run_name"]

# the paper's three memory setups (§3.6): baseline, + no class token and bf16 Adam first moment,
# + modified Adafactor
SETUPS = {"baseline": dict(pool="cls", class_token=True, optimizer="adam"),
          "gap_bf16m": dict(pool="gap", class_token=False, optimizer="adam_bf16m"),
          "adafactor": dict(pool="gap", class_token=False, optimizer="adafactor")}
HEAD_WIDTH = 32


def grid(depths, widths, mlp_ratios):
    """(depth, width, mlp width) triples, heads = width / 32."""
    out = []
    for w in widths:
        if w % HEAD_WIDTH:
            raise ValueError(f"scaling_memory: widths must be multiples of the head width {HEAD_WIDTH}, got {w}")
        for d in depths:
            for r in mlp_ratios:
                out.append((d, w, int(round(r * w))))
    return out


def run_name(setup, depth, width, mlp):
    return f"{setup}_d{depth}_w{width}_m{mlp}"


def config_for(setup, depth, width, mlp, image_size, patch, num_classes):
    s = SETUPS[setup]
    return from_dict(dict(dim=width, depth=depth, heads=width // HEAD_WIDTH, mlp_dim=mlp, image_size=image_size,
                          patch_size=patch, num_classes=num_classes, pool=s["pool"], class_token=s["class_token"],
                          name=run_name(setup, depth, width, mlp)))


def run_one(setup, depth, width, mlp, args, calibration):
    """Predict, then measure; calibration = the one in force (vitc.plan.calibration.calibrate()).
    The load gauge (probe_seconds) runs before and after the measurement: its mean over its value
    at calibration is the load factor, and predicted_seconds × load_factor is the prediction for the
    load the run saw (reported beside the planner's own figure)."""
    opt = SETUPS[setup]["optimizer"]
    cfg = config_for(setup, depth, width, mlp, args.image_size, args.patch, args.num_classes)
    mem = memory_breakdown(cfg, args.batch_size, opt)
    tb = time_breakdown(cfg, args.batch_size, opt, calibration["rates"])
    before = probe_seconds(args.calibration_repeats)
    meas = measure_step(cfg, args.batch_size, opt, repeats=args.repeats, seed=args.seed)
    load = 0.5 * (before + probe_seconds(args.calibration_repeats)) / calibration["probe_s"]
    input_bytes = 4 * args.batch_size * cfg.channels * cfg.image_size[0] * cfg.image_size[1]
    return dict(name=cfg.name, setup=setup, optimizer=opt, depth=depth, width=width, mlp=mlp, heads=cfg.heads,
                tokens=cfg.tokens, params=cfg.num_parameters(), batch=args.batch_size, threads=vitc.get_num_threads(),
                predicted_peak=mem.peak, predicted_state_bytes=mem.optimizer_state,
                predicted_activations=mem.activation_bytes, predicted_seconds=tb.total, flops=tb.flops,
                measured_peak=meas["peak_bytes"], state_bytes=meas["state_bytes"],
                measured_seconds=meas["step_seconds"], all_seconds=meas["all_seconds"],
                rss_start=meas["rss_start"], rss_peak=meas["rss_peak"], input_bytes=input_bytes,
                load_factor=load, predicted_seconds_load_adjusted=tb.total * load,
                memory_error=mem.peak / meas["peak_bytes"] - 1, time_error=tb.total / meas["step_seconds"] - 1,
                time_error_load_adjusted=tb.total * load / meas["step_seconds"] - 1)
