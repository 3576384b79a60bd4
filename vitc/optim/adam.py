"""Adam (L2 weight decay) and AdamW (decoupled weight decay), as torch.optim."""
from .._ops.optim_ops import adam_step
from .optimizer import Optimizer, _check_number

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Kingma & Ba 2015 with torch's details: per-parameter step count for the bias corrections,
    ε added after √v̂, weight_decay as L2 (g ← g + wd·θ), optional AMSGrad."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _check_group(self, g):
        _check_number(g["lr"], "learning rate", lo=0.0)
        _check_number(g["eps"], "epsilon value", lo=0.0)
        betas = g["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of floats, got {betas!r}")
        _check_number(betas[0], "beta parameter at index 0", lo=0.0, hi=1.0, hi_open=True)
        _check_number(betas[1], "beta parameter at index 1", lo=0.0, hi=1.0, hi_open=True)
        _check_number(g["weight_decay"], "weight_decay value", lo=0.0)

    def _state_names_for(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _step_group(self, g, fg):
        m, v = fg.add_buffer("exp_avg"), fg.add_buffer("exp_avg_sq")
        vmax = fg.add_buffer("max_exp_avg_sq") if g["amsgrad"] else None
        b1, b2 = g["betas"]
        adam_step(fg.flat, fg.grad, m, v, vmax, fg.seg, g["lr"], b1, b2, g["eps"], g["weight_decay"], g["amsgrad"],
                  self._decoupled, g["maximize"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): θ ← θ·(1 − lr·wd) before the
    Adam update (torch.optim.AdamW; default weight_decay 1e-2)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
