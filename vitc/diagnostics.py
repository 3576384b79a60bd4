"""Attention-collapse diagnostics (DeepViT: Zhou et al., arXiv 2103.11886, eq. 2 and Figs. 3–4).

On any model built from vitc.nn.Attention / vitc.nn.TransformerBlock (every model of the registry):

    rep = collapse_report(model, images)       # one forward, no gradients
    rep.similarity      (L, L)  cross-layer attention-map similarity M̄^{p,q}
    rep.n_similar       blocks whose map is > threshold similar to the previous block's
    rep.head_similarity (L, H, H) similarity between the heads of each block
    rep.feature_similarity (L,) cosine of each block's output with the last block's
    plot_report(rep, out_dir)                  # PNG heat maps and curves

During training, without a second forward: ``with AttentionRecorder(model) as rec:`` makes every
forward keep its maps (detached) and block outputs; ``rec.report()`` summarises the last one.

Over-smoothing (Gong et al., "Vision Transformers with Patch Diversification", arXiv 2104.12753 §3):
``over_smoothing_report(model, images)`` / ``rec.over_smoothing()`` give, per block, the patch tokens'
mean pairwise cosine (token_similarity) and how far each patch query's attention row is from uniform
(attention_spread); ``OverSmoothingLog`` keeps one such record per epoch from the recorder.

Maps are the ones that multiply v: post-softmax (pre-dropout) A for MHSA, Â for re-attention
(see docs/choices.md, DeepViT). Â is signed and zero-mean per head after re-attention's BatchNorm, so its cosines are
not on the scale of softmax maps' (which are positive); the report also carries the similarity of
the per-head softmax maps A before the mixing (softmax_similarity), comparable across variants.
"""
from dataclasses import dataclass, field

import numpy as np

import vitc as _v
from vitc import nn
from vitc._checks import expect_number

__all__ = ["AttentionRecorder", "CollapseReport", "attention_maps", "softmax_maps", "attention_similarity", "similar_blocks",
           "head_similarity", "feature_similarity", "collapse_report", "plot_report", "token_similarity",
           "attention_spread", "OverSmoothingReport", "over_smoothing_report", "OverSmoothingLog",
           "plot_over_smoothing", "run_caption", "SPREAD_KEYS"]


def _nonempty_list(items, who, what):
    """One array or tensor, or a non-empty list/tuple of them, as a list/tuple (else ValueError)."""
    if isinstance(items, (_v.Tensor, np.ndarray)):
        items = [items]
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{who}: expected a non-empty list of {what}")
    return items


def _as_maps(maps, who):
    maps = _nonempty_list(maps, who, "attention maps (B, heads, T, T)")
    out = []
    for i, m in enumerate(maps):
        a = m.detach().numpy() if isinstance(m, _v.Tensor) else np.asarray(m)
        if a.ndim != 4 or a.shape[2] != a.shape[3]:
            raise ValueError(f"{who}: map {i} must have shape (B, heads, T, T), got {a.shape}")
        if out and a.shape != out[0].shape:
            raise ValueError(f"{who}: map {i} has shape {a.shape}, map 0 {out[0].shape}: layers must agree")
        out.append(a.astype(np.float64))
    return out


def _unit_columns(a):
    """columns a[b, h, :, t] scaled to unit length (a zero column stays zero: cosine 0)"""
    n = np.sqrt(np.sum(a * a, axis=2, keepdims=True))
    return np.divide(a, n, out=np.zeros_like(a), where=n > 0)


def attention_similarity(maps):
    """M̄^{p,q} (L, L): the cosine between column t of layer p's and layer q's map of the same head
    and image (a^p_{h,t} = A^p[b, h, :, t], how much token t feeds every output token), averaged over
    images, heads and tokens (Zhou et al., arXiv 2103.11886, eq. 2)."""
    u = [_unit_columns(a) for a in _as_maps(maps, "attention_similarity")]
    L = len(u)
    sim = np.empty((L, L))
    for p in range(L):
        for q in range(p, L):
            sim[p, q] = sim[q, p] = np.mean(np.sum(u[p] * u[q], axis=2))
    return sim


def similar_blocks(similarity, threshold=0.9):
    """#{k ≥ 1 : M̄^{k−1,k} > threshold} (0-based blocks; vitc's reading of the paper's
    90 % rule, docs/choices.md)."""
    t = expect_number(threshold, "similar_blocks", "threshold", 0.0, 1.0)
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"similar_blocks: similarity must be a square (L, L) matrix, got shape {s.shape}")
    return int(np.sum(np.diagonal(s, offset=1) > t))


