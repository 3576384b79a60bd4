"""Whole train steps with vitc's default GEMM dispatch (its own kernel where own_gemm_wins says so,
OpenBLAS, plain or mirrored, for the rest) against the same build with every GEMM on OpenBLAS
(vitc._C._gemm_mode("blas")), in one process, alternating blocks of steps (the order flips every
round), median per mode. This is what decided own_gemm_wins in csrc/kernels/gemm.c.

    PYTHONPATH=. .venv/bin/python bench/gemm_step.py 2 seed        # threads, model (seed | deit)
    PYTHONPATH=. .venv/bin/python bench/gemm_step.py 2 deit 8      # rounds (DeiT-Tiny: 2 steps a block)

Run by hand, never as a test.
"""
import os
import statistics
import sys
import time

import vitc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import vitc_train_step  # noqa: E402

vitc.set_num_threads(int(sys.argv[1]))
which = sys.argv[2] if len(sys.argv) > 2 else "seed"
step = vitc_train_step(which)
block, rounds = (5, 8) if which == "seed" else (2, 5)
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else rounds
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
