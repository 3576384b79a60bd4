"""The command line of python -m vitc.experiments.deit: the teacher, then the students, then the table."""
import argparse
import json
import os
import sys
import time

import vitc
from vitc.data import (DataLoader, FashionMNIST, MNIST, Mixup, RandAugment, RandomCrop, RandomErasing,
                       RandomHorizontalFlip, RecipeTransform, RepeatAugSampler)
from vitc.io import load_safetensors, save_safetensors, write_text_atomic
from vitc.losses import DistillationLoss, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from vitc.models import create_model

from ..common import machine_info, set_threads, show_defaults
from .report import table_markdown
from .runs import _teacher_criterion, evaluate_heads, train_model

MEAN_STD = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}
RUNS = ("none", "soft", "hard")


def build_parser():
    description = sys.modules[__package__].__doc__.split("\n\n")[0]  # the package docstring's first paragraph
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.deit", description=description)
    a = p.add_argument
    a("--dataset", default="fashion-mnist", choices=sorted(MEAN_STD))
    a("--data-root", default=None)
    a("--out", default="deit-results", help="directory for results.md, results.json and teacher.safetensors")
    a("--epochs", type=int, default=5, help="epochs of each student")
    a("--subset", type=int, default=None, help="first N training images only")
    a("--test-subset", type=int, default=None, help="first N test images only")
    a("--batch-size", type=int, default=128)
    a("--test-batch-size", type=int, default=1000)
    a("--runs", default="none,soft,hard", help="comma-separated subset of none,soft,hard")
    a("--model", default="deit_mnist_distilled", help="student with distillation token (soft, hard)")
    a("--baseline-model", default="deit_mnist", help="the same student without distillation token (none)")
    a("--lr", type=float, default=1e-3, help="student peak lr (DeiT: 5e-4·batch/512 for 300 epochs)")
    a("--min-lr", type=float, default=1e-5)
    a("--weight-decay", type=float, default=0.05)
    a("--warmup-epochs", type=int, default=1)
    a("--drop-path", type=float, default=0.1, help="stochastic depth rate of the last block (linear rule)")
    a("--smoothing", type=float, default=0.1)
    a("--tau", type=float, default=3.0)
    a("--alpha-soft", type=float, default=0.1, help="λ of soft distillation")
    a("--alpha-hard", type=float, default=0.5, help="weight of the hard-distillation term")
    a("--kl-reduction", default="element_mean", choices=["element_mean", "batchmean"])
    a("--mixup", type=float, default=0.8, help="Mixup α (0: off)")
    a("--cutmix", type=float, default=1.0, help="CutMix α (0: off)")
    a("--randaug", default="rand-m9-mstd0.5-inc1", help="timm RandAugment config, or 'none'")
    a("--reprob", type=float, default=0.25, help="Random Erasing probability (0: off)")
    a("--repeated-aug", type=int, default=3, help="repeats per image (1: off)")
    a("--no-flip", action="store_true", help="no horizontal flip / random crop")
    a("--teacher", default=None, help="load the teacher from this safetensors file instead of training it")
    a("--teacher-model", default="resnet_mnist")
    a("--teacher-epochs", type=int, default=3)
    a("--teacher-lr", type=float, default=2e-3)
    a("--threads", type=int, default=None)
    a("--seed", type=int, default=0)
    a("--no-progress", action="store_true")
    return show_defaults(p)


def _dataset(args, train):
    kw = {"train": train, "subset": args.subset if train else args.test_subset}
    if args.data_root:
        kw["root"] = args.data_root
    return (FashionMNIST if args.dataset == "fashion-mnist" else MNIST)(**kw)


