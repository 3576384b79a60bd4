"""LV-ViT train step (conv stem + aux head + MixToken + token labeling loss + AdamW), vitc against the
PyTorch reimplementation of the TokenLabeling definitions (tests/models/torch_lvvit.py) with the same
weights, batch, dense labels and MixToken draws, in one process, interleaved; median and spread.

    .venv/bin/python bench/lvvit_step.py --threads 2 --reps 20
    .venv/bin/python bench/lvvit_step.py --check      # one step each, losses compared, no timing
    .venv/bin/python bench/lvvit_step.py --profile 5  # where each framework's step goes, as fractions
    .venv/bin/python bench/lvvit_step.py --with-seed --rounds 8   # and the seed ViT step, same protocol

--with-seed answers issue 21's question in one run: the seed ViT train step (bench/vit_step.py's
model, batch 100, Adam) joins the round robin, every step of the four (vitc and PyTorch, LV-ViT and
seed) timed in blocks of --block after a pause and --warmup untimed steps, so both speed-ups come from
the same machine state and the same protocol; it prints both and, per round, LV-ViT's speed-up over
the seed's (>= 1: the LV-ViT step is at least as far ahead of PyTorch as the plain ViT step).

Run by hand, never as a test. Both frameworks share a process, so OMP_WAIT_POLICY=PASSIVE is set before
either loads (see bench/vit_step.py on the two OpenMP runtimes).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # vitc's default; see bench/vit_step.py
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import vitc  # noqa: E402
from vitc import optim  # noqa: E402
from vitc.losses import TokenLabelingLoss  # noqa: E402
from vitc.models import create_model  # noqa: E402
from vitc.io import write_text_atomic  # noqa: E402
from vitc.models.lvvit import to_official_state_dict  # noqa: E402
from torch_lvvit import LVViT, token_label_ce  # noqa: E402
from common import seed_train_steps  # noqa: E402


def build(a):
    vitc.manual_seed(0)
    vm = create_model(a.model, num_classes=10)
    cfg = vm.transformer.layers[0]
    dim = vm.pos_embedding.shape[-1]
    tm = LVViT(vm.image_size[0], vm.patch_size[0], vm.channels, 10, dim, len(vm.transformer.layers),
               cfg.attn.heads, cfg.ff.net[0].weight.shape[0], cfg.skip_lam, vm.to_patch_embedding.conv1.out_channels)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in to_official_state_dict(vm).items()})
    return vm, tm


def profile(vstep, tstep, steps):
    """Per-op shares of each framework's step (fractions stay meaningful on a loaded machine; the
    absolute times do not)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    for _ in range(2):
        vstep(), tstep()
    with vitc.profiler.profile() as prof:
        for _ in range(steps):
            vstep()
    print(f"vitc: {steps} steps\n" + prof.key_averages().table(row_limit=25))
    with torch_profile(activities=[ProfilerActivity.CPU]) as tprof:
        for _ in range(steps):
            tstep()
    print(f"torch: {steps} steps\n" + tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def with_seed(a, lv_vitc, lv_torch):
    _, _, sv, st = seed_train_steps()
    steps = {"lvvit_vitc": lv_vitc, "lvvit_torch": lv_torch, "seed_vitc": sv, "seed_torch": st}
    rounds = []
    for _ in range(a.rounds):
        med = {}
        for name, fn in steps.items():
            time.sleep(0.3)  # the other framework's idle threads stop spinning
            for _ in range(a.warmup):  # untimed: caches and the allocator refilled after the other model
                fn()
            ts = []
            for _ in range(a.block):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            med[name] = statistics.median(ts)
        med["lvvit_speedup"] = med["lvvit_torch"] / med["lvvit_vitc"]
        med["seed_speedup"] = med["seed_torch"] / med["seed_vitc"]
        med["lvvit_over_seed"] = med["lvvit_speedup"] / med["seed_speedup"]
        rounds.append(med)
    res = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    res.update(config=vars(a), rounds=rounds,
               range_lvvit_over_seed=[min(r["lvvit_over_seed"] for r in rounds), max(r["lvvit_over_seed"] for r in rounds)])
    print(f"{a.model} (batch {a.batch}) and seed ViT (batch 100), {a.threads} thread(s), {a.rounds} rounds of "
          f"{a.block}, medians: LV-ViT vitc {res['lvvit_vitc'] * 1e3:.1f} ms, PyTorch {res['lvvit_torch'] * 1e3:.1f} "
          f"ms ({res['lvvit_speedup']:.2f}x); seed vitc {res['seed_vitc'] * 1e3:.1f} ms, PyTorch "
          f"{res['seed_torch'] * 1e3:.1f} ms ({res['seed_speedup']:.2f}x); LV-ViT speed-up / seed speed-up per round: "
          f"median {res['lvvit_over_seed']:.3f} (range {res['range_lvvit_over_seed'][0]:.3f}-"
          f"{res['range_lvvit_over_seed'][1]:.3f})")
    if a.json:
        write_text_atomic(a.json, json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default="lvvit_tiny_mnist")
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--with-seed", action="store_true",
                    help="time the seed ViT step too, round robin with the LV-ViT step (see the top)")
    ap.add_argument("--rounds", type=int, default=8, help="with --with-seed: rounds of the round robin")
    ap.add_argument("--block", type=int, default=3, help="with --with-seed: timed steps per block")
    ap.add_argument("--warmup", type=int, default=2, help="with --with-seed: untimed steps before each block")
    ap.add_argument("--check", action="store_true", help="one step each and compare the losses; no timing")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="profile STEPS steps of each (vitc.profiler, torch.profiler) and print each op's share of "
                         "its own framework's step; no timing")
    a = ap.parse_args()
    vitc.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    vm, tm = build(a)
    vm.train(), tm.train()
    rng = np.random.default_rng(0)
    b, n = a.batch, vm.num_patches
    x = rng.standard_normal((b, vm.channels) + vm.image_size).astype(np.float32)
    y = rng.dirichlet(np.ones(10), b).astype(np.float32)
    yt = rng.dirichlet(np.ones(10), (b, n)).astype(np.float32)
    draw = (0.6, vm.grid_size[0] // 2, vm.grid_size[1] // 2)
    vx, vy, vyt = vitc.tensor(x), vitc.tensor(y), vitc.tensor(yt)
    tx = torch.tensor(x)
    tt = torch.cat([torch.tensor(y)[:, None], torch.tensor(y)[:, None], torch.tensor(yt)], 1)
    vo, to = optim.AdamW(vm.parameters(), lr=1e-3), torch.optim.AdamW(tm.parameters(), lr=1e-3)
    loss_fn = TokenLabelingLoss(beta=a.beta)

    def vstep():
        vo.zero_grad()
        loss = loss_fn(vm(vx, mix_draw=draw), vy, vyt)
        loss.backward()
        vo.step()
        return loss.item()

    def tstep():
        to.zero_grad()
        loss = token_label_ce(tm(tx, draw=draw), tt, dense_weight=a.beta)
        loss.backward()
        to.step()
        return loss.item()
    if a.check:
        lv, lt = vstep(), tstep()
        print(f"first-step loss vitc {lv:.6f} torch {lt:.6f}")
        return
    if a.profile:
        profile(vstep, tstep, a.profile)
        return
    if a.with_seed:
        return with_seed(a, vstep, tstep)
    times = {"vitc": [], "torch": []}
    for _ in range(3):
        vstep(), tstep()
    for _ in range(a.reps):
        for name, fn in (("vitc", vstep), ("torch", tstep)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    res = {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for k, v in times.items()}
    res["vitc_over_torch"] = res["vitc"]["median_s"] / res["torch"]["median_s"]
    res["config"] = vars(a)
    print(json.dumps(res, indent=1))
    if a.json:
        write_text_atomic(a.json, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
