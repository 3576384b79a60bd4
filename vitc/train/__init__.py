"""vitc.train: a small training engine — fit(), evaluate() and crash-safe checkpoints.

fit() runs the ViT+BatchNorm article's protocol (docs/choices.md): per epoch, the training loop over shuffled batches
(data loading included in its wall time), then a test pass in eval mode. It records the sum of
the batch-mean losses (the article's "training loss") and their mean, the test loss and accuracy
(argmax), and both wall times. Unlike the article's script, the test pass runs under ``vitc.no_grad()``.
Optionally: gradient accumulation over several batches, a weight average (EMA) updated after every
update and tested after every epoch, a separate test loss. ``python -m vitc.train`` is its command line
(__main__.py, with cli_data/cli_build/cli_resume/cli_record).

Checkpoints (``checkpoint_dir``): after each epoch a directory ``ckpt-<epoch>`` with
``model.safetensors`` (state_dict), ``optimizer.safetensors`` (per-parameter state tensors) and
``state.json`` (epoch, optimizer options and step counts, scheduler state, RNG state, history) is
built under a temporary name, then renamed into place, then the ``latest`` pointer file is
replaced atomically. A crash at any point leaves the previous checkpoint and pointer intact.
``resume=True`` continues from ``latest`` and gives the same result as an uninterrupted run.

Damage: every tensor carries a CRC-32 (see vitc.io) and state.json a CRC-32 of its canonical JSON
(key ``crc32``), so a flipped bit or a truncated file raises ValueError naming the file on load.
``resume=True`` then warns and falls back to the newest intact older checkpoint (``keep=2``, the
default, keeps the previous one for that). Checkpoints written before the checksums load unverified.
"""
import json
import inspect
import math
import os
import shutil
import tempfile
import time
import warnings
import zlib

import numpy as np

import vitc as _v

from .. import _C
from ..io import load_safetensors, save_safetensors, write_text_atomic

__all__ = ["fit", "evaluate", "train_one_epoch", "save_checkpoint", "load_checkpoint", "latest_checkpoint"]


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _labels_np(y):
    return y.numpy() if isinstance(y, _v.Tensor) else np.asarray(y)


def evaluate(model, loader, loss_fn=None, progress=False):
    """Accuracy (argmax of the logits) and mean loss over a loader, in eval mode under no_grad.

    Returns {'accuracy', 'loss' (mean of batch losses weighted by batch size, or None),
    'time' (wall seconds, loading included), 'samples'}.
    """
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    correct, n, loss_sum = 0, 0, 0.0
    try:
        with _v.no_grad():
            for x, y in _progress(loader, len(loader) if hasattr(loader, "__len__") else None, "test", progress):
                z = model(x)
                yn = _labels_np(y)
                pred = z.numpy().argmax(axis=1)
                target = yn.argmax(axis=1) if yn.ndim == 2 else yn  # soft labels: their argmax
                correct += int((pred == target).sum())
                n += len(target)
                if loss_fn is not None:
                    loss_sum += float(loss_fn(z, y).item()) * len(target)
    finally:
        model.train(was_training)
    return {"accuracy": correct / n if n else float("nan"), "loss": loss_sum / n if (n and loss_fn) else None,
            "time": time.perf_counter() - t0, "samples": n}


def _scheduler_kind(scheduler):
    if scheduler is None:
        return None
    return "timm" if hasattr(scheduler, "step_update") else "torch"


