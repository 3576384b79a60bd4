"""optim ops (csrc/ops/optim.c): whole-group optimizer steps over flat buffers.

These are the low-level calls behind vitc.optim; they are not exported as ``vitc.<name>``.
``seg`` is an int64 (S, 4) tensor with one row per parameter: [start, numel, step, active].
"""
from .._tensor import _call

__all__ = []


def flat_view(flat, offset, shape):
    """A contiguous view of ``shape`` starting ``offset`` elements into the 1-d buffer ``flat``."""
    return _call("optim_view", (flat,), offset=int(offset), shape=tuple(int(s) for s in shape))


def sgd_step(param, grad, momentum_buf, seg, lr, momentum, dampening, weight_decay, nesterov, maximize):
    return _call("sgd_step", (param, grad, momentum_buf, seg), nesterov=int(bool(nesterov)),
                 maximize=int(bool(maximize)), lr=float(lr), momentum=float(momentum), dampening=float(dampening),
                 weight_decay=float(weight_decay))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, seg, lr, beta1, beta2, eps, weight_decay,
              amsgrad, decoupled, maximize):
    return _call("adam_step", (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, seg), amsgrad=int(bool(amsgrad)),
                 decoupled=int(bool(decoupled)), maximize=int(bool(maximize)), lr=float(lr), beta1=float(beta1),
                 beta2=float(beta2), eps=float(eps), weight_decay=float(weight_decay))


def adafactor_step(param, grad, exp_avg, exp_avg_sq, seg, fac, lr, momentum, decay_rate, beta2_cap, eps,
                   weight_decay):
    return _call("adafactor_step", (param, grad, exp_avg, exp_avg_sq, seg, fac), lr=float(lr),
                 momentum=float(momentum), decay_rate=float(decay_rate), beta2_cap=float(beta2_cap), eps=float(eps),
                 weight_decay=float(weight_decay))


def flat_zero(flat):
    """Zero a contiguous 1-d float32 or bfloat16 buffer in place (a parallel memset)."""
    return _call("optim_zero", (flat,))


def rmsprop_step(param, grad, square_avg, momentum_buf, grad_avg, seg, lr, alpha, eps, weight_decay, momentum,
                 centered, maximize):
    return _call("rmsprop_step", (param, grad, square_avg, momentum_buf, grad_avg, seg), centered=int(bool(centered)),
                 maximize=int(bool(maximize)), lr=float(lr), alpha=float(alpha), eps=float(eps),
                 weight_decay=float(weight_decay), momentum=float(momentum))
