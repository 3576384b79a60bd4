"""Optimizer state memory (Zhai et al. 2021 §3.4): Adam with float32 moments, with a bfloat16 first
moment, with both moments in bfloat16, and the modified Adafactor (bfloat16 momentum, factored
second moment), for the seed ViT and ViT-B/16 (vitc.models.scaling_vit('B/16')); and the allocator's
peak bytes over one train step of the seed ViT at batch 100 with each.

    PYTHONPATH=. .venv/bin/python bench/optim_state.py [--batch 100] [--no-vit-b]

State bytes are exact (optimizer.state_bytes(): the moment buffers; parameters, gradients and the
per-parameter step tables are not counted), shown also as a multiple of the parameter bytes
(expected about 2.0, 1.5, 1.0 and ~0.5). The peak is vitc.memory_stats()['peak_bytes'] from
reset_peak_memory_stats() before a steady-state step (the second) to its end: parameters,
gradients, optimizer state and activations held by vitc's allocator. Memory only, no timing.
"""
import argparse
import os
import sys

import numpy as np

import vitc
from vitc import nn, optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SEED  # noqa: E402

OPTIMIZERS = {
    "Adam f32": lambda ps: optim.Adam(ps, lr=1e-3),
    "Adam bf16-m": lambda ps: optim.Adam(ps, lr=1e-3, mu_dtype=vitc.bfloat16),
    "Adam bf16-m+v": lambda ps: optim.Adam(ps, lr=1e-3, mu_dtype=vitc.bfloat16, nu_dtype=vitc.bfloat16),
    "Adafactor": lambda ps: optim.Adafactor(ps, lr=1e-3),
}


def state_row(make_model):
    model = make_model()
    params = list(model.parameters())
    pbytes = 4 * sum(p.numel() for p in params)
    out = {}
    for name, make in OPTIMIZERS.items():
        opt = make(params)
        out[name] = opt.state_bytes()
        del opt
    return pbytes, out


def peak_of_step(name, batch):
    vitc.manual_seed(0)
    model = vitc.models.ViT(**SEED)
    opt = OPTIMIZERS[name](model.parameters())
    rng = np.random.default_rng(0)
    x = vitc.from_numpy(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = vitc.from_numpy(rng.integers(0, 10, batch).astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(model(x), y).backward()
        opt.step()

    step()  # gradients and state exist from here on
    vitc.reset_peak_memory_stats()
    before = vitc.memory_stats()["live_bytes"]
    step()
    return before, vitc.memory_stats()["peak_bytes"]


def mib(n):
    return f"{n / 2 ** 20:10.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--no-vit-b", action="store_true", help="skip ViT-B/16 (86M parameters, ~1.4 GB to build)")
    a = ap.parse_args()
    models = [("seed ViT", lambda: vitc.models.ViT(**SEED))]
    if not a.no_vit_b:
        models.append(("ViT-B/16", lambda: vitc.models.scaling_vit("B/16")))
    print("optimizer state bytes (MiB; × parameter bytes)")
    print(f"{'model':10s} {'params MiB':>10s} " + " ".join(f"{n:>22s}" for n in OPTIMIZERS))
    for label, make in models:
        vitc.manual_seed(0)
        pbytes, row = state_row(make)
        print(f"{label:10s} {mib(pbytes)} " + " ".join(f"{mib(b)} ({b / pbytes:4.2f}×)".rjust(22) for b in row.values()))
        print(f"{'':10s} {pbytes:10d} " + " ".join(f"{b:>22d}" for b in row.values()))
    print(f"\npeak allocator bytes over one train step, seed ViT, batch {a.batch} (MiB)")
    print(f"{'optimizer':14s} {'live before':>12s} {'peak':>12s}")
    for name in OPTIMIZERS:
        before, peak = peak_of_step(name, a.batch)
        print(f"{name:14s} {mib(before):>12s} {mib(peak):>12s}   ({before} / {peak} bytes)")


if __name__ == "__main__":
    main()
