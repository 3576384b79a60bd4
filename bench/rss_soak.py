"""Resident memory over many train steps (issue 19's soak): a small ViT trained for --steps steps on
random batches whose size changes every step (so the allocator sees many shapes), RSS read from
/proc/self/status every --every steps. Prints the RSS after warm-up, at the end, its maximum and the
allocator's own counters. Run by hand:

    PYTHONPATH=. .venv/bin/python bench/rss_soak.py --steps 10000
"""
import argparse
import json

import numpy as np

import vitc


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=500)
    a = ap.parse_args()
    vitc.manual_seed(0)
    model = vitc.models.create_model("vit_seed_mnist", depth=2, dim=32, heads=2, dim_head=16, mlp_dim=64)
    opt = vitc.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    trace = []
    for step in range(1, a.steps + 1):
        b = int(rng.integers(1, 65))  # a new batch size every step: many distinct activation shapes
        x = vitc.from_numpy(rng.random((b, 1, 28, 28), dtype=np.float32))
        y = vitc.tensor(rng.integers(0, 10, b))
        loss = vitc.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % a.every == 0:
            trace.append((step, round(rss_mb(), 1)))
    after = [r for s, r in trace if s >= a.warmup]
    s = vitc.memory_stats()
    print(json.dumps({"steps": a.steps, "rss_after_warmup_mb": after[0], "rss_end_mb": after[-1],
                      "rss_max_mb": max(after), "growth_pct": round(100 * (after[-1] / after[0] - 1), 2),
                      "cached_bytes": s["cached_bytes"], "cache_limit_bytes": s["cache_limit_bytes"],
                      "trace": trace}, indent=1))


if __name__ == "__main__":
    main()
