"""Adam (L2 weight decay) and AdamW (decoupled weight decay), as torch.optim."""
from .._ops.optim_ops import adam_step
from .._tensor import as_dtype, bfloat16, float32
from .optimizer import Optimizer, _check_number

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Kingma & Ba 2015 with torch's details: per-parameter step count for the bias corrections,
    ε added after √v̂, weight_decay as L2 (g ← g + wd·θ), optional AMSGrad.

    mu_dtype=vitc.bfloat16 stores the first moment in bfloat16 (Zhai et al. 2021 §3.4; optax
    ``scale_by_adam(mu_dtype=jnp.bfloat16)``): each step computes m̃ = β1·m + (1−β1)·g in float32
    from the stored m (in torch's form m + (1−β1)(g − m), so the float32 path is unchanged; the
    two forms differ in the last float32 bit), updates θ with the unrounded m̃, and stores m̃
    rounded to nearest even —
    half the memory of the first moment. nu_dtype=vitc.bfloat16 does the same to the second
    moment; the paper reports that this hurts, and it does: bfloat16 has 8 significant bits, so
    once g² is much smaller than v the relative change (1−β2)(1 − g²/v) ≈ 1e-3 per step is below
    half an ulp (2^-9 ≈ 2e-3) and v never decays (tests/optim/test_bf16_moments.py shows it).
    max_grad_norm clips all gradients together by their global L2 norm first (see Optimizer)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, mu_dtype=None, nu_dtype=None, max_grad_norm=None):
        self.mu_dtype = _moment_dtype(mu_dtype, "mu_dtype")
        self.nu_dtype = _moment_dtype(nu_dtype, "nu_dtype")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize), max_grad_norm=max_grad_norm)

    def _buffer_dtype(self, name):
        return {"exp_avg": self.mu_dtype, "exp_avg_sq": self.nu_dtype}.get(name, float32)

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
        m, v = fg.add_buffer("exp_avg", self.mu_dtype), fg.add_buffer("exp_avg_sq", self.nu_dtype)
        vmax = fg.add_buffer("max_exp_avg_sq") if g["amsgrad"] else None
        b1, b2 = g["betas"]
        adam_step(fg.flat, fg.grad, m, v, vmax, fg.seg, g["lr"], b1, b2, g["eps"], g["weight_decay"], g["amsgrad"],
                  self._decoupled, g["maximize"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): θ ← θ·(1 − lr·wd) before the
    Adam update (torch.optim.AdamW; default weight_decay 1e-2)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, mu_dtype=None, nu_dtype=None, max_grad_norm=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, mu_dtype=mu_dtype, nu_dtype=nu_dtype, max_grad_norm=max_grad_norm)


def _moment_dtype(d, name):
    """float32 (None) or bfloat16: the dtypes a stored moment may have."""
    d = float32 if d is None else as_dtype(d)
    if d is not float32 and d is not bfloat16:
        raise TypeError(f"{name} must be vitc.float32 or vitc.bfloat16, got {d!r}")
    return d
