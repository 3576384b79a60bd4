"""Model, optimizer, learning-rate schedule, EMA and Mixup of ``python -m vitc.train``, built from its options.

The model gets the data set's image size, channels and classes under the first keyword name its
constructor accepts (ViT: image_size/channels/num_classes, ResNet: in_channels; timm's img_size/in_chans
where a model takes those), unless --model-kwargs sets them. OneCycleLR, ReduceLROnPlateau, RMSprop and
ModelEma are imported when asked for.
"""
import json
import re

import numpy as np

import vitc
from vitc import optim
from vitc.models import create_model

from .cli_data import OptionError

# what the data set decides, and the keyword names models take for it, tried in this order: in_channels
# first (ResNet's `channels` are its stage widths), then vitc's own names before timm's aliases, so the
# names stored in a checkpoint stay the same when a model gains an alias
_DATA_KEYWORDS = (("image_size", ("image_size", "img_size")), ("channels", ("in_channels", "channels", "in_chans")),
                  ("num_classes", ("num_classes",)))
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def _value(text):
    """A key=value value: JSON (numbers, true/false/null, lists, quoted strings), Python's True/False/None, else
    the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def parse_model_kwargs(items):
    """--model-kwargs: one JSON object, or key=value items; returns a dict."""
    if not items:
        return {}
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            kwargs = json.loads(items[0])
        except ValueError as e:
            raise OptionError(f"--model-kwargs is not a valid JSON object: {e}") from None
        if not isinstance(kwargs, dict):
            raise OptionError("--model-kwargs must be a JSON object")
        return kwargs
    kwargs = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise OptionError(f"--model-kwargs: {item!r} is not key=value (or give one JSON object)")
        if key in kwargs:
            raise OptionError(f"--model-kwargs: {key} is given twice")
        kwargs[key] = _value(text)
    return kwargs


def build_model(name, user_kwargs, info):
    """(model, the keyword arguments it was built with): user_kwargs plus the data set's size, channels and
    classes under the names the model accepts."""
    h, w = info["image_size"]
    data = {"image_size": h if h == w else [h, w], "channels": info["channels"], "num_classes": info["num_classes"]}
    choice = {attr: 0 for attr, names in _DATA_KEYWORDS if not any(n in user_kwargs for n in names)}
    while True:
        added = {names[choice[attr]]: attr for attr, names in _DATA_KEYWORDS
                 if attr in choice and choice[attr] < len(names)}
        kwargs = dict(user_kwargs, **{key: data[attr] for key, attr in added.items()})
        try:
            return create_model(name, **kwargs), kwargs
        except TypeError as e:
            bad = _UNEXPECTED.search(str(e))
            if bad is None or bad.group(1) not in added:
                raise OptionError(f"--model {name} {_shown(kwargs)}: {e}") from None
            choice[added[bad.group(1)]] += 1  # try the next name (none left: the model decides by itself)
        except ValueError as e:
            raise OptionError(f"--model {name} {_shown(kwargs)}: {e}") from None


def _shown(kwargs):
    return "with " + json.dumps(kwargs, sort_keys=True) if kwargs else "(no keyword arguments)"


def check_logits(model, dataset, num_classes, name):
    """One forward of two training images in eval mode: the model must take them and give (2, K >= classes)."""
    x = np.stack([np.asarray(dataset[i][0], dtype=np.float32) for i in range(min(2, len(dataset)))])
    was_training = model.training
    model.eval()
    try:
        with vitc.no_grad():
            z = model(vitc.from_numpy(x))
    except (ValueError, TypeError, RuntimeError) as e:
        raise OptionError(f"--model {name} does not take this data set's images {tuple(x.shape[1:])}: {e}") from None
    finally:
        model.train(was_training)
    shape = tuple(getattr(z, "shape", ()))
    if len(shape) != 2 or shape[0] != len(x):
        raise OptionError(f"--model {name} gives outputs of shape {shape} for {len(x)} images, not (batch, classes)")
    if shape[1] < num_classes:
        raise OptionError(f"--model {name} gives {shape[1]} logits but the data set has {num_classes} classes; "
                          f"pass --model-kwargs num_classes={num_classes}")


def _optim_class(name, option):
    """vitc.optim.lr_scheduler.<name> or vitc.optim.<name>; OptionError naming the option when neither exists."""
    for place in (optim.lr_scheduler, optim):
        if hasattr(place, name):
            return getattr(place, name)
    raise OptionError(f"{option} needs vitc.optim.{name}, which this vitc does not have")


def build_optimizer(args, params):
    kw = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.clip_grad is not None:
        kw["max_grad_norm"] = args.clip_grad  # clipped inside step(): after the gradients are averaged over ranks
    if args.optimizer in ("sgd", "rmsprop", "adafactor"):
        kw["momentum"] = args.momentum
    cls = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "adafactor": optim.Adafactor}.get(args.optimizer)
    if cls is None:
        cls = _optim_class("RMSprop", "--optimizer rmsprop")
    try:
        return cls(params, **kw)
    except (TypeError, ValueError) as e:
        raise OptionError(f"--optimizer {args.optimizer}: {e}") from None


class PerUpdate:
    """A torch-style scheduler stepped after every optimizer update (as OneCycleLR expects) instead of every
    epoch: fit() calls ``step_update`` per update and ``step(epoch)`` per epoch (a no-op here)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def step_update(self, num_updates, metric=None):
        self.scheduler.step()

    def step(self, epoch, metric=None):
        pass

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict):
        self.scheduler.load_state_dict(state_dict)


