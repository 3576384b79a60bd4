"""RandAugment on batches of uint8 images (timm/data/auto_augment.py, config 'rand-m9-mstd0.5-inc1').

Cubuk et al., "RandAugment" (arXiv 1909.13719); semantics of timm's ``rand_augment_transform``
(huggingface/pytorch-image-models, data/auto_augment.py), e.g. DeiT's ``rand-m9-mstd0.5-inc1``.
The ops run in C (csrc/ops/augment.c) on all samples at once: the point ops reproduce Pillow on
uint8 exactly, the geometric ops follow Pillow's affine filters (tested within a tolerance).
"""
import math
import re

import numpy as np

from ._counters import CounterStream, core, integer, number
from .transforms import Transform

__all__ = ["RandAugment"]

_CONFIG_KEYS = {"m", "n", "mstd", "mmax", "inc", "p"}


def _parse_config(config):
    """timm's config string 'rand-m9-n2-mstd0.5-mmax10-inc1-p0.5' -> RandAugment keyword arguments."""
    parts = config.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment: config must start with 'rand', got {config!r}")
    kw = {}
    for part in parts[1:]:
        m = re.fullmatch(r"([a-z]+)(\d.*)", part)
        if not m or m.group(1) not in _CONFIG_KEYS:
            raise ValueError(f"RandAugment: unknown config section {part!r} in {config!r} "
                             f"(known: {', '.join(sorted(_CONFIG_KEYS))})")
        key, val = m.groups()
        try:
            if key == "mstd":
                v = float(val)
                kw["magnitude_std"] = math.inf if v > 100 else v  # timm: > 100 means uniform
            elif key == "mmax":
                kw["magnitude_max"] = int(val)
            elif key == "inc":
                kw["increasing"] = bool(int(val))
            elif key == "m":
                kw["magnitude"] = int(val)
            elif key == "n":
                kw["num_ops"] = int(val)
            else:
                kw["prob"] = float(val)
        except ValueError:
            raise ValueError(f"RandAugment: bad value in config section {part!r}") from None
    return kw


