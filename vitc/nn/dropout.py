"""Dropout and DropPath (stochastic depth)."""
import vitc as _v

from .._checks import expect_probability
from .module import Module

__all__ = ["Dropout", "DropPath"]


class Dropout(Module):
    """Inverted dropout in training mode (keep-scale 1/(1−p)), identity in eval mode."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p = expect_probability(p, "Dropout", "p")
        self.inplace = inplace

    def forward(self, input):
        if self.p == 0.0 or not self.training:
            return input
        return _v.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class DropPath(Module):
    """Stochastic depth (timm/layers/drop.py, drop_path): drop the whole residual branch per sample with prob p."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = expect_probability(drop_prob, "DropPath", "drop_prob")

    def forward(self, input):
        if self.drop_prob == 0.0 or not self.training:
            return input
        return _v.drop_path(input, self.drop_prob, self.training)

    def extra_repr(self):
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"
