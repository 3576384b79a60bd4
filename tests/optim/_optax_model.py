"""NumPy models of the optax/big_vision semantics the bf16 optimizers follow (float32 math, moments
carried in bfloat16 where the optimizer stores them, the step from the unrounded value)."""
import numpy as np
import torch


def bf16(x):
    """float32 -> nearest bfloat16 (ties to even), back as float32 (torch's rounding)."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).bfloat16().float().numpy()


def bf16_ulp(x):
    """The spacing of bfloat16 numbers at |x| (8 significant bits)."""
    e = np.floor(np.log2(np.maximum(np.abs(x), np.float32(1e-38))))
    return np.exp2(e - 7).astype(np.float32)


def adam(p, m, v, g, t, lr, b1, b2, eps, wd, decoupled, mu_bf16, nu_bf16):
    """One optax scale_by_adam(mu_dtype) step with torch's weight decay; returns (p, m, v)."""
    if wd and not decoupled:
        g = g + np.float32(wd) * p
    mt = np.float32(b1) * m + np.float32(1 - b1) * g
    vt = np.float32(b2) * v + np.float32(1 - b2) * g * g
    u = (mt / np.float32(1 - b1 ** t)) / (np.sqrt(vt / np.float32(1 - b2 ** t)) + np.float32(eps))
    if wd and decoupled:
        p = p * np.float32(1 - lr * wd)
    p = p - np.float32(lr) * u
    return p, (bf16(mt) if mu_bf16 else mt), (bf16(vt) if nu_bf16 else vt)


def factored_axes(shape, min_dim=32):
    """optax _factored_dims as (d0, d1): d0 the largest axis, d1 the second (stable order)."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-1]), int(order[-2])


def adafactor(p, st, g, c, lr, wd, momentum=0.9, decay_rate=0.8, cap=0.999, eps=1e-30, min_dim=32, m_bf16=True):
    """One big_vision scale_by_adafactor step (optax scale_by_factored_rms -> ema momentum) and the
    decoupled decay θ − lr·(m̃ + wd·θ). st: dict with 'm' and 'v' or 'r', 'c'."""
    b2 = np.float32(min(cap, 1.0 - (c + 1.0) ** -decay_rate))
    q = g * g + np.float32(eps)
    ax = factored_axes(p.shape, min_dim)
    if ax is None:
        st["v"] = b2 * st["v"] + (1 - b2) * q
        u = g * st["v"] ** np.float32(-0.5)
    else:
        d0, d1 = ax
        st["r"] = b2 * st["r"] + (1 - b2) * q.mean(axis=d0, dtype=np.float64).astype(np.float32)
        st["c"] = b2 * st["c"] + (1 - b2) * q.mean(axis=d1, dtype=np.float64).astype(np.float32)
        rcm = st["r"].mean(axis=d1 - 1 if d1 > d0 else d1, keepdims=True, dtype=np.float64).astype(np.float32)
        rf = (st["r"] / rcm) ** np.float32(-0.5)
        cf = st["c"] ** np.float32(-0.5)
        u = g * np.expand_dims(rf, d0) * np.expand_dims(cf, d1)
    mt = np.float32(momentum) * st["m"] + np.float32(1 - momentum) * u
    st["terms"] = np.abs(np.float32(momentum) * st["m"]) + np.abs(np.float32(1 - momentum) * u)
    st["m"] = bf16(mt) if m_bf16 else mt
    return p - np.float32(lr) * (mt + np.float32(wd) * p)


def adafactor_state(shape, min_dim=32):
    st = {"m": np.zeros(shape, np.float32)}
    ax = factored_axes(shape, min_dim)
    if ax is None:
        st["v"] = np.zeros(shape, np.float32)
    else:
        d0, d1 = ax
        st["r"] = np.zeros(np.delete(shape, d0), np.float32)
        st["c"] = np.zeros(np.delete(shape, d1), np.float32)
    return st
