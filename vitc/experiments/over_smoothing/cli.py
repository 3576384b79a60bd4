"""The command line of python -m vitc.experiments.over_smoothing."""
import argparse
import json
import os
import sys
import time

import vitc
from vitc.io import write_text_atomic

from ..common import Tracker, fashion_mnist_splits, machine_info, set_threads, show_defaults
from .report import markdown, plots
from .runs import ARMS, run_name, run_one


def build_parser():
    description = sys.modules[__package__].__doc__.split("\n\n")[1]
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.over_smoothing", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", default="12,24", help="comma-separated block counts")
    p.add_argument("--drop-paths", default="0.1,0.5", help="comma-separated drop-path rates of the last block")
    p.add_argument("--arms", default="base,cos,cons,mix,all,reattention",
                   help=f"comma-separated subset of {','.join(ARMS)}")
    p.add_argument("--seeds", default="0,1,2", help="seeds; base and all run with each, the other arms with the first")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=3000, help="first N training images")
    p.add_argument("--test-subset", type=int, default=1000, help="first N test images")
    p.add_argument("--probe", type=int, default=200, help="test images for the final metrics")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--contrastive-variant", default="paper", choices=["paper", "code"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: build the table and figures from every stored run of this configuration "
                        "in --out/runs (e.g. after invocations with different arms per depth)")
    p.add_argument("--no-mlflow", action="store_true", help="do not track the runs in MLflow")
    p.add_argument("--tracking-uri", default=None)
    return show_defaults(p)


# what a stored run must share with this command to be reused
_RUN_KEYS = ("dim", "heads", "epochs", "subset", "test_subset", "probe", "batch_size", "lr", "contrastive_variant")


def _list(text, name, conv):
    try:
        vals = [conv(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: {name} must be a comma-separated list, got {text!r}") from None
    if not vals:
        raise SystemExit(f"error: {name} is empty")
    return vals


def plan(depths, drop_paths, arms, seeds):
    """(arm, depth, drop_path, seed) of every run: base and all with every seed, re-attention at the
    largest depth only."""
    out = []
    for d in depths:
        for dp in drop_paths:
            for arm in arms:
                if arm == "reattention" and d != max(depths):
                    continue
                for s in (seeds if arm in ("base", "all") else seeds[:1]):
                    out.append((arm, d, dp, s))
    return out


def _stored_runs(run_dir, key):
    """every stored run of configuration `key`, in plan order, and the depths, rates, seeds and arms they cover"""
    runs = []
    for name in sorted(os.listdir(run_dir)):
        if name.endswith(".json"):
            with open(os.path.join(run_dir, name)) as f:
                r = json.load(f)
            if r.get("config_key") == key:
                runs.append(r)
    if not runs:
        raise SystemExit(f"error: --report-only found no stored run of this configuration in {run_dir}")
    order = list(ARMS)
    runs.sort(key=lambda r: (r["depth"], r["drop_path"], order.index(r["arm"]), r["seed"]))
    return (runs, sorted({r["depth"] for r in runs}), sorted({r["drop_path"] for r in runs}),
            sorted({r["seed"] for r in runs}), [a for a in order if any(r["arm"] == a for r in runs)])


def main(argv=None):
    args = build_parser().parse_args(argv)
    depths = _list(args.depths, "--depths", int)
    drop_paths = _list(args.drop_paths, "--drop-paths", float)
    seeds = _list(args.seeds, "--seeds", int)
    arms = _list(args.arms, "--arms", str)
    if any(a not in ARMS for a in arms):
        raise SystemExit(f"error: --arms must be a subset of {','.join(ARMS)}, got {args.arms!r}")
    if min(depths) < 1 or not all(0 <= dp < 1 for dp in drop_paths) or args.epochs < 1 or args.batch_size < 2:
        raise SystemExit("error: depths >= 1, drop paths in [0, 1), epochs >= 1 and batch size >= 2 are required")
    if args.dim % args.heads:
        raise SystemExit(f"error: --heads {args.heads} must divide --dim {args.dim}")
    set_threads(args.threads)
    train_set, test_set = fashion_mnist_splits(args.data_root, args.subset, args.test_subset)
    run_dir = os.path.join(args.out, "runs")
    os.makedirs(run_dir, exist_ok=True)
    try:
        tracker = Tracker(not args.no_mlflow, args.out, args.tracking_uri, "over_smoothing")
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    probe = vitc.from_numpy(test_set.images[:args.probe])
    t0 = time.perf_counter()
    runs = []
    todo = [] if args.report_only else plan(depths, drop_paths, arms, seeds)
    if args.report_only:
        runs, depths, drop_paths, seeds, arms = _stored_runs(run_dir, {k: getattr(args, k) for k in _RUN_KEYS})
    print(f"over-smoothing experiment: {len(todo)} runs, {len(train_set)} train / {len(test_set)} test images, "
          f"{args.epochs} epochs, {vitc.get_num_threads()} threads", flush=True)
    for arm, d, dp, s in todo:
        name = run_name(arm, d, dp, s)
        path = os.path.join(run_dir, name + ".json")
        key = {k: getattr(args, k) for k in _RUN_KEYS}
        if os.path.exists(path):  # resumable: a finished run of the same configuration is kept
            with open(path) as f:
                old = json.load(f)
            if old.get("config_key") == key:
                runs.append(old)
                print(f"{name}: done before, kept", flush=True)
                continue
            print(f"{name}: stored run has another configuration, training again", flush=True)
        params = {"arm": arm, "depth": d, "drop_path": dp, "seed": s, "dim": args.dim, "epochs": args.epochs,
                  "subset": args.subset}
        r, run_id = tracker.run(name, params, lambda log: run_one(arm, d, dp, s, args, train_set, test_set, probe,
                                                                  log))
        r["mlflow_run_id"], r["config_key"] = run_id, key
        write_text_atomic(path, json.dumps(r, indent=1))
        runs.append(r)
        print(f"{name}: test acc {100 * r['test_accuracy']:.2f}%, last-block token similarity "
              f"{r['last_token_similarity']:.3f}", flush=True)
    res = {"command": "python -m vitc.experiments.over_smoothing " + " ".join(sys.argv[1:] if argv is None else argv),
           "config": vars(args), "depths": depths, "drop_paths": drop_paths, "seeds": seeds, "arms": arms,
           "test_images": len(test_set), "machine": machine_info(), "wall_time_s": time.perf_counter() - t0,
           "runs": runs}
    write_text_atomic(os.path.join(args.out, "results.json"), json.dumps(res, indent=1))
    write_text_atomic(os.path.join(args.out, "results.md"), markdown(res))
    plots(res, args.out)
    print(f"wrote {args.out}/results.json, results.md and figures ({res['wall_time_s']:.0f} s this invocation)")
    return res
