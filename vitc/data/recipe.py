"""The DeiT training recipe's batch pipeline as one DataLoader transform."""
import numpy as np

__all__ = ["RecipeTransform"]


class RecipeTransform:
    """The training batch pipeline, ``(x, y, rng) -> (x, y)`` for DataLoader(transform=):
    [crop + flip] -> [RandAugment (on [0, 1] pixels)] -> normalize -> [RandomErasing] -> [Mixup/CutMix].
    Labels become soft (B, K) float32 targets when mixing is on. With only ``mean`` and ``std`` it
    normalizes (the test pipeline)."""

    def __init__(self, mean, std, crop=None, flip=None, randaug=None, erasing=None, mixup=None):
        self.mean, self.std = np.float32(mean), np.float32(std)
        self.crop, self.flip, self.randaug, self.erasing, self.mixup = crop, flip, randaug, erasing, mixup

    def __call__(self, x, y, rng):
        for t in (self.crop, self.flip, self.randaug):
            if t is not None:
                x = t(x, rng)
        x = ((x - self.mean) / self.std).astype(np.float32)
        if self.erasing is not None:
            x = self.erasing(x, rng)
        if self.mixup is not None:
            x, y = self.mixup(x, y, rng)
        return x, y

    def __repr__(self):
        parts = [repr(t) for t in (self.crop, self.flip, self.randaug, self.erasing, self.mixup) if t is not None]
        return f"RecipeTransform(normalize({self.mean}, {self.std}), {', '.join(parts)})"
