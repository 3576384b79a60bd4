"""Seed 004's experiments: ViT vs ViTBNFFN vs ViTBN on MNIST (SPEC §2.4), on vitc and on PyTorch.

    python -m vitc.experiments.vit_batchnorm fixed-lr [--epochs 30] [--subset N] [--backend vitc,torch] ...
    python -m vitc.experiments.vit_batchnorm bayes-search [--trials 20] [--sampler tpe|gp] [--storage URL] ...
    python -m vitc.experiments.vit_batchnorm report --out DIR   (figures + table again from DIR/results.json)

fixed-lr (experiment 1): every model × learning rate (default 5e-4, 5e-3, 1e-2), Adam, train batch
100 shuffled, test batch 5000, constant lr, cross-entropy. Per epoch: train time (the training loop's
wall time, data loading included), test time, train loss (the *sum* of the batch-mean losses, as
the article's COST) and test accuracy. Models: ViT, ViTBNFFN, ViTBN and the article's versions of the
BN models (``-article``: only the first of the 6 blocks runs, the authors' bug until 2024-08-27), so
the table separates BatchNorm's effect from the bug's. Unlike the article's script, the test pass
runs under no_grad (both backends). Both backends start from the same initial weights and see the
same batches; ``--backend vitc,torch`` runs them one after the other in one process (vitc first,
before PyTorch computes anything; for the cleanest timings run one backend per process).

bayes-search (experiment 2): an Optuna study per model maximising test accuracy after
``--trial-epochs`` (3) epochs; lr log-uniform in [1e-5, 1e-3] (ViT) or [1e-5, 1e-2] (BN models),
batch size in [20, 120]; then each model retrained with its best parameters for ``--epochs`` and
compared as in experiment 1 (the article's tables 2 and 3).

Outputs in ``--out``: results.json, the article's four-panel figure per learning rate, the
train-time-versus-learning-rate figure, table.md (r_t, r_v, g_t, g_v; SPEC §2.4), all written
atomically; one MLflow run per backend × model × rate (``MLFLOW_TRACKING_URI`` or ``--tracking-uri``,
default a SQLite store ``OUT/mlflow.db``).
"""
import argparse
import io
import json
import math
import os
import platform
import sys
import time

import numpy as np

import vitc
from vitc.data import MNIST, DataLoader, FashionMNIST
from vitc.io import atomic_write
from vitc.models import create_model

__all__ = ["MODELS", "run_fixed_lr", "run_bayes_search", "report", "ratio_rows", "ratio_table", "load_data", "main"]

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


def _positive_int(v, what, minimum=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {v!r}")
    return int(v)


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


def _check_batch(batch_size, models, what="batch size"):
    _positive_int(batch_size, what)
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


# ---- one model, one configuration: seed 004's train_model, on either backend ---------------------

def _build(name, backend, seed, overrides):
    """The vitc model (seeded init); for torch its PyTorch twin loaded with the same initial weights."""
    reg, _, topts = MODELS[name]
    vitc.manual_seed(seed)
    vm = create_model(reg, **overrides)
    if backend == "vitc":
        return vm
    import torch

    from ._torch_vit_bn import TorchViTFamily
    cfg = dict(SEED_CFG, **overrides)
    tm = TorchViTFamily(**cfg, **topts)
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in vm.state_dict().items()}, strict=True)
    return tm


def _warmup(backend, train_set, overrides):
    """Two untimed training steps, so the first timed run does not pay for thread-pool start-up and
    the allocator's first requests."""
    model = _build("ViT", backend, 0, overrides)
    n = min(len(train_set), 8)
    x, y = train_set.images[:n].copy(), train_set.labels[:n].copy()
    if backend == "torch":
        import torch
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
    else:
        opt = vitc.optim.Adam(model.parameters(), lr=1e-4)
        for _ in range(2):
            opt.zero_grad()
            vitc.cross_entropy(model(vitc.from_numpy(x)), vitc.from_numpy(y)).backward()
            opt.step()


