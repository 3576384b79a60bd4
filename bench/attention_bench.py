"""Time vitc's fused attention against PyTorch's, forward and forward+backward (a timing script,
not a test). Usage: PYTHONPATH=. python bench/attention_bench.py [--threads 2] [--reps 20] [--cpu]

Wall-clock at --threads threads (vitc.set_num_threads / torch.set_num_threads), median and best
of --reps. --cpu adds a second table: one thread each, the calling thread's CPU time
(time.thread_time), which a busy shared machine disturbs far less than wall-clock.

Shapes: the seed ViT (B=100, T=17, H=8, Dh=64), LV-ViT-Tiny-MNIST (B=128, T=50, H=4, Dh=16) and
DeiT-tiny (B=32, T=197, H=3, Dh=64).
PyTorch runs (a) explicit ops: reshape(B,T,3,H,Dh) / q@kᵀ·scale / softmax / @v / transpose-reshape,
and (b) F.scaled_dot_product_attention on the permuted q, k, v (its flash CPU kernel); both
start from the same packed qkv and end in (B, T, H·Dh), as the fused op does.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import vitc


def torch_explicit(qkv, H):
    B, T, C = qkv.shape
    Dh = C // (3 * H)
    q, k, v = qkv.reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
    a = (q @ k.transpose(-1, -2) * Dh ** -0.5).softmax(-1)
    return (a @ v).transpose(1, 2).reshape(B, T, H * Dh)


def torch_sdpa(qkv, H):
    B, T, C = qkv.shape
    Dh = C // (3 * H)
    q, k, v = qkv.reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, H * Dh)


def best_ms(fn, reps, clock=time.perf_counter):
    fn()  # warm up (allocator caches, thread pools)
    fn()
    times = []
    for _ in range(reps):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return 1e3 * float(np.median(times)), 1e3 * min(times)


def run(B, T, H, Dh, reps, clock=time.perf_counter):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, 3 * H * Dh)).astype(np.float32)
    g = rng.standard_normal((B, T, H * Dh)).astype(np.float32)
    vx = vitc.from_numpy(x.copy())
    vx.requires_grad = True
    vg = vitc.from_numpy(g)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tg = torch.from_numpy(g)

    def v_fwd():
        with vitc.no_grad():
            vitc.multi_head_attention_packed(vx, H)

    def v_fb():
        vx.grad = None
        vitc.multi_head_attention_packed(vx, H).backward(vg)

    def t_fwd(f):
        def run_():
            with torch.no_grad():
                f(tx, H)
        return run_

    def t_fb(f):
        def run_():
            tx.grad = None
            f(tx, H).backward(tg)
        return run_

    rows = [("vitc fused", v_fwd, v_fb),
            ("torch explicit ops", t_fwd(torch_explicit), t_fb(torch_explicit)),
            ("torch F.sdpa", t_fwd(torch_sdpa), t_fb(torch_sdpa))]
    flops = 4 * B * H * T * T * Dh  # multiply-adds ×2 of the two forward products
    print(f"\nB={B} T={T} H={H} Dh={Dh}  (forward {flops / 1e9:.2f} GFLOP, backward ~2x)")
    print(f"{'':22s}{'forward ms':>14s}{'fwd+bwd ms':>14s}   (median / best of {reps})")
    for name, f, fb in rows:
        fm, fb_ = best_ms(f, reps, clock)
        bm, bb = best_ms(fb, reps, clock)
        print(f"{name:22s}{fm:8.2f} /{fb_:6.2f}{bm:8.2f} /{bb:6.2f}")


SHAPES = ((100, 17, 8, 64), (128, 50, 4, 16), (32, 197, 3, 64))  # (B, T, H, Dh): seed, LV-ViT, DeiT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cpu", action="store_true", help="also time one thread by CPU time")
    a = ap.parse_args()
    vitc.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    print(f"== wall-clock, threads: vitc {vitc.get_num_threads()}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}")
    for shape in SHAPES:
        run(*shape, a.reps)
    if a.cpu:
        vitc.set_num_threads(1)
        torch.set_num_threads(1)
        print("\n== one thread, CPU time of the calling thread")
        for shape in SHAPES:
            run(*shape, a.reps, time.thread_time)


if __name__ == "__main__":
    main()
