"""Which ops gain from a second thread: the seed ViT train step profiled op by op
(vitc.profiler) at 1 and at 2 threads, alternating in one process so this VM's drift hits both.

    PYTHONPATH=. .venv/bin/python bench/op_scaling.py [--rounds 8] [--steps 3] [--model seed|deit]

Per op and phase: mean ms per step at each thread count, their ratio, and the ms the second
thread saves. "outside ops" is the step's wall time the engine did not spend in a kernel (Python,
the binding). Run by hand, never as a test.
"""
import argparse
import collections
import statistics

import numpy as np

import vitc

SEED = dict(image_size=28, patch_size=7, num_classes=10, dim=64, depth=6, heads=8, mlp_dim=128, pool="cls",
            channels=1, dim_head=64)


def make_step(model):
    vitc.manual_seed(0)
    rng = np.random.default_rng(0)
    if model == "seed":
        m, batch, shape, classes = vitc.models.ViT(**SEED), 100, (1, 28, 28), 10
    else:
        m, batch, shape, classes = vitc.models.create_model("vit_tiny_patch16_224"), 32, (3, 224, 224), 1000
    x = vitc.from_numpy(rng.uniform(0, 1, (batch,) + shape).astype(np.float32))
    y = vitc.from_numpy(rng.integers(0, classes, batch).astype(np.int64))
    opt = vitc.optim.Adam(m.parameters(), lr=5e-4)

    def step():
        opt.zero_grad()
        vitc.cross_entropy(m(x), y).backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="profiled steps per round and thread count")
    ap.add_argument("--model", choices=("seed", "deit"), default="seed")
    ap.add_argument("--rows", type=int, default=16)
    a = ap.parse_args()
    step = make_step(a.model)
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
