"""The data sets of ``python -m vitc.train``: (train, test) and what the model must fit (channels, size, classes).

fashion-mnist and mnist read IDX files (vitc.data); cifar10/cifar100 the python-pickle archive, imagefolder a
folder of class folders (resized and center-cropped to ``--img-size``) and npz arrays 'x' and 'y', through
vitc.data's CIFAR10/CIFAR100/ImageFolder/NpzDataset (imported when asked for). A folder with ``train/`` and
``val/`` (or ``test/``) sub-folders, or a directory with ``train.npz`` and ``val.npz`` (or ``test.npz``), gives
both splits; otherwise ``--val-split`` of the samples, drawn with ``--seed``, are held out for testing.
"""
import os

import numpy as np

DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "npz")
_HELD_OUT = ("val", "test")


class OptionError(ValueError):
    """An option, or a file it names, that cannot be used: python -m vitc.train prints it as its error line."""


class IndexView:
    """Samples ``indices`` of ``dataset`` (a held-out split or the first N): ``view[i] = dataset[indices[i]]``.

    Keeps the base's ``classes``; gives ``images``/``labels`` (gathered once) when the base has both and no
    per-item transform, so the DataLoader still batches by one fancy-indexing gather."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self._arrays = None

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]

    @property
    def classes(self):
        return self.dataset.classes

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    def _gathered(self):
        base = self.dataset
        if getattr(base, "transform", None) is not None or not (hasattr(base, "images") and hasattr(base, "labels")):
            raise AttributeError("the base data set has no plain images/labels arrays")
        if self._arrays is None:
            self._arrays = np.asarray(base.images)[self.indices], np.asarray(base.labels)[self.indices]
        return self._arrays

    @property
    def images(self):
        return self._gathered()[0]

    @property
    def labels(self):
        return self._gathered()[1]


def _need(name, who):
    import vitc.data as data
    if not hasattr(data, name):
        raise OptionError(f"--dataset {who} needs vitc.data.{name}, which this vitc does not have")
    return getattr(data, name)


def _first(dataset, n):
    if n is None or n >= len(dataset):
        return dataset
    return IndexView(dataset, np.arange(n))


def _split(dataset, fraction, seed, where):
    """(train, held-out) views: ``fraction`` of the samples, a seeded random choice, are held out."""
    n = len(dataset)
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise OptionError(f"--val-split {fraction:g} of the {n} samples in {where} leaves an empty split; "
                        f"give a fraction that holds out at least one sample and keeps one")
    order = np.random.default_rng(seed).permutation(n)
    return IndexView(dataset, np.sort(order[n_val:])), IndexView(dataset, np.sort(order[:n_val]))


def _held_out_path(root, suffix=""):
    for name in _HELD_OUT:
        path = os.path.join(root, name + suffix)
        if os.path.exists(path):
            return path
    return None


def _image_folder(args):
    if args.img_size is None:
        raise OptionError("--dataset imagefolder needs --img-size N (images are resized and center-cropped to N×N)")
    ImageFolder = _need("ImageFolder", "imagefolder")
    tf = [_need(n, "imagefolder") for n in ("Compose", "Resize", "CenterCrop", "ToTensor")]
    transform = tf[0]([tf[1](args.img_size), tf[2](args.img_size), tf[3]()])
    root = args.data_root
    train_root, held_out = root, None  # the root's sub-folders are the classes
    if os.path.isdir(os.path.join(root, "train")):
        train_root, held_out = os.path.join(root, "train"), _held_out_path(root)
    train = ImageFolder(train_root, transform=transform)
    if held_out is None:
        return _split(train, args.val_split, args.seed, train_root)
    test = ImageFolder(held_out, transform=transform)
    if list(test.classes) != list(train.classes):
        raise OptionError(f"the class folders of {held_out} ({', '.join(test.classes)}) differ from those of "
                        f"{train_root} ({', '.join(train.classes)})")
    return train, test


def _npz(args):
    NpzDataset = _need("NpzDataset", "npz")
    root = args.data_root
    if os.path.isdir(root):
        train_path, held_out = os.path.join(root, "train.npz"), _held_out_path(root, ".npz")
        if not os.path.isfile(train_path):
            raise OptionError(f"--data-root {root} is a directory without train.npz (give the .npz file, or a "
                            f"directory holding train.npz and val.npz or test.npz)")
        if held_out is not None:
            return NpzDataset(train_path), NpzDataset(held_out)
        return _split(NpzDataset(train_path), args.val_split, args.seed, train_path)
    return _split(NpzDataset(root), args.val_split, args.seed, root)


def _splits(args):
    name = args.dataset
    if name in ("fashion-mnist", "mnist"):
        from vitc.data import MNIST, FashionMNIST
        cls = FashionMNIST if name == "fashion-mnist" else MNIST
        kw = {"root": args.data_root} if args.data_root else {}
        return (cls(train=True, subset=args.subset, **kw), cls(train=False, subset=args.test_subset, **kw))
    if not args.data_root:
        raise OptionError(f"--dataset {name} needs --data-root (see --help)")
    if not os.path.exists(args.data_root):
        raise OptionError(f"--data-root {args.data_root} does not exist")
    if name in ("cifar10", "cifar100"):
        cls = _need("CIFAR10" if name == "cifar10" else "CIFAR100", name)
        return cls(args.data_root, train=True), cls(args.data_root, train=False)
    return _image_folder(args) if name == "imagefolder" else _npz(args)


def num_classes(dataset):
    """The number of classes: ``len(classes)``, else 1 + the largest label."""
    classes = getattr(dataset, "classes", None)
    if classes is not None and len(classes):
        return len(classes)
    labels = getattr(dataset, "labels", getattr(dataset, "targets", None))
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or not len(labels) or labels.min() < 0:
        raise OptionError(f"the labels must be non-negative integer class indices, got {labels.dtype} "
                        f"{labels.shape} values")
    return int(labels.max()) + 1


def build(args):
    """(train, test, info): info = {'channels', 'image_size' (H, W), 'num_classes'} from the training set."""
    if args.img_size is not None and args.dataset != "imagefolder":
        raise OptionError("--img-size resizes an imagefolder; the other data sets keep their own image size")
    try:
        train, test = _splits(args)
    except OptionError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # a missing or damaged file, named by the data set
        raise OptionError(str(e) or type(e).__name__) from None
    if args.dataset not in ("fashion-mnist", "mnist"):  # the IDX data sets take subset= themselves
        train, test = _first(train, args.subset), _first(test, args.test_subset)
    if not len(train) or not len(test):
        raise OptionError(f"--dataset {args.dataset}: the {'training' if not len(train) else 'test'} split is empty")
    shape = np.shape(np.asarray(train[0][0]))
    if len(shape) != 3:
        raise OptionError(f"--dataset {args.dataset}: a sample must be a (channels, height, width) image, got shape "
                        f"{shape}")
    base = train
    while isinstance(base, IndexView):  # a split's classes are its whole data set's
        base = base.dataset
    k = num_classes(base)
    return train, test, {"channels": int(shape[0]), "image_size": (int(shape[1]), int(shape[2])), "num_classes": k}
