"""Cooldown branches of one long rsqrt run (Zhai et al., "Scaling Vision Transformers",
arXiv 2106.04560 §3.5): the rsqrt schedule does not depend on the run's length until its cooldown
starts, so one long run, checkpointed, serves every shorter training budget; each budget only
pays for its own cooldown.

``branch_cooldowns`` loads a checkpoint of the long run, gives the scheduler a new end with
``RsqrtLR.branch(total_steps, cooldown_steps)`` and trains to it with ``fit``, one branch per
(total_steps, cooldown_steps), each into its own checkpoint directory: the branch's first
checkpoint is the long run's state with the new schedule, so ``fit(resume=True)`` starts from it
and an interrupted branch continues from its newest intact checkpoint when called again.
"""
import numbers
import os

from . import _checkpoints_newest_first, _read_state, fit, latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = ["branch_cooldowns", "branch_dir"]


def branch_dir(out_dir, total_steps, cooldown_steps):
    """The checkpoint directory of one branch under ``out_dir``."""
    return os.path.join(os.fspath(out_dir), f"branch-total{total_steps}-cooldown{cooldown_steps}")


def _steps(v, who, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
        raise ValueError(f"{who}: {name} must be an int >= 0, got {v!r}")
    return int(v)


def _source(checkpoint):
    """A checkpoint directory, or the newest complete one in a checkpoint_dir."""
    path = os.fspath(checkpoint)
    if os.path.isfile(os.path.join(path, "state.json")):
        return path
    newest = latest_checkpoint(path)
    if newest is None:
        raise FileNotFoundError(f"branch_cooldowns: {path} is neither a checkpoint nor a directory holding one")
    return newest


def _check_existing(path, total, cool):
    """An existing branch directory must hold this branch (its scheduler's total and cooldown)."""
    for ckpt in _checkpoints_newest_first(path):
        try:
            sched = _read_state(ckpt).get("scheduler") or {}
        except (ValueError, OSError):
            continue  # damaged: fit(resume=True) falls back past it
        if (sched.get("total_steps"), sched.get("cooldown_steps")) != (total, cool):
            raise ValueError(f"branch_cooldowns: {ckpt} holds a branch with total_steps={sched.get('total_steps')}, "
                             f"cooldown_steps={sched.get('cooldown_steps')}, not ({total}, {cool})")
        return True
    return False


def branch_cooldowns(checkpoint, branches, make, train_loader, val_loader, loss_fn, out_dir, callbacks=(),
                     progress=False, log=None, keep_checkpoints=2):
    """Train one cooldown branch per ``(total_steps, cooldown_steps)`` from a checkpoint of a long
    ``RsqrtLR`` run written by ``fit``; returns ``{(total_steps, cooldown_steps): history}`` (fit's history,
    the long run's epochs included).

    checkpoint: a checkpoint directory (``.../ckpt-000004``) or the long run's checkpoint_dir (its
        newest complete checkpoint).
    make: ``make() -> (model, optimizer, scheduler)`` building the long run's objects afresh (the
        scheduler an ``RsqrtLR`` with the long run's warmup and timescale); called once per branch.
    total_steps and cooldown_steps count optimizer updates; total_steps must be a whole number of
        epochs (``len(train_loader)`` updates each), and the cooldown may not start before the
        checkpoint's update.
    out_dir: branch ``(S, c)`` checkpoints into ``branch_dir(out_dir, S, c)``. Calling again with the
        same arguments resumes every unfinished branch (finished ones return their stored history).
    """
    who = "branch_cooldowns"
    if not callable(make):
        raise TypeError(f"{who}: make must be a callable returning (model, optimizer, scheduler)")
    branches = list(branches)
    if not branches:
        raise ValueError(f"{who}: branches is empty (give (total_steps, cooldown_steps) pairs)")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch < 1:
        raise ValueError(f"{who}: train_loader has no batches")
    plans = []
    for item in branches:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{who}: each branch must be a (total_steps, cooldown_steps) pair, got {item!r}")
        total, cool = _steps(item[0], who, "total_steps"), _steps(item[1], who, "cooldown_steps")
        if total % steps_per_epoch:
            raise ValueError(f"{who}: total_steps={total} is not a whole number of epochs of {steps_per_epoch} "
                             f"updates")
        plans.append((total, cool))
    if len(set(plans)) != len(plans):
        raise ValueError(f"{who}: a branch is listed twice: {plans}")
    source = _source(checkpoint)
    results = {}
    for total, cool in plans:
        path = branch_dir(out_dir, total, cool)
        model, optimizer, scheduler = make()
        if not hasattr(scheduler, "branch"):
            raise TypeError(f"{who}: make() must return an RsqrtLR-like scheduler with branch(), "
                            f"got {type(scheduler).__name__}")
        if not _check_existing(path, total, cool):
            # the branch's first checkpoint: the long run's state (RNG included) with the new end
            state = load_checkpoint(source, model, optimizer, scheduler)
            scheduler.branch(total, cool)
            save_checkpoint(path, state["epoch"], model, optimizer, scheduler, state.get("history"),
                            state.get("extra"), keep=keep_checkpoints)
        results[(total, cool)] = fit(model, train_loader, val_loader, optimizer, loss_fn, total // steps_per_epoch,
                                     scheduler=scheduler, callbacks=callbacks, checkpoint_dir=path, resume=True,
                                     progress=progress, log=log, keep_checkpoints=keep_checkpoints)
    return results