def _warmup_factor(args):
    if not 0 < args.warmup_lr <= args.lr:
        raise OptionError(f"--warmup-lr {args.warmup_lr:g} must be > 0 and <= --lr {args.lr:g}")
    return args.warmup_lr / args.lr


def build_scheduler(args, opt, updates_per_epoch):
    """The --scheduler (None for 'none' without warmup); epochs-based except onecycle (per update)."""
    s, sched, warm = optim.lr_scheduler, args.scheduler, args.warmup_epochs
    if sched == "cosine":
        return s.CosineLRScheduler(opt, t_initial=max(1, args.epochs), lr_min=args.min_lr, warmup_t=warm,
                                   warmup_lr_init=args.warmup_lr)
    if sched == "plateau":
        if warm:
            raise OptionError("--scheduler plateau has no warmup; drop --warmup-epochs or use another scheduler")
        cls = _optim_class("ReduceLROnPlateau", "--scheduler plateau")
        return cls(opt, mode="min", factor=args.decay_rate, patience=args.patience_epochs, min_lr=args.min_lr)
    if sched == "onecycle":
        cls = _optim_class("OneCycleLR", "--scheduler onecycle")
        total = max(1, args.epochs) * updates_per_epoch
        div = args.lr / args.warmup_lr if args.warmup_lr > 0 else 25.0
        final_div = (args.warmup_lr / args.min_lr) if args.min_lr > 0 and args.warmup_lr > 0 else 1e4
        pct = warm / args.epochs if warm else 0.3
        if not 0 < pct < 1:
            raise OptionError(f"--warmup-epochs {warm} must be fewer than --epochs {args.epochs} with onecycle")
        return PerUpdate(cls(opt, max_lr=args.lr, total_steps=total, pct_start=pct, div_factor=div,
                             final_div_factor=final_div))
    main = s.StepLR(opt, step_size=args.decay_epochs, gamma=args.decay_rate) if sched == "step" else None
    if not warm:
        return main
    warmup = s.LinearLR(opt, start_factor=_warmup_factor(args), end_factor=1.0, total_iters=warm)
    return warmup if main is None else s.SequentialLR(opt, [warmup, main], milestones=[warm])


def build_ema(args, model):
    if not args.ema:
        return None
    try:
        from vitc.utils import ModelEma
    except ImportError:
        raise OptionError("--ema needs vitc.utils.ModelEma, which this vitc does not have") from None
    return ModelEma(model, decay=args.ema_decay, warmup=args.ema_warmup)


def build_mixup(args, num_classes):
    """vitc.data.Mixup as the training loader's batch transform, or None when both alphas are 0."""
    if not (args.mixup > 0 or args.cutmix > 0):
        return None
    from vitc.data import Mixup
    try:
        return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mix_prob,
                     switch_prob=args.mix_switch_prob, label_smoothing=args.label_smoothing, num_classes=num_classes)
    except (TypeError, ValueError) as e:
        raise OptionError(f"--mixup/--cutmix: {e}") from None
