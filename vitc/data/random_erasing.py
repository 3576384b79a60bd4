"""Random Erasing on a normalized float32 batch (timm/data/random_erasing.py).

Zhong et al., "Random Erasing Data Augmentation" (arXiv 1708.04896); semantics of timm's
``timm.data.RandomErasing`` (huggingface/pytorch-image-models, data/random_erasing.py). Runs in C
(csrc/ops/augment.c), fills drawn from vitc's counter RNG.
"""
import math

import numpy as np

from ._counters import CounterStream, core, integer, number, to_tensor
from .transforms import Transform

__all__ = ["RandomErasing"]


class RandomErasing(Transform):
    """Erase boxes of each sample with probability ``probability``.

    Per sample and box (``count`` boxes, drawn in [min_count, max_count]): up to 10 attempts of
    area s ~ U(min_area, max_area)·H·W/count and aspect r = exp(U(ln min_aspect, ln max_aspect)),
    h = round(√(s·r)), w = round(√(s/r)); the first with h < H and w < W is placed at a uniform
    (top, left) and filled: ``'pixel'`` N(0,1) per element, ``'rand'`` one N(0,1) per channel,
    ``'const'`` zeros. Defaults are DeiT's (p 0.25, mode pixel); timm's are 0.5, const.

    x: float32 (B, C, H, W), a vitc Tensor or NumPy array (the result has the input's kind; the
    input is not modified). ``seed``: see ``CounterStream``. ``last_boxes``: the (B, max_count, 4)
    int64 (top, left, h, w) of the last call, −1 where no box was placed.
    """

    def __init__(self, probability=0.25, min_area=0.02, max_area=1 / 3, min_aspect=0.3, max_aspect=None,
                 mode="pixel", min_count=1, max_count=None, seed=None):
        self.probability = number(probability, "RandomErasing: probability", 0.0, 1.0)
        self.min_area = number(min_area, "RandomErasing: min_area", 0.0, 1.0, lo_open=True)
        self.max_area = number(max_area, "RandomErasing: max_area", self.min_area, 1.0)
        self.min_aspect = number(min_aspect, "RandomErasing: min_aspect", 0.0, lo_open=True)
        self.max_aspect = number(max_aspect or 1 / self.min_aspect, "RandomErasing: max_aspect", self.min_aspect)
        if not math.isfinite(self.max_aspect):
            raise ValueError("RandomErasing: max_aspect must be finite")
        mode = mode.lower() if isinstance(mode, str) else mode
        if mode not in ("pixel", "rand", "const"):
            raise ValueError(f"RandomErasing: mode must be 'pixel', 'rand' or 'const', got {mode!r}")
        self.mode = mode
        self.min_count = integer(min_count, "RandomErasing: min_count", 1, 64)
        self.max_count = integer(max_count or min_count, "RandomErasing: max_count", self.min_count, 64)
        self._stream = CounterStream(seed)
        self._last = None

    @property
    def last_boxes(self):
        return self._last

    def __call__(self, x, rng=None):
        xt, x_np = to_tensor(x, np.float32, "RandomErasing", "x")
        if xt.ndim != 4:
            raise ValueError(f"RandomErasing: x must have shape (B, C, H, W), got {tuple(xt.shape)}")
        aug = core()[1]
        seed, offset = self._stream.take(aug.random_erase_counters(tuple(xt.shape), self.max_count), rng)
        out, boxes = aug.random_erase(xt, seed, offset, probability=self.probability, min_area=self.min_area,
                                      max_area=self.max_area, min_aspect=self.min_aspect,
                                      max_aspect=self.max_aspect, mode=self.mode, min_count=self.min_count,
                                      max_count=self.max_count)
        self._last = boxes.numpy()
        return out.numpy() if x_np else out
