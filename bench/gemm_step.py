"""Whole train steps with vitc's default GEMM dispatch (its own kernel where own_gemm_wins says so,
OpenBLAS, plain or mirrored, for the rest) against the same build with every GEMM on OpenBLAS
(vitc._C._gemm_mode("blas")), in one process, alternating blocks of steps (the order flips every
round), median per mode. This is what decided own_gemm_wins in csrc/ops/gemm.c.

    PYTHONPATH=. .venv/bin/python bench/gemm_step.py 2 seed        # threads, model (seed | deit)
    PYTHONPATH=. .venv/bin/python bench/gemm_step.py 2 deit 8      # rounds (DeiT-Tiny: 2 steps a block)

Run by hand, never as a test.
"""
import sys, time, statistics
import numpy as np
import vitc
from vitc.models import ViT, create_model
vitc.set_num_threads(int(sys.argv[1]))
which = sys.argv[2] if len(sys.argv) > 2 else "seed"
vitc.manual_seed(0)
rng = np.random.default_rng(0)
if which == "seed":
    m = ViT(image_size=28, patch_size=7, num_classes=10, dim=64, depth=6, heads=8, mlp_dim=128, pool="cls", channels=1, dim_head=64)
    x = vitc.from_numpy(rng.standard_normal((100, 1, 28, 28)).astype(np.float32)); y = vitc.from_numpy(rng.integers(0, 10, 100).astype(np.int64))
    opt = vitc.optim.Adam(m.parameters(), lr=1e-3); block, rounds = 5, int(sys.argv[3]) if len(sys.argv) > 3 else 8
else:
    m = create_model("vit_tiny_patch16_224")
    x = vitc.from_numpy(rng.uniform(0, 1, (32, 3, 224, 224)).astype(np.float32)); y = vitc.from_numpy(rng.integers(0, 1000, 32).astype(np.int64))
    opt = vitc.optim.AdamW(m.parameters(), lr=5e-4); block, rounds = 2, int(sys.argv[3]) if len(sys.argv) > 3 else 5
def step():
    opt.zero_grad(); vitc.cross_entropy(m(x), y).backward(); opt.step()
for _ in range(3): step()
ts = {"auto": [], "blas": []}
for r in range(rounds):
    for mode in ("auto", "blas") if r % 2 == 0 else ("blas", "auto"):
        vitc._C._gemm_mode(mode)
        step()
        for _ in range(block):
            t0 = time.perf_counter(); step(); ts[mode].append(time.perf_counter() - t0)
print(which, "threads", sys.argv[1], {k: round(1e3 * statistics.median(v), 1) for k, v in ts.items()},
      "blas/auto %.3f" % (statistics.median(ts["blas"]) / statistics.median(ts["auto"])))
