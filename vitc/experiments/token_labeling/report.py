"""The token-labeling experiment's table and figures."""
import numpy as np

from ..common import integer_ticks, legend_beside, pyplot, save_figure

__all__ = ["summarise", "table_markdown", "plot_arms", "plot_curves"]


def summarise(records, arms):
    """Per arm: seeds, mean, sample std, min, max of the final test accuracy (default rule and cls head)."""
    rows = []
    for arm in arms:
        rs = [r for r in records if r["arm"] == arm]
        if not rs:
            continue
        a = np.array([r["accuracy"] for r in rs])
        c = np.array([r["accuracy_cls"] for r in rs])
        rows.append({"arm": arm, "seeds": len(rs), "mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1
                     else 0.0, "min": float(a.min()), "max": float(a.max()), "cls_mean": float(c.mean()),
                     "params": rs[0]["params"], "train_time": float(np.mean([r["train_time"] for r in rs]))})
    return rows


def table_markdown(rows, teacher_acc, descriptions):
    out = f"Teacher (resnet_mnist): test accuracy {100 * teacher_acc:.2f}%.\n\n"
    out += "| arm | what | seeds | mean acc % | std | min | max | cls head only % | params | train s / run |\n"
    out += "|---|---|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        std = f"{100 * r['std']:.2f}" if r["seeds"] > 1 else "—"
        out += (f"| {r['arm']} | {descriptions[r['arm']]} | {r['seeds']} | {100 * r['mean']:.2f} | "
                f"{std} | {100 * r['min']:.2f} | {100 * r['max']:.2f} | {100 * r['cls_mean']:.2f} | "
                f"{r['params']:,} | {r['train_time']:.0f} |\n")
    return out


def plot_arms(rows, records, teacher_acc, size_note, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, r in enumerate(rows):  # one bar per arm with at least one finished seed
        pts = [100 * x["accuracy"] for x in records if x["arm"] == r["arm"]]
        ax.bar(i, 100 * r["mean"], color="#8ab", yerr=100 * r["std"], capsize=3)
        ax.plot([i] * len(pts), pts, "k.", ms=4)
    ax.axhline(100 * teacher_acc, color="r", ls="--", lw=1, label=f"teacher {100 * teacher_acc:.1f}%")
    ax.set_xticks(range(len(rows)), [r["arm"] for r in rows], rotation=30)
    lo = min(100 * x["accuracy"] for x in records)
    ax.set_ylim(max(0, lo - 3), 100 * max(teacher_acc, max(x["accuracy"] for x in records)) + 1)
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"LV-ViT token labeling on Fashion-MNIST (mean ± std, dots = seeds)\n{size_note}", fontsize=9)
    legend_beside(ax, fontsize=8)
    save_figure(fig, path)


def plot_curves(records, arms, size_note, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for arm in arms:
        rs = [r for r in records if r["arm"] == arm]
        if not rs:
            continue
        acc = np.mean([[next(iter(a.values())) for a in r["history"]["test_accuracy"]] for r in rs], 0)
        ax.plot(rs[0]["history"]["epoch"], 100 * acc, marker="o", label=arm)
    ax.set_xlabel("epoch")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("test accuracy % (mean over seeds)")
    ax.set_title(size_note, fontsize=9)
    legend_beside(ax)
    save_figure(fig, path)
