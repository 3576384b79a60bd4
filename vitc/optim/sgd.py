"""SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD)."""
from .._ops.optim_ops import sgd_step
from .optimizer import Optimizer, _check_number

__all__ = ["SGD"]


class SGD(Optimizer):
    """g ← ±∇ + wd·θ; buf ← μ·buf + (1−dampening)·g (buf = g on the first step);
    g ← g + μ·buf (nesterov) or buf; θ ← θ − lr·g."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize), max_grad_norm=max_grad_norm)

    def _check_group(self, g):
        _check_number(g["lr"], "learning rate", lo=0.0)
        _check_number(g["momentum"], "momentum value", lo=0.0)
        _check_number(g["dampening"], "dampening value")
        _check_number(g["weight_decay"], "weight_decay value", lo=0.0)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names_for(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _step_group(self, g, fg):
        buf = fg.add_buffer("momentum_buffer") if g["momentum"] != 0 else None
        sgd_step(fg.flat, fg.grad, buf, fg.seg, g["lr"], g["momentum"], g["dampening"], g["weight_decay"],
                 g["nesterov"], g["maximize"])
