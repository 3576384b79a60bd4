"""The command line of python -m vitc.experiments.scaling: one subcommand per experiment, 'all' for the
five in turn, 'report' to redraw the tables and figures from OUT/<experiment>/results.json."""
import argparse
import json
import os
import sys
import time

import vitc
from vitc.io import write_text_atomic

from ..common import Tracker, machine_info, set_threads, show_defaults
from . import sweeps
from .runs import load_data, parse_size

EXPERIMENTS = {"power-law": sweeps.power_law, "heads": sweeps.heads, "weight-decay": sweeps.weight_decay,
               "optimizers": sweeps.optimizers, "rsqrt-vs-linear": sweeps.rsqrt_vs_linear}
SIZES = "8x1x16x2,16x1x32x2,24x2x48x2,32x2x64x2,48x3x96x4,64x3x128x4,96x4x192x4"


def _numbers(text, kind, minimum):
    """Comma-separated numbers of type ``kind``, each >= ``minimum`` (an argparse type)."""
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    if not vals or min(vals) < minimum:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s >= {minimum}, got {text!r}")
    return vals


def _floats(text):
    return _numbers(text, float, 0)


def _ints(text):
    return _numbers(text, int, 1)


def _sizes(text):
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    try:
        for s in sizes:
            parse_size(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one model size")
    return sizes


def _size(text):
    return _sizes(text)[0]


def _common(p):
    a = p.add_argument
    a("--out", default="scaling-results", help="output directory (one folder per experiment)")
    a("--data-root", default=None, help="Fashion-MNIST folder (default: Debian's)")
    a("--threads", type=int, default=None)
    a("--no-mlflow", action="store_true", help="no MLflow tracking (default: OUT/mlflow.db)")
    a("--tracking-uri", default=None)
    a("--keep-checkpoints", action="store_true", help="keep the runs' checkpoints after their points are saved")
    a("--upstream-classes", type=int, default=5, help="classes 0..K-1 train the model; K..9 are held out")
    a("--chunk", type=int, default=768, help="fresh images per epoch (a checkpoint per epoch)")
    a("--batch-size", type=int, default=32)
    a("--patch", type=int, default=7, choices=[4, 7, 14, 28])
    a("--lr", type=float, default=5e-3)
    a("--warmup", type=int, default=24, help="warmup updates")
    a("--timescale", type=float, default=96.0, help="rsqrt timescale in updates")
    a("--cooldown", type=float, default=0.25, help="cooldown as a fraction of each budget")
    a("--wd-head", type=float, default=3.0, help="head kernel decay (× lr per update)")
    a("--wd-body", type=float, default=0.03, help="other kernels' decay (× lr per update)")
    a("--test-subset", type=int, default=2000, help="test images of the upstream (and of the held-out) classes")
    a("--shot-pool", type=int, default=50, help="training images per held-out class the shots are drawn from")
    a("--shots", type=int, default=10)
    a("--fewshot-seeds", type=int, default=3)


def build_parser():
    description = sys.modules[__package__].__doc__.split("\n\n")[0]
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.scaling", description=description)
    sub = p.add_subparsers(dest="command", required=True)
    subs = {}
    for name in list(EXPERIMENTS) + ["all"]:
        s = sub.add_parser(name, help=(EXPERIMENTS[name].__doc__ or "").split("\n")[0] if name in EXPERIMENTS
                           else "the five experiments in turn, each with its defaults")
        _common(s)
        subs[name] = s
    for name in ("power-law", "all"):
        subs[name].add_argument("--sizes", type=_sizes, default=_sizes(SIZES), help="WxDxMxH,...")
        subs[name].add_argument("--budgets", type=_ints, default=[2, 4, 8, 16, 32],
                                help="training lengths in epochs (cooldown branches of one run)")
    for name, size, epochs in (("heads", "64x3x128x4", 8), ("weight-decay", "32x2x64x2", 8),
                               ("optimizers", "64x3x128x4", 8), ("rsqrt-vs-linear", "32x2x64x2", None)):
        subs[name].add_argument("--size", type=_size, default=size)
        if epochs:
            subs[name].add_argument("--epochs", type=int, default=epochs)
    subs["heads"].add_argument("--seeds", type=int, default=2)
    subs["weight-decay"].add_argument("--head-decays", type=_floats, default=[0.03, 0.3, 3.0, 30.0])
    subs["weight-decay"].add_argument("--body-decays", type=_floats, default=[0.03, 0.3, 3.0, 30.0])
    subs["rsqrt-vs-linear"].add_argument("--budgets", type=_ints, default=[2, 4, 8, 16])
    r = sub.add_parser("report", help="redraw tables and figures from OUT/<experiment>/results.json")
    r.add_argument("--out", default="scaling-results")
    r.add_argument("--experiments", default=",".join(EXPERIMENTS))
    r.add_argument("--bootstrap", type=int, default=1000)
    for s in subs.values():
        s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the power-law fit")
    return show_defaults(p)


_ALL_DEFAULTS = {"heads": {"size": "64x3x128x4", "epochs": 8, "seeds": 2},
                 "weight-decay": {"size": "32x2x64x2", "epochs": 8, "head_decays": [0.03, 0.3, 3.0, 30.0],
                                  "body_decays": [0.03, 0.3, 3.0, 30.0]},
                 "optimizers": {"size": "64x3x128x4", "epochs": 8},
                 "rsqrt-vs-linear": {"size": "32x2x64x2", "budgets": [2, 4, 8, 16]}}


def _check(args):
    if args.upstream_classes < 2 or args.upstream_classes > 8:
        raise SystemExit("error: --upstream-classes must be in [2, 8] (both sides need 2 classes or more)")
    if args.batch_size < 1 or args.chunk < args.batch_size:
        raise SystemExit("error: --chunk must be >= --batch-size >= 1")
    if args.shots < 1 or args.shot_pool < args.shots or args.fewshot_seeds < 1:
        raise SystemExit("error: need --shot-pool >= --shots >= 1 and --fewshot-seeds >= 1")
    if not 0 < args.cooldown <= 0.5:
        raise SystemExit("error: --cooldown must be a fraction in (0, 0.5]")
    if getattr(args, "epochs", 1) < 1 or getattr(args, "seeds", 1) < 1:
        raise SystemExit("error: --epochs and --seeds must be >= 1")
    args.chunk -= args.chunk % args.batch_size  # whole batches per epoch
    spe = args.chunk // args.batch_size
    budgets = getattr(args, "budgets", None) or [getattr(args, "epochs", 1)]
    if args.warmup >= min(budgets) * spe * (1 - args.cooldown):
        raise SystemExit(f"error: --warmup {args.warmup} updates does not fit before the cooldown of the shortest "
                         f"budget ({min(budgets)} epochs of {spe} updates)")


def run_experiment(name, args, data, tracker, command=None):
    """Run one experiment, write OUT/<name>/results.json and its report; returns the results."""
    t0 = time.perf_counter()
    print(f"== {name}", flush=True)
    res = EXPERIMENTS[name](args, data, tracker)
    cfg = {k: v for k, v in vars(args).items() if k not in ("command",)}
    res.update(experiment=name, config=cfg, command=command or f"python -m vitc.experiments.scaling {name}",
               machine=dict(machine_info(), threads=vitc.get_num_threads()),
               wall_time_s=time.perf_counter() - t0, upstream_classes=list(data.upstream),
               heldout_classes=list(data.heldout), train_pool=len(data.train), test_images=len(data.test),
               fewshot_test_images=len(data.few_y))
    d = os.path.join(args.out, name)
    os.makedirs(d, exist_ok=True)
    write_text_atomic(os.path.join(d, "results.json"), json.dumps(res, indent=1))
    try:  # the results are saved: a failing figure must not lose the run (redraw with 'report')
        from .report import write_report
        write_report(name, res, d, bootstrap=args.bootstrap)
    except Exception as e:  # noqa: BLE001
        print(f"warning: the report of {name} failed ({type(e).__name__}: {e}); results.json is saved, "
              f"redraw with: python -m vitc.experiments.scaling report --out {args.out}", flush=True)
    print(f"wrote {d}/ ({res['wall_time_s']:.0f} s)", flush=True)
    return res


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "report":
        from .report import write_report
        names = [n.strip() for n in args.experiments.split(",") if n.strip()]
        for n in names:
            if n not in EXPERIMENTS:
                raise SystemExit(f"error: unknown experiment {n!r}; one of {sorted(EXPERIMENTS)}")
            path = os.path.join(args.out, n, "results.json")
            if not os.path.exists(path):
                raise SystemExit(f"error: {path} does not exist (run the experiment first)")
            with open(path) as f:
                write_report(n, json.load(f), os.path.dirname(path), bootstrap=args.bootstrap)
            print(f"redrew {os.path.dirname(path)}/")
        return None
    _check(args)
    command = "python -m vitc.experiments.scaling " + " ".join(sys.argv[1:] if argv is None else argv)
    set_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    data = load_data(args)
    try:
        tracker = Tracker(not args.no_mlflow, args.out, args.tracking_uri, "scaling")
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if args.command != "all":
        return run_experiment(args.command, args, data, tracker, command)
    out, t0 = {}, time.perf_counter()
    for name in EXPERIMENTS:
        a = argparse.Namespace(**vars(args))
        for k, v in _ALL_DEFAULTS.get(name, {}).items():
            setattr(a, k, v)
        out[name] = run_experiment(name, a, data, tracker, command)
    print(f"all five experiments: {time.perf_counter() - t0:.0f} s", flush=True)
    return out
