"""The runs of the Scaling-ViT experiments: data split into upstream and held-out classes, model
sizes, one training run (vitc.train.fit with checkpoints) and its evaluation (upstream test error,
10-shot linear transfer to the held-out classes with vitc.eval.fewshot)."""
import json
import os
import re
import time

import numpy as np

import vitc
from vitc import nn, optim
from vitc.data import DataLoader
from vitc.eval import extract_features, fewshot_evaluate, vit_train_flops
from vitc.io import write_text_atomic
from vitc.models import scaling_vit
from vitc.train import fit

__all__ = ["ArrayDataset", "FreshChunks", "Data", "load_data", "parse_size", "make_model", "make_optimizer",
           "evaluate_point", "cached", "OPTIMIZERS"]

OPTIMIZERS = ("adam-f32", "adam-bf16m", "adam-bf16v", "adafactor")


class ArrayDataset:
    """Images (N, 1, H, W) float32 and int64 labels, batched by one gather in DataLoader."""

    transform = None

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


class FreshChunks:
    """A sampler that gives epoch e the e-th block of ``chunk`` indices of a pool (shuffled within
    the block), so an epoch of ``chunk`` images sees new images until the pool is used up — the
    paper's regime of images seen without repetition (JFT-3B is never repeated, §2). Past the pool
    the blocks wrap around (then images repeat; the README says when)."""

    def __init__(self, pool_size, chunk, seed=0):
        if chunk < 1 or chunk > pool_size:
            raise ValueError(f"FreshChunks: chunk must be in [1, pool_size={pool_size}], got {chunk}")
        self.pool_size, self.chunk, self.seed, self.epoch = pool_size, chunk, seed, 0
        self.blocks = pool_size // chunk

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.chunk

    def __iter__(self):
        start = (self.epoch % self.blocks) * self.chunk
        rng = np.random.default_rng((self.seed, self.epoch))
        return iter((start + rng.permutation(self.chunk)).tolist())


class Data:
    """Fashion-MNIST split by class: ``upstream`` classes train the model (train pool, test set),
    the ``heldout`` classes are only seen by the 10-shot evaluation (a shot pool and a test set)."""

    def __init__(self, train_images, train_labels, test_images, test_labels, upstream, heldout, test_subset,
                 shot_pool):
        def pick(images, labels, classes, n=None, per_class=None):
            if per_class is not None:
                idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
            else:
                idx = np.flatnonzero(np.isin(labels, classes))[:n]
            remap = np.full(10, -1, dtype=np.int64)
            remap[list(classes)] = np.arange(len(classes))
            return np.ascontiguousarray(images[idx]), remap[labels[idx]]
        self.upstream, self.heldout = tuple(upstream), tuple(heldout)
        self.train = ArrayDataset(*pick(train_images, train_labels, upstream))
        # standardise every split with the upstream training pool's pixel mean and std
        pool = self.train.images.astype(np.float32) / (255.0 if self.train.images.dtype == np.uint8 else 1.0)
        self.mean, self.std = float(pool.mean()), float(pool.std())
        self.train.images = self._norm(self.train.images)
        self.test = ArrayDataset(*pick(test_images, test_labels, upstream, n=test_subset))
        self.test.images = self._norm(self.test.images)
        self.shot_x, self.shot_y = pick(train_images, train_labels, heldout, per_class=shot_pool)
        self.few_x, self.few_y = pick(test_images, test_labels, heldout, n=test_subset)
        self.shot_x, self.few_x = self._norm(self.shot_x), self._norm(self.few_x)

    def _norm(self, x):
        """uint8 or [0, 1] images -> standardised float32 (uint8 is read as value/255)."""
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
        return ((x - self.mean) / self.std).astype(np.float32)

    @property
    def num_classes(self):
        return len(self.upstream)

    def loaders(self, chunk, batch_size, seed):
        """(train loader of ``chunk`` fresh images per epoch, upstream test loader)."""
        sampler = FreshChunks(len(self.train), chunk, seed)
        train = DataLoader(self.train, batch_size=batch_size, sampler=sampler, drop_last=True,
                           to_tensor=vitc.from_numpy)
        test = DataLoader(self.test, batch_size=500, to_tensor=vitc.from_numpy)
        return train, test


_LOADED = {}


