"""The command line: python -m vitc.experiments.vit_batchnorm fixed-lr | bayes-search | studies | report."""
import argparse
import json
import sys

from ..common import show_defaults
from .config import CORRECT_MODELS, DEFAULT_LRS, MODELS, OVERRIDABLE
from .report import report, studies_table
from .runs import run_bayes_search, run_fixed_lr

_DESCRIPTION = "Seed 004's experiments: ViT vs ViTBNFFN vs ViTBN on MNIST, on vitc and on PyTorch."


def build_parser():
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.vit_batchnorm", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s, out):
        s.add_argument("--backend", default="vitc", help="vitc, torch, or vitc,torch (both, same run)")
        s.add_argument("--dataset", default="auto", choices=["auto", "mnist", "fashion-mnist"],
                       help="auto: MNIST if present or downloadable, else Fashion-MNIST")
        s.add_argument("--data-root", default=None, help="folder with the IDX files of --dataset")
        s.add_argument("--no-download", action="store_true", help="never download MNIST")
        s.add_argument("--subset", type=int, default=None, help="first N training images only")
        s.add_argument("--test-subset", type=int, default=None, help="first N test images only")
        s.add_argument("--test-batch-size", type=int, default=5000)
        s.add_argument("--threads", type=int, default=None, help="compute threads of both backends")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--out", default=out, help="output folder (figures, table.md, results.json)")
        s.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
        s.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                       "sqlite:///OUT/mlflow.db)")
        s.add_argument("--model-overrides", default=None, help=f"JSON dict of model sizes ({', '.join(OVERRIDABLE)})")

    f = sub.add_parser("fixed-lr", help="experiment 1: models × fixed learning rates")
    f.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    f.add_argument("--lrs", default=",".join(f"{x:g}" for x in DEFAULT_LRS), help="comma-separated learning rates")
    f.add_argument("--epochs", type=int, default=30)
    f.add_argument("--batch-size", type=int, default=100)
    f.add_argument("--resume", action="store_true", help="keep OUT/results.json's finished runs (same settings) "
                   "and run only the missing backend × model × rate cells")
    f.add_argument("--pause-file", default=None, help="while this file exists the run waits before its next batch, "
                   "the wait left out of the epoch's times (lets a benchmark borrow the machine)")
    common(f, "results/vit_batchnorm")
    b = sub.add_parser("bayes-search", help="experiment 2: Optuna search per model, then the optimised models")
    b.add_argument("--models", default=",".join(CORRECT_MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    b.add_argument("--trials", type=int, default=20)
    b.add_argument("--trial-epochs", type=int, default=3, help="epochs per trial (the authors' script: 3)")
    b.add_argument("--epochs", type=int, default=30, help="epochs of the final runs with the best parameters (0: none)")
    b.add_argument("--sampler", default="tpe", choices=["tpe", "gp"], help="Optuna TPE, or its Gaussian-process sampler")
    b.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/optuna.db); share "
                   "one RDB URL to run workers on several machines")
    b.add_argument("--study-prefix", default="vit_batchnorm")
    b.add_argument("--worker-id", type=int, default=0, help="a distinct number for each worker sharing one "
                   "--storage (offsets the sampler's seed, so workers do not draw the same parameters)")
    common(b, "results/vit_batchnorm_bayes")
    t = sub.add_parser("studies", help="experiment 2's shared studies as the database holds them: a table, and "
                       "every trial into OUT/studies.json")
    t.add_argument("--storage", required=True, help="the Optuna storage URL the workers shared")
    t.add_argument("--study-prefix", default="vit_batchnorm")
    t.add_argument("--out", default=None, help="folder for studies.json (default: print the table only)")
    r = sub.add_parser("report", help="rebuild experiment 1's figures and table from OUT/results.json")
    r.add_argument("--out", default="results/vit_batchnorm")
    return show_defaults(p)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "studies":
        try:
            print(studies_table(args.storage, args.study_prefix, args.out))
        except (ValueError, RuntimeError) as e:
            raise SystemExit(f"error: {e}")
        return 0
    if args.cmd == "report":
        try:
            report(args.out)
        except ValueError as e:
            raise SystemExit(f"error: {e}")
        return 0
    command = "python -m vitc.experiments.vit_batchnorm " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        overrides = json.loads(args.model_overrides) if args.model_overrides else None
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError("--model-overrides must be a JSON object")
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --model-overrides is not valid JSON: {e}")
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    kw = dict(backend=args.backend, dataset=args.dataset, data_root=args.data_root, download=not args.no_download,
              subset=args.subset, test_subset=args.test_subset, test_batch_size=args.test_batch_size,
              threads=args.threads, seed=args.seed, out=args.out, mlflow=not args.no_mlflow,
              tracking_uri=args.tracking_uri, overrides=overrides, command=command, models=args.models,
              epochs=args.epochs)
    try:
        if args.cmd == "fixed-lr":
            run_fixed_lr(lrs=args.lrs, batch_size=args.batch_size, resume=args.resume, pause_file=args.pause_file, **kw)
        else:
            run_bayes_search(trials=args.trials, trial_epochs=args.trial_epochs, sampler=args.sampler,
                             storage=args.storage, study_prefix=args.study_prefix, worker_id=args.worker_id, **kw)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    return 0