class RandAugment(Transform):
    """Per sample, ``num_ops`` ops drawn uniformly with replacement from timm's 15, each applied with
    probability ``prob`` at magnitude m ~ N(magnitude, magnitude_std) clipped to [0, magnitude_max]
    (uniform in [0, magnitude] when magnitude_std is inf), signs ± with probability ½.

    ``RandAugment("rand-m9-mstd0.5-inc1")`` takes timm's config string; keywords override it.
    ``increasing=True`` is timm's ``inc1`` op set (severity grows with magnitude), False its original
    set. Geometric ops (Rotate, ShearX/Y, TranslateX/YRel) fill outside the image with ``fill`` (an
    int or one per channel; DeiT uses round(255·mean)) and resample ``'bilinear'``, ``'bicubic'`` or
    at ``'random'`` between the two (timm's default).

    x: (B, C, H, W) with C = 1 or 3, uint8 (result uint8) or float in [0, 1] (ToTensor scale; the
    result is float32 on the same scale, quantized to 1/255 as Pillow sees it), a NumPy array or a
    vitc Tensor (float). ``last_plan``: the (B, num_ops, 4) draws of the last call (op id into
    ``vitc._ops.augment.RA_OPS`` or −1 if skipped, magnitude, sign, filter 0 bilinear / 1 bicubic).
    ``apply(x, plan)`` applies a given plan without drawing.
    """

    def __init__(self, config=None, *, num_ops=None, magnitude=None, magnitude_std=None, prob=None,
                 magnitude_max=None, increasing=None, interpolation="random", fill=128, translate_pct=0.45,
                 seed=None):
        kw = dict(num_ops=2, magnitude=9, magnitude_std=0.5, prob=0.5, magnitude_max=10, increasing=True)
        if config is not None:
            if not isinstance(config, str):
                raise TypeError(f"RandAugment: config must be a timm config string, got {type(config).__name__}")
            kw.update(_parse_config(config))
        given = dict(num_ops=num_ops, magnitude=magnitude, magnitude_std=magnitude_std, prob=prob,
                     magnitude_max=magnitude_max, increasing=increasing)
        kw.update({k: v for k, v in given.items() if v is not None})
        self.num_ops = integer(kw["num_ops"], "RandAugment: num_ops", 0, 16)
        self.magnitude_max = number(kw["magnitude_max"], "RandAugment: magnitude_max", 0.0, 10.0, lo_open=True)
        self.magnitude = number(kw["magnitude"], "RandAugment: magnitude", 0.0, self.magnitude_max)
        self.magnitude_std = number(kw["magnitude_std"], "RandAugment: magnitude_std", 0.0)
        self.prob = number(kw["prob"], "RandAugment: prob", 0.0, 1.0)
        self.increasing = bool(kw["increasing"])
        if interpolation not in ("random", "bilinear", "bicubic"):
            raise ValueError(f"RandAugment: interpolation must be 'random', 'bilinear' or 'bicubic', "
                             f"got {interpolation!r}")
        self.interpolation = interpolation
        self.translate_pct = number(translate_pct, "RandAugment: translate_pct", 0.0, 1.0)
        fill = np.atleast_1d(np.asarray(fill))
        if fill.ndim != 1 or fill.dtype.kind not in "iu" or np.any(fill < 0) or np.any(fill > 255):
            raise ValueError(f"RandAugment: fill must be an int in 0..255 or one per channel, got {fill!r}")
        self.fill = tuple(int(v) for v in fill)
        self._stream = CounterStream(seed)
        self._last = None

    @property
    def last_plan(self):
        return self._last

    def __call__(self, x, rng=None):
        return self._run(x, None, rng)

    def apply(self, x, plan):
        """Apply a given (B, num_ops, 4) plan (e.g. ``last_plan``) to x; no draws."""
        _C, aug, Tensor, from_numpy = core()
        plan = np.ascontiguousarray(plan, dtype=np.float32)
        return self._run(x, from_numpy(plan), None)

    def _run(self, x, plan, rng):
        _C, aug, Tensor, from_numpy = core()
        is_tensor = isinstance(x, Tensor)
        a = x.detach().numpy() if is_tensor else x
        if not isinstance(a, np.ndarray):
            raise TypeError(f"RandAugment: x must be a numpy.ndarray or vitc.Tensor, got {type(x).__name__}")
        if a.ndim != 4:
            raise ValueError(f"RandAugment: x must have shape (B, C, H, W), got {a.shape}")
        if a.dtype == np.uint8:
            pixels = a.astype(np.float32)
        elif a.dtype.kind == "f":
            if a.size and not (np.all(a >= 0.0) and np.all(a <= 1.0)):
                raise ValueError("RandAugment: float images must be in [0, 1] (it runs before normalization); "
                                 f"got values in [{a.min()}, {a.max()}]")
            pixels = np.rint(a.astype(np.float32) * np.float32(255))
        else:
            raise TypeError(f"RandAugment: x must be uint8 or float in [0, 1], got {a.dtype}")
        c = a.shape[1]
        fill = self.fill * c if len(self.fill) == 1 else self.fill
        if len(fill) != c:
            raise ValueError(f"RandAugment: fill has {len(self.fill)} values but the images have {c} channels")
        seed, offset = (0, 0) if plan is not None else \
            self._stream.take(aug.rand_augment_counters(a.shape[0], self.num_ops), rng)
        out, used = aug.rand_augment(from_numpy(pixels), from_numpy(np.asarray(fill, dtype=np.float32)), seed, offset,
                                     plan, num_ops=self.num_ops, magnitude=self.magnitude,
                                     magnitude_std=self.magnitude_std, prob=self.prob,
                                     magnitude_max=self.magnitude_max, increasing=self.increasing,
                                     interpolation=self.interpolation, translate_pct=self.translate_pct)
        self._last = used.numpy()
        o = out.numpy()
        if a.dtype == np.uint8:
            return o.astype(np.uint8)
        o /= np.float32(255)  # as vitc.data's datasets scale uint8 (ToTensor)
        return from_numpy(o) if is_tensor else o
