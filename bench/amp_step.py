"""bf16 mixed precision (vitc.autocast) against float32 and against torch.autocast('cpu', bfloat16),
all in one process: GEMM GFLOP/s, then whole train steps of the seed ViT (batch 100) and the
DeiT-Tiny shape (batch 32).

    .venv/bin/python bench/amp_step.py --threads 2 --part gemm
    .venv/bin/python bench/amp_step.py --threads 2 --part steps --reps 10 --deit-reps 3

Steps: vitc float32, vitc autocast, torch eager float32, torch eager under autocast; the PyTorch
model is tests/models/torch_vit.py's reference with vitc's weights copied in (same network, same
batch). Both frameworks share the process, so OMP_WAIT_POLICY=PASSIVE is set for both (as
bench/vit_step.py does). Interleaved in blocks, a pause before each; medians. GFLOP/s count the
model's GEMM and attention products (bench/suite.py forward_flops, ×3 for a step). Run by hand.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # vitc's default; see bench/vit_step.py
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))

import torch  # noqa: E402

import vitc  # noqa: E402
from vitc.models import ViT  # noqa: E402
from torch_vit import TorchViT, copy_weights  # noqa: E402
from suite import forward_flops  # noqa: E402
from common import SHAPES, BATCH  # noqa: E402
from vit_step import timed  # noqa: E402  (warm-up, then perf_counter per call)


def gemm_part(reps):
    """vitc f32 / vitc bf16 / torch f32 / torch bf16 (bf16 tensors, torch's own kernel) GFLOP/s"""
    seed_rows, deit_rows = BATCH["seed"] * 17, BATCH["deit"] * 197
    shapes = [(2048, 2048, 2048, 0), (deit_rows, 576, 192, 0), (deit_rows, 192, 768, 0),
              (576, 192, deit_rows, 1), (seed_rows, 1536, 64, 0), (seed_rows, 64, 512, 0)]
    print(f"{'m':>6} {'n':>5} {'k':>6} tA | vitc f32  vitc bf16  ratio | torch f32  torch bf16   (GFLOP/s, best of {reps})")
    for m, n, k, ta in shapes:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        va, vb = vitc.from_numpy(a), vitc.from_numpy(b)
        va = va.t() if ta else va
        ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
        ta_ = ta_.t() if ta else ta_
        tah, tbh = ta_.bfloat16(), tb_.bfloat16()
        res = []
        for fn, amp in ((lambda: vitc.matmul(va, vb), False), (lambda: vitc.matmul(va, vb), True),
                        (lambda: torch.matmul(ta_, tb_), False), (lambda: torch.matmul(tah, tbh), False)):
            time.sleep(0.3)
            with vitc.autocast(enabled=amp):
                res.append(2 * m * n * k / min(timed(fn, reps, warmup=1)) / 1e9)
        print(f"{m:6d} {n:5d} {k:6d} {ta:2d} | {res[0]:8.0f} {res[1]:10.0f} {res[1] / res[0]:6.2f} | "
              f"{res[2]:9.0f} {res[3]:11.0f}")


def steps_part(model, reps, block):
    cfg = SHAPES[model]
    b = BATCH[model]
    vitc.manual_seed(0)
    vm = ViT(**cfg)
    tm = copy_weights(vm, TorchViT(**cfg))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (b, cfg["channels"], cfg["image_size"], cfg["image_size"])).astype(np.float32)
    y = rng.integers(0, cfg["num_classes"], b).astype(np.int64)
    vx, vy, tx, ty = vitc.from_numpy(x), vitc.from_numpy(y), torch.from_numpy(x), torch.from_numpy(y)
    vopt = vitc.optim.Adam(vm.parameters(), lr=5e-4)
    topt = torch.optim.Adam(tm.parameters(), lr=5e-4)

    def v_step(amp):
        def f():
            vopt.zero_grad()
            with vitc.autocast(enabled=amp):
                loss = vitc.cross_entropy(vm(vx), vy)
            loss.backward()
            vopt.step()
        return f

    def t_step(amp):
        def f():
            topt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(tm(tx), ty)
            loss.backward()
            topt.step()
        return f

    cases = {"vitc f32": v_step(False), "vitc autocast": v_step(True), "torch f32": t_step(False),
             "torch autocast": t_step(True)}
    times = {k: [] for k in cases}
    for _ in range(max(1, reps // block)):
        for k, fn in cases.items():
            time.sleep(0.5)
            times[k] += timed(fn, block, warmup=1)
    fl = 3 * forward_flops(cfg, b)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{model} train step, batch {b}, {len(times['vitc f32'])} steps each (median ms, GFLOP/s):")
    for k, v in med.items():
        print(f"  {k:15s} {v:8.1f} ms  {fl / v / 1e6:6.1f} GFLOP/s  (min {min(times[k]) * 1e3:.1f}, "
              f"max {max(times[k]) * 1e3:.1f})")
    print(f"  torch f32 / vitc f32 {med['torch f32'] / med['vitc f32']:.2f}x, "
          f"torch autocast / vitc autocast {med['torch autocast'] / med['vitc autocast']:.2f}x, "
          f"torch f32 / vitc autocast {med['torch f32'] / med['vitc autocast']:.2f}x, "
          f"vitc f32 / vitc autocast {med['vitc f32'] / med['vitc autocast']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--part", choices=("gemm", "steps"), default="steps")
    ap.add_argument("--reps", type=int, default=10, help="seed steps per case (GEMM: tries per shape)")
    ap.add_argument("--deit-reps", type=int, default=3, help="DeiT-Tiny steps per case (0: skip)")
    a = ap.parse_args()
    vitc.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    print(f"vitc bf16 kernel: {vitc.amp.bf16_kernel()}; torch {torch.__version__}, {a.threads} threads")
    if a.part == "gemm":
        gemm_part(a.reps)
        return
    steps_part("seed", a.reps, 5)
    if a.deit_reps:
        steps_part("deit", a.deit_reps, a.deit_reps)


if __name__ == "__main__":
    main()
