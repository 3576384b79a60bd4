"""vitc.utils: training utilities (timm.utils names)."""
from .ema import ModelEma

__all__ = ["ModelEma"]