def _drop_last(n, batch_size, bn):
    # a final batch of one image would give BatchNorm the statistics of a single image: drop it
    return bool(bn and n % batch_size == 1)


def _wait_while_paused(pause_file, log):
    """Block while ``pause_file`` exists; returns the seconds waited. Checked before every batch, so
    a long run yields the machine to a benchmark within one batch and the pause is left out of
    the epoch's time."""
    if not pause_file or not os.path.exists(pause_file):
        return 0.0
    t0 = time.perf_counter()
    while os.path.exists(pause_file):
        time.sleep(0.25)
    waited = time.perf_counter() - t0
    if log:
        log(f"  paused {waited:.1f} s while {pause_file} existed (not counted in the epoch's time)")
    return waited


def train_and_test(name, backend, lr, batch_size, epochs, train_set, test_set, test_batch_size=5000, seed=0,
                   overrides=None, on_epoch=None, log=print, pause_file=None):
    """Train ``epochs`` epochs with Adam(lr), testing after each; returns the per-epoch history."""
    overrides = _overrides(overrides)
    bn = MODELS[name][1]
    model = _build(name, backend, seed, overrides)
    if backend == "torch":
        import torch
        import torch.nn.functional as F
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        to_tensor, no_grad = torch.from_numpy, torch.no_grad
        loss_fn, labels = F.cross_entropy, lambda y: y.numpy()
    else:
        opt = vitc.optim.Adam(model.parameters(), lr=lr)
        to_tensor, no_grad = vitc.from_numpy, vitc.no_grad
        loss_fn, labels = vitc.cross_entropy, lambda y: y.numpy()
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, seed=seed, to_tensor=to_tensor,
                              drop_last=_drop_last(len(train_set), batch_size, bn))
    test_loader = DataLoader(test_set, batch_size=test_batch_size, shuffle=False, to_tensor=to_tensor)
    hist = {"epoch": [], "train_time": [], "test_time": [], "train_loss": [], "test_accuracy": [], "paused": []}
    for epoch in range(epochs):
        model.train()
        paused = 0.0
        t0 = time.perf_counter()
        cost = 0.0
        for x, y in train_loader:
            paused += _wait_while_paused(pause_file, log)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            cost += float(loss.item())
        t_train = time.perf_counter() - t0 - paused
        model.eval()
        correct, n, paused_test = 0, 0, 0.0
        t1 = time.perf_counter()
        with no_grad():
            for x, y in test_loader:
                paused_test += _wait_while_paused(pause_file, log)
                pred = model(x).numpy().argmax(axis=1)
                correct += int((pred == labels(y)).sum())
                n += len(pred)
        t_test = time.perf_counter() - t1 - paused_test
        rec = {"epoch": epoch + 1, "train_time": t_train, "test_time": t_test, "train_loss": cost,
               "test_accuracy": correct / n, "paused": paused + paused_test}
        for k, v in rec.items():
            hist[k].append(v)
        if log:
            log(f"  [{backend} {name} lr={lr:g} bs={batch_size}] epoch {epoch + 1}/{epochs}: train loss {cost:.3f} "
                f"(sum of batch means), test acc {100 * correct / n:.2f}%, train {t_train:.1f} s, "
                f"test {t_test:.1f} s (no_grad)")
        if on_epoch:
            on_epoch(rec)
    return hist


# ---- tracking ------------------------------------------------------------------------------------

