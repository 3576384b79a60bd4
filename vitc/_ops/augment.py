"""Batch augmentations (csrc/ops/augment.c): the raw ops behind vitc.data's Mixup, RandomErasing and
RandAugment. Each takes the Philox (seed, offset) to draw from and returns the draws it used;
``*_counters`` say how many counters a call consumes, so callers can reserve exactly that block.
None of these ops records autograd: they act on data, not on the graph."""
import math

from .._checks import expect_tensor
from .._tensor import _call

__all__ = ["mixup", "random_erase", "rand_augment", "mixup_counters", "random_erase_counters",
           "rand_augment_counters", "MIX_MODES", "ERASE_MODES", "RA_OPS", "INTERPOLATIONS"]

MIX_MODES = {"batch": 0, "elem": 1}
ERASE_MODES = {"const": 0, "rand": 1, "pixel": 2}
INTERPOLATIONS = {"bilinear": 0, "bicubic": 1, "random": 2}
# op ids of the C kernel, in timm's order: the "increasing" set (0..14), then the original set's
# six differing ops (15..20)
RA_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
          "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
          "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
          "Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness")


def _i64(v):
    """A uint64 counter or key as the int64 the C arguments carry (same bits)."""
    v = int(v) & 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def mixup_counters(batch_size, mode):
    return 128 * (batch_size if mode == "elem" else 1)


def mixup(x, y, seed, offset, *, num_classes, mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5,
          mode="batch", correct_lam=True, label_smoothing=0.1):
    """-> (x_mixed (B,C,H,W), y_soft (B,K), params (B,10)); params columns: applied, cutmix, λ drawn,
    λ used, cy, cx, y0, y1, x0, x1."""
    expect_tensor(x, "mixup", "x")
    expect_tensor(y, "mixup", "y")
    if mode not in MIX_MODES:
        raise ValueError(f"mixup: mode must be 'batch' or 'elem', got {mode!r}")
    return _call("mixup", (x, y), (_i64(seed), _i64(offset), MIX_MODES[mode], int(num_classes), int(bool(correct_lam))),
                 (float(mixup_alpha), float(cutmix_alpha), float(prob), float(switch_prob), float(label_smoothing)))


def random_erase_counters(shape, max_count):
    b, c, h, w = shape
    return b * (1 + 11 * max_count) + b * max_count * c * h * w


def random_erase(x, seed, offset, *, probability=0.5, min_area=0.02, max_area=1 / 3, min_aspect=0.3, max_aspect=None,
                 mode="const", min_count=1, max_count=None):
    """-> (x_erased, boxes (B,max_count,4) int64 of (top, left, h, w), -1 where no box)."""
    expect_tensor(x, "random_erase", "x")
    if mode not in ERASE_MODES:
        raise ValueError(f"random_erase: mode must be 'const', 'rand' or 'pixel', got {mode!r}")
    max_aspect = max_aspect or 1 / min_aspect
    if not (min_aspect > 0 and max_aspect > 0):
        raise ValueError(f"random_erase: aspect ratios must be > 0, got {min_aspect} and {max_aspect}")
    max_count = max_count or min_count
    return _call("random_erase", (x,), (_i64(seed), _i64(offset), ERASE_MODES[mode], int(min_count), int(max_count)),
                 (float(probability), float(min_area), float(max_area), math.log(min_aspect), math.log(max_aspect)))


def rand_augment_counters(batch_size, num_ops):
    return 2 * batch_size * num_ops


def rand_augment(x, fill, seed, offset, plan=None, *, num_ops=2, magnitude=9.0, magnitude_std=0.5, prob=0.5,
                 magnitude_max=10.0, increasing=True, interpolation="random", translate_pct=0.45):
    """x float32 (B,C,H,W) holding integers 0..255, fill float32 (C,) -> (x_aug, plan (B,n,4)); plan
    rows: op id (RA_OPS index, -1 skipped), magnitude, sign, filter (0 bilinear, 1 bicubic). A given
    plan is applied as is (no draws)."""
    expect_tensor(x, "rand_augment", "x")
    expect_tensor(fill, "rand_augment", "fill")
    if plan is not None:
        expect_tensor(plan, "rand_augment", "plan")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"rand_augment: interpolation must be 'bilinear', 'bicubic' or 'random', got {interpolation!r}")
    return _call("rand_augment", (x, fill, plan),
                 (_i64(seed), _i64(offset), int(num_ops), int(bool(increasing)), INTERPOLATIONS[interpolation]),
                 (float(magnitude), float(magnitude_std), float(prob), float(magnitude_max), float(translate_pct)))
