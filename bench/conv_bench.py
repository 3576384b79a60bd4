"""conv2d forward+backward, vitc vs PyTorch, on the LV-ViT stem's first conv
(zihangJiang/TokenLabeling tlt/models/layers.py, PatchEmbed4_2):
7×7 stride 2 padding 3, 3→64 channels, no bias, batch 32 of 3×224×224, 2 threads.

    PYTHONPATH=. python bench/conv_bench.py [--batch 32] [--threads 2] [--repeat 5]

Reports median times of a no-grad forward, and of the forward and the backward of a training step,
with the weight gradient only (the stem's case: images need no gradient) and with the input
gradient too. Wall-clock times: on a shared machine run it more than once. Not a test.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import vitc


def median_ms(fn, repeat):
    fn()  # warm up caches and allocators
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def fwd_bwd_ms(fwd, backward, clear, repeat):
    """medians of (forward recording the graph, backward), timed separately in each step"""
    tf, tb = [], []
    for i in range(repeat + 1):
        clear()
        t0 = time.perf_counter()
        y = fwd()
        t1 = time.perf_counter()
        backward(y)
        t2 = time.perf_counter()
        if i:  # the first step warms up
            tf.append(t1 - t0)
            tb.append(t2 - t1)
    return 1e3 * float(np.median(tf)), 1e3 * float(np.median(tb))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vitc.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    w = (rng.standard_normal((64, 3, 7, 7)) * 0.1).astype(np.float32)
    conv = dict(stride=2, padding=3)

    rows = []
    for name in ("torch", "vitc"):
        for xgrad in (False, True):
            if name == "torch":
                xi = torch.from_numpy(x.copy()).requires_grad_(xgrad)
                wi = torch.from_numpy(w.copy()).requires_grad_(True)
                fwd = lambda: F.conv2d(xi, wi, None, **conv)
                gy = torch.ones(fwd().shape)
                with torch.no_grad():
                    t_inf = median_ms(fwd, args.repeat)
            else:
                xi = vitc.from_numpy(x.copy())
                xi.requires_grad = xgrad
                wi = vitc.from_numpy(w.copy())
                wi.requires_grad = True
                fwd = lambda: vitc.conv2d(xi, wi, None, **conv)
                gy = vitc.ones(*fwd().shape)
                with vitc.no_grad():
                    t_inf = median_ms(fwd, args.repeat)

            def clear():
                xi.grad = wi.grad = None
            t_fwd, t_bwd = fwd_bwd_ms(fwd, lambda y: y.backward(gy), clear, args.repeat)
            rows.append((name, xgrad, t_inf, t_fwd, t_bwd))
    print(f"conv2d 7x7/2 p3 3->64, batch {args.batch}, {args.size}x{args.size}, {args.threads} threads "
          f"(median of {args.repeat})")
    print(f"{'lib':6} {'input grad':10} {'no-grad fwd':>11} {'forward ms':>11} {'backward ms':>12} {'fwd+bwd ms':>11}")
    for name, xgrad, ti, tf, tb in rows:
        print(f"{name:6} {str(xgrad):10} {ti:11.1f} {tf:11.1f} {tb:12.1f} {tf + tb:11.1f}")


if __name__ == "__main__":
    main()
