"""Learning-rate schedules with torch.optim.lr_scheduler's semantics (step(), get_last_lr(),
state_dict()), plus timm's warmup + cosine ``CosineLRScheduler`` (timm/scheduler/cosine_lr.py; DeiT's schedule).

Like torch, constructing a scheduler applies epoch 0's rate, and each ``step()`` (once per epoch,
after ``optimizer.step()``) moves to the next epoch. The recursive update rules are torch's, so
the rates agree with torch's to float rounding.
"""
import bisect
import math
import numbers
import types

from .._checks import expect_finite
from .optimizer import Optimizer

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "CosineAnnealingLR", "LinearLR", "SequentialLR",
           "OneCycleLR", "ReduceLROnPlateau", "CosineLRScheduler", "RsqrtLR", "rsqrt_factor"]


def _check_optimizer(opt):
    if not isinstance(opt, Optimizer):
        raise TypeError(f"{type(opt).__name__} is not a vitc Optimizer")
    return opt


class _SchedulerState:
    """The last rates and the state_dict of a schedule: every attribute but the optimizer."""

    def get_last_lr(self):
        return self._last_lr

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class LRScheduler(_SchedulerState):
    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _check_optimizer(optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming an "
                                   "optimizer")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def step(self, epoch=None):
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            expect_finite(epoch, type(self).__name__ + ".step", "epoch")
            self.last_epoch = epoch
            values = self._get_closed_form_lr() if hasattr(self, "_get_closed_form_lr") else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class LambdaLR(LRScheduler):
    """lr = base_lr · lr_lambda(epoch) (one function, or one per group)."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        _check_optimizer(optimizer)
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        for f in self.lr_lambdas:
            if not callable(f):
                raise TypeError(f"lr_lambda must be callable, got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        # functions are not state; callable objects with a __dict__ are saved (as torch)
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        sd["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else dict(f.__dict__) for f in self.lr_lambdas]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        lambdas = state_dict.pop("lr_lambdas", None) or []
        self.__dict__.update(state_dict)
        for f, st in zip(self.lr_lambdas, lambdas):
            if st is not None:
                f.__dict__.update(st)


class StepLR(LRScheduler):
    """lr ← lr·gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = int(step_size), expect_finite(gamma, "StepLR", "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr ← lr·gamma at each milestone epoch."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = expect_finite(gamma, "MultiStepLR", "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        k = self.milestones.count(self.last_epoch)
        return [g["lr"] * self.gamma ** k for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [b * self.gamma ** bisect.bisect_right(self.milestones, self.last_epoch) for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr_t = η_min + ½(base − η_min)(1 + cos(π·t/T_max)) (SGDR without restarts), torch's recursion."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Integral) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = int(T_max), expect_finite(eta_min, "CosineAnnealingLR", "eta_min")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, groups = self.last_epoch, self.T_max, self.optimizer.param_groups
        if t == 0:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and t > 0:
            return [self.eta_min + (b - self.eta_min) * (1 + math.cos(t * math.pi / T)) / 2 for b in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (b - self.eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for b, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (g["lr"] - self.eta_min)
                + self.eta_min for g in groups]

    def _get_closed_form_lr(self):
        return [self.eta_min + (b - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Factor moving linearly from start_factor to end_factor over total_iters epochs."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        start_factor = expect_finite(start_factor, "LinearLR", "start_factor")
        end_factor = expect_finite(end_factor, "LinearLR", "end_factor")
        total_iters = int(expect_finite(total_iters, "LinearLR", "total_iters", lo=1))
        if not 0 < start_factor <= 1:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if not 0 <= end_factor <= 1:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, t = self.optimizer.param_groups, self.last_epoch
        if t == 0:
            return [g["lr"] * self.start_factor for g in groups]
        if t > self.total_iters:
            return [g["lr"] for g in groups]
        d = self.end_factor - self.start_factor
        return [g["lr"] * (1.0 + d / (self.total_iters * self.start_factor + (t - 1) * d)) for g in groups]

    def _get_closed_form_lr(self):
        d = self.end_factor - self.start_factor
        return [b * (self.start_factor + d * min(self.total_iters, self.last_epoch) / self.total_iters)
                for b in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run schedulers one after another, switching at the milestone epochs (torch semantics)."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        _check_optimizer(optimizer)
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler")
        for s in schedulers:
            if s.optimizer is not optimizer:
                raise ValueError("SequentialLR: every scheduler must belong to the same optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} milestones, got {len(milestones)}")
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in self._schedulers:  # undo the initial steps the schedulers took when built
            s.last_epoch -= 1
        self._schedulers[0]._initial_step()
        self._last_lr = self._schedulers[0].get_last_lr()

    def step(self):
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            s.step(0)
        else:
            s.step()
        self._last_lr = s.get_last_lr()

    def state_dict(self):
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        subs = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        for s, st in zip(self._schedulers, subs):
            s.load_state_dict(st)


def _per_group(name, optimizer, value):
    """One value per parameter group: a list/tuple of that length, or one value for all."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected {n} values for {name}, got {len(value)}")
        return list(value)
    return [value] * n


def _positive_int(v, name, who):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{who}: expected a positive int {name}, got {v!r}")
    return int(v)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2017, arXiv 1708.07120) with torch.optim.lr_scheduler.OneCycleLR's
    arguments and phases, stepped once per batch.

    The rate rises from max_lr/div_factor to max_lr over the first pct_start of total_steps (or
    epochs·steps_per_epoch), then anneals ('cos' or 'linear') to max_lr/div_factor/final_div_factor;
    three_phase: back down to the initial rate first, then to the minimum. With cycle_momentum the
    momentum (SGD's ``momentum``, Adam's β1) moves the other way between max_momentum and
    base_momentum. Stepping past total_steps raises ValueError, as torch.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
                 final_div_factor=1e4, three_phase=False, last_epoch=-1):
        who = "OneCycleLR"
        _check_optimizer(optimizer)
        if total_steps is not None:
            self.total_steps = _positive_int(total_steps, "total_steps", who)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_positive_int(epochs, "epochs", who)
                                * _positive_int(steps_per_epoch, "steps_per_epoch", who))
        else:
            raise ValueError(f"{who}: give either total_steps or both epochs and steps_per_epoch")
        if isinstance(pct_start, bool) or not isinstance(pct_start, numbers.Real) or not 0 <= pct_start <= 1:
            raise ValueError(f"{who}: pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{who}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        up = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                             "max_momentum"),
                            (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self._phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        max_lrs = [expect_finite(m, who, "max_lr") for m in _per_group("max_lr", optimizer, max_lr)]
        div_factor = expect_finite(div_factor, who, "div_factor")
        final_div_factor = expect_finite(final_div_factor, who, "final_div_factor")
        if last_epoch == -1:
            for m, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"{who}: cycle_momentum needs an optimizer with momentum or betas "
                                 f"({type(optimizer).__name__} has neither); pass cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            if last_epoch == -1:
                for mx, base, group in zip([expect_finite(m, who, "max_momentum")
                                            for m in _per_group("max_momentum", optimizer, max_momentum)],
                                           [expect_finite(b, who, "base_momentum")
                                            for b in _per_group("base_momentum", optimizer, base_momentum)],
                                           optimizer.param_groups):
                    self._set_momentum(group, mx)
                    group["max_momentum"], group["base_momentum"] = mx, base
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {t} times; the schedule has total_steps={self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
                if t <= end or i == len(self._phases) - 1:
                    pct = (t - start) / (end - start)
                    lrs.append(self._anneal(group[lr0], group[lr1], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m0], group[m1], pct))
                    break
                start = end
        return lrs


class ReduceLROnPlateau(_SchedulerState):
    """Multiply the rate by ``factor`` when a metric stops improving (torch.optim.lr_scheduler.
    ReduceLROnPlateau): ``step(metric)`` once per evaluation.

    mode 'min'/'max'; an improvement beats the best by ``threshold`` (relative: best·(1 ∓ threshold),
    or absolute: best ∓ threshold); after more than ``patience`` evaluations without one the rate
    becomes max(lr·factor, min_lr) (skipped when that changes it by eps or less), followed by
    ``cooldown`` evaluations in which bad ones are not counted.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        who = "ReduceLROnPlateau"
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not factor < 1.0:
            raise ValueError(f"{who}: factor must be a number < 1.0, got {factor!r}")
        self.optimizer = _check_optimizer(optimizer)
        self.factor = expect_finite(factor, who, "factor")
        threshold, eps = expect_finite(threshold, who, "threshold"), expect_finite(eps, who, "eps")
        for m in (min_lr if isinstance(min_lr, (list, tuple)) else [min_lr]):
            expect_finite(m, who, "min_lr")
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr, self.min_lrs = None, _per_group("min_lr", optimizer, min_lr)
        else:
            self.default_min_lr, self.min_lrs = min_lr, [min_lr] * len(optimizer.param_groups)
        for v, name in ((patience, "patience"), (cooldown, "cooldown")):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{who}: {name} must be an int >= 0, got {v!r}")
        self.patience, self.cooldown, self.eps = int(patience), int(cooldown), eps
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def is_better(self, a, best):
        if self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold) if self.mode == "min" else a > best * (self.threshold + 1.0)
        return a < best - self.threshold if self.mode == "min" else a > best + self.threshold

    def step(self, metrics, epoch=None):
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number, got {type(metrics).__name__}") from None
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad evaluations during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {len(groups)} parameter groups, min_lr "
                                   f"gave {len(self.min_lrs)}; set min_lrs to one value per group")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)


class CosineLRScheduler(_SchedulerState):
    """Linear warmup then cosine decay, timm's ``CosineLRScheduler`` semantics
    (huggingface/pytorch-image-models, timm/scheduler/cosine_lr.py).

    t < warmup_t: lr = warmup_lr_init + t·(base − warmup_lr_init)/warmup_t; otherwise
    lr = lr_min + ½(base − lr_min)(1 + cos(π·t_c/T)) within cycle i (cycle_mul/cycle_decay/
    cycle_limit/k_decay as timm; warmup_prefix shifts t by warmup_t). Call ``step(epoch)`` at the
    end of each epoch with the next epoch index (t_in_epochs=True) or ``step_update(num_updates)``
    after each optimizer step (t_in_epochs=False). Building it sets epoch 0's rate.
    """

    def __init__(self, optimizer, t_initial, lr_min=0.0, cycle_mul=1.0, cycle_decay=1.0, cycle_limit=1, warmup_t=0,
                 warmup_lr_init=0.0, warmup_prefix=False, t_in_epochs=True, k_decay=1.0):
        self.optimizer = _check_optimizer(optimizer)
        if isinstance(t_initial, bool) or not isinstance(t_initial, numbers.Integral) or t_initial <= 0:
            raise ValueError(f"CosineLRScheduler: t_initial must be a positive int, got {t_initial!r}")
        who = "CosineLRScheduler"
        lr_min, warmup_t = expect_finite(lr_min, who, "lr_min", lo=0), expect_finite(warmup_t, who, "warmup_t", lo=0)
        for name, v in (("cycle_mul", cycle_mul), ("cycle_decay", cycle_decay), ("cycle_limit", cycle_limit),
                        ("warmup_lr_init", warmup_lr_init), ("k_decay", k_decay)):
            expect_finite(v, who, name)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_values = [group["initial_lr"] for group in optimizer.param_groups]
        self.t_initial, self.lr_min = int(t_initial), float(lr_min)
        self.cycle_mul, self.cycle_decay, self.cycle_limit = float(cycle_mul), float(cycle_decay), int(cycle_limit)
        self.warmup_t, self.warmup_lr_init = int(warmup_t), float(warmup_lr_init)
        self.warmup_prefix, self.t_in_epochs, self.k_decay = bool(warmup_prefix), bool(t_in_epochs), float(k_decay)
        if self.warmup_t:
            self.warmup_steps = [(v - self.warmup_lr_init) / self.warmup_t for v in self.base_values]
            self._update(self.warmup_lr_init)
        else:
            self.warmup_steps = [1 for _ in self.base_values]
            self._update(self.base_values)

    def _get_lr(self, t):
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * s for s in self.warmup_steps]
        if self.warmup_prefix:
            t = t - self.warmup_t
        if self.cycle_mul != 1:
            i = math.floor(math.log(1 - t / self.t_initial * (1 - self.cycle_mul), self.cycle_mul))
            t_i = self.cycle_mul ** i * self.t_initial
            t_curr = t - (1 - self.cycle_mul ** i) / (1 - self.cycle_mul) * self.t_initial
        else:
            i = t // self.t_initial
            t_i = self.t_initial
            t_curr = t - self.t_initial * i
        if i >= self.cycle_limit:
            return [self.lr_min for _ in self.base_values]
        gamma = self.cycle_decay ** i
        k = self.k_decay
        return [self.lr_min + 0.5 * (v * gamma - self.lr_min) * (1 + math.cos(math.pi * t_curr ** k / t_i ** k))
                for v in self.base_values]

    def _update(self, values):
        if not isinstance(values, (list, tuple)):
            values = [values] * len(self.optimizer.param_groups)
        for group, v in zip(self.optimizer.param_groups, values):
            group["lr"] = v
        self._last_lr = list(values)

    def step(self, epoch, metric=None):
        expect_finite(epoch, "CosineLRScheduler.step", "epoch")
        if self.t_in_epochs:
            self._update(self._get_lr(epoch))

    def step_update(self, num_updates, metric=None):
        expect_finite(num_updates, "CosineLRScheduler.step_update", "num_updates")
        if not self.t_in_epochs:
            self._update(self._get_lr(num_updates))

    def get_cycle_length(self, cycles=0):
        cycles = max(1, cycles or self.cycle_limit)
        if self.cycle_mul == 1.0:
            t = self.t_initial * cycles
        else:
            t = int(math.floor(-self.t_initial * (self.cycle_mul ** cycles - 1) / (1 - self.cycle_mul)))
        return t + self.warmup_t if self.warmup_prefix else t


def _steps(value, total, name):
    """A step count: an int >= 0, or a float in [0, 1] read as a fraction of ``total``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"RsqrtLR: {name} must be an int (steps) or a float in [0, 1] (fraction of total_steps), "
                        f"got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise ValueError(f"RsqrtLR: {name} must be >= 0, got {value}")
        return int(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"RsqrtLR: {name} as a fraction of total_steps must be in [0, 1], got {value}")
    return int(round(value * total))


def rsqrt_factor(step, total_steps, warmup_steps=0, timescale=10_000, cooldown_steps=0):
    """The multiplier f(s) of the base lr after ``step`` completed updates (0 for the first update).

    Zhai et al., "Scaling Vision Transformers" (arXiv 2106.04560) §3.5, in the form of big_vision's
    utils.create_learning_rate_schedule(decay_type='rsqrt')::

        f(s) = r(s) · min(1, s/w) · min(1, (S − s)/c),   r(s) = 1/√(1 + (s − w)/τ) for s ≥ w, else 1,

    w warmup, τ timescale, c cooldown, S total. Past the end (s ≥ S) the cooldown factor would turn
    negative; vitc clamps f to 0 there (our choice: a schedule never reverses the update).
    """
    if step >= total_steps:
        return 0.0
    f = 1.0
    if warmup_steps and step < warmup_steps:
        f *= step / warmup_steps
    else:
        f /= math.sqrt(1.0 + (step - warmup_steps) / timescale)
    if cooldown_steps:
        f *= min(1.0, (total_steps - step) / cooldown_steps)
    return f


class RsqrtLR(_SchedulerState):
    """Linear warmup, reciprocal-square-root decay and a linear cooldown to 0 (``rsqrt_factor``),
    stepped once per optimizer update.

    RsqrtLR(optimizer, total_steps, warmup_steps=0, timescale=10000, cooldown_steps=0): warmup and
    cooldown in steps (int) or as fractions of total_steps (float). Building it sets the rate of
    update 0 (0 when warming up). Use ``step()`` after each ``optimizer.step()`` (torch style) or
    ``step_update(num_updates)`` (timm style, what vitc.train.fit calls each batch).

    One rsqrt run can be cooled down at several lengths (the paper's reason for the schedule):
    save a checkpoint during the long run, and for each branch load it and call
    ``branch(total_steps, cooldown_steps)``: the rate stays rsqrt's until the new cooldown starts.
    """

    def __init__(self, optimizer, total_steps, warmup_steps=0, timescale=10_000, cooldown_steps=0):
        self.optimizer = _check_optimizer(optimizer)
        if isinstance(timescale, bool) or not isinstance(timescale, numbers.Real) or not 0 < timescale < math.inf:
            raise ValueError(f"RsqrtLR: timescale must be a finite number > 0, got {timescale!r}")
        self.timescale = float(timescale)
        self.warmup_steps, self.cooldown_steps, self.total_steps = 0, 0, 0
        self._set_total(total_steps, warmup_steps, cooldown_steps)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.num_updates = 0
        self._apply()

    def _set_total(self, total_steps, warmup_steps, cooldown_steps):
        if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
            raise ValueError(f"RsqrtLR: total_steps must be an int >= 1, got {total_steps!r}")
        warmup = _steps(warmup_steps, total_steps, "warmup_steps")
        cooldown = _steps(cooldown_steps, total_steps, "cooldown_steps")
        if warmup > total_steps:
            raise ValueError(f"RsqrtLR: warmup_steps ({warmup}) exceeds total_steps ({total_steps})")
        if warmup + cooldown > total_steps:
            raise ValueError(f"RsqrtLR: warmup_steps + cooldown_steps ({warmup} + {cooldown}) exceed total_steps "
                             f"({total_steps})")
        self.total_steps, self.warmup_steps, self.cooldown_steps = int(total_steps), warmup, cooldown

    def factor(self, step):
        return rsqrt_factor(step, self.total_steps, self.warmup_steps, self.timescale, self.cooldown_steps)

    def _apply(self):
        f = self.factor(self.num_updates)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def step(self, epoch=None):
        """torch style: one more update done. (With an argument, as fit() passes per epoch: ignored,
        the schedule counts updates.)"""
        if epoch is None:
            self.num_updates += 1
            self._apply()

    def step_update(self, num_updates, metric=None):
        self.num_updates = int(expect_finite(num_updates, "RsqrtLR.step_update", "num_updates"))
        self._apply()

    def branch(self, total_steps, cooldown_steps):
        """Give the run a new end: the same warmup and timescale, a cooldown of ``cooldown_steps``
        ending at ``total_steps``. The branch must not start its cooldown before the current update."""
        self._set_total(total_steps, self.warmup_steps, cooldown_steps)
        if self.total_steps - self.cooldown_steps < self.num_updates:
            raise ValueError(f"RsqrtLR.branch: the cooldown would start at update {self.total_steps - self.cooldown_steps}, "
                             f"before the current update {self.num_updates}")
        self._apply()
        return self

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._apply()
