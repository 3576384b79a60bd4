"""--resume of ``python -m vitc.train``: find the checkpoint, continue with the options it was trained with.

Every checkpoint the command writes keeps its options (``extra.run`` in state.json). On --resume a training
option not given on the command line takes the checkpoint's value (so the header prints what is used); one
given with another value is refused, as is another model or other model keyword arguments: a resumed run
continues exactly as it was started. A checkpoint written by fit() directly has no such record; then
fit's own checks apply (model class and tensor shapes), and an explicit --lr, --weight-decay or --accum-steps
is compared with what fit() recorded of its run (``fit_options``): the same value is accepted, another
refused. An explicit --lr with no record at all (a checkpoint of save_checkpoint, or of an older fit) is
refused, since it cannot be compared; the other options fit() cannot know are taken from the command line.
"""
import json
import os

from . import _checkpoints_newest_first, _read_state
from .cli_data import OptionError

# options that decide the training run (data, batches, optimizer, schedule, regularization, seed)
ADOPTED = ("dataset", "subset", "test_subset", "img_size", "val_split", "batch_size", "accum_steps", "optimizer", "lr",
           "weight_decay", "momentum", "clip_grad", "label_smoothing", "mixup", "cutmix", "mix_prob",
           "mix_switch_prob", "scheduler", "warmup_epochs", "warmup_lr", "min_lr", "decay_epochs", "decay_rate",
           "patience_epochs", "ema", "ema_decay", "ema_warmup", "seed")
_LENGTH_DEPENDENT = ("cosine", "onecycle")
_FIT_RECORDED = ("lr", "weight_decay", "accum_steps")  # the options fit() records of itself (fit_options)  # schedules built for the run's number of epochs


def _same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _flag(key):
    return "--" + key.replace("_", "-")


def record(args, model_kwargs):
    """What a checkpoint keeps of the command: the ADOPTED options, the model, its keyword arguments, epochs."""
    run = {key: getattr(args, key) for key in ADOPTED}
    run.update(model=args.model, model_kwargs=model_kwargs, epochs=args.epochs)
    return json.loads(json.dumps(run))  # tuples become lists, as they come back from state.json


def newest(checkpoint_dir):
    """(path, state) of the newest readable checkpoint; OptionError when there is none."""
    paths = _checkpoints_newest_first(checkpoint_dir)
    if not paths:
        why = "is empty" if os.path.isdir(checkpoint_dir) else "does not exist"
        raise OptionError(f"--resume: --checkpoint-dir {checkpoint_dir} {why}, no checkpoint to continue from "
                          f"(drop --resume to start a new run)")
    for path in paths:
        try:
            return path, _read_state(path)
        except (ValueError, OSError):
            continue  # damaged: fit(resume=True) warns and falls back the same way
    raise OptionError(f"--resume: every checkpoint in {checkpoint_dir} is damaged")


def adopt(args, explicit, path, state):
    """Give args the checkpoint's training options; returns the checkpoint's run record (None: fit() wrote it)."""
    run = (state.get("extra") or {}).get("run")
    if run is None:
        recorded = (state.get("extra") or {}).get("fit_options") or {}
        compared = [k for k in _FIT_RECORDED if k in explicit and recorded.get(k) is not None]
        conflicts = [k for k in compared if not _same(explicit[k], recorded[k])]
        if conflicts:
            given = ", ".join(f"{_flag(k)} {explicit[k]}" for k in conflicts)
            stored = ", ".join(f"{_flag(k)} {recorded[k]}" for k in conflicts)
            raise OptionError(f"--resume: {given} differs from the {stored} fit() trained {path} with; drop them "
                              f"(the checkpoint's optimizer state continues)")
        if "lr" in explicit and "lr" not in compared:
            raise OptionError(f"--resume: {path} has no record of its options, so --lr {args.lr:g} cannot be "
                              f"checked against it; drop --lr (the checkpoint's optimizer state continues)")
        return None
    conflicts = [key for key in ADOPTED if key in explicit and key in run and not _same(explicit[key], run[key])]
    if conflicts:
        given = ", ".join(f"{_flag(k)} {explicit[k]}" for k in conflicts)
        stored = ", ".join(f"{_flag(k)} {run[k]}" for k in conflicts)
        raise OptionError(f"--resume: {given} differs from the checkpoint's {stored} ({path}); a resumed run "
                          f"continues with its own options: drop them, or start a new run without --resume")
    for key in ADOPTED:
        if key in run:
            setattr(args, key, run[key])
    return run


def check(run, path, args, model, model_kwargs):
    """The model (and a length-dependent schedule) must be the checkpoint's. Without a record (fit() wrote
    it) the checkpoint is loaded into the model to see that it fits (fit loads it again)."""
    if run is None:
        from . import load_checkpoint
        try:
            load_checkpoint(path, model, restore_rng=False)
        except ValueError as e:
            raise OptionError("--resume: " + " ".join(str(e).split())) from None
        return
    if run["model"] != args.model or not _same(run["model_kwargs"], model_kwargs):
        raise OptionError(f"--resume: {path} holds a {run['model']} {json.dumps(run['model_kwargs'], sort_keys=True)}"
                          f", not the requested {args.model} {json.dumps(model_kwargs, sort_keys=True)}")
    if args.scheduler in _LENGTH_DEPENDENT and run["epochs"] != args.epochs:
        raise OptionError(f"--resume: the checkpoint's {args.scheduler} schedule spans --epochs {run['epochs']}, "
                          f"not {args.epochs}; resume with --epochs {run['epochs']}")
