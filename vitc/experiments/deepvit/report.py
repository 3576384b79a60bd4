"""The DeepViT experiment's figures (accuracy and collapse against depth) and markdown table."""
import os

from ..common import legend_beside, pyplot, save_figure, value_ticks


def run_note(config, train_images, test_images=None):
    """What a figure says about its run: data size, epochs, seed (a reduced run must not look full)."""
    note = f"{train_images} training images, {config['epochs']} epoch(s), seed {config['seed']}"
    return note + (f", accuracy on {test_images} test images" if test_images else "")


def plots(runs, variants, depths, out, note):
    """accuracy_vs_depth.png and collapse_vs_depth.png; note: run_note(...) for the titles."""
    plt = pyplot()

    def save(fig, name):
        save_figure(fig, os.path.join(out, name), dpi=110)

    by = {(r["variant"], r["depth"]): r for r in runs}
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for v in variants:
        ax.plot(depths, [100 * by[v, d]["test_accuracy"] for d in depths], marker="o", label=v)
    ax.set(xlabel="blocks", ylabel="test accuracy (%)")
    ax.set_title(f"Fashion-MNIST accuracy vs depth\n{note}", fontsize=8)
    value_ticks(ax.xaxis, depths)
    legend_beside(ax)
    save(fig, "accuracy_vs_depth.png")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for v in variants:
        axes[0].plot(depths, [by[v, d]["mean_adjacent_similarity"] for d in depths], marker="o", label=f"{v}: maps·v")
        axes[1].plot(depths, [by[v, d]["similar_ratio"] for d in depths], marker="o", label=f"{v}: maps·v")
        if v == "reattention":
            axes[0].plot(depths, [by[v, d]["mean_adjacent_softmax_similarity"] for d in depths], marker="^", ls="--",
                         label=f"{v}: softmax maps")
            axes[1].plot(depths, [by[v, d]["n_similar_softmax"] / max(d - 1, 1) for d in depths], marker="^",
                         ls="--", label=f"{v}: softmax maps")
    axes[0].set(xlabel="blocks", ylabel="mean M̄(k−1,k)", title="adjacent-block map similarity")
    axes[1].set(xlabel="blocks", ylabel="similar blocks / (depth−1)", title="share of collapsed blocks",
                ylim=(-0.02, 1.02))
    for ax in axes:
        value_ticks(ax.xaxis, depths)
    legend_beside(axes[1])
    fig.suptitle(note, fontsize=8, y=1.03)
    save(fig, "collapse_vs_depth.png")


def markdown(res):
    a = res["config"]
    lines = ["# DeepViT on Fashion-MNIST: accuracy and attention collapse vs depth", "",
             f"Command: `{res['command']}`", "",
             f"{a['subset'] or 60000} training images, {a['epochs']} epoch(s), Adam lr {a['lr']:g}, batch "
             f"{a['batch_size']}, width {a['dim']}, {a['heads']} heads × {a['dim_head']}, seed {a['seed']}; "
             f"test accuracy on {res['test_images']} test images; collapse metrics on {a['probe']} test images, "
             f"threshold {a['threshold']}. Machine: {res['machine']}, {res['threads']} threads, "
             f"total wall time {res['wall_time_s']:.0f} s.", "",
             "Similarity columns use the maps that multiply v (Â for re-attention, which is signed and zero-mean "
             "per head after the BatchNorm) and, in brackets, the per-head softmax maps before the mixing.", "",
             "| variant | blocks | params | test acc (%) | final train loss | similar blocks [softmax] | ratio | "
             "mean adjacent M̄ [softmax] | mean head sim | train time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        h = r["history"]
        lines.append(f"| {r['variant']} | {r['depth']} | {r['parameters']:,} | {100 * r['test_accuracy']:.2f} | "
                     f"{h['train_loss'][-1]:.4f} | {r['n_similar']} [{r['n_similar_softmax']}] | "
                     f"{r['similar_ratio']:.2f} | {r['mean_adjacent_similarity']:.3f} "
                     f"[{r['mean_adjacent_softmax_similarity']:.3f}] | {r['mean_head_similarity']:.3f} | "
                     f"{sum(h['train_time']):.0f} |")
    return "\n".join(lines) + "\n"