def head_similarity(maps):
    """(L, H, H): per block, the cosine between the maps of heads h and g (per token column, mean
    over images and tokens) — Zhou et al. (DeepViT) Fig. 3c: heads of one block differ even when blocks collapse."""
    out = []
    for a in _as_maps(maps, "head_similarity"):
        u = _unit_columns(a)                                    # (B, H, T, T)
        out.append(np.einsum("bhit,bgit->hg", u, u) / (u.shape[0] * u.shape[3]))
    return np.stack(out)


def feature_similarity(features):
    """(L,): cosine between each block's output tokens and the last block's, mean over tokens and
    images (Zhou et al., DeepViT, Fig. 4). One block output alone is a list of one (similarity [1.0])."""
    features = _nonempty_list(features, "feature_similarity", "block outputs (B, T, D)")
    fs = [_as_array(f) for f in features]
    fs = [f.astype(np.float64) for f in fs]
    if any(f.ndim != 3 or f.shape != fs[-1].shape for f in fs):
        raise ValueError(f"feature_similarity: block outputs must all be (B, T, D) of one shape, got "
                         f"{[f.shape for f in fs]}")

    def unit(f):
        n = np.linalg.norm(f, axis=2, keepdims=True)
        return np.divide(f, n, out=np.zeros_like(f), where=n > 0)
    last = unit(fs[-1])
    return np.array([np.mean(np.sum(unit(f) * last, axis=2)) for f in fs])


