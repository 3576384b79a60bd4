"""python -m vitc.train: train any registered model on (Fashion-)MNIST, CIFAR, an image folder or .npz arrays.

Example (the project's main job, seed 004's protocol):
    python -m vitc.train --model vit_seed_mnist --dataset fashion-mnist --epochs 5
Adam lr 5e-4, train batch 100 (shuffled), test batch 5000, cross-entropy, constant lr. Each epoch prints the
mean training loss (and the article's sum of batch means), the test loss and the test accuracy.
A bad option ends the command with one "error: ..." line and exit status 2.
"""
import argparse
import math
import os
import sys
import time

import vitc
from vitc import nn
from vitc.data import DataLoader
from vitc.models import list_models

from . import cli_build, cli_data, cli_record, cli_resume, fit
from .cli_data import OptionError


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m vitc.train", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a registered vitc model and report, per epoch, the mean training loss, the test loss and "
                    "accuracy and the train/test wall times (the test pass runs under no_grad).")
    a = p.add_argument
    a("--model", default="vit_seed_mnist", help=f"registered model: {', '.join(list_models())}")
    a("--model-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
      help="keyword arguments for create_model: key=value items (values read as JSON, else text) or one JSON "
           "object; the data set's image size, channels and classes are passed unless given here")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion-mnist", choices=cli_data.DATASETS, help="the data set")
    g.add_argument("--data-root", default=None,
                   help="fashion-mnist/mnist: the IDX folder (default: the data set's own); cifar10/cifar100: the "
                        "folder of the python archive; imagefolder: a folder of class folders, or one with train/ and "
                        "val/ (or test/); npz: a .npz file with arrays 'x' and 'y', or a folder with train.npz and "
                        "val.npz (or test.npz)")
    g.add_argument("--img-size", type=int, default=None, help="imagefolder: resize and center-crop to this size")
    g.add_argument("--val-split", type=float, default=0.1,
                   help="imagefolder/npz without a val or test split: fraction held out for testing (drawn with --seed)")
    g.add_argument("--subset", type=int, default=None, help="use only the first N training images")
    g.add_argument("--test-subset", type=int, default=None, help="use only the first N test images")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=5, help="epochs to train (in all, when resuming)")
    g.add_argument("--batch-size", type=int, default=100, help="training batch (shuffled every epoch)")
    g.add_argument("--test-batch-size", type=int, default=5000, help="test batch")
    g.add_argument("--accum-steps", type=int, default=1,
                   help="batches per optimizer update (each loss divided by their number: the update of a batch "
                        "accum-steps times larger)")
    g.add_argument("--lr", type=float, default=5e-4,
                   help="learning rate; with --resume it must equal the checkpoint's (or be left out), else refused")
    g.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd", "rmsprop", "adafactor"],
                   help="the optimizer")
    g.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (decoupled in adamw and adafactor)")
    g.add_argument("--momentum", type=float, default=0.9, help="momentum of sgd, rmsprop and adafactor")
    g.add_argument("--clip-grad", type=float, default=None,
                   help="clip the gradients' global L2 norm to this (the optimizer's max_grad_norm)")
    g.add_argument("--scheduler", default="none", choices=["none", "cosine", "step", "onecycle", "plateau"],
                   help="none: constant; cosine: timm's warmup + cosine per epoch down to --min-lr; step: times "
                        "--decay-rate every --decay-epochs; onecycle: per update from --warmup-lr up to --lr over "
                        "--warmup-epochs (0: 30%% of the run) and down to --min-lr (0: --warmup-lr/1e4); plateau: "
                        "times --decay-rate when the test loss has not improved for --patience-epochs")
    g.add_argument("--warmup-epochs", type=int, default=0, help="linear warmup from --warmup-lr (not with plateau)")
    g.add_argument("--warmup-lr", type=float, default=1e-5, help="the lr warmup starts from")
    g.add_argument("--min-lr", type=float, default=0.0, help="cosine, onecycle and plateau: the lowest lr")
    g.add_argument("--decay-epochs", type=int, default=30, help="step: epochs between decays")
    g.add_argument("--decay-rate", type=float, default=0.1, help="step and plateau: the lr factor")
    g.add_argument("--patience-epochs", type=int, default=10, help="plateau: epochs without improvement")
    g = p.add_argument_group("regularization")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the training loss")
    g.add_argument("--mixup", type=float, default=0.0, help="Mixup alpha (> 0 enables it; the last short batch is "
                                                             "dropped)")
    g.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (> 0 enables it)")
    g.add_argument("--mix-prob", type=float, default=1.0, help="probability of mixing a batch")
    g.add_argument("--mix-switch-prob", type=float, default=0.5, help="probability of CutMix when both are enabled")
    g.add_argument("--ema", action="store_true",
                   help="keep an exponential moving average of the weights (vitc.utils.ModelEma); test it too")
    g.add_argument("--ema-decay", type=float, default=0.9998, help="the EMA's decay per update")
    g.add_argument("--ema-warmup", action="store_true", help="timm's EMA decay warmup")
    g = p.add_argument_group("run")
    g.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    g.add_argument("--amp", default="none", choices=["none", "bf16"],
                   help="bf16: train and evaluate under vitc.autocast (GEMMs in bf16, f32 accumulation and weights)")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffling and the held-out split")
    g.add_argument("--checkpoint-dir", default=None, help="write a checkpoint after each epoch here")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --checkpoint-dir (refused when there is none). "
                        "Training options left out take the checkpoint's values; one given with another value "
                        "(e.g. --lr), another --model or other --model-kwargs is refused")
    g.add_argument("--save", default=None,
                   help="write the final weights to this .safetensors file (with --ema also FILE-ema.safetensors)")
    g.add_argument("--history", default=None, help="write the per-epoch history to this JSON file after each epoch")
    g.add_argument("--metrics", default=None,
                   help="write the per-epoch metrics to this .csv or .jsonl file after each epoch")
    g.add_argument("--tracking-uri", default=None, help="log the run to MLflow at this tracking URI")
    g.add_argument("--experiment-name", default="vitc.train", help="the MLflow experiment")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--force", action="store_true",
                   help="train even when vitc.plan predicts that the step will not fit in the memory available")
    return p


