"""Seed 004's five models (ViT, ViTBNFFN, ViTBN and the article's first-block-only versions): median
time of one training step (forward, backward, Adam; batch 100 or --batches) and one eval forward under no_grad
(batch 1000), the models interleaved round-robin so a machine's changing load hits all of them alike.

    .venv/bin/python bench/vit_bn_step.py --backend vitc --threads 2 --reps 15
    .venv/bin/python bench/vit_bn_step.py --backend torch --threads 2 --reps 15
    .venv/bin/python bench/vit_bn_step.py --threads 1 --models ViT,ViTBNFFN,ViTBN --batches ViT=75,ViTBNFFN=39,ViTBN=22

--batches gives each model its own train batch (the tuned ones of experiment 2) and adds the time of
an epoch of --train-samples images at that batch (steps × median step), which compares the tuned models
on a quiet machine where the epochs of a long run were timed under whatever load it met.

One backend per process (two OpenMP runtimes in one process slow each other, see bench/vit_step.py).
Prints a markdown table with the ratios r = t(ViT)/t(model) and gains g = 1 − 1/r. Run by hand, never
as a test.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np

import vitc
from vitc.experiments.vit_batchnorm import MODELS, _build


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["vitc", "torch"], default="vitc")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--json", default=None, help="also write the timings here")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    p.add_argument("--batches", default=None, help="per-model train batch, e.g. ViT=75,ViTBN=22 (default 100 each)")
    p.add_argument("--train-samples", type=int, default=60000, help="images per epoch for the epoch estimate")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    bad = [n for n in names if n not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    batch = {n: 100 for n in names}
    for item in (a.batches or "").split(","):
        if item.strip():
            n, _, b = item.partition("=")
            if n.strip() not in batch or not b.strip().isdigit() or int(b) < 1:
                p.error(f"--batches: {item!r} is not MODEL=BATCH for one of {', '.join(names)}")
            batch[n.strip()] = int(b)
    rng = np.random.default_rng(0)
    x = {n: rng.uniform(0, 1, (b, 1, 28, 28)).astype(np.float32) for n, b in batch.items()}
    y = {n: rng.integers(0, 10, b).astype(np.int64) for n, b in batch.items()}
    xe = rng.uniform(0, 1, (1000, 1, 28, 28)).astype(np.float32)
    vitc.set_num_threads(a.threads)
    if a.backend == "torch":
        import torch
        torch.set_num_threads(a.threads)
        conv, XE, no_grad = torch.from_numpy, torch.from_numpy(xe), torch.no_grad
        ce, mk_opt = torch.nn.functional.cross_entropy, lambda m: torch.optim.Adam(m.parameters(), lr=5e-4)
    else:
        conv, XE, no_grad = vitc.from_numpy, vitc.from_numpy(xe), vitc.no_grad
        ce, mk_opt = vitc.cross_entropy, lambda m: vitc.optim.Adam(m.parameters(), lr=5e-4)
    X, Y = {n: conv(v) for n, v in x.items()}, {n: conv(v) for n, v in y.items()}
    models = {n: _build(n, a.backend, 0, {}) for n in names}
    opts = {n: mk_opt(m) for n, m in models.items()}

    def step(n):
        m, o = models[n], opts[n]
        m.train()
        o.zero_grad()
        loss = ce(m(X[n]), Y[n])
        loss.backward()
        o.step()
        loss.item()

    def evalf(n):
        m = models[n]
        m.eval()
        with no_grad():
            m(XE).numpy()

    t = {n: {"step": [], "eval": []} for n in models}
    for n in models:  # warm-up
        step(n), evalf(n)
    for _ in range(a.reps):
        for n in models:
            t0 = time.perf_counter()
            step(n)
            t1 = time.perf_counter()
            evalf(n)
            t2 = time.perf_counter()
            t[n]["step"].append(t1 - t0)
            t[n]["eval"].append(t2 - t1)
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in t.items()}
    ref = "ViT" if "ViT" in med else names[0]
    print(f"{a.backend}, {a.threads} threads, {a.reps} interleaved reps, median (ms); r = t({ref}) / t(model)\n")
    print("| model | train batch | train step | eval b=1000 | epoch of %d (s) | r_t (epoch) | r_v | g_t | g_v |\n"
          "|---|---|---|---|---|---|---|---|---|" % a.train_samples)
    epoch = {n: -(-a.train_samples // batch[n]) * d["step"] for n, d in med.items()}
    for n, d in med.items():
        rt, rv = epoch[ref] / epoch[n], med[ref]["eval"] / d["eval"]
        print(f"| {n} | {batch[n]} | {1e3 * d['step']:.1f} | {1e3 * d['eval']:.1f} | {epoch[n]:.1f} | {rt:.2f} | "
              f"{rv:.2f} | {100 * (1 - 1 / rt):.0f} % | {100 * (1 - 1 / rv):.0f} % |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backend": a.backend, "threads": a.threads, "reps": a.reps, "batches": batch, "times": t,
                       "median": med, "epoch_s": epoch}, f)


if __name__ == "__main__":
    sys.exit(main())
