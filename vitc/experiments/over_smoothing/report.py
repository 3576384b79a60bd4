"""The over-smoothing experiment's table (mean ± spread over seeds) and figures."""
import os

import numpy as np

from ..common import integer_ticks, legend_beside, pyplot, save_figure
from .runs import ARMS

COLORS = dict(zip(ARMS, ("C0", "C1", "C2", "C3", "C4", "C5")))  # one colour per arm in every panel


def _groups(runs):
    """(arm, depth, drop_path) -> list of runs (one per seed)"""
    g = {}
    for r in runs:
        g.setdefault((r["arm"], r["depth"], r["drop_path"]), []).append(r)
    return g


def _fmt(vals, scale=1.0, digits=2):
    v = np.asarray(vals, dtype=np.float64) * scale
    return f"{v.mean():.{digits}f}" + (f" ± {v.std():.{digits}f} (n={len(v)})" if len(v) > 1 else "")


def markdown(res):
    a = res["config"]
    lines = ["# Over-smoothing on Fashion-MNIST: token similarity, attention spread, the three losses", "",
             f"Command: `{res['command']}`", "",
             f"{a['subset']} training images, {a['epochs']} epoch(s), AdamW lr {a['lr']:g} wd 0.05, batch "
             f"{a['batch_size']}, width {a['dim']}, {a['heads']} heads, patch 7 (16 patches); test accuracy on "
             f"{res['test_images']} test images; metrics on {a['probe']} test images (eval mode). "
             f"Machine: {res['machine'].get('cpu', '')}, {res['machine']['vitc_threads']} threads.", "",
             "token sim = mean pairwise cosine of the patch tokens (mean over blocks; last block); spread = std of "
             "a patch query's attention row (mean over blocks); collapse = mean adjacent-block similarity of the "
             "softmax maps and the number of adjacent pairs above 0.9 (DeepViT's metric). ± is the std over seeds.",
             "",
             "| arm | blocks | drop path | test acc (%) | token sim (mean) | token sim (last) | spread (mean) | "
             "collapse M̄ | similar blocks |", "|---|---|---|---|---|---|---|---|---|"]
    for (arm, d, dp), rs in sorted(_groups(res["runs"]).items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        lines.append(f"| {arm} | {d} | {dp:g} | {_fmt([r['test_accuracy'] for r in rs], 100)} | "
                     f"{_fmt([r['mean_token_similarity'] for r in rs], 1, 3)} | "
                     f"{_fmt([r['last_token_similarity'] for r in rs], 1, 3)} | "
                     f"{_fmt([np.mean(r['attention_spread']) for r in rs], 1, 4)} | "
                     f"{_fmt([r['mean_adjacent_softmax_similarity'] for r in rs], 1, 3)} | "
                     f"{_fmt([r['n_similar_softmax'] for r in rs], 1, 1)} |")
    return "\n".join(lines) + "\n"


def run_note(res):
    """The run every figure states: data size, epochs, width, seeds (a reduced run must not look full)."""
    a = res["config"]
    subset = a["subset"] or 60000
    return (f"{subset} training images, {a['epochs']} epoch(s), width {a['dim']}, seeds "
            f"{', '.join(str(s) for s in res['seeds'])}; accuracy on {res['test_images']} test images, "
            f"metrics on {a['probe']}")


def plots(res, out):
    plt = pyplot()
    note = run_note(res)
    groups = _groups(res["runs"])
    depths, dps = res["depths"], res["drop_paths"]
    for key, fname, ylabel in (("token_similarity", "similarity_vs_layer.png", "patch-token cosine similarity"),
                               ("attention_spread", "spread_vs_layer.png", "std of attention row")):
        fig, axes = plt.subplots(len(depths), len(dps), figsize=(5 * len(dps), 3.3 * len(depths)), squeeze=False)
        for i, d in enumerate(depths):
            for j, dp in enumerate(dps):
                ax = axes[i][j]
                for arm in ARMS:
                    rs = groups.get((arm, d, dp))
                    if rs:
                        curve = np.mean([r[key] for r in rs], axis=0)
                        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, color=COLORS[arm],
                                label=f"{arm} (n={len(rs)})")
                ax.set(xlabel="block", ylabel=ylabel, title=f"{d} blocks, drop path {dp:g}")
                integer_ticks(ax.xaxis)
            legend_beside(axes[i][-1], fontsize=6)
        fig.suptitle(f"{note}; mean over seeds", fontsize=9)
        fig.tight_layout()
        save_figure(fig, os.path.join(out, fname), dpi=100)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels, means, errs = [], [], []
    for (arm, d, dp), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        acc = 100 * np.array([r["test_accuracy"] for r in rs])
        labels.append(f"{arm}\nd{d} dp{dp:g}")
        means.append(acc.mean())
        errs.append(acc.std())
    ax.bar(range(len(labels)), means, yerr=errs, capsize=2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=5, rotation=90)
    ax.set(ylabel="test accuracy (%)", ylim=(max(0, min(means) - 10), min(100, max(means) + 5)))
    ax.set_title(f"accuracy per arm (error bar: std over seeds)\n{note}", fontsize=8)
    save_figure(fig, os.path.join(out, "accuracy.png"), dpi=100)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for r in res["runs"]:
        ax.scatter(r["mean_adjacent_softmax_similarity"], r["mean_token_similarity"],
                   marker="^" if r["arm"] == "reattention" else "o", s=14 + 2 * r["depth"], color=COLORS[r["arm"]],
                   label=f"{r['arm']}" if r["seed"] == res["seeds"][0] else None)
    ax.set(xlabel="attention collapse: mean adjacent-block softmax-map similarity (DeepViT)",
           ylabel="mean patch-token similarity (Gong et al.)")
    ax.set_title(f"one phenomenon, two views (marker size = depth)\n{note}", fontsize=7)
    handles, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, handles))
    legend_beside(ax, handles=list(uniq.values()), labels=list(uniq.keys()), fontsize=6)
    save_figure(fig, os.path.join(out, "collapse_vs_similarity.png"), dpi=100)