class AttentionRecorder:
    """Context manager: while active, every forward of `model` keeps each Attention's maps and each
    TransformerBlock's output (detached), so training steps give the diagnostics for free.
    ``maps()`` / ``features()`` return those of the most recent forward; ``report()`` summarises."""

    def __init__(self, model):
        if not isinstance(model, nn.Module):
            raise TypeError(f"AttentionRecorder: model must be a vitc.nn.Module, got {type(model).__name__}")
        self.model = model
        self.attns = [m for m in model.modules() if isinstance(m, nn.Attention)]
        if not self.attns:
            raise ValueError(f"AttentionRecorder: {type(model).__name__} has no vitc.nn.Attention modules, so it "
                             "has no attention maps to record")
        self.blocks = [m for m in model.modules() if isinstance(m, nn.TransformerBlock)]
        self._feats, self._handles = {}, []

    def __enter__(self):
        self._kept = None
        for a in self.attns:
            a.record_attention, a.last_attention = True, None
        for i, b in enumerate(self.blocks):
            def hook(module, args, out, i=i):
                self._feats[i] = (out[0] if isinstance(out, tuple) else out).detach()
            self._handles.append(b.register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        # the recorder keeps the last forward's maps; the modules drop theirs
        self._kept = {k: [getattr(a, "last_" + k) for a in self.attns] for k in ("attention", "softmax")}
        for a in self.attns:
            a.record_attention, a.last_attention, a.last_softmax = False, None, None
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def maps(self, kind="applied"):
        """'applied': the maps that multiplied v; 'softmax': the per-head softmax maps"""
        if kind not in ("applied", "softmax"):
            raise ValueError(f"AttentionRecorder.maps: kind must be 'applied' or 'softmax', got {kind!r}")
        key = "attention" if kind == "applied" else "softmax"
        kept = getattr(self, "_kept", None)
        maps = kept[key] if kept is not None else [getattr(a, "last_" + key) for a in self.attns]
        if any(m is None for m in maps):
            raise RuntimeError("AttentionRecorder: no forward has run since recording started")
        return maps

    def features(self):
        return [self._feats[i] for i in range(len(self.blocks)) if i in self._feats]

    def report(self, threshold=0.9):
        return _report(self.maps(), self.maps("softmax"), self.features(), threshold)

    def over_smoothing(self, keys="all"):
        """Token similarity and attention spread (Gong et al. 2021) of the most recent forward."""
        return _over_smoothing(self.model, self.maps("softmax"), self.features(), keys)


def attention_maps(model, images, train_mode=False):
    """Per-layer attention maps (list of (B, heads, T, T) NumPy arrays) of one forward of `images`,
    without gradients; the model runs in eval mode unless train_mode (its mode is restored)."""
    return [m.numpy() for m in _forward(model, images, train_mode)[0]]


def softmax_maps(model, images, train_mode=False):
    """As attention_maps, but the per-head softmax maps (before re-attention's mixing)."""
    return [m.numpy() for m in _forward(model, images, train_mode)[1]]


def _forward(model, images, train_mode):
    rec = AttentionRecorder(model)
    if not isinstance(images, _v.Tensor):
        images = _v.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    was = model.training
    model.train(train_mode)
    try:
        with rec, _v.no_grad():
            model(images)
            return rec.maps(), rec.maps("softmax"), rec.features()
    finally:
        model.train(was)


@dataclass
class CollapseReport:
    maps: list
    similarity: np.ndarray
    n_similar: int
    threshold: float
    head_similarity: np.ndarray
    feature_similarity: np.ndarray = field(default=None)
    softmax_similarity: np.ndarray = field(default=None)
    n_similar_softmax: int = 0

    def summary(self):
        L = len(self.maps)
        adj = np.diagonal(self.similarity, offset=1)
        return {"depth": L, "n_similar": self.n_similar, "threshold": self.threshold,
                "adjacent_similarity": adj.tolist(),
                "mean_adjacent_similarity": float(adj.mean()) if adj.size else float("nan"),
                "mean_head_similarity": [float((h.sum() - np.trace(h)) / max(h.size - len(h), 1))
                                         for h in self.head_similarity],
                "feature_similarity": None if self.feature_similarity is None else self.feature_similarity.tolist(),
                "n_similar_softmax": self.n_similar_softmax,
                "mean_adjacent_softmax_similarity": float(np.diagonal(self.softmax_similarity, offset=1).mean())
                if L > 1 else float("nan")}


def _report(maps, softmax_maps, feats, threshold):
    t = expect_number(threshold, "collapse_report", "threshold", 0.0, 1.0)
    sim = attention_similarity(maps)
    ssim = attention_similarity(softmax_maps)
    return CollapseReport(maps=[m.numpy() if isinstance(m, _v.Tensor) else m for m in maps], similarity=sim,
                          n_similar=similar_blocks(sim, t), threshold=t, head_similarity=head_similarity(maps),
                          feature_similarity=feature_similarity(feats) if feats else None,
                          softmax_similarity=ssim, n_similar_softmax=similar_blocks(ssim, t))


def collapse_report(model, images, threshold=0.9, train_mode=False):
    """Everything above from one forward of `images` (eval mode unless train_mode)."""
    expect_number(threshold, "collapse_report", "threshold", 0.0, 1.0)
    maps, softmax_maps, feats = _forward(model, images, train_mode)
    return _report(maps, softmax_maps, feats, threshold)


def run_caption(run, probe_images):
    """The line every diagnostics figure carries: the run it comes from (``run``, e.g. "vit_seed_mnist,
    5000 images, 2 epochs, seed 0", or "run not stated") and the number of images the maps were
    measured on, so a reduced run does not pass for a full one."""
    if run is not None and not isinstance(run, str):
        raise TypeError(f"run must be a str describing the run (data size, epochs, seeds) or None, got "
                        f"{type(run).__name__}")
    return f"{run or 'run not stated'}; maps of {probe_images} image(s)"


def plot_report(report, out_dir, prefix="", run=None):
    """PNG files in out_dir (written atomically): the cross-layer similarity heat map, adjacent-block
    similarity and feature similarity curves, per-block head similarity (each heat map with its
    colorbar). run: what the model was trained on (data size, epochs, seed), put in every figure's
    title with the number of images the maps came from. Returns their paths."""
    import os

    from vitc.experiments.common import integer_ticks, legend_beside, pyplot, save_figure
    plt = pyplot()

    def save(fig, name):
        path = os.path.join(out_dir, prefix + name)
        save_figure(fig, path, dpi=110)
        return path

    paths = []
    L = len(report.maps)
    caption = run_caption(run, report.maps[0].shape[0])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(report.similarity, vmin=0, vmax=1, cmap="viridis", origin="lower")
    ax.set(xlabel="block q", ylabel="block p", title=f"attention-map similarity M̄(p,q)\n{caption}")
    ax.title.set_fontsize(8)
    integer_ticks(ax.xaxis)
    integer_ticks(ax.yaxis)
    fig.colorbar(im, ax=ax, label="cosine similarity")
    paths.append(save(fig, "similarity.png"))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, L), np.diagonal(report.similarity, offset=1), marker="o", label="M̄(k−1, k), maps ·v")
    if report.softmax_similarity is not None and not np.array_equal(report.softmax_similarity, report.similarity):
        ax.plot(range(1, L), np.diagonal(report.softmax_similarity, offset=1), marker="^",
                label="M̄(k−1, k), softmax maps")
    if report.feature_similarity is not None:
        ax.plot(range(len(report.feature_similarity)), report.feature_similarity, marker="s",
                label="feature cos to last block")
    ax.axhline(report.threshold, color="grey", ls="--", lw=1)
    ax.set(xlabel="block", ylabel="cosine similarity", ylim=(min(0, ax.get_ylim()[0]), 1.02))
    ax.set_title(f"{report.n_similar} similar blocks (threshold {report.threshold:g}, dashed)\n{caption}", fontsize=8)
    integer_ticks(ax.xaxis)
    legend_beside(ax)
    paths.append(save(fig, "curves.png"))
    fig, axes = plt.subplots(1, L, figsize=(1.6 * L + 1.6, 2.1), squeeze=False)
    for k, ax in enumerate(axes[0]):
        im = ax.imshow(report.head_similarity[k], vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"block {k}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes[0]), label="cosine similarity", fraction=0.05 if L > 2 else 0.1)
    fig.suptitle(f"head similarity within each block (head × head)\n{caption}", fontsize=8, y=1.12)
    paths.append(save(fig, "head_similarity.png"))
    return paths


# ---- over-smoothing (Gong et al., arXiv 2104.12753 §3) ------------------------------------------------

SPREAD_KEYS = ("all", "patches")


def _as_array(x):
    return x.detach().numpy() if isinstance(x, _v.Tensor) else np.asarray(x)


def _prefix(num_prefix_tokens, who):
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, (int, np.integer)) \
            or num_prefix_tokens < 0:
        raise ValueError(f"{who}: num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}")
    return int(num_prefix_tokens)


