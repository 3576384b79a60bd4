"""Per-op timings, vitc against PyTorch side by side in one run, at the two ViT shapes.

    PYTHONPATH=. .venv/bin/python bench/ops.py                       # 1 and 2 threads, 30 reps
    PYTHONPATH=. .venv/bin/python bench/ops.py --threads 2 --reps 50 --json bench/results/ops.json

Shapes: seed 004 ViT (batch 100, 17 tokens, dim 64, 8 heads × 64, MLP 128, 10 classes) and
DeiT-Tiny (batch 32, 197 tokens, dim 192, 3 heads × 64, MLP 768, 1000 classes); --shapes lvvit_tiny_mnist
adds LV-ViT-Tiny-MNIST's blocks (batch 128, 50 tokens, dim 64, 4 heads × 16, MLP 192). Ops:
  matmul      tokens (B·T, D) @ W (D, 3·H·Dh)            (the qkv projection as a plain product)
  linear      (B, T, D) -> (B, T, MLP) with bias
  layer_norm  (B, T, D) over D with weight and bias
  softmax     attention scores (B, H, T, T) over the last dim
  gelu        (B, T, MLP), exact erf form
  attention   packed qkv (B, T, 3·H·Dh) -> (B, T, H·Dh): vitc's fused op vs torch's
              F.scaled_dot_product_attention on the reshaped/permuted q, k, v (as a timm ViT does)
  cross_entropy  logits (B, classes), integer targets, mean
each as "fwd" (no autograd recording) and "fwd+bwd" (forward, then backward with a fixed output
gradient into every input). Then the per-op Python overhead: `a + b` on 4-element tensors.

Interleaved: every repetition runs vitc then PyTorch on the same op back to back, so drifts in
machine load hit both alike; the table shows medians and the median of the per-repetition ratios
(torch / vitc: above 1 means vitc is faster). Both frameworks share the process, so both run with
OMP_WAIT_POLICY=PASSIVE (set before either loads, see bench/vit_step.py). Run by hand, never as a test.
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # vitc's default; see bench/vit_step.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import vitc  # noqa: E402

SHAPES = {
    "seed": dict(B=100, T=17, D=64, H=8, Dh=64, MLP=128, C=10),
    "deit_tiny": dict(B=32, T=197, D=192, H=3, Dh=64, MLP=768, C=1000),
    "lvvit_tiny_mnist": dict(B=128, T=50, D=64, H=4, Dh=16, MLP=192, C=10),
}


def torch_attention(qkv, H):
    B, T, C3 = qkv.shape
    Dh = C3 // (3 * H)
    q, k, v = qkv.reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, H * Dh)


class Pair:
    """The same computation in both frameworks: inputs, the forward as a function of them, and the
    output gradient for the backward."""

    def __init__(self, shapes, v_fn, t_fn, grad_inputs, int_inputs=()):
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        self.v_in = [vitc.from_numpy(a.copy()) for a in arrays]
        self.t_in = [torch.from_numpy(a.copy()) for a in arrays]
        for i in grad_inputs:
            self.v_in[i].requires_grad = True
            self.t_in[i].requires_grad_(True)
        for arr in int_inputs:
            self.v_in.append(vitc.from_numpy(arr))
            self.t_in.append(torch.from_numpy(arr))
        self.v_fn, self.t_fn = v_fn, t_fn
        with torch.no_grad():
            out_shape = tuple(t_fn(*self.t_in).shape)
        g = rng.standard_normal(out_shape).astype(np.float32) if out_shape else np.array(1.0, np.float32)
        self.v_g, self.t_g = vitc.from_numpy(g), torch.from_numpy(g.copy())
        self.grad_inputs = grad_inputs

    def v_fwd(self):
        with vitc.no_grad():
            self.v_fn(*self.v_in)

    def t_fwd(self):
        with torch.no_grad():
            self.t_fn(*self.t_in)

    def v_fwd_bwd(self):
        for i in self.grad_inputs:
            self.v_in[i].grad = None
        self.v_fn(*self.v_in).backward(self.v_g)

    def t_fwd_bwd(self):
        for i in self.grad_inputs:
            self.t_in[i].grad = None
        self.t_fn(*self.t_in).backward(self.t_g)


def make_pairs(s):
    B, T, D, H, Dh, MLP, C = (s[k] for k in ("B", "T", "D", "H", "Dh", "MLP", "C"))
    inner = H * Dh
    labels = np.random.default_rng(1).integers(0, C, B).astype(np.int64)
    return {
        "matmul": Pair([(B * T, D), (D, 3 * inner)], vitc.matmul, torch.matmul, (0, 1)),
        "linear": Pair([(B, T, D), (MLP, D), (MLP,)], vitc.linear, F.linear, (0, 1, 2)),
        "layer_norm": Pair([(B, T, D), (D,), (D,)], lambda x, w, b: vitc.layer_norm(x, (D,), w, b),
                           lambda x, w, b: F.layer_norm(x, (D,), w, b), (0, 1, 2)),
        "softmax": Pair([(B, H, T, T)], lambda x: vitc.softmax(x, -1), lambda x: torch.softmax(x, -1), (0,)),
        "gelu": Pair([(B, T, MLP)], vitc.gelu, F.gelu, (0,)),
        "attention": Pair([(B, T, 3 * inner)], lambda q: vitc.multi_head_attention_packed(q, H),
                          lambda q: torch_attention(q, H), (0,)),
        "cross_entropy": Pair([(B, C)], vitc.cross_entropy, F.cross_entropy, (0,), int_inputs=(labels,)),
    }


def interleaved(v_fn, t_fn, reps, inner=1):
    """per-repetition seconds per call of each, alternating vitc and torch"""
    for fn in (v_fn, t_fn, v_fn, t_fn):  # warm-up: allocator caches, thread pools
        fn()
    tv, tt = [], []
    for _ in range(reps):
        for fn, out in ((v_fn, tv), (t_fn, tt)):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter() - t0) / inner)
    return tv, tt


def summary(tv, tt):
    return {"vitc_us": statistics.median(tv) * 1e6, "torch_us": statistics.median(tt) * 1e6,
            "ratio": statistics.median(t / v for v, t in zip(tv, tt)),
            "vitc_iqr_us": iqr(tv) * 1e6, "torch_iqr_us": iqr(tt) * 1e6}


def iqr(xs):
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]


def overhead(reps):
    """seconds per `a + b` on 4-element tensors (the Python + binding + dispatch cost of one op)"""
    va, vb = vitc.ones(4), vitc.ones(4)
    ta, tb = torch.ones(4), torch.ones(4)

    def v():
        va + vb

    def t():
        ta + tb
    return interleaved(v, t, reps, inner=2000)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--shapes", default="seed,deit_tiny")
    ap.add_argument("--ops", default=None, help="comma-separated subset of the ops")
    ap.add_argument("--json", default=None, help="also write the results here (atomically)")
    a = ap.parse_args()
    results = {"reps": a.reps, "torch": torch.__version__, "load_avg_start": os.getloadavg(), "rows": []}
    print(f"vitc vs torch {torch.__version__}, median of {a.reps} interleaved reps; load average at start "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores. ratio = torch/vitc (>1: vitc faster)")
    for th in (int(x) for x in a.threads.split(",")):
        vitc.set_num_threads(th)
        torch.set_num_threads(th)
        tv, tt = overhead(a.reps)
        row = dict(threads=th, shape="-", op="add 4 (Python overhead)", mode="fwd", **summary(tv, tt))
        results["rows"].append(row)
        print(f"\n{th} thread(s)\n{'shape':10s} {'op':24s} {'mode':8s} {'vitc µs':>10s} {'torch µs':>10s} {'ratio':>6s}")
        print(f"{'-':10s} {row['op']:24s} {'fwd':8s} {row['vitc_us']:10.2f} {row['torch_us']:10.2f} {row['ratio']:6.2f}")
        for sname in a.shapes.split(","):
            pairs = make_pairs(SHAPES[sname])
            for op, p in pairs.items():
                if a.ops and op not in a.ops.split(","):
                    continue
                for mode, vf, tf in (("fwd", p.v_fwd, p.t_fwd), ("fwd+bwd", p.v_fwd_bwd, p.t_fwd_bwd)):
                    tv, tt = interleaved(vf, tf, a.reps)
                    row = dict(threads=th, shape=sname, op=op, mode=mode, **summary(tv, tt))
                    results["rows"].append(row)
                    print(f"{sname:10s} {op:24s} {mode:8s} {row['vitc_us']:10.1f} {row['torch_us']:10.1f} "
                          f"{row['ratio']:6.2f}", flush=True)
    results["load_avg_end"] = os.getloadavg()
    if a.json:
        write_json(a.json, results)


def write_json(path, obj):
    from vitc.io import atomic_write

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
    atomic_write(path, write)

if __name__ == "__main__":
    main()
