"""Over-smoothing: what the per-epoch recording and the three losses cost per training step.

Arms, each a full step (forward, backward, AdamW) of the seed ViT shape at --depth blocks on one
random batch, interleaved round by round so load drifts hit them alike; median and spread:
  plain            the model alone (cross-entropy)
  recorded         the same inside an AttentionRecorder (maps and block outputs kept, as during an
                   experiment's training; the metrics themselves run once per epoch, timed apart)
  losses           cross-entropy + ℓ_cos + ℓ_cons + ℓ_mix through OverSmoothing.loss
  losses+recorded  both
and the once-per-epoch cost: OverSmoothingLog.record on the recorder (NumPy, no forward).

    .venv/bin/python bench/over_smoothing_step.py --threads 2 --reps 20 --json out.json

Run by hand on a quiet machine, never as a test.
"""
import argparse
import json
import statistics
import time

import numpy as np

import vitc
from vitc import diagnostics, optim
from vitc.models import create_model


def build(depth, weights, batch):
    vitc.manual_seed(0)
    model = create_model("vit_seed_mnist", depth=depth, over_smoothing=weights)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = vitc.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = vitc.from_numpy(rng.integers(0, 10, batch))
    model.train()

    def step():
        opt.zero_grad(set_to_none=False)
        loss, _ = model.loss(x, y)
        loss.backward()
        opt.step()
    return model, step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    vitc.set_num_threads(a.threads)
    all3 = dict(cos=1.0, cons=1.0, mix=1.0)
    arms = {}
    for name, weights, rec in (("plain", {}, False), ("recorded", {}, True), ("losses", all3, False),
                               ("losses+recorded", all3, True)):
        model, step = build(a.depth, weights, a.batch)
        recorder = diagnostics.AttentionRecorder(model.model) if rec else None
        arms[name] = (step, recorder)
    times = {n: [] for n in arms}
    for n, (step, recorder) in arms.items():  # warm-up
        if recorder:
            recorder.__enter__()
        step()
        if recorder:
            recorder.__exit__(None, None, None)
    for _ in range(a.reps):
        for n, (step, recorder) in arms.items():
            if recorder:
                recorder.__enter__()
            t0 = time.perf_counter()
            step()
            times[n].append(time.perf_counter() - t0)
            if recorder:
                recorder.__exit__(None, None, None)
    model, step = build(a.depth, {}, a.batch)
    log = diagnostics.OverSmoothingLog()
    with diagnostics.AttentionRecorder(model.model) as rec:
        step()
        t0 = time.perf_counter()
        for _ in range(a.reps):
            log.record(0, rec)
        per_record = (time.perf_counter() - t0) / a.reps
    res = {"threads": a.threads, "batch": a.batch, "depth": a.depth, "reps": a.reps,
           "step_s": {n: {"median": statistics.median(t), "min": min(t), "max": max(t)} for n, t in times.items()},
           "log_record_s": per_record}
    base = res["step_s"]["plain"]["median"]
    for n, s in res["step_s"].items():
        print(f"{n:16s} step {1e3 * s['median']:8.1f} ms (min {1e3 * s['min']:.1f}, max {1e3 * s['max']:.1f}), "
              f"{s['median'] / base:.3f}x plain")
    print(f"OverSmoothingLog.record (once per epoch): {1e3 * per_record:.1f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
