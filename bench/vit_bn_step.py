"""Seed 004's five models (ViT, ViTBNFFN, ViTBN and the article's first-block-only versions): median
time of one training step (forward, backward, Adam; batch 100) and one eval forward under no_grad
(batch 1000), the models interleaved round-robin so a machine's changing load hits all of them alike.

    .venv/bin/python bench/vit_bn_step.py --backend vitc --threads 2 --reps 15
    .venv/bin/python bench/vit_bn_step.py --backend torch --threads 2 --reps 15

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
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (100, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 100).astype(np.int64)
    xe = rng.uniform(0, 1, (1000, 1, 28, 28)).astype(np.float32)
    vitc.set_num_threads(a.threads)
    if a.backend == "torch":
        import torch
        torch.set_num_threads(a.threads)
        X, Y, XE, no_grad = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xe), torch.no_grad
        ce, mk_opt = torch.nn.functional.cross_entropy, lambda m: torch.optim.Adam(m.parameters(), lr=5e-4)
    else:
        X, Y, XE, no_grad = vitc.from_numpy(x), vitc.from_numpy(y), vitc.from_numpy(xe), vitc.no_grad
        ce, mk_opt = vitc.cross_entropy, lambda m: vitc.optim.Adam(m.parameters(), lr=5e-4)
    models = {n: _build(n, a.backend, 0, {}) for n in MODELS}
    opts = {n: mk_opt(m) for n, m in models.items()}

    def step(n):
        m, o = models[n], opts[n]
        m.train()
        o.zero_grad()
        loss = ce(m(X), Y)
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
    print(f"{a.backend}, {a.threads} threads, {a.reps} interleaved reps, median (ms)\n")
    print("| model | train step b=100 | eval b=1000 | r_t | r_v | g_t | g_v |\n|---|---|---|---|---|---|---|")
    for n, d in med.items():
        rt, rv = med["ViT"]["step"] / d["step"], med["ViT"]["eval"] / d["eval"]
        print(f"| {n} | {1e3 * d['step']:.1f} | {1e3 * d['eval']:.1f} | {rt:.2f} | {rv:.2f} | {100 * (1 - 1 / rt):.0f} % "
              f"| {100 * (1 - 1 / rv):.0f} % |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backend": a.backend, "threads": a.threads, "reps": a.reps, "times": t, "median": med}, f)


if __name__ == "__main__":
    sys.exit(main())
