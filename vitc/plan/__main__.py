"""python -m vitc.plan: print the planner's breakdown for a model, batch and optimizer, and whether
it fits in the memory available (MemAvailable, or --memory-cap). Exit status 0 when it fits, 1 when not."""
import argparse
import json
import sys

from .memory import OPTIMIZERS
from .planner import available_memory, format_bytes, parse_bytes, plan


def build_parser():
    p = argparse.ArgumentParser(prog="python -m vitc.plan", description=__doc__.split("\n")[0][len("python -m vitc.plan: "):])
    p.add_argument("--model", required=True, help="a registered model name, e.g. vit_scaling_B_16")
    p.add_argument("--model-kwargs", default=None, help='JSON overrides, e.g. \'{"image_size": 112, "depth": 6}\'')
    p.add_argument("--batch", type=int, required=True, help="images per step")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="the optimizer (default: adam)")
    p.add_argument("--threads", type=int, default=None, help="threads to time for (default: the current count)")
    p.add_argument("--memory-cap", default=None, help="e.g. 8GiB (default: MemAvailable of /proc/meminfo)")
    p.add_argument("--no-timing", action="store_true", help="memory only: no calibration")
    p.add_argument("--recalibrate", action="store_true", help="measure this machine's rates again")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        kwargs = json.loads(args.model_kwargs) if args.model_kwargs else None
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValueError("--model-kwargs must be a JSON object")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        p = plan(args.model, args.batch, args.optimizer, threads=args.threads, model_kwargs=kwargs,
                 timing=not args.no_timing, recalibrate=args.recalibrate)
        cap = parse_bytes(args.memory_cap) if args.memory_cap else available_memory()
        print(p)
        if cap is None:
            print("memory available: unknown (no /proc/meminfo); pass --memory-cap")
            return 0
        fits = p.fits(cap)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    src = "--memory-cap" if args.memory_cap else "MemAvailable"
    print(f"{'FITS' if fits else 'DOES NOT FIT'} in {format_bytes(cap)} ({src}): predicted peak "
          f"{format_bytes(p.peak_bytes)}")
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
