"""Which ops gain from a second thread: the seed ViT train step profiled op by op
(vitc.profiler) at 1 and at 2 threads, alternating in one process so this VM's drift hits both.

    PYTHONPATH=. .venv/bin/python bench/op_scaling.py [--rounds 8] [--steps 3] [--model seed|deit]

Per op and phase: mean ms per step at each thread count, their ratio, and the ms the second
thread saves. "outside ops" is the step's wall time the engine did not spend in a kernel (Python,
the binding). Run by hand, never as a test.
"""
import argparse
import collections
import os
import statistics
import sys

import vitc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import vitc_train_step  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="profiled steps per round and thread count")
    ap.add_argument("--model", choices=("seed", "deit"), default="seed")
    ap.add_argument("--rows", type=int, default=16)
    a = ap.parse_args()
    step = vitc_train_step(a.model)
    ops = {1: collections.Counter(), 2: collections.Counter()}
    wall = {1: [], 2: []}
    for r in range(a.rounds):
        for th in ((1, 2) if r % 2 == 0 else (2, 1)):
            vitc.set_num_threads(th)
            step()  # warm at this thread count
            with vitc.profiler.profile() as prof:
                for _ in range(a.steps):
                    step()
            wall[th].append(prof.wall_ns / a.steps / 1e6)
            for row in prof.key_averages():
                ops[th][row.key] += row.total_ns
    n = a.rounds * a.steps
    w1, w2 = statistics.median(wall[1]), statistics.median(wall[2])
    print(f"{a.model} train step, {a.rounds} rounds x {a.steps} steps per thread count: "
          f"median 1 thread {w1:.1f} ms, 2 threads {w2:.1f} ms, ratio {w1 / w2:.2f}")
    print(f"| op | 1 thread ms | 2 threads ms | ratio | saved ms |\n|---|---|---|---|---|")
    for key, ns in ops[1].most_common(a.rows):
        t1, t2 = ns / n / 1e6, ops[2][key] / n / 1e6
        print(f"| {key} | {t1:.2f} | {t2:.2f} | {t1 / t2 if t2 else float('nan'):.2f} | {t1 - t2:.2f} |")
    s1, s2 = sum(ops[1].values()) / n / 1e6, sum(ops[2].values()) / n / 1e6
    print(f"| all ops | {s1:.2f} | {s2:.2f} | {s1 / s2:.2f} | {s1 - s2:.2f} |")
    o1, o2 = statistics.mean(wall[1]) - s1, statistics.mean(wall[2]) - s2
    print(f"| outside ops | {o1:.2f} | {o2:.2f} | {o1 / o2 if o2 else float('nan'):.2f} | {o1 - o2:.2f} |")


if __name__ == "__main__":
    main()