def load_data(args):
    """Data of the CLI arguments (Fashion-MNIST from --data-root or Debian's folder); the last split is
    kept, so several commands in one process (tests, a notebook) read the files once."""
    from ..common import fashion_mnist_splits
    key = (args.data_root, args.upstream_classes, args.test_subset, args.shot_pool)
    if key not in _LOADED:
        train, test = fashion_mnist_splits(args.data_root, None, None)
        ups = list(range(args.upstream_classes))
        held = list(range(args.upstream_classes, 10))
        _LOADED.clear()
        _LOADED[key] = Data(train.data[:, None], train.labels, test.data[:, None], test.labels, ups, held,
                            args.test_subset, args.shot_pool)
    return _LOADED[key]


_SIZE = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)$")


def parse_size(text):
    """'WxDxMxH' (width, depth, MLP width, heads) -> a tuple of ints; heads must divide the width."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"model size must look like WIDTHxDEPTHxMLPxHEADS (e.g. 64x3x128x4), got {text!r}")
    w, d, f, h = (int(v) for v in m.groups())
    if min(w, d, f, h) < 1 or w % h:
        raise ValueError(f"model size {text!r}: all numbers must be >= 1 and the heads ({h}) must divide the width "
                         f"({w})")
    return w, d, f, h


def make_model(size, num_classes, patch, pool="map", seed=0):
    """A ViT of the paper's design (scaling_vit: MAP head, no class token, zero-init head) for 28×28 grey
    images; pool 'cls' puts the class token back."""
    w, d, f, h = parse_size(size)
    vitc.manual_seed(seed)
    extra = {"pool": "cls", "class_token": True} if pool == "cls" else {"pool": pool}
    return scaling_vit(f"Ti/{patch}", image_size=28, channels=1, num_classes=num_classes, dim=w, depth=d,
                       mlp_dim=f, heads=h, dim_head=w // h, **extra)


def make_optimizer(model, name, lr, wd_head, wd_body, clip=1.0):
    """The optimizer ``name`` with decoupled head/body weight decay (Zhai et al. §3.1): AdamW in float32,
    with a bfloat16 first moment (§3.4) or a bfloat16 second moment (which the paper says hurts), or the
    modified Adafactor (§3.4). Gradients are clipped at global norm ``clip`` as in big_vision."""
    groups = optim.param_groups_head_body_decay(model, wd_head=wd_head, wd_body=wd_body)
    if name == "adam-f32":
        return optim.AdamW(groups, lr=lr, max_grad_norm=clip)
    if name == "adam-bf16m":
        return optim.AdamW(groups, lr=lr, mu_dtype=vitc.bfloat16, max_grad_norm=clip)
    if name == "adam-bf16v":
        return optim.AdamW(groups, lr=lr, nu_dtype=vitc.bfloat16, max_grad_norm=clip)
    if name == "adafactor":
        return optim.Adafactor(groups, lr=lr, max_grad_norm=clip)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def evaluate_point(model, data, shots=10, seeds=3):
    """Upstream test error and few-shot error on the held-out classes of a trained model."""
    loader = DataLoader(data.test, batch_size=500, to_tensor=vitc.from_numpy)
    ev = vitc.train.evaluate(model, loader)
    tr = extract_features(model, data.shot_x)
    te = extract_features(model, data.few_x)
    few = fewshot_evaluate(tr, data.shot_y, te, data.few_y, shots=(shots,), seeds=seeds)
    return {"upstream_error": 1.0 - ev["accuracy"], "fewshot_error": 1.0 - few["mean"][shots],
            "fewshot_error_per_seed": [1.0 - a for a in few["per_seed"][shots]]}


def cached(path, config, compute):
    """Resumable unit of work: the JSON at ``path`` if it was made with the same ``config``, else
    ``compute()`` written there atomically (with the config and its wall time)."""
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
            if old.get("config") == json.loads(json.dumps(config)):
                return old
        except (OSError, ValueError):
            pass  # damaged or partial: recompute
    t0 = time.perf_counter()
    res = compute()
    res = dict(res, config=config, wall_time_s=time.perf_counter() - t0)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_text_atomic(path, json.dumps(res, indent=1))
    return res


def train_flops(model, images):
    return float(vit_train_flops(model, images))


def run_fit(model, optimizer, scheduler, data, args, epochs, ckpt_dir, log_epoch=None, seed=0):
    """fit() with checkpoints (resumable) on ``args.chunk`` fresh images per epoch."""
    train, test = data.loaders(args.chunk, args.batch_size, seed)
    cbs = [lambda rec: log_epoch(rec) and False] if log_epoch else []
    return fit(model, train, test, optimizer, nn.CrossEntropyLoss(), epochs, scheduler=scheduler, callbacks=cbs,
               checkpoint_dir=ckpt_dir, resume=True, progress=False, log=None, keep_checkpoints=epochs + 1)
