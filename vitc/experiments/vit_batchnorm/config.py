"""The seed-004 experiments' models, search ranges and input checks (every input is checked before
any training), and the data: MNIST when present or downloadable, else Fashion-MNIST."""
import math

from vitc._checks import expect_int
from vitc.data import MNIST, FashionMNIST

# name -> (registry name, uses BatchNorm, TorchViTFamily options)
MODELS = {
    "ViT": ("vit_seed_mnist", False, dict(norm="layer", ffn_norm=None, qkv_bias=False)),
    "ViTBNFFN": ("vit_bnffn_seed_mnist", True, dict(norm="layer", ffn_norm="batch", qkv_bias=True)),
    "ViTBN": ("vit_bn_seed_mnist", True, dict(norm="batch", ffn_norm="batch", qkv_bias=True)),
    "ViTBNFFN-article": ("vit_bnffn_seed_mnist_article", True,
                         dict(norm="layer", ffn_norm="batch", qkv_bias=True, first_block_only=True)),
    "ViTBN-article": ("vit_bn_seed_mnist_article", True,
                      dict(norm="batch", ffn_norm="batch", qkv_bias=True, first_block_only=True)),
}
CORRECT_MODELS = ("ViT", "ViTBNFFN", "ViTBN")
BACKENDS = ("vitc", "torch")
DEFAULT_LRS = (5e-4, 5e-3, 1e-2)
# the seed model's sizes; overrides (tests, notebook) may change these keys only
SEED_CFG = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8, dim_head=64,
                mlp_dim=128, pool="cls")
OVERRIDABLE = ("dim", "depth", "heads", "dim_head", "mlp_dim", "pool")
LR_RANGE = {False: (1e-5, 1e-3), True: (1e-5, 1e-2)}  # Bayesian search: ViT, BN models
BATCH_RANGE = (20, 120)

# ---- input checks (all before any training) ------------------------------------------------------

def _model_names(models):
    if isinstance(models, str):
        models = [m for m in models.split(",") if m.strip()]
    lower = {k.lower(): k for k in MODELS}
    out = []
    for m in models:
        key = lower.get(str(m).strip().lower())
        if key is None:
            raise ValueError(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError("no model given")
    return out


def _backends(backend):
    names = [b.strip().lower() for b in backend.split(",")] if isinstance(backend, str) else list(backend)
    for b in names:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)} (comma-separated for both)")
    if "torch" in names:
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise ValueError(f"--backend torch needs PyTorch: {e}") from None
    return list(dict.fromkeys(names))


def _lrs(lrs):
    if isinstance(lrs, str):
        try:
            lrs = [float(s) for s in lrs.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"learning rates must be numbers, got {lrs!r}") from None
    lrs = [float(x) for x in lrs]
    if not lrs:
        raise ValueError("no learning rate given")
    for lr in lrs:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be > 0 and finite, got {lr!r}")
    return lrs


def _overrides(overrides):
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - set(OVERRIDABLE))
    if bad:
        raise ValueError(f"model overrides {bad} not supported; allowed: {', '.join(OVERRIDABLE)}")
    return overrides


def _check_batch(batch_size, models, who, what="batch size"):
    expect_int(batch_size, who, what, minimum=1)
    bn = [m for m in models if MODELS[m][1]]
    if batch_size < 2 and bn:
        raise ValueError(f"{what} {batch_size} with BatchNorm models ({', '.join(bn)}): batch statistics need at "
                         "least 2 images per training batch")


# ---- data ----------------------------------------------------------------------------------------

class _QuickMNIST(MNIST):
    timeout = 20.0  # seconds per mirror; an offline machine falls back to Fashion-MNIST quickly


def load_data(dataset="auto", data_root=None, subset=None, test_subset=None, download=True):
    """(name, train set, test set, note). 'auto': MNIST if its files are present or downloadable
    (checksummed), else Fashion-MNIST from the Debian package; the note says which and why."""
    if dataset not in ("auto", "mnist", "fashion-mnist"):
        raise ValueError(f"dataset must be 'auto', 'mnist' or 'fashion-mnist', got {dataset!r}")
    note = ""
    if dataset in ("auto", "mnist"):
        kw = {"root": data_root} if data_root else {}
        try:
            tr = _QuickMNIST(train=True, download=download, subset=subset, **kw)
            te = _QuickMNIST(train=False, download=download, subset=test_subset, **kw)
            return "MNIST", tr, te, f"data: MNIST from {tr.root}"
        except (OSError, RuntimeError, ValueError) as e:
            if dataset == "mnist":
                raise ValueError(f"MNIST not available: {e}") from None
            why = " ".join(str(e).split())
            note = f"MNIST not available ({why[:300]}{'…' if len(why) > 300 else ''}); "
    kw = {"root": data_root} if (data_root and dataset == "fashion-mnist") else {}
    try:
        tr = FashionMNIST(train=True, subset=subset, **kw)
        te = FashionMNIST(train=False, subset=test_subset, **kw)
    except (OSError, ValueError) as e:
        raise ValueError(f"{note}Fashion-MNIST not available either: {e}") from None
    return "Fashion-MNIST", tr, te, f"{note}data: Fashion-MNIST from {tr.root} (not the article's MNIST)"