def train_one_epoch(model, loader, optimizer, loss_fn, epoch=0, scheduler=None, num_updates=0, progress=True,
                    desc=None, accum_steps=1, ema=None):
    """One pass over loader. Returns ({'loss_sum', 'loss_mean', 'batches', 'time', 'nonfinite'}, num_updates).

    accum_steps=k: one optimizer update per k batches (the last group of the epoch may be shorter); each
    batch's loss is divided by its group's length before backward, so with equal batch sizes the update
    equals that of one batch k times as large. The reported losses are the batches' own (unscaled).
    ema: an object with ``update(model, step=num_updates)`` (vitc.utils.ModelEma), called after every update.
    """
    accum_steps = _positive_int(accum_steps, "train_one_epoch", "accum_steps")
    model.train()
    kind = _scheduler_kind(scheduler)
    t0 = time.perf_counter()
    loss_sum, batches, nonfinite, pending = 0.0, 0, 0, False
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = _progress(loader, total, desc or f"epoch {epoch + 1}", progress)
    for i, (x, y) in enumerate(bar):
        first, group = i % accum_steps == 0, accum_steps
        if total is not None and i >= total - total % accum_steps:
            group = total % accum_steps  # the epoch's last, shorter group
        if first:
            # zeroing in place keeps every .grad a view of the optimizer's flat buffer (one memset);
            # all parameters of the models trained here receive gradients, so this equals set_to_none
            optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        (loss if group == 1 else loss * (1.0 / group)).backward()
        pending = not ((i + 1) % accum_steps == 0 or (total is not None and i + 1 == total))
        if not pending:
            num_updates = _update(model, optimizer, scheduler, kind, ema, num_updates)
        value = float(loss.item())
        if not math.isfinite(value):
            nonfinite += 1
        loss_sum += value
        batches += 1
        if progress and hasattr(bar, "set_postfix") and batches % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum / batches:.4f}")
    if batches and pending:  # a loader without len() ended inside a group: its gradients still count
        num_updates = _update(model, optimizer, scheduler, kind, ema, num_updates)
    if hasattr(bar, "close"):
        bar.close()
    return ({"loss_sum": loss_sum, "loss_mean": loss_sum / batches if batches else float("nan"), "batches": batches,
             "time": time.perf_counter() - t0, "nonfinite": nonfinite}, num_updates)


def _update(model, optimizer, scheduler, kind, ema, num_updates):
    """One optimizer update, then the EMA and a per-update (timm-style) scheduler; returns the update count."""
    optimizer.step()
    num_updates += 1
    if ema is not None:
        ema.update(model, step=num_updates)
    if kind == "timm":
        scheduler.step_update(num_updates)
    return num_updates


