"""Gradient utilities (torch.nn.utils names)."""
import math

import numpy as np

from .._tensor import Tensor, no_grad

__all__ = ["clip_grad_norm_", "parameters_to_vector"]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients so that their joint norm is at most max_norm; returns the total norm."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return 0.0
    arrs = [g.numpy() for g in grads]
    if norm_type == math.inf:
        total = max(float(np.abs(a).max()) if a.size else 0.0 for a in arrs)
    else:
        total = sum(float((np.abs(a.astype(np.float64)) ** norm_type).sum()) for a in arrs) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite, so it cannot be "
                           "clipped. Set error_if_nonfinite=False to clip anyway.")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        with no_grad():
            for a in arrs:  # NumPy views of the grads: scaled in place
                a *= np.float32(coef)
    return total


def parameters_to_vector(parameters):
    from .._tensor import from_numpy
    return from_numpy(np.concatenate([p.detach().numpy().ravel() for p in parameters]).astype(np.float32))
