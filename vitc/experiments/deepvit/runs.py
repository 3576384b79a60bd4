"""One DeepViT run: a model trained with vitc.train (Adam, cross-entropy), then its collapse diagnostics."""
import numpy as np

import vitc
from vitc import diagnostics, nn, optim
from vitc.data import DataLoader
from vitc.models import create_model
from vitc.train import evaluate, train_one_epoch

from .report import run_note

VARIANTS = ("mhsa", "reattention")


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
    diagnostics.plot_report(rep, args.out, prefix=f"{variant}_d{depth}_",
                            run=f"{variant}, {depth} blocks; {run_note(vars(args), len(train_set))}")
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