class _Tracker:
    """One MLflow run per (backend, model, lr); no-op when disabled."""

    def __init__(self, enabled, out, tracking_uri, experiment):
        self.mlflow = None
        if not enabled:
            return
        try:
            import mlflow
        except ImportError:
            raise ValueError("MLflow is not installed (pip install 'vitc[experiments]'); or pass --no-mlflow") from None
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            "sqlite:///" + os.path.join(os.path.abspath(out), "mlflow.db")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        self.mlflow, self.uri = mlflow, uri

    def run(self, run_name, params, fn):
        """fn(log_epoch) -> result; log_epoch(rec) logs the article's four metrics with step=epoch."""
        if self.mlflow is None:
            return fn(None), None
        with self.mlflow.start_run(run_name=run_name) as r:
            self.mlflow.log_params(params)

            def log_epoch(rec):
                self.mlflow.log_metrics({"training_loss": rec["train_loss"], "validation_accuracy": rec["test_accuracy"],
                                         "training_time": rec["train_time"], "validation_time": rec["test_time"]},
                                        step=rec["epoch"])
            return fn(log_epoch), r.info.run_id


# ---- analysis: ratios, table, figures ------------------------------------------------------------

def ratio_rows(runs):
    """Rows of r_t, r_v, g_t, g_v (SPEC §2.4) of every model against ViT of the same backend and
    configuration label; plus, for an ``-article`` model, the factor its bug adds over the correct model."""
    by = {(r["backend"], r["label"], r["model"]): r for r in runs}
    rows = []
    for (backend, label, model), r in by.items():
        vit = by.get((backend, label, "ViT"))
        if model == "ViT" or vit is None:
            continue
        # medians over epochs: a transient load on the machine (another job for a minute) moves one
        # epoch's time, not the ratio; results.json keeps every epoch for the article's means
        t = {k: float(np.median(r[k])) for k in ("train_time", "test_time")}
        tv = {k: float(np.median(vit[k])) for k in ("train_time", "test_time")}
        rt, rv = tv["train_time"] / t["train_time"], tv["test_time"] / t["test_time"]
        row = {"backend": backend, "label": label, "model": model, "r_t": rt, "r_v": rv, "g_t": 1 - 1 / rt,
               "g_v": 1 - 1 / rv, "acc_vit": vit["test_accuracy"][-1], "acc": r["test_accuracy"][-1],
               "t_train": t["train_time"], "t_train_vit": tv["train_time"],
               "t_test": t["test_time"], "t_test_vit": tv["test_time"]}
        base = by.get((backend, label, model.replace("-article", ""))) if model.endswith("-article") else None
        if base is not None:
            row["bug_t"] = float(np.median(base["train_time"])) / t["train_time"]
            row["bug_v"] = float(np.median(base["test_time"])) / t["test_time"]
        rows.append(row)
    return rows


