"""python -m vitc.experiments.deit: seed 001's comparison, DeiT with and without distillation from a
convnet teacher, on Fashion-MNIST (or MNIST).

1. the teacher: ``resnet_mnist`` (vitc Conv2d/BatchNorm2d), trained here (random crop + flip,
   AdamW, cosine) or loaded with ``--teacher CKPT`` (a safetensors state dict, as written here);
2. the same small transformer three times, with DeiT's recipe (SPEC §3.3): AdamW (wd 0.05, none on
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
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import vitc
from vitc import optim
from vitc.data import (DataLoader, FashionMNIST, MNIST, Mixup, RandAugment, RandomCrop, RandomErasing,
                       RandomHorizontalFlip, RepeatAugSampler)
from vitc.io import atomic_write, load_safetensors, save_safetensors
from vitc.losses import DistillationLoss, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from vitc.models import DeiT, create_model
from vitc.models.deit import fuse_heads

__all__ = ["main", "build_parser", "param_groups_weight_decay", "RecipeTransform", "evaluate_heads"]

MEAN_STD = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}
NO_DECAY = ("pos_embedding", "cls_token", "dist_token")
RUNS = ("none", "soft", "hard")


def param_groups_weight_decay(model, weight_decay, no_decay_names=NO_DECAY):
    """Two groups as timm's ``param_groups_weight_decay`` (SPEC §3.9): decay for tensors with ndim ≥ 2
    whose name is not in no_decay_names; biases, norm parameters, tokens, position embedding get 0."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.split(".")[-1] in no_decay_names else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


class RecipeTransform:
    """The training batch pipeline, ``(x, y, rng) -> (x, y)`` for DataLoader(transform=):
    [crop + flip] -> [RandAugment (on [0, 1] pixels)] -> normalize -> [RandomErasing] -> [Mixup/CutMix].
    Labels become soft (B, K) float32 targets when mixing is on."""

    def __init__(self, mean, std, crop=None, flip=None, randaug=None, erasing=None, mixup=None):
        self.mean, self.std = np.float32(mean), np.float32(std)
        self.crop, self.flip, self.randaug, self.erasing, self.mixup = crop, flip, randaug, erasing, mixup

    def __call__(self, x, y, rng):
        for t in (self.crop, self.flip, self.randaug):
            if t is not None:
                x = t(x, rng)
        x = ((x - self.mean) / self.std).astype(np.float32)
        if self.erasing is not None:
            x = self.erasing(x, rng)
        if self.mixup is not None:
            x, y = self.mixup(x, y, rng)
        return x, y

    def __repr__(self):
        parts = [repr(t) for t in (self.crop, self.flip, self.randaug, self.erasing, self.mixup) if t is not None]
        return f"RecipeTransform(normalize({self.mean}, {self.std}), {', '.join(parts)})"


def evaluate_heads(model, loader):
    """Test accuracy of each head: {'cls'} for a plain model; cls, dist, avg, sum_softmax for a DeiT."""
    was_training = model.training
    model.eval()
    correct, n = {}, 0
    with vitc.no_grad():
        for x, y in loader:
            y = y.numpy() if isinstance(y, vitc.Tensor) else np.asarray(y)
            if isinstance(model, DeiT):
                f = model.forward_features(x)
                zc, zd = model.mlp_head(f[:, 0]), model.dist_head(f[:, 1])
                preds = {h: fuse_heads(zc, zd, h) for h in ("cls", "dist", "avg", "sum_softmax")}
            else:
                preds = {"cls": model(x)}
            for h, z in preds.items():
                correct[h] = correct.get(h, 0) + int((z.numpy().argmax(1) == y).sum())
            n += len(y)
    model.train(was_training)
    return {h: c / n for h, c in correct.items()}