def _patch_count(total, prefix, who):
    n = total - prefix
    if n < 2:
        raise ValueError(f"{who}: {total} tokens with {prefix} prefix token(s) leave {max(n, 0)} patch token(s); "
                         "over-smoothing metrics compare patch tokens and need at least 2")
    return n


def token_similarity(features, num_prefix_tokens=1):
    """(L,): per block output (B, T, D), the mean cosine between distinct patch tokens of an image,
    CosSim(h) = 1/(n(n−1))·Σ_{i≠j} ĥ_iᵀĥ_j (Gong et al. eq. 2), averaged over images.
    O(nD) per image: with s = Σ_i ĥ_i, Σ_{i≠j} ĥ_iᵀĥ_j = ‖s‖² − Σ_i ‖ĥ_i‖². Prefix tokens (cls,
    distillation) are left out; ĥ = h / max(‖h‖, 1e-8) as torch's cosine_similarity."""
    who = "token_similarity"
    p = _prefix(num_prefix_tokens, who)
    features = _nonempty_list(features, who, "block outputs (B, T, D)")
    out = []
    for k, f in enumerate(features):
        h = _as_array(f).astype(np.float64)
        if h.ndim != 3:
            raise ValueError(f"{who}: block output {k} must be (B, T, D), got shape {h.shape}")
        n = _patch_count(h.shape[1], p, who)
        h = h[:, p:]
        u = h / np.maximum(np.linalg.norm(h, axis=2, keepdims=True), 1e-8)
        s = u.sum(axis=1)
        pair_sum = np.sum(s * s, axis=1) - np.sum(u * u, axis=(1, 2))
        out.append(float(np.mean(pair_sum / (n * (n - 1)))))
    return np.array(out)


def attention_spread(maps, num_prefix_tokens=1, keys="all"):
    """(L,): per attention map (B, heads, T, T), the population standard deviation of each patch
    query's attention row around its mean (1/T for a softmax row over all T keys), averaged over
    heads, patch queries and images: small = attention spread evenly (Gong et al. §3, Fig. 1).
    keys='all' uses every key; 'patches' only the n patch keys, around their own mean. Prefix queries (cls) are excluded either way."""
    who = "attention_spread"
    p = _prefix(num_prefix_tokens, who)
    if keys not in SPREAD_KEYS:
        raise ValueError(f"{who}: keys must be one of {SPREAD_KEYS}, got {keys!r}")
    out = []
    for a in _as_maps(maps, who):
        _patch_count(a.shape[2], p, who)
        rows = a[:, :, p:, p:] if keys == "patches" else a[:, :, p:, :]
        out.append(float(np.mean(np.std(rows, axis=3))))
    return np.array(out)


