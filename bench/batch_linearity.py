"""Is the seed ViT's train step linear in batch size? One process, one model, the batch sizes taken
round-robin (the order rotating each round), so this VM's drift (10-40 % within an hour) hits
every size alike; each round's ms per sample is divided by the same round's at the first size.

    PYTHONPATH=. .venv/bin/python bench/batch_linearity.py [--batches 100,200,400,800] [--threads 2]
                                                          [--rounds 10] [--block 2]

The issue-8 target: time per sample within 10 % of batch 100's for every batch above it. Prints a
markdown table: per batch the median step ms, ms per sample and the median (and range) of the
per-round ratio to the first batch. Run by hand, never as a test.
"""
import argparse
import os
import statistics
import sys
import time

import vitc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import vitc_batch, vitc_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="100,200,400,800")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=2, help="timed steps per batch size per round")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    if not batches or min(batches) < 1:
        raise SystemExit("--batches: positive integers, comma-separated")
    vitc.set_num_threads(a.threads)
    model, opt = vitc_model("seed")
    data = {b: vitc_batch("seed", b) for b in batches}

    def step(b):
        x, y = data[b]
        opt.zero_grad()
        vitc.cross_entropy(model(x), y).backward()
        opt.step()

    for b in batches:  # warm every size once (allocator caches, OpenMP teams)
        step(b)
    per_sample = {b: [] for b in batches}
    step_ms = {b: [] for b in batches}
    for r in range(a.rounds):
        k = r % len(batches)
        for b in batches[k:] + batches[:k]:
            ts = []
            for _ in range(a.block):
                t0 = time.perf_counter()
                step(b)
                ts.append(time.perf_counter() - t0)
            ms = 1e3 * statistics.median(ts)
            step_ms[b].append(ms)
            per_sample[b].append(ms / b)
    b0 = batches[0]
    print(f"seed ViT train step (Adam), {a.threads} thread(s), {a.rounds} rounds x {a.block} steps per batch size\n")
    print(f"| batch | step ms | ms per sample | per sample / batch {b0}'s, median of rounds (range) |")
    print("|---|---|---|---|")
    for b in batches:
        ratios = [p / q for p, q in zip(per_sample[b], per_sample[b0])]
        print(f"| {b} | {statistics.median(step_ms[b]):.1f} | {statistics.median(per_sample[b]):.3f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |")


if __name__ == "__main__":
    main()
