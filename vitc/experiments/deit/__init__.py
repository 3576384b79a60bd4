"""python -m vitc.experiments.deit: seed 001's comparison, DeiT with and without distillation from a
convnet teacher, on Fashion-MNIST (or MNIST).

1. the teacher: ``resnet_mnist`` (vitc Conv2d/BatchNorm2d), trained here (random crop + flip,
   AdamW, cosine) or loaded with ``--teacher CKPT`` (a safetensors state dict, as written here);
2. the same small transformer three times, with DeiT's recipe (arXiv 2012.12877, Table 9): AdamW (wd 0.05, none on
   biases, norms, tokens and position embedding), linear warmup + cosine, label smoothing 0.1,
   stochastic depth (linear rule), RandAugment rand-m9-mstd0.5-inc1, Random Erasing 0.25 (pixel),
   Mixup 0.8 / CutMix 1.0 (switch 0.5), repeated augmentation ×3 — each can be switched off:
   - none: ``deit_mnist`` (no distillation token), base loss only;
   - soft: ``deit_mnist_distilled``, (1−λ)·CE(z_cls, y) + λ·τ²·KL(teacher ‖ z_dist), τ 3, λ 0.1;
   - hard: ``deit_mnist_distilled``, ½·CE(z_cls, y) + ½·CE(z_dist, argmax teacher);
3. the test accuracy of every head (cls, dist, their averaged logits — the default — and the paper's
   sum of softmaxes), printed and written as ``results.md`` + ``results.json`` under ``--out``.

Reduced on purpose (a CPU, minutes): a few epochs, optionally a training subset, 28×28 inputs, no
RandomResizedCrop (a padded random crop instead), the schedule stepped per update rather than per
epoch (so a 1-epoch warmup is not one wasted epoch). See docs/results/deit/README.md.
"""
from vitc.data import RecipeTransform  # noqa: F401  (tests and notebooks import it from here)
from vitc.optim import param_groups_weight_decay  # noqa: F401

from .cli import MEAN_STD, RUNS, build_parser, main
from .runs import evaluate_heads, train_model

__all__ = ["main", "build_parser", "param_groups_weight_decay", "RecipeTransform", "evaluate_heads"]