def _positive_int(value, who, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be an int >= 1, got {value!r}")
    return value


# ---- checkpoints ---------------------------------------------------------------------------------

_LATEST = "latest"
_EMA_FILE = "ema.safetensors"


def _optimizer_payload(optimizer):
    sd = optimizer.state_dict()
    tensors, steps = {}, {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if name == "step":
                steps[str(idx)] = float(v.item() if hasattr(v, "item") else v)
            elif v is not None:
                tensors[f"state.{idx}.{name}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "steps": steps}


def _optimizer_restore(optimizer, tensors, meta):
    state = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for idx, step in meta["steps"].items():
        state.setdefault(int(idx), {})["step"] = step
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} in state.json")


_STATE_CRC = "crc32"


def _state_crc(state):
    """CRC-32 of the state's canonical JSON (sorted keys, no spaces): any change of a parsed value changes it."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(text.encode()):08x}"


def _read_state(path):
    """state.json of checkpoint directory ``path``, checked; ValueError naming the file when it is damaged."""
    file = os.path.join(path, "state.json")
    try:
        with open(file, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"load_checkpoint: {file} is damaged (not valid JSON: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"load_checkpoint: {file} is damaged (a JSON {type(state).__name__}, not an object)")
    stored = state.pop(_STATE_CRC, None)
    if stored is not None and stored != _state_crc(state):  # None: written before the checksum existed
        raise ValueError(f"load_checkpoint: {file} is damaged (CRC-32 {_state_crc(state)}, stored {stored})")
    if not isinstance(state.get("epoch"), int) or isinstance(state.get("epoch"), bool):
        raise ValueError(f"load_checkpoint: {file} has no integer 'epoch' (damaged?)")
    return state


def _complete(path):
    return os.path.isfile(os.path.join(path, "state.json")) and os.path.isfile(os.path.join(path, "model.safetensors"))


def _checkpoints_newest_first(checkpoint_dir):
    """Complete checkpoint directories, the ``latest`` pointer's first, then the ``ckpt-*`` by epoch."""
    if not os.path.isdir(checkpoint_dir):
        return []
    paths = []
    try:
        with open(os.path.join(checkpoint_dir, _LATEST)) as f:
            paths.append(os.path.join(checkpoint_dir, json.load(f)["name"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    names = sorted((d for d in os.listdir(checkpoint_dir) if d.startswith("ckpt-")), reverse=True)
    paths += [os.path.join(checkpoint_dir, n) for n in names if os.path.join(checkpoint_dir, n) not in paths]
    return [p for p in paths if _complete(p)]


def latest_checkpoint(checkpoint_dir):
    """Path of the newest complete checkpoint directory, or None.

    The ``latest`` pointer names it; when the pointer is missing, unreadable or names a directory
    that is gone (a crash between the steps of a save), the newest complete ``ckpt-*`` wins.
    Complete means its files exist; their contents are checked when loaded (see resume in fit)."""
    paths = _checkpoints_newest_first(checkpoint_dir)
    return paths[0] if paths else None


def _resume(checkpoint_dir, model, optimizer, scheduler, ema=None):
    """Load the newest checkpoint that loads cleanly; a damaged one is skipped with a warning.
    Returns (path, state), or (None, None) when there is no checkpoint; ValueError when all are damaged."""
    paths, errors = _checkpoints_newest_first(checkpoint_dir), []
    for path in paths:
        try:
            return path, load_checkpoint(path, model, optimizer, scheduler, ema=ema)
        except (ValueError, OSError) as e:
            errors.append(str(e))
            warnings.warn(f"fit(resume=True): skipping checkpoint {path}: {e}", RuntimeWarning, stacklevel=3)
    if errors:
        raise ValueError(f"fit(resume=True): no intact checkpoint in {checkpoint_dir}: " + "; ".join(errors))
    return None, None


def save_checkpoint(checkpoint_dir, epoch, model, optimizer=None, scheduler=None, history=None, extra=None,
                    keep=2, ema=None):
    """Write checkpoint ``ckpt-<epoch>`` (see the module docstring) and return its path.

    keep: how many checkpoints stay (this one included); keep=1 leaves no older one to fall back to
    when the newest is found damaged on resume. ema: a weight average with ``.module``
    (vitc.utils.ModelEma); its state_dict goes to ``ema.safetensors``."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"save_checkpoint: keep must be an int >= 1, got {keep!r}")
    os.makedirs(checkpoint_dir, exist_ok=True)
    for d in os.listdir(checkpoint_dir):  # leftovers of a save that was killed (one writer per directory)
        if d.startswith((".ckpt-", f".{_LATEST}.")) and d.endswith((".tmp", ".old")):
            leftover = os.path.join(checkpoint_dir, d)
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.unlink(leftover)
    name = f"ckpt-{epoch:06d}"
    final = os.path.join(checkpoint_dir, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=checkpoint_dir)
    try:
        save_safetensors(model.state_dict(), os.path.join(tmp, "model.safetensors"))
        state = {"epoch": epoch, "model": type(model).__name__, "rng_state": list(_C.get_rng_state()),
                 "history": history or {}, "extra": extra or {}}
        if optimizer is not None:
            tensors, meta = _optimizer_payload(optimizer)
            save_safetensors(tensors, os.path.join(tmp, "optimizer.safetensors"))
            state["optimizer"] = meta
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        if ema is not None:
            save_safetensors(ema.module.state_dict(), os.path.join(tmp, _EMA_FILE))
            state["ema"] = True
        state = _jsonable(state)
        state[_STATE_CRC] = _state_crc(state)
        text = json.dumps(state, indent=1)
        write_text_atomic(os.path.join(tmp, "state.json"), text)
        if os.path.exists(final):  # a previous run wrote this epoch: move it aside atomically, then replace it
            old = tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=checkpoint_dir)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = json.dumps({"name": name, "epoch": epoch})
    write_text_atomic(os.path.join(checkpoint_dir, _LATEST), pointer)
    olds = sorted(d for d in os.listdir(checkpoint_dir) if d.startswith("ckpt-") and d != name)
    for d in olds[:max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(os.path.join(checkpoint_dir, d), ignore_errors=True)
    return final


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng=True, ema=None):
    """Load a checkpoint directory into model/optimizer/scheduler (and ``ema.module``); returns its state.json dict.

    A checkpoint written by another model class, or whose tensors do not fit this model, raises
    ValueError naming the checkpoint and the mismatch; a damaged file (checksum mismatch, truncated,
    not parseable) raises ValueError naming the file. Every file is read and checked before anything
    is modified, so nothing is modified then."""
    path = os.fspath(path)
    if not _complete(path):
        raise FileNotFoundError(f"load_checkpoint: {path} is not a complete checkpoint directory "
                                f"(needs state.json and model.safetensors)")
    state = _read_state(path)
    written_by = state.get("model")
    if written_by is not None and written_by != type(model).__name__:
        raise ValueError(f"load_checkpoint: {path} was written by a {written_by} model, cannot load it into a "
                         f"{type(model).__name__}")
    weights = load_safetensors(os.path.join(path, "model.safetensors"))
    tensors = ema_weights = None
    if optimizer is not None and "optimizer" in state:
        tensors = load_safetensors(os.path.join(path, "optimizer.safetensors"))
    if ema is not None:
        if not state.get("ema"):
            raise ValueError(f"load_checkpoint: {path} holds no EMA weights (it was written without an EMA)")
        ema_weights = load_safetensors(os.path.join(path, _EMA_FILE))
    try:
        model.load_state_dict(weights)
        if ema_weights is not None:
            ema.module.load_state_dict(ema_weights)
    except RuntimeError as e:
        raise ValueError(f"load_checkpoint: {path} does not fit this {type(model).__name__}: {e}") from None
    if tensors is not None:
        _optimizer_restore(optimizer, tensors, state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        sd = state["scheduler"]
        scheduler.load_state_dict(sd)
    if restore_rng and "rng_state" in state:
        _C.set_rng_state(*[int(v) for v in state["rng_state"]])
    return state


# ---- fit -----------------------------------------------------------------------------------------

_KEYS = ("epoch", "train_loss_sum", "train_loss", "train_time", "test_accuracy", "test_loss", "test_time", "lr")
_EMA_KEYS = ("ema_test_accuracy", "ema_test_loss")


def _fit_options(optimizer, accum_steps):
    """What every checkpoint of fit() records of how it trains, so that a resume from the command line can
    compare its --lr, --weight-decay and --accum-steps (a value shared by all groups; None when they differ)."""
    def shared(key):
        values = {g.get("initial_lr", g["lr"]) if key == "lr" else g.get(key) for g in optimizer.param_groups}
        return values.pop() if len(values) == 1 else None
    return {"optimizer": type(optimizer).__name__, "lr": shared("lr"), "weight_decay": shared("weight_decay"),
            "accum_steps": accum_steps}


def fit(model, train_loader, val_loader=None, optimizer=None, loss_fn=None, epochs=1, scheduler=None, callbacks=(),
        checkpoint_dir=None, resume=False, progress=True, log=print, keep_checkpoints=2, distributed=None, *,
        accum_steps=1, ema=None, eval_loss_fn=None, checkpoint_extra=None):
    """Train for ``epochs`` epochs, testing after each; returns the history dict of lists:
    epoch, train_loss_sum (the article's per-epoch loss), train_loss (mean of batch losses),
    train_time, test_accuracy, test_loss, test_time, lr (at the epoch's start); with ``ema`` also
    ema_test_accuracy and ema_test_loss (the averaged weights tested on the same data).

    scheduler: torch-style (``step()`` once per epoch; one whose ``step`` requires an argument, as
    ReduceLROnPlateau's ``step(metrics)``, gets the epoch's test loss) or timm-style
    (``step_update(n)`` per update and ``step(epoch + 1)`` per epoch). callbacks: callables
    ``cb(record) -> stop?`` run after each epoch with that epoch's record (or objects with
    ``on_epoch_end(record)``); a true return value stops training. log: function for the per-epoch
    line (None: silent).

    accum_steps: batches per optimizer update (see train_one_epoch). ema: a weight average with
    ``update(model, step=n)`` and ``.module`` (vitc.utils.ModelEma), updated after every optimizer
    update, tested after every epoch and stored in the checkpoints. eval_loss_fn: the test loss
    (default: loss_fn). checkpoint_extra: a JSON-able dict stored in every checkpoint's state.json
    under ``extra`` (python -m vitc.train keeps its options there to check a resume); fit itself adds
    ``fit_options`` (optimizer class, base lr, weight decay, accum_steps) to every checkpoint.

    distributed: None (default) = data-parallel when launched by mpirun with more than one process,
    True = always through MPI, False = never. Then (vitc.distributed) the loaders are sharded, the
    gradients averaged before each step, BatchNorm buffers averaged before each test pass and
    checkpoint, statistics summed over the ranks; rank 0 alone logs, shows progress and writes
    checkpoints, which every rank reads on resume.

    Defaults, so ``fit(model, DataLoader(dataset, batch_size=64))`` trains: no val_loader = no test
    pass (test_accuracy nan, test_loss None); optimizer = AdamW with torch's defaults (lr 1e-3,
    weight_decay 0.01); loss_fn = cross-entropy; one epoch.
    """
    if optimizer is None:
        from ..optim import AdamW
        optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    if loss_fn is None:
        from ..nn import CrossEntropyLoss
        loss_fn = CrossEntropyLoss()
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    if resume and not checkpoint_dir:
        raise ValueError("fit: resume=True needs a checkpoint_dir")
    _positive_int(accum_steps, "fit", "accum_steps")
    if ema is not None and not (hasattr(ema, "update") and hasattr(ema, "module")):
        raise TypeError(f"fit: ema must have update(model, step=) and .module (vitc.utils.ModelEma), "
                        f"got {type(ema).__name__}")
    if checkpoint_extra is not None and not isinstance(checkpoint_extra, dict):
        raise TypeError(f"fit: checkpoint_extra must be a dict or None, got {type(checkpoint_extra).__name__}")
    eval_loss_fn = loss_fn if eval_loss_fn is None else eval_loss_fn
    dist = _distributed_context(distributed)
    if dist is not None:
        from ..distributed import shard_eval_loader, shard_train_loader
        train_loader, val_loader = shard_train_loader(train_loader, dist), shard_eval_loader(val_loader, dist)
        if dist.rank != 0:
            progress, log = False, None
    writes = checkpoint_dir and (dist is None or dist.rank == 0)
    keys = _KEYS + (_EMA_KEYS if ema is not None else ())
    history = {k: [] for k in keys}
    start, num_updates = 0, 0
    options = _fit_options(optimizer, accum_steps)  # read before a resume loads the checkpoint's optimizer
    if resume:
        path, state = _resume(checkpoint_dir, model, optimizer, scheduler, ema)
        if path is not None:
            start = int(state["epoch"])
            history = {k: list(state["history"].get(k, [])) for k in keys}
            num_updates = int(state["extra"].get("num_updates", 0))
            if log:
                log(f"resumed from {path} (epoch {start})")
    kind = _scheduler_kind(scheduler)
    stepper = optimizer
    if dist is not None:
        dist.broadcast_state(model)  # every rank starts from rank 0's weights
        if ema is not None:
            dist.broadcast_state(ema.module)
        stepper = dist.averaging(optimizer)
    for epoch in range(start, epochs):
        for loader in (train_loader, val_loader):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)  # shuffling is a function of (seed, epoch): resumable
        lr = optimizer.param_groups[0]["lr"]
        tr, num_updates = train_one_epoch(model, train_loader, stepper, loss_fn, epoch, scheduler, num_updates,
                                          progress, desc=f"epoch {epoch + 1}/{epochs}", accum_steps=accum_steps,
                                          ema=ema)
        ev = _test(model, val_loader, eval_loss_fn, dist)
        tr, ev = _combine_over_ranks(dist, tr, ev) if dist is not None else (tr, ev)
        ev_ema = _test(ema.module, val_loader, eval_loss_fn, dist, dist is not None) if ema is not None else None
        if kind == "torch":
            if _wants_metric(scheduler):
                scheduler.step(ev["loss"])
            else:
                scheduler.step()
        elif kind == "timm":
            scheduler.step(epoch + 1)
        record = {"epoch": epoch + 1, "train_loss_sum": tr["loss_sum"], "train_loss": tr["loss_mean"],
                  "train_time": tr["time"], "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
                  "test_time": ev["time"], "lr": lr}
        if ev_ema is not None:
            record.update(ema_test_accuracy=ev_ema["accuracy"], ema_test_loss=ev_ema["loss"])
        for k in keys:
            history[k].append(record[k])
        if log:
            log(_epoch_line(epoch, epochs, tr, ev, ev_ema, lr))
        if writes:
            extra = dict(checkpoint_extra or {}, num_updates=num_updates, fit_options=options)
            save_checkpoint(checkpoint_dir, epoch + 1, model, optimizer, scheduler, history, extra,
                            keep=keep_checkpoints, ema=ema)
        if checkpoint_dir and dist is not None:
            dist.barrier("the barrier after rank 0's checkpoint")
        stop = False
        for cb in callbacks:
            fn = getattr(cb, "on_epoch_end", cb)
            stop = bool(fn(record)) or stop
        if stop:
            break
    return history


def _test(model, loader, loss_fn, dist, combine=False):
    """evaluate() after averaging the BatchNorm buffers over the ranks (so every rank tests the same model)."""
    if loader is None:  # fit without a val_loader: nothing to test
        return {"accuracy": float("nan"), "loss": None, "time": 0.0, "samples": 0}
    if dist is not None:
        dist.average_buffers(model)
    ev = evaluate(model, loader, loss_fn)
    if combine:
        _, ev = _combine_over_ranks(dist, None, ev)
    return ev


def _wants_metric(scheduler):
    """True when ``scheduler.step`` has a required parameter (torch's ReduceLROnPlateau.step(metrics))."""
    try:
        params = inspect.signature(scheduler.step).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _epoch_line(epoch, epochs, tr, ev, ev_ema, lr):
    def loss(v):
        return "n/a" if v is None else f"{v:.4f}"
    ema = (f", EMA test loss {loss(ev_ema['loss'])}, EMA test accuracy {100 * ev_ema['accuracy']:.2f}%"
           if ev_ema is not None and ev_ema["samples"] else "")
    test = (f", test loss {loss(ev['loss'])}, test accuracy {100 * ev['accuracy']:.2f}%{ema}" if ev["samples"]
            else ", no test set")
    return (f"epoch {epoch + 1}/{epochs}: train loss {tr['loss_mean']:.4f} (mean of {tr['batches']} batches; "
            f"sum of {tr['batches']} batch means {tr['loss_sum']:.4f}){test}, train {tr['time']:.1f} s, "
            f"test {ev['time']:.1f} s (no_grad), lr {lr:.3g}")


def _distributed_context(distributed):
    """vitc.distributed's Context when fit runs data-parallel, else None (MPI is imported only then)."""
    if distributed is None:
        from ..distributed._launch import launched_world_size
        if launched_world_size() == 1:
            return None
    elif distributed is False:
        return None
    from ..distributed import current
    return current(distributed)


def _combine_over_ranks(dist, tr, ev):
    """The epoch's statistics over all ranks: the batch-mean losses averaged (each rank's batch is an
    equal share of the global batch), test counts summed; times are rank 0's. tr None: the test's only."""
    n = ev["samples"]
    correct = round(ev["accuracy"] * n) if n else 0
    test_loss = ev["loss"] * n if (n and ev["loss"] is not None) else 0.0
    train = (tr["loss_sum"], tr["nonfinite"]) if tr is not None else (0.0, 0)
    loss_sum, nonfinite, correct, test_loss, n = dist.sum_floats(*train, correct, test_loss, n)
    if tr is not None:
        tr = dict(tr, loss_sum=loss_sum / dist.size, nonfinite=int(nonfinite))
        tr["loss_mean"] = tr["loss_sum"] / tr["batches"] if tr["batches"] else float("nan")
    ev = dict(ev, accuracy=correct / n if n else float("nan"),
              loss=test_loss / n if (n and ev["loss"] is not None) else None, samples=int(n))
    return tr, ev


from .branches import branch_cooldowns, branch_dir  # noqa: E402  (uses the checkpoint functions above)

__all__ += ["branch_cooldowns", "branch_dir"]
