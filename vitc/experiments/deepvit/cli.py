"""The command line of python -m vitc.experiments.deepvit."""
import argparse
import json
import os
import platform
import sys
import time

import vitc
from vitc.io import write_text_atomic

from ..common import fashion_mnist_splits, set_threads, show_defaults
from .report import markdown, plots, run_note
from .runs import VARIANTS, run_one


def build_parser():
    description = sys.modules[__package__].__doc__.split("\n\n")[1]  # the package docstring's 2nd paragraph
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.deepvit", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", default="8,16,24,32", help="comma-separated block counts")
    p.add_argument("--variants", default="mhsa,reattention", help="comma-separated: mhsa, reattention")
    p.add_argument("--reattn-norm", default="batch", choices=["batch", "layer", "none"])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim-head", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="first N training images (default: all 60000)")
    p.add_argument("--test-subset", type=int, default=None, help="first N test images (default: all 10000)")
    p.add_argument("--probe", type=int, default=256, help="test images for the collapse diagnostics")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threshold", type=float, default=0.9, help="similar-block threshold in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--progress", action="store_true", help="progress bars")
    return show_defaults(p)


def _ints(text, name):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: {name} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise SystemExit(f"error: {name} must list positive integers, got {text!r}")
    return vals


def main(argv=None):
    args = build_parser().parse_args(argv)
    depths = _ints(args.depths, "--depths")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        raise SystemExit(f"error: --variants must be a comma-separated subset of {VARIANTS}, got {args.variants!r}")
    if args.epochs < 1 or args.batch_size < 1 or args.probe < 1:
        raise SystemExit("error: --epochs, --batch-size and --probe must be >= 1")
    if not 0.0 <= args.threshold <= 1.0:
        raise SystemExit(f"error: --threshold must be in [0, 1], got {args.threshold}")
    set_threads(args.threads)
    train_set, test_set = fashion_mnist_splits(args.data_root, args.subset, args.test_subset)
    os.makedirs(args.out, exist_ok=True)
    probe = test_set.images[:args.probe]
    t0 = time.perf_counter()
    runs = []
    print(f"DeepViT experiment: depths {depths}, variants {variants}, {len(train_set)} train / {len(test_set)} test "
          f"images, {args.epochs} epochs, {vitc.get_num_threads()} threads", flush=True)
    for d in depths:
        for v in variants:
            runs.append(run_one(v, d, args, train_set, test_set, probe))
            r = runs[-1]
            print(f"{v:11s} depth {d:2d}: test acc {100 * r['test_accuracy']:.2f}%, similar blocks {r['n_similar']}"
                  f"/{d - 1}, mean adjacent similarity {r['mean_adjacent_similarity']:.3f}", flush=True)
    res = {"command": "python -m vitc.experiments.deepvit " + " ".join(sys.argv[1:] if argv is None else argv),
           "config": vars(args), "depths": depths, "variants": variants, "test_images": len(test_set),
           "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
           "threads": vitc.get_num_threads(), "wall_time_s": time.perf_counter() - t0, "runs": runs}
    write_text_atomic(os.path.join(args.out, "results.json"), json.dumps(res, indent=1))
    write_text_atomic(os.path.join(args.out, "results.md"), markdown(res))
    plots(runs, variants, depths, args.out, run_note(res["config"], len(train_set), len(test_set)))
    print(f"wrote {args.out}/results.json, results.md and plots ({res['wall_time_s']:.0f} s)")
    return res
