"""The command line of python -m vitc.experiments.token_labeling: teacher, label map, arms × seeds,
table and figures."""
import argparse
import json
import os
import sys
import time

import numpy as np

import vitc
from vitc import optim
from vitc.data import FashionMNIST
from vitc.data.relabel import dataset_checksum, generate_label_map, load_label_map
from vitc.io import load_safetensors, save_safetensors, write_text_atomic
from vitc.models import create_model

from ..common import Tracker, machine_info, set_threads, show_defaults
from .report import plot_arms, plot_curves, summarise, table_markdown
from .runs import ARMS, evaluate, train_arm

MEAN, STD = 0.2860, 0.3530
DESCRIPTIONS = {"plain": "conv stem, image label, CE", "cutmix": "plain + CutMix",
                "relabel": "class label = teacher map pooled in the crop, no aux head",
                "tl": "aux head, token labels, β 0.5", "tl_mixtoken": "tl + MixToken",
                "control": "aux head on the image label everywhere + MixToken",
                "linear": "linear patch embedding (no conv stem)", "skip": "conv stem + skip_lam 2"}


def build_parser():
    description = sys.modules[__package__].__doc__.split("\n\n")[0]
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.token_labeling", description=description)
    a = p.add_argument
    a("--data-root", default=None)
    a("--out", default="token-labeling-results")
    a("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    a("--seeds", type=int, default=3)
    a("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1 (split a run over processes)")
    a("--epochs", type=int, default=10)
    a("--subset", type=int, default=None, help="first N training images only")
    a("--test-subset", type=int, default=None)
    a("--batch-size", type=int, default=128)
    a("--model", default="lvvit_tiny_mnist")
    a("--lr", type=float, default=1e-3)
    a("--min-lr", type=float, default=1e-5)
    a("--weight-decay", type=float, default=0.05)
    a("--drop-path", type=float, default=0.0)
    a("--smoothing", type=float, default=0.1)
    a("--beta", type=float, default=0.5, help="token loss weight β (paper 0.5; official code 1.0)")
    a("--crop-scale", type=float, default=0.35, help="RandomResizedCrop's smallest area fraction")
    a("--legacy-box-order", action="store_true", help="the reference's swapped RoIAlign box order")
    a("--legacy-warp", action="store_true", help="the reference's half-cell-off label-map warp for --randaug's "
                                                 "geometric ops (default: the map follows the image exactly)")
    a("--randaug", default="none", help="timm RandAugment config for the students (its geometric ops warp the "
                                        "label map), e.g. rand-m9-mstd0.5-inc1; 'none' = off")
    a("--teacher", default=None, help="load the teacher state dict (safetensors) instead of training it")
    a("--teacher-model", default="resnet_mnist")
    a("--teacher-epochs", type=int, default=8)
    a("--teacher-lr", type=float, default=2e-3)
    a("--threads", type=int, default=None)
    a("--report-only", action="store_true", help="train nothing: tabulate the finished (arm, seed) runs in --out")
    a("--no-mlflow", action="store_true")
    a("--tracking-uri", default=None)
    return show_defaults(p)


def _load(args, train):
    kw = {"train": train, "subset": args.subset if train else args.test_subset}
    if args.data_root:
        kw["root"] = args.data_root
    ds = FashionMNIST(**kw)
    x = (np.asarray(ds.images, np.float32) - np.float32(MEAN)) / np.float32(STD)  # (N, 1, 28, 28)
    return np.ascontiguousarray(x, np.float32), np.asarray(ds.labels, np.int64), len(ds.classes)


def _train_teacher(args, x, y, x_te, y_te, k, log):
    """resnet_mnist with flips and padded random crops, AdamW + cosine per update."""
    vitc.manual_seed(1234)
    t = create_model(args.teacher_model, num_classes=k)
    opt = optim.AdamW(t.parameters(), lr=args.teacher_lr, weight_decay=1e-4)
    rng = np.random.default_rng(1234)
    steps = (len(x) // args.batch_size) * args.teacher_epochs
    sched = optim.lr_scheduler.CosineLRScheduler(opt, t_initial=steps, lr_min=1e-5, t_in_epochs=False)
    u = 0
    for epoch in range(args.teacher_epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x) - args.batch_size + 1, args.batch_size):
            rows = order[s:s + args.batch_size]
            xb = x[rows]
            flip = rng.uniform(size=len(rows)) < 0.5
            xb = np.where(flip[:, None, None, None], xb[..., ::-1], xb)
            pad = np.pad(xb, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-MEAN / STD)
            i, j = rng.integers(0, 5, 2)
            xb = np.ascontiguousarray(pad[:, :, i:i + 28, j:j + 28])
            loss = vitc.cross_entropy(t(vitc.from_numpy(xb)), vitc.from_numpy(y[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            u += 1
            sched.step_update(u)
        log(f"[teacher] epoch {epoch + 1}/{args.teacher_epochs}: test {100 * evaluate(t, x_te, y_te)['cls']:.2f}%")
    return t


def _run_config(args, n_train, n_test, checksum):
    """What a saved (arm, seed) result depends on; a rerun reuses it only when all of it is unchanged."""
    keys = ("epochs", "batch_size", "model", "lr", "min_lr", "weight_decay", "drop_path", "smoothing", "beta",
            "crop_scale", "legacy_box_order", "randaug", "legacy_warp")
    return dict({k: getattr(args, k) for k in keys}, n_train=n_train, n_test=n_test, data=checksum[:16])


def main(argv=None):
    args = build_parser().parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        raise SystemExit(f"error: --arms takes a comma-separated subset of {','.join(ARMS)}, got {args.arms!r}")
    if args.seeds < 1 or args.first_seed < 0 or args.epochs < 1 or args.batch_size < 2 or args.beta < 0:
        raise SystemExit("error: --seeds and --epochs must be >= 1, --first-seed >= 0, --batch-size >= 2 and "
                         "--beta >= 0")
    set_threads(args.threads)
    args.mean_std = (MEAN, STD)
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        x_tr, y_tr, k = _load(args, True)
        x_te, y_te, _ = _load(args, False)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    t_all = time.perf_counter()
    log(f"vitc token-labeling experiment: Fashion-MNIST {len(x_tr)} train / {len(x_te)} test, "
        f"{vitc.get_num_threads()} threads, arms {arms}, {args.seeds} seeds, {args.epochs} epochs")

    # 1. teacher (saved, so a rerun reuses it)
    t_path = args.teacher or os.path.join(args.out, "teacher.safetensors")
    teacher = create_model(args.teacher_model, num_classes=k)
    if os.path.exists(t_path):
        teacher.load_state_dict(load_safetensors(t_path))
        log(f"teacher loaded from {t_path}")
    else:
        teacher = _train_teacher(args, x_tr, y_tr, x_te, y_te, k, log)
        save_safetensors(teacher.state_dict(), t_path, metadata={"model": args.teacher_model})
    teacher_acc = evaluate(teacher, x_te, y_te)["cls"]
    log(f"teacher {args.teacher_model}: test accuracy {100 * teacher_acc:.2f}%")

    # 2. label map for exactly these training images (the checksum refuses a stale one)
    checksum = dataset_checksum(x_tr, y_tr)
    m_path = os.path.join(args.out, "labelmap.safetensors")
    try:
        label_map = load_label_map(m_path, checksum=checksum, num_images=len(x_tr))
    except ValueError:
        generate_label_map(teacher, x_tr, m_path, checksum=checksum, topk=5)
        label_map = load_label_map(m_path, checksum=checksum, num_images=len(x_tr))
    agree = float((label_map.indices[:, 0].reshape(len(x_tr), -1) ==
                   y_tr[:, None]).mean())
    log(f"label map {label_map.scores.shape[2:]} cells, top-1 cell agrees with the image label on {100 * agree:.1f}%")

    # 3. arms × seeds, each saved when done (resumable)
    tracker = Tracker(not args.no_mlflow, args.out, args.tracking_uri, "token_labeling")
    records = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for arm in arms:
            path = os.path.join(args.out, "runs", f"{arm}_seed{seed}.json")
            config = _run_config(args, len(x_tr), len(x_te), checksum)
            if os.path.exists(path):
                with open(path) as f:
                    done = json.load(f)
                # an option added after a run was saved counts at its default (its earlier behaviour)
                saved = dict({k: build_parser().get_default(k) for k in config}, **done.get("config", {}))
                if saved == config:  # finished with these settings: reuse
                    records.append(done)
                    continue
                log(f"[{arm} seed {seed}] saved run has other settings; training it again")
            if args.report_only:
                continue
            params = {"arm": arm, "seed": seed, "epochs": args.epochs, "train": len(x_tr), "beta": args.beta}
            rec, run_id = tracker.run(f"{arm}-s{seed}", params,
                                      lambda le: train_arm(arm, seed, (x_tr, y_tr, x_te, y_te, k), label_map, args,
                                                           log, le))
            rec["mlflow_run_id"], rec["config"] = run_id, config
            write_text_atomic(path, json.dumps(rec, indent=1))
            records.append(rec)

    # 4. report
    if not records:
        raise SystemExit(f"error: no finished runs in {os.path.join(args.out, 'runs')} for these settings")
    rows = summarise(records, arms)
    size = (f"{len(x_tr)} train / {len(x_te)} test images, {args.epochs} epochs, up to {args.seeds} seeds, "
            f"{args.model}")
    plot_arms(rows, records, teacher_acc, size, os.path.join(args.out, "arms.png"))
    plot_curves(records, arms, size, os.path.join(args.out, "curves.png"))
    table = table_markdown(rows, teacher_acc, DESCRIPTIONS)
    md = (f"# LV-ViT token labeling on Fashion-MNIST\n\n{size}; batch {args.batch_size}, AdamW lr {args.lr:g} "
          f"wd {args.weight_decay:g}, 1 warmup epoch + cosine, smoothing {args.smoothing:g}, RandomResizedCrop "
          f"scale ({args.crop_scale:g}, 1) + flip, β {args.beta:g}, label map top-5 on a "
          f"{label_map.scores.shape[2]}×{label_map.scores.shape[3]} grid (its top-1 cell agrees with the image "
          f"label on {100 * agree:.1f}% of cells).\n\n{table}\nWall time {time.perf_counter() - t_all:.0f} s "
          f"(this invocation), {vitc.get_num_threads()} threads.\n")
    log("\n" + table)
    result = {"args": vars(args), "machine": machine_info(), "teacher_accuracy": teacher_acc,
              "label_map_agreement": agree, "rows": rows, "records": records}
    write_text_atomic(os.path.join(args.out, "results.md"), md)
    write_text_atomic(os.path.join(args.out, "results.json"), json.dumps(result, indent=1))
    log(f"written: {os.path.join(args.out, 'results.md')}")
    return result
