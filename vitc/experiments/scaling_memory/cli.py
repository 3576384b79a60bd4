"""The command line of python -m vitc.experiments.scaling_memory."""
import argparse
import json
import os
import sys
import time

import vitc
from vitc.io import write_text_atomic
from vitc.plan.calibration import CALIBRATION_WIDTHS, calibrate
from vitc.plan.planner import parse_bytes

from ..common import machine_info, set_threads, show_defaults
from .report import markdown, plots, summary
from .runs import SETUPS, grid, run_name, run_one


def build_parser():
    description = sys.modules[__package__].__doc__.split("\n\n")[1]
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.scaling_memory", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", default="2,4,8,12", help="comma-separated block counts")
    p.add_argument("--widths", default="64,128,192,256", help="comma-separated widths (multiples of 32)")
    p.add_argument("--mlp-ratios", default="2,4", help="comma-separated MLP width / width")
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated subset of {list(SETUPS)}")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--patch", type=int, default=14)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per run after one warm-up (the fastest counts)")
    p.add_argument("--recalibrate-every", type=int, default=6, help="re-measure the planner's rates every N runs")
    p.add_argument("--calibration-repeats", type=int, default=5, help="repeats of each calibration op and load probe")
    p.add_argument("--calibration-widths", default=",".join(map(str, CALIBRATION_WIDTHS)),
                   help="the widths the planner's rates are measured at")
    p.add_argument("--memory-cap", default="64MiB", help="the cap of the fits map")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    return show_defaults(p)


def _numbers(text, name, kind=int):
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: {name} must be comma-separated numbers, got {text!r}") from None
    if not vals or min(vals) <= 0:
        raise SystemExit(f"error: {name} must list positive numbers, got {text!r}")
    return vals


def main(argv=None):
    args = build_parser().parse_args(argv)
    depths, widths = _numbers(args.depths, "--depths"), _numbers(args.widths, "--widths")
    ratios = _numbers(args.mlp_ratios, "--mlp-ratios", float)
    cal_widths = tuple(_numbers(args.calibration_widths, "--calibration-widths"))
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if not setups or any(s not in SETUPS for s in setups):
        raise SystemExit(f"error: --setups must be a comma-separated subset of {list(SETUPS)}, got {args.setups!r}")
    for name in ("batch_size", "repeats", "recalibrate_every", "calibration_repeats", "image_size", "patch"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1")
    try:
        cap = parse_bytes(args.memory_cap)
        configs = grid(depths, widths, ratios)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if args.image_size % args.patch:
        raise SystemExit(f"error: --image-size {args.image_size} is not divisible by --patch {args.patch}")
    set_threads(args.threads)
    run_dir = os.path.join(args.out, "runs")
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.perf_counter()
    info = machine_info()
    todo = [(s, d, w, m) for (d, w, m) in configs for s in setups]
    size = f"{len(depths)} depths × {len(widths)} widths × {len(ratios)} MLP ratios × {len(setups)} setups"
    print(f"memory/speed sweep: {len(todo)} runs ({size}), batch {args.batch_size}, {vitc.get_num_threads()} threads",
          flush=True)
    runs, cal, since, calibrations = [], None, 0, []
    for s, d, w, m in todo:
        path = os.path.join(run_dir, run_name(s, d, w, m) + ".json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
            continue
        if cal is None or since >= args.recalibrate_every:  # calibration interleaved with the runs
            cal, since = calibrate(repeats=args.calibration_repeats, save=False, widths=cal_widths), 0
            calibrations.append(dict(at_run=len(runs), seconds=cal["seconds"], probe_s=cal["probe_s"]))
        r = run_one(s, d, w, m, args, cal)
        since += 1
        write_text_atomic(path, json.dumps(r, indent=1))
        runs.append(r)
        print(f"{r['name']:<26} peak {r['measured_peak'] / 2 ** 20:8.1f} MiB (pred {100 * r['memory_error']:+5.1f} %)  "
              f"step {r['measured_seconds']:.3f} s (pred {100 * r['time_error']:+5.1f} %, load-adjusted "
              f"{100 * r['time_error_load_adjusted']:+5.1f} %)", flush=True)
    res = {"command": "python -m vitc.experiments.scaling_memory " + " ".join(sys.argv[1:] if argv is None else argv),
           "config": vars(args), "size": size, "machine": info, "threads": vitc.get_num_threads(),
           "memory_cap": cap, "calibrations": calibrations, "runs": runs, "summary": summary(runs, cap),
           "wall_time_s": time.perf_counter() - t0}
    write_text_atomic(os.path.join(args.out, "results.json"), json.dumps(res, indent=1))
    write_text_atomic(os.path.join(args.out, "results.md"), markdown(res))
    plots(res, args.out)
    s = res["summary"]
    print(f"memory error: median {100 * s['memory']['median']:.1f} %, max {100 * s['memory']['max']:.1f} %; "
          f"time error: median {100 * s['time']['median']:.1f} %, max {100 * s['time']['max']:.1f} % "
          f"(load-adjusted: {100 * s['time_load_adjusted']['median']:.1f} %, {100 * s['time_load_adjusted']['max']:.1f} %); "
          f"wall {res['wall_time_s'] / 60:.1f} min", flush=True)
    return res
