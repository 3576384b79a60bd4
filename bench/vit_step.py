"""Seed 004 ViT: one training step (forward, backward, Adam) and one eval forward, vitc against
PyTorch eager in the same process, interleaved, median and spread over repetitions.

    .venv/bin/python bench/vit_step.py --threads 2 --reps 20            # both, one process
    .venv/bin/python bench/vit_step.py --threads 2 --only torch         # each in its own process,
    .venv/bin/python bench/vit_step.py --threads 2 --only vitc          # at its default settings

In one process the two frameworks share one OpenMP runtime: torch loads its bundled libgomp.so.1
and vitc's extension, imported after it, binds to that same library, already initialised, so the
threading settings vitc's import would make (OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=20000:
vitc/__init__.py) come too late. This script and the other same-process benches therefore set both
before torch loads, so both frameworks run at vitc's default. Until 2026-12-07 they set PASSIVE
alone, without the brief spin: every parallel region then woke sleeping threads, which cost the
small steps most (Zen 4, 2 threads, batch 25, both frameworks in one process: vitc 27.6 ms, torch
58.8 ms with PASSIVE alone; 25.2 and 37.6 ms with the spin; `--only vitc` 35.0 vs 23.5–25.9 ms).
`--only vitc` / `--only torch` time one framework alone, each with its own defaults.

Run by hand, never as a test. The PyTorch model is tests/models/torch_vit.py's reference with
vitc's weights copied in, so both frameworks run the same network on the same batch.
GFLOP/s are counted from the model shape: 2·m·n·k per GEMM, ×3 for a training step.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

_argv = " ".join(sys.argv).replace("--only=", "--only ")
if "--only torch" not in _argv:  # vitc's settings, before torch loads the runtime; torch alone keeps its own
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # vitc's default; see bench/vit_step.py
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))

import torch  # noqa: E402

import vitc  # noqa: E402
from suite import forward_flops  # noqa: E402  (the one FLOP formula of bench/)
from common import SEED as CFG, seed_train_steps  # noqa: E402



def timed(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--eval-batch", type=int, default=5000)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--only", choices=("vitc", "torch"), default=None, help="time one framework alone")
    a = ap.parse_args()
    vitc.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    vm, tm, v_step, t_step = seed_train_steps(a.batch)
    rng = np.random.default_rng(1)
    xe = rng.uniform(0, 1, (a.eval_batch, 1, 28, 28)).astype(np.float32)
    vxe, txe = vitc.from_numpy(xe), torch.from_numpy(xe)

    def v_eval():
        with vitc.no_grad():
            vm(vxe)

    def t_eval():
        with torch.no_grad():
            tm(txe)

    res = {"threads": a.threads, "batch": a.batch, "eval_batch": a.eval_batch}
    # interleave in blocks: a framework's idle thread pool keeps spinning for a while after its
    # last op and steals the cores from the other one, so each block is preceded by a pause and
    # a warm-up step, and blocks alternate so slow drifts in machine load hit both alike
    times = {k: [] for k in ("vitc_train", "torch_train", "vitc_eval", "torch_eval")}
    block = 5
    for r in range(max(1, a.reps // block)):
        for key, fn, n in (("vitc_train", v_step, block), ("torch_train", t_step, block),
                           ("vitc_eval", v_eval, 1), ("torch_eval", t_eval, 1)):
            if a.only and not key.startswith(a.only):
                continue
            time.sleep(0.5)
            times[key] += timed(fn, n, warmup=1)
    flops_train = 3 * forward_flops(CFG, a.batch)
    flops_eval = forward_flops(CFG, a.eval_batch)
    times = {k: v for k, v in times.items() if v}
    for k, v in times.items():
        med = statistics.median(v)
        fl = flops_train if "train" in k else flops_eval
        res[k] = {"median_ms": med * 1e3, "min_ms": min(v) * 1e3, "max_ms": max(v) * 1e3, "gflops": fl / med / 1e9}
    if not a.only:
        res["speedup_train"] = res["torch_train"]["median_ms"] / res["vitc_train"]["median_ms"]
        res["speedup_eval"] = res["torch_eval"]["median_ms"] / res["vitc_eval"]["median_ms"]
    print(f"seed ViT, {a.threads} threads: train step batch {a.batch}, eval batch {a.eval_batch}")
    for k in times:
        r = res[k]
        print(f"  {k:12s} median {r['median_ms']:8.1f} ms  (min {r['min_ms']:.1f}, max {r['max_ms']:.1f})  "
              f"{r['gflops']:6.1f} GFLOP/s")
    if not a.only:
        print(f"  vitc speed-up over torch eager: train {res['speedup_train']:.2f}x, eval {res['speedup_eval']:.2f}x")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