def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad or not runs:
        raise SystemExit(f"error: --runs takes a comma-separated subset of {','.join(RUNS)}, got {args.runs!r}")
    if args.epochs < 1 or args.batch_size < 2 or args.batch_size % 2:
        raise SystemExit("error: --epochs must be >= 1 and --batch-size even (Mixup pairs b with B-1-b)")
    if args.threads:
        set_threads(args.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        train_set, test_set = _dataset(args, True), _dataset(args, False)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    mean, std = MEAN_STD[args.dataset]
    num_classes = len(train_set.classes)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size, transform=RecipeTransform(mean, std),
                             to_tensor=vitc.from_numpy)
    log(f"vitc DeiT experiment: {args.dataset}, {len(train_set)} train / {len(test_set)} test images, "
        f"{vitc.get_num_threads()} threads, seed {args.seed}")
    result = {"args": vars(args), "machine": dict(machine_info(), threads=vitc.get_num_threads()),
              "rows": [], "histories": {}}
    t_all = time.perf_counter()

    # 1. the teacher
    vitc.manual_seed(args.seed)
    teacher = create_model(args.teacher_model, num_classes=num_classes)
    if args.teacher:
        teacher.load_state_dict(load_safetensors(args.teacher))
        t_time, t_hist = 0.0, None
        log(f"teacher {args.teacher_model} loaded from {args.teacher}")
    else:
        aug = RecipeTransform(mean, std) if args.no_flip else \
            RecipeTransform(mean, std, RandomCrop(28, padding=2), RandomHorizontalFlip())
        loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=args.seed,
                            transform=aug, to_tensor=vitc.from_numpy)
        t_hist = train_model(teacher, loader, test_loader, _teacher_criterion(0.0), args.teacher_epochs, args.teacher_lr,
                        1e-4, 0, 1e-5, log, "teacher", progress)
        t_time = sum(t_hist["train_time"])
        save_safetensors(teacher.state_dict(), os.path.join(args.out, "teacher.safetensors"),
                         metadata={"model": args.teacher_model, "dataset": args.dataset})
    teacher.eval()
    acc = evaluate_heads(teacher, test_loader)
    log(f"teacher {args.teacher_model}: test accuracy {100 * acc['cls']:.2f}%")
    result["rows"].append({"run": "teacher", "model": args.teacher_model, "params": teacher.num_parameters(),
                           "distillation": "—", "test_accuracy": acc, "train_time": t_time})
    result["histories"]["teacher"] = t_hist

    # 2. the students
    mixing = args.mixup > 0 or args.cutmix > 0
    for run in runs:
        vitc.manual_seed(args.seed + 1)  # every student starts from the same draws
        name = args.baseline_model if run == "none" else args.model
        model = create_model(name, num_classes=num_classes, drop_path=args.drop_path)
        mixup = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, label_smoothing=args.smoothing,
                      num_classes=num_classes) if mixing else None
        randaug = None if args.randaug == "none" else RandAugment(args.randaug, fill=int(round(255 * mean)))
        erasing = RandomErasing(args.reprob) if args.reprob > 0 else None
        crop, flip = (None, None) if args.no_flip else (RandomCrop(28, padding=2), RandomHorizontalFlip())
        sampler = RepeatAugSampler(train_set, num_repeats=args.repeated_aug, seed=args.seed) \
            if args.repeated_aug > 1 else None
        loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                            drop_last=True, seed=args.seed, to_tensor=vitc.from_numpy,
                            transform=RecipeTransform(mean, std, crop, flip, randaug, erasing, mixup))
        base = SoftTargetCrossEntropy() if mixing else LabelSmoothingCrossEntropy(args.smoothing)
        alpha = {"none": None, "soft": args.alpha_soft, "hard": args.alpha_hard}[run]
        criterion = DistillationLoss(base, teacher if run != "none" else None, run, alpha, args.tau,
                                     args.kl_reduction)
        hist = train_model(model, loader, test_loader, criterion, args.epochs, args.lr, args.weight_decay,
                      args.warmup_epochs, args.min_lr, log, run, progress)
        desc = {"none": "none", "soft": f"soft τ={args.tau:g} λ={args.alpha_soft:g}",
                "hard": f"hard (weight {args.alpha_hard:g})"}[run]
        result["rows"].append({"run": run, "model": name, "params": model.num_parameters(), "distillation": desc,
                               "test_accuracy": hist["test_accuracy"][-1], "train_time": sum(hist["train_time"])})
        result["histories"][run] = hist
    result["wall_time"] = time.perf_counter() - t_all

    table = table_markdown(result["rows"])
    recipe = (f"students: {args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr:g} "
              f"wd {args.weight_decay:g}, "
              f"warmup {args.warmup_epochs} epoch(s) + cosine to {args.min_lr:g} (per update), label smoothing "
              f"{args.smoothing:g}, drop path {args.drop_path:g}, mixup {args.mixup:g}, cutmix {args.cutmix:g}, "
              f"randaug {args.randaug}, random erasing {args.reprob:g}, repeated aug ×{args.repeated_aug}, "
              f"flip/crop {'off' if args.no_flip else 'on'}; teacher: {args.teacher_model}"
              f"{' loaded from ' + args.teacher if args.teacher else f', {args.teacher_epochs} epochs'}")
    md = (f"# DeiT distillation on {args.dataset}\n\n{len(train_set)} train / {len(test_set)} test images; "
          f"{recipe}.\n\n{table}\nWall time {result['wall_time']:.0f} s, {vitc.get_num_threads()} threads.\n")
    log("\n" + table)
    write_text_atomic(os.path.join(args.out, "results.md"), md)
    write_text_atomic(os.path.join(args.out, "results.json"), json.dumps(result, indent=1))
    log(f"written: {os.path.join(args.out, 'results.md')}, results.json")
    return result
