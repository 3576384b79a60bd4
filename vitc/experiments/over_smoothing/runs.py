"""One arm of the over-smoothing experiment: a ViT trained with the chosen losses, its per-epoch
over-smoothing record, and its final metrics."""
import time

import numpy as np

import vitc
from vitc import diagnostics, optim
from vitc.data import DataLoader
from vitc.models import create_model
from vitc.train import evaluate

# arm name -> loss weights of vitc.oversmoothing.OverSmoothing (the reference adds its losses with 1.0)
ARMS = {"base": {}, "cos": {"cos": 1.0}, "cons": {"cons": 1.0}, "mix": {"mix": 1.0},
        "all": {"cos": 1.0, "cons": 1.0, "mix": 1.0}, "reattention": {}}


def run_name(arm, depth, drop_path, seed):
    return f"{arm}_d{depth}_dp{drop_path:g}_s{seed}"


def run_one(arm, depth, drop_path, seed, args, train_set, test_set, probe, log_epoch=None):
    vitc.manual_seed(seed)
    attn = "reattention" if arm == "reattention" else "mhsa"
    model = create_model("vit_seed_mnist", depth=depth, dim=args.dim, heads=args.heads, dim_head=args.dim // args.heads,
                         mlp_dim=2 * args.dim, drop_path=drop_path, attn=attn,
                         over_smoothing=dict(ARMS[arm], contrastive_variant=args.contrastive_variant))
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=seed, drop_last=True,
                              to_tensor=vitc.from_numpy)
    test_loader = DataLoader(test_set, batch_size=500, shuffle=False, to_tensor=vitc.from_numpy)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    log = diagnostics.OverSmoothingLog()
    hist = {"train_loss": [], "test_accuracy": [], "train_time": [], "parts": []}
    for epoch in range(args.epochs):
        model.train()
        t0, total, parts_sum, batches = time.perf_counter(), 0.0, {}, 0
        with diagnostics.AttentionRecorder(model.model) as rec:
            for x, y in train_loader:
                opt.zero_grad(set_to_none=False)
                loss, parts = model.loss(x, y)
                loss.backward()
                opt.step()
                total += float(loss.item())
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v.item())
                batches += 1
            log.record(epoch, rec)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = evaluate(model, test_loader)
        rec_e = {"epoch": epoch, "train_loss": total / batches, "test_accuracy": ev["accuracy"],
                 "train_time": t_train, "test_time": time.perf_counter() - t0}
        hist["train_loss"].append(rec_e["train_loss"])
        hist["test_accuracy"].append(ev["accuracy"])
        hist["train_time"].append(t_train)
        hist["parts"].append({k: v / batches for k, v in parts_sum.items()})
        if log_epoch is not None:
            log_epoch(rec_e)
        print(f"  {run_name(arm, depth, drop_path, seed)} epoch {epoch + 1}: loss {rec_e['train_loss']:.4f}, "
              f"test acc {100 * ev['accuracy']:.2f}%, {t_train:.0f} s", flush=True)
    rep = diagnostics.over_smoothing_report(model.model, probe)
    col = diagnostics.collapse_report(model.model, probe)
    cs = col.summary()
    return {"arm": arm, "depth": depth, "drop_path": drop_path, "seed": seed, "weights": ARMS[arm],
            "parameters": model.num_parameters(), "history": hist, "per_epoch_over_smoothing": log.records,
            "test_accuracy": hist["test_accuracy"][-1],
            "token_similarity": rep.token_similarity.tolist(), "attention_spread": rep.attention_spread.tolist(),
            "mean_token_similarity": float(np.mean(rep.token_similarity)),
            "last_token_similarity": float(rep.token_similarity[-1]),
            "n_similar_softmax": cs["n_similar_softmax"],
            "mean_adjacent_softmax_similarity": cs["mean_adjacent_softmax_similarity"]}
