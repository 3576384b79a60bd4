"""python -m vitc.experiments.scaling: seed 003's measurements (Zhai et al., "Scaling Vision
Transformers", CVPR 2022, arXiv 2106.04560) at the scale of a CPU, on Fashion-MNIST split into
upstream classes (training) and held-out classes (10-shot transfer).

Subcommands (each writes OUT/<name>/results.json, results.md and figures, atomically; every finished
run or cooldown branch is cached under OUT/<name>/points/ so an interrupted command resumes; MLflow
tracking into OUT/mlflow.db unless --no-mlflow):
  power-law        one rsqrt run per model size with cooldown branches (vitc.train.branch_cooldowns),
                   compute in FLOPs (vitc.eval.vit_train_flops), the saturating power law
                   E = a·(C + d)^(−b) + c (paper §2, Eq. 1) fitted to the Pareto frontier with
                   bootstrap intervals (vitc.eval.scaling_law)
  heads            class token vs global average pooling vs MAP pooling (§3.2)
  weight-decay     head × body weight-decay grid, upstream vs few-shot (§3.1)
  optimizers       Adam f32 / bf16 first moment / bf16 second moment / modified Adafactor (§3.4)
  rsqrt-vs-linear  one rsqrt run with cooldown branches vs separate linear-decay runs (§3.5)
  all              the five in turn; report redraws from the saved results.

Example (the committed reduced run, docs/results/scaling/):
    python -m vitc.experiments.scaling all --threads 1 --out /work/runs/scaling
"""
from .cli import EXPERIMENTS, build_parser, main
from .runs import FreshChunks, make_model, parse_size

__all__ = ["main", "build_parser", "EXPERIMENTS", "FreshChunks", "make_model", "parse_size"]
