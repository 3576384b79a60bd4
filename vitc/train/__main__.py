"""python -m vitc.train: train a registered model on (Fashion-)MNIST, seed 004's protocol.

Example (the project's main job):
    python -m vitc.train --model vit_seed_mnist --dataset fashion-mnist --epochs 5
Adam lr 5e-4, train batch 100 (shuffled), test batch 5000, cross-entropy, constant lr.
"""
import argparse
import json
import sys
import time

import vitc
from vitc import nn, optim
from vitc.data import MNIST, DataLoader, FashionMNIST
from vitc.models import create_model, list_models

from ..io import write_text_atomic
from . import fit


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m vitc.train",
        description="Train a vitc model on MNIST or Fashion-MNIST and report per-epoch loss, test accuracy "
                    "and train/test wall time (seed 004's protocol; the test pass runs under no_grad).")
    p.add_argument("--model", default="vit_seed_mnist", help=f"registered model: {', '.join(list_models())}")
    p.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    p.add_argument("--data-root", default=None, help="directory with the IDX files (default: the dataset's own)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--test-batch-size", type=int, default=5000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--scheduler", default="none", choices=["none", "cosine"],
                   help="cosine: timm-style warmup + cosine per epoch down to --min-lr")
    p.add_argument("--warmup-epochs", type=int, default=0)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--subset", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-subset", type=int, default=None, help="use only the first N test images")
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", default=None, help="write a checkpoint after each epoch here")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir")
    p.add_argument("--save", default=None, help="write the final weights to this .safetensors file")
    p.add_argument("--history", default=None, help="write the per-epoch history to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="train even when vitc.plan predicts it will not fit in memory")
    return p


def _dataset(name, root, train, subset):
    kw = {"train": train, "subset": subset}
    if root:
        kw["root"] = root
    return FashionMNIST(**kw) if name == "fashion-mnist" else MNIST(**kw)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.epochs < 0 or args.batch_size < 1 or args.test_batch_size < 1:
        raise SystemExit("error: --epochs must be >= 0 and batch sizes >= 1")
    if args.resume and not args.checkpoint_dir:
        raise SystemExit("error: --resume needs --checkpoint-dir")
    if args.model not in list_models():
        raise SystemExit(f"error: unknown model {args.model!r}; available: {', '.join(list_models())}")
    if args.threads is not None:
        vitc.set_num_threads(args.threads)
    vitc.manual_seed(args.seed)
    try:
        train_set = _dataset(args.dataset, args.data_root, True, args.subset)
        test_set = _dataset(args.dataset, args.data_root, False, args.test_subset)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    from ..distributed._launch import launched_rank, launched_world_size
    world, lead = launched_world_size(), launched_rank() == 0  # under mpirun: rank 0 alone prints and writes
    if world > 1 and args.batch_size % world:
        raise SystemExit(f"error: --batch-size {args.batch_size} is not a multiple of the {world} MPI ranks")
    # vitc.plan: refuse (with the planner's numbers) a configuration that will not fit, unless --force
    from vitc.plan import check_training_fits
    check_training_fits(args.model, args.batch_size, args.optimizer, force=args.force)
    model = create_model(args.model)
    n_params = model.num_parameters()
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                              to_tensor=vitc.from_numpy)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size, shuffle=False, to_tensor=vitc.from_numpy)
    params = model.parameters()
    if args.optimizer == "adam":
        opt = optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    elif args.optimizer == "adamw":
        opt = optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    sched = None
    if args.scheduler == "cosine":
        sched = optim.lr_scheduler.CosineLRScheduler(opt, t_initial=max(1, args.epochs), lr_min=args.min_lr,
                                                     warmup_t=args.warmup_epochs, warmup_lr_init=args.min_lr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    say = print if lead else (lambda *a, **k: None)
    say(f"vitc {vitc.__version__}: {args.model} ({n_params:,} parameters) on {args.dataset} "
        f"({len(train_set)} train / {len(test_set)} test images), {vitc.get_num_threads()} threads"
        f"{f' x {world} MPI ranks' if world > 1 else ''}, "
        f"{args.optimizer} lr {args.lr:g}, batch {args.batch_size}, test batch {args.test_batch_size}, "
        f"seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    history = fit(model, train_loader, test_loader, opt, loss_fn, args.epochs, scheduler=sched,
                  checkpoint_dir=args.checkpoint_dir, resume=args.resume, progress=not args.no_progress,
                  log=lambda s: say(s, flush=True))
    total = time.perf_counter() - t0
    if not lead:
        return 0
    if history["test_accuracy"]:
        acc = history["test_accuracy"][-1]
        print(f"final test accuracy: {100 * acc:.2f}% after {history['epoch'][-1]} epochs "
              f"(train time {sum(history['train_time']):.1f} s, test time {sum(history['test_time']):.1f} s, "
              f"wall {total:.1f} s)", flush=True)
    if args.save:
        from vitc.io import save_safetensors
        save_safetensors(model.state_dict(), args.save)
        print(f"weights saved to {args.save}")
    if args.history:
        text = json.dumps({"args": vars(args), "history": history}, indent=1)
        write_text_atomic(args.history, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
