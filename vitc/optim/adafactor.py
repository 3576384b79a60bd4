"""The modified Adafactor of Zhai et al. 2021, "Scaling Vision Transformers" §3.4.

As big_vision's ``scale_by_adafactor`` (optax ``scale_by_factored_rms`` followed by an EMA
momentum) with decoupled weight decay; per parameter, c = its step count (0 on the first step):

    β2 = min(beta2_cap, 1 − (c+1)^−decay_rate)          (0 on the first step, 0.999 after ~5.6k)
    Q = G² + eps
    factored:  R ← β2·R + (1−β2)·mean_{d0} Q,  C ← β2·C + (1−β2)·mean_{d1} Q
               Û = G · (R / mean_{d1} R)^−½ · C^−½
    otherwise: V ← β2·V + (1−β2)·Q,  Û = G · V^−½
    m̃ = momentum·m + (1−momentum)·Û,  m ← m̃ stored in ``momentum_dtype`` (bfloat16 by default)
    θ ← θ − lr·(m̃ + weight_decay·θ)

no update clipping, no parameter-scale (relative) step, no bias correction; the step uses the
unrounded m̃ (optax's ema returns the f32 value and casts only the carried state). The weight decay
is big_vision's θ ← θ − s·(η·u + w·θ) with the group's lr = s·η and w = η·weight_decay, so a group's
``weight_decay`` is multiplied by its (scheduled) lr like AdamW's, and
vitc.optim.param_groups_head_body_decay(model, 3.0, 0.03) gives the paper's head/body decay.

Which axes are factored (optax ``_factored_dims``): a tensor with ndim ≥ 2 whose second-largest
dimension is at least ``min_dim_size_to_factor`` (32, as big_vision; optax 128, timm 16) is factored
over d0 = its largest axis and d1 = its second largest; of equal sizes the earlier axis is d1 (a
stable sort of the sizes). vitc's Linear weights are (out, in): a (768, 3072) fc1 weight has
d0 = 1 (in) and d1 = 0 (out), so R has shape (768,) (averaged over in) and C (3072,); a square
(768, 768) weight has d0 = 1, d1 = 0. A 4-d conv kernel (D, C, P, P) with P < 32 factors over its
two largest axes, others broadcast. Biases, LayerNorm parameters, 1-d tensors and matrices with a
small second dimension keep a full V. A parameter with no elements (a zero-size dimension) has
nothing to update and no second-moment state; it is skipped.

state_dict per parameter: ``exp_avg`` (momentum_dtype, the parameter's shape) and
``exp_avg_sq_row`` (shape without d0) + ``exp_avg_sq_col`` (shape without d1) when factored,
else ``exp_avg_sq`` (the parameter's shape). Each group's state lives in flat buffers: the momentum
has the parameters' layout, the second moments are packed one parameter after another.
"""
import numpy as np

from .._checks import expect_int
from .._ops.optim_ops import adafactor_step
from .._tensor import bfloat16, float32, from_numpy
from .adam import _moment_dtype
from .optimizer import _START, Optimizer, _check_number

__all__ = ["Adafactor", "factored_axes"]

# columns of the per-parameter layout table handed to the C kernel (csrc/ops/optim.c)
_VSTART, _A, _X, _B, _Y, _K, _D0FIRST, _FACTORED = range(8)


def factored_axes(shape, min_dim_size_to_factor=32):
    """(d0, d1) — the axes the second moment is averaged over for the row and column statistics —
    or None when ``shape`` is not factored (fewer than 2 dims, second-largest dim too small)."""
    if len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda d: shape[d])  # stable: equal sizes keep axis order
    d1, d0 = order[-2], order[-1]
    if shape[d1] < min_dim_size_to_factor:
        return None
    return d0, d1


def _layout_row(shape, axes, vstart):
    """The kernel's layout row and the number of second-moment entries for one parameter."""
    if axes is None:
        numel = _prod(shape)
        return [vstart, 1, 1, 1, 1, numel, 0, 0], numel
    d0, d1 = axes
    lo, hi = min(d0, d1), max(d0, d1)
    row = [vstart, _prod(shape[:lo]), shape[lo], _prod(shape[lo + 1:hi]), shape[hi], _prod(shape[hi + 1:]),
           int(d0 == lo), 1]
    return row, _prod(_drop(shape, d0)) + _prod(_drop(shape, d1))


