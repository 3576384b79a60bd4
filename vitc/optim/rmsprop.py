"""RMSprop (torch.optim.RMSprop): Hinton's lecture 6e, with Graves 2013 (arXiv 1308.0850, eq. 38-40) centering."""
from .._ops.optim_ops import rmsprop_step
from .optimizer import Optimizer, _check_number

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """g ← ±∇ + wd·θ; v ← α·v + (1−α)·g²; centered: ḡ ← lerp(ḡ, g, 1−α), d = √(v − ḡ²) + ε, else
    d = √v + ε; with momentum μ: b ← μ·b + g/d, θ ← θ − lr·b; else θ ← θ − lr·g/d.
    State per parameter (torch's names): square_avg, momentum_buffer (momentum > 0), grad_avg (centered)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize), max_grad_norm=max_grad_norm)

    def _check_group(self, g):
        _check_number(g["lr"], "learning rate", lo=0.0)
        _check_number(g["eps"], "epsilon value", lo=0.0)
        _check_number(g["momentum"], "momentum value", lo=0.0)
        _check_number(g["weight_decay"], "weight_decay value", lo=0.0)
        _check_number(g["alpha"], "alpha value", lo=0.0)

    def _state_names_for(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def _step_group(self, g, fg):
        v = fg.add_buffer("square_avg")
        buf = fg.add_buffer("momentum_buffer") if g["momentum"] > 0 else None
        ga = fg.add_buffer("grad_avg") if g["centered"] else None
        rmsprop_step(fg.flat, fg.grad, v, buf, ga, fg.seg, g["lr"], g["alpha"], g["eps"], g["weight_decay"],
                     g["momentum"], g["centered"], g["maximize"])
