"""RandAugment's geometric ops applied to dense label maps (zihangJiang/TokenLabeling
tlt/data/random_augment_label.py: Rotate, ShearX/Y, TranslateX/YRel warp the map with nearest
neighbour; the colour ops leave it alone).

The map follows the image exactly: each map cell's centre is taken to image pixels, sent through the
inverse affine matrix the image op used (csrc/ops/augment.c ra_apply: Pillow's conventions, rotation
about (W/2, H/2), shear about the origin, translation by pct·W or pct·H), and read from the map cell
it lands in. Cells that land outside the map get score 0 on every class (the reference fills scores
with 0; its 'nearest' fill of the class indices does not matter for a cell whose scores are all 0).

legacy_warp=True reproduces the reference instead (random_augment_label.py `affine_label`, scipy
ndimage.affine_transform, order 0): the op's matrix is built for the map's own size and applied to
integer cell indices, so the rotation centre (Wl/2, Hl/2) and the shear origin sit half a cell off the
image's (cell i's centre is index i, not i + ½); the nearest cell is ⌊v + ½⌋, and a cell whose source
index v falls outside [0, n − 1] gets score 0 (the outer half of each border cell counts as outside).
The rotation matrix is rounded to 15 decimals as the reference rounds it. Translation is the same in
both (no origin), up to that border rule.
"""
import math

import numpy as np

from .._ops.augment import RA_OPS

__all__ = ["GEOMETRIC_OPS", "inverse_matrix", "warp_dense_maps"]

GEOMETRIC_OPS = {RA_OPS.index(n): n for n in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")}


def inverse_matrix(op_name, magnitude, sign, size, translate_pct=0.45, decimals=None):
    """(a, b, c, d, e, f): source x = a·x + b·y + c, source y = d·x + e·y + f in image pixels (H, W).
    decimals: round the rotation's cos and sin first (the reference rounds them to 15)."""
    h, w = size
    level = magnitude / 10.0
    if op_name == "Rotate":
        ang = -math.radians(sign * level * 30.0)
        cs, sn = math.cos(ang), math.sin(ang)
        if decimals is not None:
            cs, sn = round(cs, decimals), round(sn, decimals)
        cx, cy = w / 2.0, h / 2.0
        return (cs, sn, cs * -cx + sn * -cy + cx, -sn, cs, -sn * -cx + cs * -cy + cy)
    s = sign * level * 0.3
    if op_name == "ShearX":
        return (1.0, s, 0.0, 0.0, 1.0, 0.0)
    if op_name == "ShearY":
        return (1.0, 0.0, 0.0, s, 1.0, 0.0)
    pct = sign * level * translate_pct
    if op_name == "TranslateXRel":
        return (1.0, 0.0, pct * w, 0.0, 1.0, 0.0)
    if op_name == "TranslateYRel":
        return (1.0, 0.0, 0.0, 0.0, 1.0, pct * h)
    raise ValueError(f"inverse_matrix: {op_name!r} is not a geometric RandAugment op ({sorted(GEOMETRIC_OPS.values())})")


def _warp_one(dense, m, size):
    k, hl, wl = dense.shape
    h, w = size
    r, c = np.meshgrid(np.arange(hl), np.arange(wl), indexing="ij")
    x, y = (c + 0.5) * (w / wl), (r + 0.5) * (h / hl)  # cell centres in image pixels
    a, b, cc, d, e, f = m
    xs, ys = a * x + b * y + cc, d * x + e * y + f
    cs, rs = np.floor(xs * (wl / w)).astype(np.int64), np.floor(ys * (hl / h)).astype(np.int64)
    inside = (cs >= 0) & (cs < wl) & (rs >= 0) & (rs < hl)
    out = dense[:, np.clip(rs, 0, hl - 1), np.clip(cs, 0, wl - 1)]
    out[:, ~inside] = 0.0
    return out


def _warp_one_legacy(dense, m):
    """The reference's warp: m (built for the map's size) on integer cell indices, see the module doc."""
    k, hl, wl = dense.shape
    r, c = np.meshgrid(np.arange(hl, dtype=np.float64), np.arange(wl, dtype=np.float64), indexing="ij")
    a, b, cc, d, e, f = m
    xs, ys = a * c + b * r + cc, d * c + e * r + f
    inside = (xs >= 0) & (xs <= wl - 1) & (ys >= 0) & (ys <= hl - 1)
    cs = np.clip(np.floor(xs + 0.5), 0, wl - 1).astype(np.int64)
    rs = np.clip(np.floor(ys + 0.5), 0, hl - 1).astype(np.int64)
    out = dense[:, rs, cs]
    out[:, ~inside] = 0.0
    return out


def warp_dense_maps(dense, plan, size, translate_pct=0.45, legacy_warp=False):
    """Apply every sample's geometric RandAugment ops (plan (B, n, 4) rows: op id, magnitude, sign,
    filter, as RandAugment.last_plan) in order to its dense map (B, K, Hl, Wl); size the image's (H, W).
    legacy_warp: the reference's index-space warp (module doc) instead of the geometric one."""
    dense = np.asarray(dense, np.float32)
    plan = np.asarray(plan, np.float64)
    if dense.ndim != 4 or plan.ndim != 3 or plan.shape[0] != dense.shape[0] or plan.shape[2] != 4:
        raise ValueError(f"warp_dense_maps: need dense (B, K, Hl, Wl) and plan (B, n, 4) with the same B, got "
                         f"{dense.shape} and {plan.shape}")
    out = dense.copy()
    for i in range(len(out)):
        for op, mag, sign, _ in plan[i]:
            name = GEOMETRIC_OPS.get(int(op))
            if name is None:
                continue
            if legacy_warp:
                out[i] = _warp_one_legacy(out[i], inverse_matrix(name, mag, sign, dense.shape[2:], translate_pct,
                                                                 decimals=15))
            else:
                out[i] = _warp_one(out[i], inverse_matrix(name, mag, sign, size, translate_pct), size)
    return out
