"""conv2d forward+backward, vitc vs PyTorch, on the LV-ViT stem's first conv (SPEC §5.1):
7×7 stride 2 padding 3, 3→64 channels, no bias, batch 32 of 3×224×224, 2 threads.

    PYTHONPATH=. python bench/conv_bench.py [--batch 32] [--threads 2] [--repeat 5]

Reports the median time of forward, backward (weight grad only, the stem's case: images need no
gradient) and backward with the input gradient too. Not a test.
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
    for name, lib in (("torch", "t"), ("vitc", "v")):
        for xgrad in (False, True):
            if lib == "t":
                xi = torch.from_numpy(x.copy()).requires_grad_(xgrad)
                wi = torch.from_numpy(w.copy()).requires_grad_(True)
                fwd = lambda: F.conv2d(xi, wi, None, **conv)
                gy = torch.ones(fwd().shape)
                with torch.no_grad():
                    t_fwd = median_ms(fwd, args.repeat)

                def step():
                    xi.grad = wi.grad = None
                    fwd().backward(gy)
            else:
                xi = vitc.from_numpy(x.copy())
                xi.requires_grad = xgrad
                wi = vitc.from_numpy(w.copy())
                wi.requires_grad = True
                fwd = lambda: vitc.conv2d(xi, wi, None, **conv)
                gy = vitc.ones(*fwd().shape)
                with vitc.no_grad():
                    t_fwd = median_ms(fwd, args.repeat)

                def step():
                    xi.grad = wi.grad = None
                    fwd().backward(gy)
            t_step = median_ms(step, args.repeat)
            rows.append((name, xgrad, t_fwd, t_step - t_fwd, t_step))
    print(f"conv2d 7x7/2 p3 3->64, batch {args.batch}, {args.size}x{args.size}, {args.threads} threads "
          f"(median of {args.repeat})")
    print(f"{'lib':6} {'input grad':10} {'forward ms':>11} {'backward ms':>12} {'fwd+bwd ms':>11}")
    for name, xgrad, tf, tb, ts in rows:
        print(f"{name:6} {str(xgrad):10} {tf:11.1f} {tb:12.1f} {ts:11.1f}")


if __name__ == "__main__":
    main()
