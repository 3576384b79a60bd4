"""RoIAlign (csrc/ops/roi_align.c): torchvision.ops.roi_align's forward, for pooling label maps."""
import numbers

from .._checks import expect_tensor
from .._tensor import _call

__all__ = ["roi_align"]


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """(B, C, H, W), boxes (K, 5) rows (batch index, x1, y1, x2, y2) -> (K, C, out_h, out_w), as
    torchvision.ops.roi_align with a (K, 5) box tensor. Not differentiable (labels are constants)."""
    expect_tensor(input, "roi_align", "input")
    expect_tensor(boxes, "roi_align", "boxes")
    if isinstance(output_size, numbers.Integral):
        output_size = (output_size, output_size)
    oh, ow = (int(v) for v in output_size)
    return _call("roi_align", (input, boxes), out_h=oh, out_w=ow, sampling_ratio=int(sampling_ratio),
                 aligned=int(bool(aligned)), spatial_scale=float(spatial_scale))