def _explicit(argv):
    """The options given on the command line, with their parsed values (the defaults left out)."""
    p = build_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv))


_AT_LEAST = {"epochs": 0, "batch_size": 1, "test_batch_size": 1, "accum_steps": 1, "warmup_epochs": 0,
             "decay_epochs": 1, "patience_epochs": 0, "subset": 1, "test_subset": 1, "img_size": 1, "threads": 1}


def _check_ranges(args):
    for key, low in _AT_LEAST.items():
        v = getattr(args, key)
        if v is not None and v < low:
            raise OptionError(f"--{key.replace('_', '-')} must be >= {low}, got {v}")
    for key in ("lr", "weight_decay", "momentum", "warmup_lr", "min_lr", "decay_rate", "mixup", "cutmix",
                "label_smoothing", "ema_decay"):
        v = getattr(args, key)
        if not (math.isfinite(v) and v >= 0):
            raise OptionError(f"--{key.replace('_', '-')} must be a finite number >= 0, got {v}")
    if not 0 < args.val_split < 1:
        raise OptionError(f"--val-split must be between 0 and 1, got {args.val_split}")
    if args.clip_grad is not None and not (math.isfinite(args.clip_grad) and args.clip_grad > 0):
        raise OptionError(f"--clip-grad must be a positive number, got {args.clip_grad}")
    if args.resume and not args.checkpoint_dir:
        raise OptionError("--resume needs --checkpoint-dir")
    if args.model not in list_models():
        raise OptionError(f"unknown model {args.model!r}; available: {', '.join(list_models())}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args, _explicit(argv))
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def _run(args, explicit):
    _check_ranges(args)
    user_kwargs = cli_build.parse_model_kwargs(args.model_kwargs)
    cli_record.metrics_format(args.metrics)
    path = state = run = None
    if args.resume:
        path, state = cli_resume.newest(args.checkpoint_dir)
        run = cli_resume.adopt(args, explicit, path, state)
    if args.threads is not None:
        vitc.set_num_threads(args.threads)
    vitc.manual_seed(args.seed)
    train_set, test_set, info = cli_data.build(args)
    from ..distributed._launch import launched_rank, launched_world_size
    world, lead = launched_world_size(), launched_rank() == 0  # under mpirun: rank 0 alone prints and writes
    if world > 1 and args.batch_size % world:
        raise OptionError(f"--batch-size {args.batch_size} is not a multiple of the {world} MPI ranks")
    model, model_kwargs = cli_build.build_model(args.model, user_kwargs, info)
    # vitc.plan: refuse (with the planner's numbers) a configuration whose step will not fit, unless --force
    from vitc.plan import check_training_fits
    check_training_fits(args.model, args.batch_size // world, args.optimizer, model_kwargs=model_kwargs,
                        force=args.force, log=print if lead else (lambda *a, **k: None))
    cli_build.check_logits(model, train_set, info["num_classes"], args.model)
    if args.resume:
        cli_resume.check(run, path, args, model, model_kwargs)
    mixup = cli_build.build_mixup(args, info["num_classes"])
    if mixup is not None and (args.batch_size // world) % 2:
        raise OptionError(f"--mixup/--cutmix pair the images of a batch: the batch per process "
                          f"({args.batch_size // world}) must be even")
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                              drop_last=mixup is not None, transform=mixup, to_tensor=vitc.from_numpy)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size, shuffle=False, to_tensor=vitc.from_numpy)
    if not len(train_loader):
        raise OptionError(f"--batch-size {args.batch_size} is larger than the {len(train_set)} training images "
                          f"(Mixup/CutMix drop the short batch)")
    opt = cli_build.build_optimizer(args, model.parameters())
    sched = cli_build.build_scheduler(args, opt, -(-len(train_loader) // args.accum_steps))
    ema = cli_build.build_ema(args, model)
    # Mixup smooths its soft targets itself; the test loss is the plain cross-entropy
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.0 if mixup is not None else args.label_smoothing)
    say = print if lead else (lambda *a, **k: None)
    say(f"vitc {vitc.__version__}: {args.model} ({model.num_parameters():,} parameters) on {args.dataset} "
        f"({len(train_set)} train / {len(test_set)} test images of {info['channels']}x{info['image_size'][0]}x"
        f"{info['image_size'][1]}, {info['num_classes']} classes), {vitc.get_num_threads()} threads"
        f"{f' x {world} MPI ranks' if world > 1 else ''}, {args.optimizer} lr {args.lr:g}, batch {args.batch_size}"
        f"{f' x {args.accum_steps} accumulated' if args.accum_steps > 1 else ''}, test batch {args.test_batch_size}, "
        f"seed {args.seed}{'' if path is None else f', resuming {path}'}", flush=True)
    document = {"args": vars(args), "model_kwargs": model_kwargs}
    recorder = cli_record.EpochRecorder(args.metrics, args.history, document, state["history"] if state else {}) \
        if lead else None

    def train(on_epoch_end):
        callbacks = [cb for cb in (recorder, on_epoch_end) if cb is not None]
        return fit(model, train_loader, test_loader, opt, loss_fn, args.epochs, scheduler=sched, callbacks=callbacks,
                   checkpoint_dir=args.checkpoint_dir, resume=args.resume, progress=not args.no_progress,
                   log=lambda s: say(s, flush=True), accum_steps=args.accum_steps, ema=ema,
                   eval_loss_fn=nn.CrossEntropyLoss(),
                   checkpoint_extra={"run": cli_resume.record(args, model_kwargs)})

    t0 = time.perf_counter()
    try:
        with vitc.autocast(enabled=args.amp == "bf16"):
            history = cli_record.tracked(args, dict(vars(args), model_kwargs=model_kwargs), train) if lead \
                else train(None)
    except ValueError as e:  # a checkpoint that does not load: one line, as the other refusals
        if args.resume and str(e).startswith(("load_checkpoint:", "fit(resume=True)")):
            raise OptionError("--resume: " + " ".join(str(e).split())) from None
        raise
    if lead:
        _finish(args, model, ema, history, recorder, time.perf_counter() - t0)
    return 0


def _finish(args, model, ema, history, recorder, wall):
    if history["test_accuracy"]:
        ema_text = f", EMA {100 * history['ema_test_accuracy'][-1]:.2f}%" if ema is not None else ""
        print(f"final test accuracy: {100 * history['test_accuracy'][-1]:.2f}%{ema_text} after {history['epoch'][-1]} "
              f"epochs (train time {sum(history['train_time']):.1f} s, test time {sum(history['test_time']):.1f} s, "
              f"wall {wall:.1f} s)", flush=True)
    if args.save:
        from vitc.io import save_safetensors
        save_safetensors(model.state_dict(), args.save)
        print(f"weights saved to {args.save}")
        if ema is not None:
            stem, ext = os.path.splitext(args.save)
            save_safetensors(ema.module.state_dict(), f"{stem}-ema{ext or '.safetensors'}")
            print(f"EMA weights saved to {stem}-ema{ext or '.safetensors'}")
    recorder.history = history  # the files hold fit's history (also when no epoch was left to run)
    recorder.write()


if __name__ == "__main__":
    sys.exit(main())