def _train(model, loader, test_loader, criterion, epochs, lr, weight_decay, warmup_epochs, min_lr, log, name,
           progress):
    """AdamW + warmup/cosine stepped per update; returns the per-epoch history."""
    opt = optim.AdamW(param_groups_weight_decay(model, weight_decay), lr=lr, weight_decay=weight_decay)
    steps = len(loader)
    sched = optim.lr_scheduler.CosineLRScheduler(opt, t_initial=max(1, epochs * steps), lr_min=min_lr,
                                                 warmup_t=warmup_epochs * steps,
                                                 warmup_lr_init=1e-6 if warmup_epochs else 0.0, t_in_epochs=False)
    hist = {"epoch": [], "train_loss": [], "train_time": [], "test_accuracy": [], "lr_end": []}
    updates = 0
    for epoch in range(epochs):
        model.train()
        t0, total, batches = time.perf_counter(), 0.0, 0
        it = loader
        if progress:
            try:
                from tqdm.auto import tqdm
                it = tqdm(loader, total=steps, desc=f"{name} {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
            except ImportError:
                pass
        for x, y in it:
            out = model(x)
            loss = criterion(x, out, y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            updates += 1
            sched.step_update(updates)
            total += loss.item()
            batches += 1
        train_time = time.perf_counter() - t0
        acc = evaluate_heads(model, test_loader)
        for k, v in (("epoch", epoch + 1), ("train_loss", total / max(1, batches)), ("train_time", train_time),
                     ("test_accuracy", acc), ("lr_end", opt.param_groups[0]["lr"])):
            hist[k].append(v)
        accs = ", ".join(f"{h} {100 * a:.2f}%" for h, a in acc.items())
        log(f"[{name}] epoch {epoch + 1}/{epochs}: train loss {total / max(1, batches):.4f}, test {accs}, "
            f"train {train_time:.1f} s")
    return hist


def _teacher_criterion(smoothing):
    base = LabelSmoothingCrossEntropy(smoothing)
    return lambda x, out, y: base(out, y)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.deit", description=__doc__.split("\n\n")[0])
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
    return p


def _dataset(args, train):
    kw = {"train": train, "subset": args.subset if train else args.test_subset}
    if args.data_root:
        kw["root"] = args.data_root
    return (FashionMNIST if args.dataset == "fashion-mnist" else MNIST)(**kw)


def _table(rows):
    head = "| run | model | params | distillation | test acc cls | dist | avg (default) | sum_softmax | train s |\n"
    head += "|---|---|---|---|---|---|---|---|---|\n"
    fmt = lambda v: "—" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for r in rows:
        a = r["test_accuracy"]
        head += (f"| {r['run']} | {r['model']} | {r['params']:,} | {r['distillation']} | {fmt(a.get('cls'))} | "
                 f"{fmt(a.get('dist'))} | {fmt(a.get('avg'))} | {fmt(a.get('sum_softmax'))} | "
                 f"{r['train_time']:.0f} |\n")
    return head


def _write_text(path, text):
    atomic_write(path, lambda p: open(p, "w").write(text))


def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad or not runs:
        raise SystemExit(f"error: --runs takes a comma-separated subset of {','.join(RUNS)}, got {args.runs!r}")
    if args.epochs < 1 or args.batch_size < 2 or args.batch_size % 2:
        raise SystemExit("error: --epochs must be >= 1 and --batch-size even (Mixup pairs b with B-1-b)")
    if args.threads:
        vitc.set_num_threads(args.threads)
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
    result = {"args": vars(args), "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                              "cpu_count": os.cpu_count(), "threads": vitc.get_num_threads(),
                                              "python": sys.version.split()[0]},
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
        t_hist = _train(teacher, loader, test_loader, _teacher_criterion(0.0), args.teacher_epochs, args.teacher_lr,
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
        hist = _train(model, loader, test_loader, criterion, args.epochs, args.lr, args.weight_decay,
                      args.warmup_epochs, args.min_lr, log, run, progress)
        desc = {"none": "none", "soft": f"soft τ={args.tau:g} λ={args.alpha_soft:g}",
                "hard": f"hard (weight {args.alpha_hard:g})"}[run]
        result["rows"].append({"run": run, "model": name, "params": model.num_parameters(), "distillation": desc,
                               "test_accuracy": hist["test_accuracy"][-1], "train_time": sum(hist["train_time"])})
        result["histories"][run] = hist
    result["wall_time"] = time.perf_counter() - t_all

    table = _table(result["rows"])
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
    _write_text(os.path.join(args.out, "results.md"), md)
    _write_text(os.path.join(args.out, "results.json"), json.dumps(result, indent=1))
    log(f"written: {os.path.join(args.out, 'results.md')}, results.json")
    return result


if __name__ == "__main__":
    main()
