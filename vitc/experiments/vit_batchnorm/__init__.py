"""Seed 004's experiments: ViT vs ViTBNFFN vs ViTBN on MNIST (the ViT+BatchNorm
article, code anindyahepth/BatchNorm_in_Transformers_CV), on vitc and on PyTorch.

    python -m vitc.experiments.vit_batchnorm fixed-lr [--epochs 30] [--subset N] [--backend vitc,torch] ...
    python -m vitc.experiments.vit_batchnorm bayes-search [--trials 20] [--sampler tpe|gp] [--storage URL] ...
    python -m vitc.experiments.vit_batchnorm report --out DIR   (figures + table again from DIR/results.json)

fixed-lr (experiment 1): every model × learning rate (default 5e-4, 5e-3, 1e-2), Adam, train batch
100 shuffled, test batch 5000, constant lr, cross-entropy. Per epoch: train time (the training loop's
wall time, data loading included), test time, train loss (the *sum* of the batch-mean losses, as
the article's COST) and test accuracy. Models: ViT, ViTBNFFN, ViTBN and the article's versions of the
BN models (``-article``: only the first of the 6 blocks runs, the authors' bug until 2024-08-27), so
the table separates BatchNorm's effect from the bug's. Unlike the article's script, the test pass
runs under no_grad (both backends). Both backends start from the same initial weights and see the
same batches; ``--backend vitc,torch`` runs them one after the other in one process (vitc first,
before PyTorch computes anything; for the cleanest timings run one backend per process).

bayes-search (experiment 2): an Optuna study per model maximising test accuracy after
``--trial-epochs`` (3) epochs; lr log-uniform in [1e-5, 1e-3] (ViT) or [1e-5, 1e-2] (BN models),
batch size in [20, 120]; then each model retrained with its best parameters for ``--epochs`` and
compared as in experiment 1 (the article's tables 2 and 3).

Outputs in ``--out``: results.json, the article's four-panel figure per learning rate, the
train-time-versus-learning-rate figure, table.md (r_t, r_v, g_t, g_v; the article's ratios), all written
atomically; one MLflow run per backend × model × rate (``MLFLOW_TRACKING_URI`` or ``--tracking-uri``,
default a SQLite store ``OUT/mlflow.db``).
"""
import time  # noqa: F401  (tests replace time.sleep / time.perf_counter through this name)

from .cli import build_parser, main
from .config import BATCH_RANGE, CORRECT_MODELS, LR_RANGE, MODELS, OVERRIDABLE, SEED_CFG, load_data
from .report import (convergence_figure, four_panel_figure, ratio_rows, ratio_table, report,
                     train_time_vs_lr_figure, write_report)
from .runs import _build, run_bayes_search, run_fixed_lr, train_and_test

__all__ = ["MODELS", "run_fixed_lr", "run_bayes_search", "report", "ratio_rows", "ratio_table", "load_data", "main"]
