"""Per-image transforms with torchvision's names and call convention, ``t(img) -> img``.

An image is a PIL image, a uint8 NumPy array (H, W) or (H, W, C) as ``np.asarray(pil_image)``
gives, or a float array (C, H, W) as ``ToTensor`` gives (the tensor layout torchvision uses).
Resize and CenterCrop return the same kind they were given; ``ToTensor`` ends the PIL part of a
pipeline. They are deterministic, so DataLoader workers give the same images as the main process.
Resizing is Pillow's (antialiased), as torchvision does on PIL images
(torchvision/transforms/functional.py, resize).
"""

import numbers

import numpy as np

__all__ = ["ImageTransform", "Resize", "CenterCrop", "ToTensor"]

_PIL_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # Pillow is a dependency of vitc.data's image datasets
        raise ImportError("vitc.data image transforms need Pillow: pip install Pillow") from e
    return Image


def is_pil_image(img):
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(img).__mro__)


class ImageTransform:
    """Base class of per-image transforms: ``t(img) -> img``."""

    def __call__(self, img):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _image_size(img, who):
    """(height, width) and the layout: 'pil', 'hwc' (uint8 array) or 'chw' (float array)."""
    if is_pil_image(img):
        return (img.height, img.width), "pil"
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{who}: expected a PIL image or a NumPy array, got {type(img).__name__}")
    if img.dtype == np.uint8 and img.ndim in (2, 3):
        return img.shape[:2], "hwc"
    if img.dtype.kind == "f" and img.ndim in (2, 3):
        return img.shape[-2:], "chw"
    raise ValueError(f"{who}: expected one image, uint8 (H, W[, C]) or float (C, H, W), "
                     f"got {img.dtype} {img.shape} (batches go to DataLoader(transform=))")


def _size_arg(size, who, allow_int):
    if isinstance(size, numbers.Integral) and not isinstance(size, bool) and allow_int:
        if size < 1:
            raise ValueError(f"{who}: size must be positive, got {size}")
        return int(size)
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        pair = tuple(size)
    except TypeError:
        pair = ()
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                                 for v in pair):
        raise ValueError(f"{who}: size must be a positive int or a pair (height, width), got {size!r}")
    return tuple(int(v) for v in pair)


class Resize(ImageTransform):
    """Resize to ``size``: an int matches the smaller edge to it keeping the aspect ratio (the longer
    edge becomes ``int(size * long / short)``, as torchvision computes it); (h, w) is exact.
    interpolation: 'bilinear' (default), 'nearest', 'bicubic', 'lanczos', 'box' or 'hamming'."""

    def __init__(self, size, interpolation="bilinear"):
        self.size = _size_arg(size, "Resize", allow_int=True)
        if interpolation not in _PIL_FILTERS:
            raise ValueError(f"Resize: interpolation must be one of {_PIL_FILTERS}, got {interpolation!r}")
        self.interpolation = interpolation

    def output_size(self, h, w):
        if isinstance(self.size, tuple):
            return self.size
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.size, int(self.size * long / short)
        return (new_short, new_long) if h <= w else (new_long, new_short)

    def __call__(self, img):
        (h, w), layout = _image_size(img, "Resize")
        oh, ow = self.output_size(h, w)
        Image = _pil()
        resample = getattr(Image.Resampling, self.interpolation.upper())
        if layout == "pil":
            return img.resize((ow, oh), resample)
        if layout == "hwc":
            return np.asarray(Image.fromarray(img).resize((ow, oh), resample))
        # float (C, H, W): each channel as a 32-bit float Pillow image, so no rounding to uint8
        chw = img[None] if img.ndim == 2 else img
        out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32), mode="F")
                                   .resize((ow, oh), resample)) for c in chw])
        return out[0] if img.ndim == 2 else out


class CenterCrop(ImageTransform):
    """Crop the central ``size`` (int or (h, w)); an image smaller than that is first padded with
    zeros, as torchvision's CenterCrop does. Offsets are torchvision's: int(round((H - h) / 2))."""

    def __init__(self, size):
        self.size = _size_arg(size, "CenterCrop", allow_int=False)

    def __call__(self, img):
        (h, w), layout = _image_size(img, "CenterCrop")
        if layout != "pil":
            return self._crop(img, h, w, axis=0 if layout == "hwc" else img.ndim - 2)
        ch, cw = self.size
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        if pad_h or pad_w:
            padded = _pil().new(img.mode, (w + pad_w, h + pad_h))  # zeros (black)
            padded.paste(img, (pad_w // 2, pad_h // 2))
            img, h, w = padded, h + pad_h, w + pad_w
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        return img.crop((left, top, left + cw, top + ch))

    def _crop(self, arr, h, w, axis):
        ch, cw = self.size
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        if pad_h or pad_w:
            pads = [(0, 0)] * arr.ndim
            pads[axis] = (pad_h // 2, pad_h - pad_h // 2)
            pads[axis + 1] = (pad_w // 2, pad_w - pad_w // 2)
            arr = np.pad(arr, pads)
            h, w = h + pad_h, w + pad_w
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        index = [slice(None)] * arr.ndim
        index[axis], index[axis + 1] = slice(top, top + ch), slice(left, left + cw)
        return np.ascontiguousarray(arr[tuple(index)])


class ToTensor(ImageTransform):
    """A PIL image or a (H, W[, C]) array -> float32 (C, H, W) NumPy array; uint8 values are
    divided by 255 into [0, 1] (torchvision's ToTensor). The result stays NumPy so workers can send
    it; the DataLoader turns the batch into a vitc tensor. A float (C, H, W) array passes through."""

    def __call__(self, img):
        if is_pil_image(img):
            arr = np.asarray(img.convert("L") if img.mode in ("1", "P") else img)
        elif isinstance(img, np.ndarray):
            arr = img
            if arr.dtype.kind == "f" and arr.ndim == 3:
                return np.ascontiguousarray(arr, dtype=np.float32)
        else:
            raise TypeError(f"ToTensor: expected a PIL image or a NumPy array, got {type(img).__name__}")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.dtype.kind not in "uif":
            raise ValueError(f"ToTensor: expected an (H, W) or (H, W, C) image, got {arr.dtype} {arr.shape}")
        out = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
        if arr.dtype == np.uint8:
            out /= np.float32(255)  # division, as torchvision's img.float().div(255)
        return out