def ratio_table(runs, title="Speed ratios against ViT"):
    """Markdown: per backend and configuration, each model's r_t, r_v, g_t, g_v and final accuracies."""
    rows = ratio_rows(runs)
    lines = [f"### {title}", "",
             "r_t = T_train(ViT)/T_train(model), r_v = T_test(ViT)/T_test(model), T the median over epochs "
             "(robust to a transient load; the article uses means, every epoch is in results.json); "
             "g = 1 − 1/r (the article's gain; r = 2.5 ⇒ 60 %). 'bug ×' = the further speed-up of the article's "
             "first-block-only model over the correct model (train / test). Accuracy after the last epoch.", "",
             "| backend | lr / config | model | T_train s (ViT) | T_test s (ViT) | r_t | r_v | g_t | g_v | bug × (t / v) "
             "| acc ViT | acc model |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bug = f"{r['bug_t']:.2f} / {r['bug_v']:.2f}" if "bug_t" in r else "—"
        lines.append(f"| {r['backend']} | {r['label']} | {r['model']} | {r['t_train']:.2f} ({r['t_train_vit']:.2f}) | "
                     f"{r['t_test']:.2f} ({r['t_test_vit']:.2f}) | {r['r_t']:.2f} | {r['r_v']:.2f} | "
                     f"{100 * r['g_t']:.0f} % | {100 * r['g_v']:.0f} % | {bug} | {100 * r['acc_vit']:.2f} % | "
                     f"{100 * r['acc']:.2f} % |")
    return "\n".join(lines) + "\n"


def _save_fig(fig, path):
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    _write_bytes(path, buf.getvalue())


def _write_bytes(path, data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, write)


def _write_text(path, text):
    _write_bytes(path, text.encode("utf-8"))


def _plt():
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


_PANELS = (("train_time", "training time per epoch (s)"), ("test_time", "test time per epoch (s, no_grad)"),
           ("train_loss", "training loss (sum of batch means)"), ("test_accuracy", "test accuracy"))


def four_panel_figure(runs, title):
    """The article's figures 3–5 / 8: train time, test time, train loss, test accuracy per epoch."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (key, label) in zip(axes.flat, _PANELS):
        for r in runs:
            ax.plot(r["epoch"], r[key], marker="o", ms=3, label=r["model"],
                    ls="--" if r["model"].endswith("-article") else "-")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def train_time_vs_lr_figure(runs, title):
    """The article's figure 6: each model's per-epoch train time, one line per learning rate."""
    plt = _plt()
    models = list(dict.fromkeys(r["model"] for r in runs))
    fig, axes = plt.subplots(len(models), 1, figsize=(7, 2.4 * len(models)), sharex=True, squeeze=False)
    for ax, m in zip(axes[:, 0], models):
        for i, r in enumerate(x for x in runs if x["model"] == m):
            ax.plot(r["epoch"], r["train_time"], marker="o", ms=3, label=f"{m}_{i + 1} (lr {r['lr']:g})")
        ax.set_ylabel("train time (s)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- experiment 1 --------------------------------------------------------------------------------

def _machine(backends):
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "vitc_threads": vitc.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    if "torch" in backends:
        import torch
        info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    return info


def _set_threads(threads, backends):
    if threads is None:
        return
    _positive_int(threads, "threads")
    vitc.set_num_threads(threads)
    if "torch" in backends:
        import torch
        torch.set_num_threads(threads)


# meta keys two invocations must share for --resume to put their runs in one table
_RESUME_KEYS = ("experiment", "dataset", "train_samples", "test_samples", "epochs", "batch_size", "test_batch_size",
                "seed", "overrides")


class _Results:
    """results.json, rewritten atomically after every finished run."""

    def __init__(self, out, meta):
        self.path = os.path.join(out, "results.json")
        self.doc = {"meta": meta, "runs": []}

    def resume(self):
        """Keep the finished runs of an earlier invocation with the same settings (a long run can span
        several sessions, one backend each); returns the set of (backend, model, lr) already done."""
        if not os.path.exists(self.path):
            return set()
        try:
            with open(self.path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"--resume: cannot read {self.path}: {e}") from None
        meta, prev = self.doc["meta"], old.get("meta", {})
        # (setting, there, now); times are only comparable at one thread count (--threads sets both backends')
        pairs = [(k, prev.get(k), meta.get(k)) for k in _RESUME_KEYS]
        pairs.append(("threads", *(m.get("machine", {}).get("vitc_threads") for m in (prev, meta))))
        diff = [(k, a, b) for k, a, b in pairs if json.dumps(a) != json.dumps(b)]
        if diff:
            raise ValueError(f"--resume: {self.path} was made with other settings ("
                             + ", ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff) + ")")
        for k in ("models", "lrs", "backends"):
            meta[k] = list(dict.fromkeys(list(prev.get(k, [])) + list(meta[k])))
        # each invocation keeps its own command, machine and start time
        meta["invocations"] = prev.get("invocations", [{k: prev.get(k) for k in ("command", "machine", "started")}])
        meta["invocations"].append({k: meta.get(k) for k in ("command", "machine", "started")})
        self.doc["runs"] = list(old.get("runs", []))
        return {(r["backend"], r["model"], r["lr"]) for r in self.doc["runs"]}

    def add(self, run):
        self.doc["runs"].append(run)
        self.save()

    def save(self):
        _write_text(self.path, json.dumps(self.doc, indent=1, default=float))


def _prepare(out, backends, threads, dataset, data_root, subset, test_subset, download, log):
    os.makedirs(out, exist_ok=True)
    _set_threads(threads, backends)
    name, tr, te, note = load_data(dataset, data_root, subset, test_subset, download)
    if log:
        log(f"{note}: {len(tr)} train / {len(te)} test images")
    return name, tr, te, note


def _four_panel_figures(runs, out, backends, labels, title):
    """fig_<backend>_<label>.png for every backend and configuration label; returns the paths."""
    files = []
    for backend in backends:
        for label in labels:
            sel = [r for r in runs if r["backend"] == backend and r["label"] == label]
            if not sel:
                continue
            path = os.path.join(out, f"fig_{backend}_{label}.png")
            _save_fig(four_panel_figure(sel, f"{title} — {backend}, {label}"), path)
            files.append(path)
    return files


def run_fixed_lr(models=tuple(MODELS), lrs=DEFAULT_LRS, epochs=30, backend="vitc", batch_size=100,
                 test_batch_size=5000, subset=None, test_subset=None, dataset="auto", data_root=None, download=True,
                 out="results/vit_batchnorm", threads=None, seed=0, mlflow=True, tracking_uri=None,
                 experiment="vit_batchnorm", overrides=None, log=print, command=None, resume=False, pause_file=None):
    """Experiment 1. Every input is checked before any training; returns the results document.
    ``resume``: keep OUT/results.json's finished (backend, model, lr) runs and run only the others.
    ``pause_file``: while it exists the run waits before its next batch, and the wait is left out of
    the epoch's times (each epoch's total pause is kept as ``paused``)."""
    models, backends, lrs = _model_names(models), _backends(backend), _lrs(lrs)
    epochs = _positive_int(epochs, "epochs")
    _check_batch(batch_size, models)
    _positive_int(test_batch_size, "test batch size")
    overrides = _overrides(overrides)
    data_name, tr, te, note = _prepare(out, backends, threads, dataset, data_root, subset, test_subset, download, log)
    tracker = _Tracker(mlflow, out, tracking_uri, experiment)
    meta = {"experiment": "fixed-lr", "command": command, "dataset": data_name, "data_note": note,
            "train_samples": len(tr), "test_samples": len(te), "epochs": epochs, "batch_size": batch_size,
            "test_batch_size": test_batch_size, "lrs": lrs, "models": models, "backends": backends, "seed": seed,
            "overrides": overrides, "machine": _machine(backends), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "mlflow_tracking_uri": getattr(tracker, "uri", None),
            "note": "test pass under no_grad (the article's script keeps autograd on)"}
    res = _Results(out, meta)
    done = res.resume() if resume else set()
    if done and log:
        log(f"resuming: {len(done)} finished runs kept from {res.path}")
    for backend_ in backends:
        if all((backend_, m, lr) in done for lr in lrs for m in models):
            continue
        _warmup(backend_, tr, overrides)
        for lr in lrs:
            for m in models:
                if (backend_, m, lr) in done:
                    continue
                params = {"backend": backend_, "model": m, "learning_rate": lr, "epochs": epochs,
                          "batch_size": batch_size, "test_batch_size": test_batch_size, "dataset": data_name,
                          "train_samples": len(tr), "seed": seed, "bn_first_block_only": m.endswith("-article")}
                hist, run_id = tracker.run(f"{backend_}-{m}-lr{lr:g}", params, lambda cb: train_and_test(
                    m, backend_, lr, batch_size, epochs, tr, te, test_batch_size, seed, overrides, cb, log,
                    pause_file))
                res.add(dict(backend=backend_, model=m, lr=lr, label=f"lr{lr:g}", batch_size=batch_size,
                             mlflow_run_id=run_id, **hist))
    write_report(res, log)
    return res.doc


def write_report(res, log=print):
    """Figures and table.md of experiment 1 from its results (also `report`, e.g. after an interrupted run)."""
    runs, meta, out = res.doc["runs"], res.doc["meta"], os.path.dirname(res.path)
    backends = list(dict.fromkeys(r["backend"] for r in runs))
    labels = list(dict.fromkeys(r["label"] for r in runs))
    files = _four_panel_figures(runs, out, backends, labels, "ViT vs BatchNorm ViTs")
    for backend_ in backends:
        path = os.path.join(out, f"fig_{backend_}_train_time_vs_lr.png")
        _save_fig(train_time_vs_lr_figure([r for r in runs if r["backend"] == backend_],
                                          f"train time per epoch vs learning rate — {backend_}"), path)
        files.append(path)
    table = ratio_table(runs, f"Experiment 1 ({meta['dataset']}, {meta['train_samples']} train / "
                              f"{meta['test_samples']} test, {meta['epochs']} epochs)")
    _write_text(os.path.join(out, "table.md"), table)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta["files"] = [os.path.basename(f) for f in files] + ["table.md"]
    res.save()
    if log:
        log(table)
        log(f"wrote {len(files)} figures, table.md and results.json to {out}")


def report(out, log=print):
    """Rebuild experiment 1's figures and table from OUT/results.json."""
    path = os.path.join(out, "results.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if doc.get("meta", {}).get("experiment") != "fixed-lr" or not doc.get("runs"):
        raise ValueError(f"{path} holds no fixed-lr runs")
    res = _Results(out, doc["meta"])
    res.doc = doc
    write_report(res, log)
    return doc


# ---- experiment 2 --------------------------------------------------------------------------------

def _sampler(kind, seed):
    import optuna
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise ValueError(f"--sampler gp needs scipy and torch ({e}); use --sampler tpe") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)
    raise ValueError(f"sampler must be 'tpe' or 'gp', got {kind!r}")


