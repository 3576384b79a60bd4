"""conv2d forward+backward, vitc vs PyTorch, on the LV-ViT stem's first conv
(zihangJiang/TokenLabeling tlt/models/layers.py, PatchEmbed4_2):
7×7 stride 2 padding 3, 3→64 channels, no bias, batch 32 of 3×224×224, 2 threads.

    PYTHONPATH=. python bench/conv_bench.py [--batch 32] [--threads 2] [--repeat 5]

Reports median times of a no-grad forward, and of the forward and the backward of a training step,
with the weight gradient only (the stem's case: images need no gradient) and with the input
gradient too. Wall-clock times: on a shared machine run it more than once. Not a test.

    PYTHONPATH=. python bench/conv_bench.py --stem [--batch 128] [--repeat 20]

times instead each conv of lvvit_tiny_mnist's stem (vitc.nn.ConvPatchEmbed on 1×28×28 images, batch 128):
7×7/2 p3 1→16, 3×3 p1 16→16 (twice in the stem), 2×2/2 16→64 with bias; per conv the no-grad forward,
the backward with dW only, and the backward with dX too (the stem's first conv needs no dX), in ms and
GFLOP/s (2·MACs of the direction; dX+dW counts both).
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


# lvvit_tiny_mnist's stem convs: name, (C, H, W) in, (O, k, stride, padding, bias)
STEM = [("conv1 7x7/2 1->16", (1, 28, 28), (16, 7, 2, 3, False)),
        ("conv2 3x3 16->16", (16, 14, 14), (16, 3, 1, 1, False)),
        ("proj 2x2/2 16->64", (16, 14, 14), (64, 2, 2, 0, True))]


def stem(args):
    rng = np.random.default_rng(0)
    print(f"LV-ViT-mnist stem convs, batch {args.batch}, {args.threads} threads (median of {args.repeat}); "
          f"ms, GFLOP/s in brackets")
    print(f"{'conv':20} {'lib':6} {'no-grad fwd':>16} {'bwd dW':>16} {'bwd dX+dW':>16}")
    for name, (C, H, W), (O, k, s, p, bias) in STEM:
        x = rng.standard_normal((args.batch, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
        b = rng.standard_normal(O).astype(np.float32) if bias else None
        Ho = (H + 2 * p - k) // s + 1
        macs = args.batch * O * Ho * Ho * C * k * k
        for lib in ("torch", "vitc"):
            cells = []
            for mode in ("fwd", "dw", "dxdw"):
                if lib == "torch":
                    xi, wi = torch.from_numpy(x.copy()), torch.from_numpy(w.copy())
                    bi = torch.from_numpy(b.copy()) if bias else None
                    xi.requires_grad_(mode == "dxdw")
                    wi.requires_grad_(mode != "fwd")
                    fwd = lambda: F.conv2d(xi, wi, bi, stride=s, padding=p)
                    gy = torch.from_numpy(rng.standard_normal((args.batch, O, Ho, Ho)).astype(np.float32))
                    ng = torch.no_grad
                else:
                    xi, wi = vitc.from_numpy(x.copy()), vitc.from_numpy(w.copy())
                    bi = vitc.from_numpy(b.copy()) if bias else None
                    xi.requires_grad = mode == "dxdw"
                    wi.requires_grad = mode != "fwd"
                    fwd = lambda: vitc.conv2d(xi, wi, bi, stride=s, padding=p)
                    gy = vitc.from_numpy(rng.standard_normal((args.batch, O, Ho, Ho)).astype(np.float32))
                    ng = vitc.no_grad
                if mode == "fwd":
                    with ng():
                        t = median_ms(fwd, args.repeat)
                    flop = 2 * macs
                else:
                    def clear():
                        xi.grad = wi.grad = None
                    t = fwd_bwd_ms(fwd, lambda y: y.backward(gy), clear, args.repeat)[1]
                    flop = 2 * macs * (2 if mode == "dxdw" else 1)
                cells.append(f"{t:7.2f} ({flop / t / 1e6:5.1f})")
            print(f"{name:20} {lib:6} " + " ".join(f"{c:>16}" for c in cells))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=None, help="default 32, with --stem 128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--stem", action="store_true", help="time each conv of lvvit_tiny_mnist's stem instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vitc.set_num_threads(args.threads)
    args.batch = args.batch or (128 if args.stem else 32)
    if args.stem:
        return stem(args)
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