def _prod(dims):
    return int(np.prod(dims, dtype=np.int64))


def _drop(shape, axis):
    return shape[:axis] + shape[axis + 1:]


class Adafactor(Optimizer):
    """Modified Adafactor (see the module docstring for the math and the factoring rule).

    lr: the step size (big_vision's scaling-laws configs use 8e-4 with a schedule);
    momentum ∈ [0, 1) (0.9); momentum_dtype vitc.bfloat16 (default) or vitc.float32;
    decay_rate 0.8 and beta2_cap 0.999 (the β2 schedule); eps 1e-30 (added to G²);
    weight_decay: decoupled, multiplied by the lr (per group); min_dim_size_to_factor 32;
    max_grad_norm: global gradient-norm clipping before the update (big_vision clips at 1.0).
    """

    def __init__(self, params, lr=1e-3, momentum=0.9, decay_rate=0.8, beta2_cap=0.999, eps=1e-30, weight_decay=0.0,
                 *, momentum_dtype=bfloat16, min_dim_size_to_factor=32, max_grad_norm=None):
        self.momentum_dtype = _moment_dtype(momentum_dtype, "momentum_dtype")
        self.min_dim_size_to_factor = expect_int(min_dim_size_to_factor, "Adafactor", "min_dim_size_to_factor")
        if self.min_dim_size_to_factor < 1:
            raise ValueError(f"Adafactor: min_dim_size_to_factor must be >= 1, got {min_dim_size_to_factor}")
        super().__init__(params, dict(lr=lr, momentum=momentum, decay_rate=decay_rate, beta2_cap=beta2_cap, eps=eps,
                                      weight_decay=weight_decay), max_grad_norm=max_grad_norm)

    def _check_group(self, g):
        _check_number(g["lr"], "learning rate", lo=0.0)
        _check_number(g["momentum"], "momentum value", lo=0.0, hi=1.0, hi_open=True)
        _check_number(g["decay_rate"], "decay_rate value", lo=0.0)
        _check_number(g["beta2_cap"], "beta2_cap value", lo=0.0, hi=1.0, hi_open=True)
        _check_number(g["eps"], "epsilon value", lo=0.0)
        _check_number(g["weight_decay"], "weight_decay value", lo=0.0)

    def _buffer_dtype(self, name):
        return self.momentum_dtype if name == "exp_avg" else float32

    def _init_state(self, group, fg):
        rows, vstart, axes = [], 0, []
        for p in fg.params:
            shape = tuple(int(s) for s in p.shape)
            ax = factored_axes(shape, self.min_dim_size_to_factor)
            row, nv = _layout_row(shape, ax, vstart)
            rows.append(row)
            axes.append(ax)
            vstart += nv
        fg.fac_np = np.array(rows, dtype=np.int64).reshape(len(rows), 8)
        fg.fac = from_numpy(fg.fac_np)
        fg.axes = axes
        fg.add_buffer("exp_avg", self.momentum_dtype)
        fg.add_buffer("exp_avg_sq", float32, size=vstart)

    def _state_slots(self, fg, i):
        shape = tuple(int(s) for s in fg.params[i].shape)
        out = {"exp_avg": (fg.buffers["exp_avg"], int(fg.seg_np[i, _START]), shape)}
        v, vstart, ax = fg.buffers["exp_avg_sq"], int(fg.fac_np[i, _VSTART]), fg.axes[i]
        if ax is None:
            out["exp_avg_sq"] = (v, vstart, shape)
        else:
            d0, d1 = ax
            row, col = _drop(shape, d0), _drop(shape, d1)
            out["exp_avg_sq_row"] = (v, vstart, row)
            out["exp_avg_sq_col"] = (v, vstart + _prod(row), col)
        return out

    def _slot_shape(self, fg, i, name):
        slot = self._state_slots(fg, i).get(name)
        return None if slot is None else slot[2]

    def _slot_for_load(self, fg, i, name):
        return self._state_slots(fg, i)[name]

    def _step_group(self, g, fg):
        adafactor_step(fg.flat, fg.grad, fg.buffers["exp_avg"], fg.buffers["exp_avg_sq"], fg.seg, fg.fac, g["lr"],
                       g["momentum"], g["decay_rate"], g["beta2_cap"], g["eps"], g["weight_decay"])