def convergence_figure(trials, title):
    """The article's figure 7: each trial's accuracy and the best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    n = np.arange(1, len(trials) + 1)
    acc = np.array([t["value"] for t in trials], dtype=float)
    ax.plot(n, acc, "o", ms=4, label="trial")
    ax.plot(n, np.maximum.accumulate(acc), "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def run_bayes_search(models=CORRECT_MODELS, trials=20, trial_epochs=3, epochs=30, sampler="tpe", storage=None,
                     study_prefix="vit_batchnorm", backend="vitc", test_batch_size=5000, subset=None,
                     test_subset=None, dataset="auto", data_root=None, download=True, out="results/vit_batchnorm_bayes",
                     threads=None, seed=0, mlflow=True, tracking_uri=None, experiment="vit_batchnorm_bayes",
                     overrides=None, log=print, command=None):
    """Experiment 2: one Optuna study per (backend, model), then the best configurations retrained."""
    try:
        import optuna
    except ImportError:
        raise ValueError("Optuna is not installed (pip install 'vitc[experiments]')") from None
    models, backends = _model_names(models), _backends(backend)
    trials = _positive_int(trials, "trials")
    trial_epochs = _positive_int(trial_epochs, "trial epochs")
    epochs = _positive_int(epochs, "epochs", minimum=0)
    _positive_int(test_batch_size, "test batch size")
    overrides = _overrides(overrides)
    _sampler(sampler, seed)
    os.makedirs(out, exist_ok=True)
    storage = storage or "sqlite:///" + os.path.join(os.path.abspath(out), "optuna.db")
    data_name, tr, te, note = _prepare(out, backends, threads, dataset, data_root, subset, test_subset, download, log)
    tracker = _Tracker(mlflow, out, tracking_uri, experiment)
    meta = {"experiment": "bayes-search", "command": command, "dataset": data_name, "data_note": note,
            "train_samples": len(tr), "test_samples": len(te), "trials": trials, "trial_epochs": trial_epochs,
            "epochs": epochs, "sampler": sampler, "storage": storage, "models": models, "backends": backends,
            "seed": seed, "overrides": overrides, "machine": _machine(backends),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mlflow_tracking_uri": getattr(tracker, "uri", None),
            "lr_range": {m: LR_RANGE[MODELS[m][1]] for m in models}, "batch_range": BATCH_RANGE}
    res = _Results(out, meta)
    res.doc["studies"] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    files = []
    for backend_ in backends:
        _warmup(backend_, tr, overrides)
        for m in models:
            lo, hi = LR_RANGE[MODELS[m][1]]
            study = optuna.create_study(study_name=f"{study_prefix}-{backend_}-{m}", storage=storage,
                                        direction="maximize", load_if_exists=True,
                                        # one seed per model: equal search spaces must not get equal draws
                                        sampler=_sampler(sampler, seed + list(MODELS).index(m)))

            def objective(trial, m=m, lo=lo, hi=hi, backend_=backend_):
                lr = trial.suggest_float("lr", lo, hi, log=True)
                bs = trial.suggest_int("batch_size", *BATCH_RANGE)
                params = {"backend": backend_, "model": m, "learning_rate": lr, "batch_size": bs,
                          "epochs": trial_epochs, "trial": trial.number, "dataset": data_name}
                hist, _ = tracker.run(f"trial-{backend_}-{m}-{trial.number}", params, lambda cb: train_and_test(
                    m, backend_, lr, bs, trial_epochs, tr, te, test_batch_size, seed, overrides, cb, log))
                return hist["test_accuracy"][-1]

            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            if done < trials:
                if log:
                    log(f"{backend_} {m}: {trials - done} trials ({done} already in the study), sampler {sampler}")
                study.optimize(objective, n_trials=trials - done)
            complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            rec = [{"number": t.number, "value": t.value, "params": t.params} for t in complete]
            best = max(complete, key=lambda t: t.value)
            res.doc["studies"][f"{backend_}/{m}"] = {"trials": rec, "best": {"value": best.value, "params": best.params}}
            res.save()
            path = os.path.join(out, f"fig_{backend_}_{m}_convergence.png")
            _save_fig(convergence_figure(rec, f"{m} ({backend_}): Bayesian search, {sampler}"), path)
            files.append(path)
    lines = ["### Optimised hyper-parameters (the article's table 2)", "",
             "| backend | model | lr | batch size | search accuracy |", "|---|---|---|---|---|"]
    for key, s in res.doc["studies"].items():
        b, m = key.split("/")
        lines.append(f"| {b} | {m} | {s['best']['params']['lr']:.3g} | {s['best']['params']['batch_size']} | "
                     f"{100 * s['best']['value']:.2f} % |")
    table = "\n".join(lines) + "\n\n"
    if epochs:
        for backend_ in backends:
            for m in models:
                p = res.doc["studies"][f"{backend_}/{m}"]["best"]["params"]
                lr, bs = p["lr"], p["batch_size"]
                params = {"backend": backend_, "model": m, "learning_rate": lr, "batch_size": bs, "epochs": epochs,
                          "dataset": data_name, "optimised": True}
                hist, run_id = tracker.run(f"optimised-{backend_}-{m}", params, lambda cb: train_and_test(
                    m, backend_, lr, bs, epochs, tr, te, test_batch_size, seed, overrides, cb, log))
                res.add(dict(backend=backend_, model=m, lr=lr, label="optimised", batch_size=bs, mlflow_run_id=run_id,
                             **hist))
        files += _four_panel_figures(res.doc["runs"], out, backends, ["optimised"], "optimised models")
        table += ratio_table(res.doc["runs"], f"Optimised models, {epochs} epochs (the article's table 3)")
    _write_text(os.path.join(out, "table.md"), table)
    res.doc["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    res.doc["meta"]["files"] = [os.path.basename(f) for f in files] + ["table.md"]
    res.save()
    if log:
        log(table)
        log(f"wrote {len(files)} figures, table.md and results.json to {out}")
    return res.doc


# ---- command line --------------------------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.vit_batchnorm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s, out):
        s.add_argument("--backend", default="vitc", help="vitc, torch, or vitc,torch (both, same run)")
        s.add_argument("--dataset", default="auto", choices=["auto", "mnist", "fashion-mnist"],
                       help="auto: MNIST if present or downloadable, else Fashion-MNIST")
        s.add_argument("--data-root", default=None, help="folder with the IDX files of --dataset")
        s.add_argument("--no-download", action="store_true", help="never download MNIST")
        s.add_argument("--subset", type=int, default=None, help="first N training images only")
        s.add_argument("--test-subset", type=int, default=None, help="first N test images only")
        s.add_argument("--test-batch-size", type=int, default=5000)
        s.add_argument("--threads", type=int, default=None, help="compute threads of both backends")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--out", default=out, help="output folder (figures, table.md, results.json)")
        s.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
        s.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                       "sqlite:///OUT/mlflow.db)")
        s.add_argument("--model-overrides", default=None, help=f"JSON dict of model sizes ({', '.join(OVERRIDABLE)})")

    f = sub.add_parser("fixed-lr", help="experiment 1: models × fixed learning rates")
    f.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    f.add_argument("--lrs", default=",".join(f"{x:g}" for x in DEFAULT_LRS), help="comma-separated learning rates")
    f.add_argument("--epochs", type=int, default=30)
    f.add_argument("--batch-size", type=int, default=100)
    f.add_argument("--resume", action="store_true", help="keep OUT/results.json's finished runs (same settings) "
                   "and run only the missing backend × model × rate cells")
    f.add_argument("--pause-file", default=None, help="while this file exists the run waits before its next batch, "
                   "the wait left out of the epoch's times (lets a benchmark borrow the machine)")
    common(f, "results/vit_batchnorm")
    b = sub.add_parser("bayes-search", help="experiment 2: Optuna search per model, then the optimised models")
    b.add_argument("--models", default=",".join(CORRECT_MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    b.add_argument("--trials", type=int, default=20)
    b.add_argument("--trial-epochs", type=int, default=3, help="epochs per trial (the authors' script: 3)")
    b.add_argument("--epochs", type=int, default=30, help="epochs of the final runs with the best parameters (0: none)")
    b.add_argument("--sampler", default="tpe", choices=["tpe", "gp"], help="Optuna TPE, or its Gaussian-process sampler")
    b.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/optuna.db); share "
                   "one RDB URL to run workers on several machines")
    b.add_argument("--study-prefix", default="vit_batchnorm")
    common(b, "results/vit_batchnorm_bayes")
    r = sub.add_parser("report", help="rebuild experiment 1's figures and table from OUT/results.json")
    r.add_argument("--out", default="results/vit_batchnorm")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "report":
        try:
            report(args.out)
        except ValueError as e:
            raise SystemExit(f"error: {e}")
        return 0
    command = "python -m vitc.experiments.vit_batchnorm " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        overrides = json.loads(args.model_overrides) if args.model_overrides else None
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError("--model-overrides must be a JSON object")
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --model-overrides is not valid JSON: {e}")
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    kw = dict(backend=args.backend, dataset=args.dataset, data_root=args.data_root, download=not args.no_download,
              subset=args.subset, test_subset=args.test_subset, test_batch_size=args.test_batch_size,
              threads=args.threads, seed=args.seed, out=args.out, mlflow=not args.no_mlflow,
              tracking_uri=args.tracking_uri, overrides=overrides, command=command, models=args.models,
              epochs=args.epochs)
    try:
        if args.cmd == "fixed-lr":
            run_fixed_lr(lrs=args.lrs, batch_size=args.batch_size, resume=args.resume, pause_file=args.pause_file, **kw)
        else:
            run_bayes_search(trials=args.trials, trial_epochs=args.trial_epochs, sampler=args.sampler,
                             storage=args.storage, study_prefix=args.study_prefix, **kw)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
