"""python -m vitc.experiments.deepvit: seed 002's question on Fashion-MNIST — does a plain ViT stop
gaining from depth as its attention maps collapse, and does re-attention help? (P-DeepViT Fig. 1/3,
Table 3; SPEC §4.)

For each depth in --depths and each variant in --variants ('mhsa': plain ViT, 'reattention':
DeepViT re-attention in every block, BatchNorm over the heads) a ViT of width --dim (patch 7, 4
heads × 16, MLP 2·dim) is trained with Adam for --epochs on the first --subset training images and
evaluated on the first --test-subset test images. After training, the collapse diagnostics
(vitc.diagnostics: cross-layer attention-map similarity, the number of adjacent-block pairs above
--threshold, feature similarity to the last block) are measured on the first --probe test images.

Writes into --out (every file atomically): results.json (config, per-run history and metrics),
results.md (the tables), accuracy_vs_depth.png, collapse_vs_depth.png and, per run,
<variant>_d<depth>_{similarity,curves,head_similarity}.png.

Example (the committed reduced run, docs/results/deepvit/):
    python -m vitc.experiments.deepvit --epochs 2 --subset 6000 --test-subset 2000 --out docs/results/deepvit
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import vitc
from vitc import diagnostics, nn, optim
from vitc.data import DataLoader, FashionMNIST
from vitc.io import atomic_write
from vitc.models import create_model
from vitc.train import evaluate, train_one_epoch

VARIANTS = ("mhsa", "reattention")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m vitc.experiments.deepvit", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", default="8,16,24,32", help="comma-separated block counts")
    p.add_argument("--variants", default="mhsa,reattention", help="comma-separated: mhsa, reattention")
    p.add_argument("--reattn-norm", default="batch", choices=["batch", "layer", "none"])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim-head", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="first N training images (default: all 60000)")
    p.add_argument("--test-subset", type=int, default=None, help="first N test images (default: all 10000)")
    p.add_argument("--probe", type=int, default=256, help="test images for the collapse diagnostics")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threshold", type=float, default=0.9, help="similar-block threshold in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--progress", action="store_true", help="progress bars")
    return p


def _ints(text, name):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: {name} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise SystemExit(f"error: {name} must list positive integers, got {text!r}")
    return vals


def _write_text(path, text):
    def w(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, w)


def run_one(variant, depth, args, train_set, test_set, probe):
    vitc.manual_seed(args.seed)
    model = create_model("deepvit_mnist_d32", depth=depth, dim=args.dim, heads=args.heads, dim_head=args.dim_head,
                         mlp_dim=2 * args.dim, attn=variant, reattn_norm=args.reattn_norm)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                              to_tensor=vitc.from_numpy)
    test_loader = DataLoader(test_set, batch_size=1000, shuffle=False, to_tensor=vitc.from_numpy)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    hist = {"train_loss": [], "test_accuracy": [], "train_time": [], "nonfinite_batches": []}
    updates = 0
    for epoch in range(args.epochs):
        st, updates = train_one_epoch(model, train_loader, opt, loss_fn, epoch=epoch, num_updates=updates,
                                      progress=args.progress, desc=f"{variant} d{depth} ep{epoch + 1}")
        ev = evaluate(model, test_loader)
        hist["train_loss"].append(st["loss_mean"])
        hist["train_time"].append(st["time"])
        hist["nonfinite_batches"].append(st["nonfinite"])
        hist["test_accuracy"].append(ev["accuracy"])
        print(f"  {variant:11s} depth {depth:2d} epoch {epoch + 1}: loss {st['loss_mean']:.4f}, "
              f"test acc {100 * ev['accuracy']:.2f}%, {st['time']:.0f} s", flush=True)
    rep = diagnostics.collapse_report(model, probe, threshold=args.threshold)
    diagnostics.plot_report(rep, args.out, prefix=f"{variant}_d{depth}_")
    summ = rep.summary()
    return {"variant": variant, "depth": depth, "parameters": model.num_parameters(), "history": hist,
            "test_accuracy": hist["test_accuracy"][-1] if hist["test_accuracy"] else None,
            "n_similar": summ["n_similar"], "similar_ratio": summ["n_similar"] / max(depth - 1, 1),
            "mean_adjacent_similarity": summ["mean_adjacent_similarity"],
            "n_similar_softmax": summ["n_similar_softmax"],
            "mean_adjacent_softmax_similarity": summ["mean_adjacent_softmax_similarity"],
            "softmax_similarity": rep.softmax_similarity.tolist(),
            "adjacent_similarity": summ["adjacent_similarity"],
            "mean_head_similarity": float(np.mean(summ["mean_head_similarity"])),
            "feature_similarity": summ["feature_similarity"], "similarity": rep.similarity.tolist()}


def _plots(runs, variants, depths, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name):
        atomic_write(os.path.join(out, name), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)

    by = {(r["variant"], r["depth"]): r for r in runs}
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for v in variants:
        ax.plot(depths, [100 * by[v, d]["test_accuracy"] for d in depths], marker="o", label=v)
    ax.set(xlabel="blocks", ylabel="test accuracy (%)", title="Fashion-MNIST accuracy vs depth")
    ax.legend()
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
    axes[0].legend(fontsize=7)
    save(fig, "collapse_vs_depth.png")


def _markdown(res):
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


def main(argv=None):
    args = build_parser().parse_args(argv)
    depths = _ints(args.depths, "--depths")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        raise SystemExit(f"error: --variants must be a comma-separated subset of {VARIANTS}, got {args.variants!r}")
    if args.epochs < 1 or args.batch_size < 1 or args.probe < 1:
        raise SystemExit("error: --epochs, --batch-size and --probe must be >= 1")
    if not 0.0 <= args.threshold <= 1.0:
        raise SystemExit(f"error: --threshold must be in [0, 1], got {args.threshold}")
    if args.threads is not None:
        vitc.set_num_threads(args.threads)
    kw = {"root": args.data_root} if args.data_root else {}
    try:
        train_set = FashionMNIST(train=True, subset=args.subset, **kw)
        test_set = FashionMNIST(train=False, subset=args.test_subset, **kw)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    os.makedirs(args.out, exist_ok=True)
    probe = test_set.images[:args.probe]
    t0 = time.perf_counter()
    runs = []
    print(f"DeepViT experiment: depths {depths}, variants {variants}, {len(train_set)} train / {len(test_set)} test "
          f"images, {args.epochs} epochs, {vitc.get_num_threads()} threads", flush=True)
    for d in depths:
        for v in variants:
            runs.append(run_one(v, d, args, train_set, test_set, probe))
            r = runs[-1]
            print(f"{v:11s} depth {d:2d}: test acc {100 * r['test_accuracy']:.2f}%, similar blocks {r['n_similar']}"
                  f"/{d - 1}, mean adjacent similarity {r['mean_adjacent_similarity']:.3f}", flush=True)
    res = {"command": "python -m vitc.experiments.deepvit " + " ".join(sys.argv[1:] if argv is None else argv),
           "config": vars(args), "depths": depths, "variants": variants, "test_images": len(test_set),
           "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
           "threads": vitc.get_num_threads(), "wall_time_s": time.perf_counter() - t0, "runs": runs}
    _write_text(os.path.join(args.out, "results.json"), json.dumps(res, indent=1))
    _write_text(os.path.join(args.out, "results.md"), _markdown(res))
    _plots(runs, variants, depths, args.out)
    print(f"wrote {args.out}/results.json, results.md and plots ({res['wall_time_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
