"""Convolution, pooling and patch embedding (csrc/ops/conv.c, conv/, csrc/ops/embed.c).

Signatures and semantics follow torch.nn.functional: NCHW float32 tensors, int-or-pair size
arguments, unbatched (C, H, W) inputs accepted. patchify is ViT's patch rearrangement, the einops pattern
'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'; unpatchify is its inverse.
"""

from .._checks import expect_int, expect_pair, expect_tensor
from .._tensor import _call

__all__ = ['conv2d', 'max_pool2d', 'avg_pool2d', 'adaptive_avg_pool2d', 'patchify', 'unpatchify']


def _unbatched(input, who):
    """(C, H, W) inputs run as a batch of one; returns (4-d input, squeeze back?)."""
    if input.ndim not in (3, 4):
        raise ValueError(f"{who}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {tuple(input.shape)}")
    if input.ndim == 3:
        return input.reshape(1, *input.shape), True
    return input, False


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d: input (N, C, H, W) or (C, H, W), weight (O, C/groups, kh, kw),
    bias (O,) or None; padding an int, a pair, 'valid' or 'same' (stride 1; asymmetric when the
    dilated kernel's extent is even, as PyTorch pads the extra row/column at the end)."""
    who = "conv2d"
    expect_tensor(input, who, "input")
    expect_tensor(weight, who, "weight")
    expect_tensor(bias, who, "bias", optional=True)
    sh, sw = expect_pair(stride, who, "stride", single_ok=True)
    dh, dw = expect_pair(dilation, who, "dilation", single_ok=True)
    groups = expect_int(groups, who, "groups")
    if weight.ndim != 4:
        raise ValueError(f"{who}: weight must be 4-d (O, C/groups, kh, kw), got shape {tuple(weight.shape)}")
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if sh != 1 or sw != 1:
                raise ValueError(f"{who}: padding='same' is not supported for strided convolutions (stride {(sh, sw)})")
            th, tw = dh * (weight.shape[2] - 1), dw * (weight.shape[3] - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"{who}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        ph, pw = expect_pair(padding, who, "padding", single_ok=True)
        pads = (ph, ph, pw, pw)
    x, squeeze = _unbatched(input, who)
    top, bottom, left, right = pads
    out = _call("conv2d", (x, weight, bias), stride_h=sh, stride_w=sw, pad_top=top, pad_bottom=bottom, pad_left=left,
                pad_right=right, dilation_h=dh, dilation_w=dw, groups=groups)
    return out.reshape(*out.shape[1:]) if squeeze else out


def _pool_args(kernel_size, stride, padding, who):
    kh, kw = expect_pair(kernel_size, who, "kernel_size", single_ok=True)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        sh, sw = kh, kw
    else:
        sh, sw = expect_pair(stride, who, "stride", single_ok=True)
    ph, pw = expect_pair(padding, who, "padding", single_ok=True)
    return kh, kw, sh, sw, ph, pw


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d; padding at most kernel_size/2, padded taps never win.
    With return_indices, also the int64 argmax positions (flat index into each H·W plane)."""
    who = "max_pool2d"
    expect_tensor(input, who, "input")
    kh, kw, sh, sw, ph, pw = _pool_args(kernel_size, stride, padding, who)
    dh, dw = expect_pair(dilation, who, "dilation", single_ok=True)
    return _call("max_pool2d", (input,), kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                 dilation_h=dh, dilation_w=dw, ceil_mode=int(bool(ceil_mode)), return_indices=int(bool(return_indices)))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch.nn.functional.avg_pool2d (zero padding counted in the divisor when count_include_pad)."""
    who = "avg_pool2d"
    expect_tensor(input, who, "input")
    kh, kw, sh, sw, ph, pw = _pool_args(kernel_size, stride, padding, who)
    if divisor_override is None:
        div = 0
    else:
        div = expect_int(divisor_override, who, "divisor_override")
        if div <= 0:
            raise ValueError(f"{who}: divisor_override must be positive, got {div}")
    return _call("avg_pool2d", (input,), kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                 ceil_mode=int(bool(ceil_mode)), count_include_pad=int(bool(count_include_pad)), divisor_override=div)


def adaptive_avg_pool2d(input, output_size):
    """torch.nn.functional.adaptive_avg_pool2d; output_size an int or a pair whose entries may be
    None (keep that input size). output_size 1 is global average pooling."""
    who = "adaptive_avg_pool2d"
    expect_tensor(input, who, "input")
    if input.ndim not in (3, 4):
        raise ValueError(f"{who}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {tuple(input.shape)}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{who}: output_size must be an int or a pair, got {output_size!r}")
        oh, ow = (input.shape[-2 + k] if v is None else expect_int(v, who, "output_size")
                  for k, v in enumerate(output_size))
    else:
        oh = ow = expect_int(output_size, who, "output_size")
    if oh < 0 or ow < 0:
        raise ValueError(f"{who}: output_size must be non-negative, got {(oh, ow)}")
    return _call("adaptive_avg_pool2d", (input,), output_h=oh, output_w=ow)


def patchify(x, patch_size):
    """(B, C, H, W) -> (B, (H/p1)(W/p2), p1·p2·C), einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
    (lucidrains/vit-pytorch:vit_pytorch/vit.py); patch_size an int or (p1, p2); H % p1 and W % p2 must be 0."""
    expect_tensor(x, "patchify", "x")
    p1, p2 = expect_pair(patch_size, "patchify", "patch_size", single_ok=True)
    return _call("patchify", (x,), p1=p1, p2=p2)


def unpatchify(tokens, patch_size, grid_size):
    """Inverse of patchify: (B, h·w, p1·p2·C) -> (B, C, h·p1, w·p2); grid_size (h, w) or an int."""
    expect_tensor(tokens, "unpatchify", "tokens")
    p1, p2 = expect_pair(patch_size, "unpatchify", "patch_size", single_ok=True)
    h, w = expect_pair(grid_size, "unpatchify", "grid_size", single_ok=True)
    return _call("unpatchify", (tokens,), p1=p1, p2=p2, h=h, w=w)
