"""ImageFolder: one class per sub-folder of ``root``, images decoded with Pillow.

The layout and attributes are torchvision's (torchvision/datasets/folder.py): classes are the
sorted sub-folder names, ``class_to_idx`` maps them to 0..K-1, ``samples`` lists (path, class)
sorted by class then path, ``targets`` the classes alone.
"""

import os

from .dataset import Dataset, check_index
from .image_transforms import ToTensor

__all__ = ["ImageFolder", "IMG_EXTENSIONS", "pil_loader"]

_TO_TENSOR = ToTensor()
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path):
    """The image at ``path`` as an RGB PIL image, fully decoded; OSError naming the file otherwise."""
    from PIL import Image
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() decodes, so a truncated file fails here
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for bad or truncated data
        raise OSError(f"cannot read image {path}: {e}") from e


class ImageFolder(Dataset):
    """Images in ``root/<class>/**/<file>``; sample i is ``(transform(image), target_transform(class))``.

    ``root`` holds one sub-folder per class. ``transform`` is per image, ``t(PIL image) -> image``, e.g.
    ``Compose([Resize(72), CenterCrop(64), ToTensor()])``; None gives the image as a float32
    (3, H, W) array in [0, 1], which batches when all images have one size. ``target_transform``:
    ``t(class index) -> target``. ``extensions``: file endings (case-insensitive) that count as
    images. ``loader``: ``loader(path) -> image``, default Pillow, converted to RGB.
    ``is_valid_file``: ``f(path) -> bool``, used instead of ``extensions``.
    """

    def __init__(self, root, transform=None, target_transform=None, extensions=IMG_EXTENSIONS,
                 loader=pil_loader, is_valid_file=None):
        for name, fn in (("transform", transform), ("target_transform", target_transform),
                         ("loader", loader), ("is_valid_file", is_valid_file)):
            if fn is not None and not callable(fn):
                raise TypeError(f"ImageFolder: {name} must be callable or None, got {type(fn).__name__}")
        if loader is None:
            raise TypeError("ImageFolder: loader must be callable")
        self.root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageFolder: root {self.root} is not a folder")
        if is_valid_file is None:
            if isinstance(extensions, str):
                extensions = (extensions,)
            extensions = tuple(e.lower() for e in extensions)
            if not extensions:
                raise ValueError("ImageFolder: extensions is empty")
            is_valid_file = lambda path: path.lower().endswith(extensions)  # noqa: E731
        self.extensions = extensions
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: no class folders in {self.root} "
                                    "(expected root/<class>/<image files>)")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples = []
        empty = []
        for c in self.classes:
            found = []
            for folder, _, files in sorted(os.walk(os.path.join(self.root, c), followlinks=True)):
                found += [os.path.join(folder, f) for f in sorted(files) if is_valid_file(os.path.join(folder, f))]
            if not found:
                empty.append(c)
            self.samples += [(path, self.class_to_idx[c]) for path in found]
        if empty:
            raise FileNotFoundError(f"ImageFolder: no image files in the class folder(s) {empty} of {self.root} "
                                    f"(extensions {', '.join(extensions) if extensions else 'from is_valid_file'})")
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples
        self.transform, self.target_transform, self.loader = transform, target_transform, loader

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[check_index(index, len(self), "ImageFolder")]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        else:
            img = _TO_TENSOR(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self):
        return f"ImageFolder(samples={len(self)}, classes={len(self.classes)}, root={self.root!r})"