@dataclass
class OverSmoothingReport:
    token_similarity: np.ndarray      # (L,) per block output, before the final norm
    attention_spread: np.ndarray      # (L,) per block's softmax maps
    keys: str
    num_prefix_tokens: int
    num_patches: int

    def summary(self):
        return {"token_similarity": self.token_similarity.tolist(), "attention_spread": self.attention_spread.tolist(),
                "keys": self.keys, "num_prefix_tokens": self.num_prefix_tokens, "num_patches": self.num_patches,
                "last_token_similarity": float(self.token_similarity[-1]),
                "mean_token_similarity": float(self.token_similarity.mean())}


def _model_prefix(model):
    p = getattr(model, "num_prefix_tokens", None)
    if p is None:
        raise ValueError(f"over-smoothing metrics: {type(model).__name__} has no num_prefix_tokens, so its patch "
                         "tokens cannot be told from its other tokens")
    return p


def _over_smoothing(model, softmax_maps, feats, keys):
    p = _model_prefix(model)
    if not feats:
        raise RuntimeError(f"over-smoothing metrics: {type(model).__name__} recorded no block outputs "
                           "(no vitc.nn.TransformerBlock)")
    sim = token_similarity(feats, p)
    spread = attention_spread(softmax_maps, p, keys)
    return OverSmoothingReport(token_similarity=sim, attention_spread=spread, keys=keys, num_prefix_tokens=p,
                               num_patches=int(_as_array(feats[0]).shape[1]) - p)


def over_smoothing_report(model, images, keys="all", train_mode=False):
    """token_similarity and attention_spread of every block from one forward of `images` without
    gradients (eval mode unless train_mode). Works on any model built from vitc.nn blocks that
    says how many prefix tokens it has (num_prefix_tokens)."""
    if keys not in SPREAD_KEYS:
        raise ValueError(f"over_smoothing_report: keys must be one of {SPREAD_KEYS}, got {keys!r}")
    _model_prefix(model)
    _, softmax, feats = _forward(model, images, train_mode)
    return _over_smoothing(model, softmax, feats, keys)


class OverSmoothingLog:
    """One over-smoothing record per epoch, read from an AttentionRecorder that is active during
    training (the metrics of the epoch's last training forward, no second forward)::

        log = OverSmoothingLog()
        with AttentionRecorder(model) as rec:
            for epoch ...: (train) ; log.record(epoch, rec)
        log.records -> [{'epoch', 'token_similarity': [...], 'attention_spread': [...]}, ...]
    """

    def __init__(self, keys="all"):
        if keys not in SPREAD_KEYS:
            raise ValueError(f"OverSmoothingLog: keys must be one of {SPREAD_KEYS}, got {keys!r}")
        self.keys, self.records = keys, []

    def record(self, epoch, recorder):
        if not isinstance(recorder, AttentionRecorder):
            raise TypeError(f"OverSmoothingLog.record: recorder must be an AttentionRecorder, got "
                            f"{type(recorder).__name__}")
        rep = recorder.over_smoothing(self.keys)
        rec = {"epoch": int(epoch), "token_similarity": rep.token_similarity.tolist(),
               "attention_spread": rep.attention_spread.tolist()}
        self.records.append(rec)
        return rec


def plot_over_smoothing(reports, out_path, title=None, run=None):
    """One PNG (written atomically): token similarity and attention spread against block, one line
    per entry of `reports` ({label: OverSmoothingReport or its summary dict}). run: what the models
    were trained on (data size, epochs, seeds), stated in the title (see run_caption)."""
    from vitc.experiments.common import integer_ticks, legend_beside, pyplot, save_figure
    if not isinstance(reports, dict) or not reports:
        raise ValueError("plot_over_smoothing: reports must be a non-empty {label: report} dict")
    if run is not None and not isinstance(run, str):
        raise TypeError(f"plot_over_smoothing: run must be a str or None, got {type(run).__name__}")
    run_note = run or "run not stated"
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, rep in reports.items():
        d = rep.summary() if isinstance(rep, OverSmoothingReport) else rep
        sim, spread = d["token_similarity"], d["attention_spread"]
        a1.plot(range(1, len(sim) + 1), sim, marker="o", ms=3, label=label)
        a2.plot(range(1, len(spread) + 1), spread, marker="o", ms=3, label=label)
    a1.set(xlabel="block", ylabel="patch-token cosine similarity", title="token similarity")
    a2.set(xlabel="block", ylabel="std of attention row", title="attention spread (low = uniform)")
    for ax in (a1, a2):
        integer_ticks(ax.xaxis)
    legend_beside(a2)
    fig.suptitle("\n".join(x for x in (title, run_note) if x), fontsize=9)
    save_figure(fig, out_path)
    return out_path
