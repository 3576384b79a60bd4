"""Per-op overhead: what one op call costs beyond its kernel, vitc against PyTorch eager, and how much
of the seed ViT train step that overhead is at small batches.

    PYTHONPATH=. .venv/bin/python bench/dispatch_overhead.py --threads 2            # both parts
    PYTHONPATH=. .venv/bin/python bench/dispatch_overhead.py --parts ops --reps 5   # per-op part only

Part "ops": one-element tensors, so the kernel is a few nanoseconds and the time is the call path.
Each row is the median over repetitions of a loop of N calls, divided by N (µs per call):
  binding        vitc._C.call(add) straight (torch: torch.add); parse + dispatch + output wrap
  add            a + b through the Python op layer, no autograd input
  add+record     the same with an input that requires grad: the autograd node is recorded too
  backward/node  a chain of N adds from a leaf, then .backward(): the engine's time per node
  linear         F.linear on 1×1 shapes (argument checks, optional bias)
  module         a 1→1 nn.Linear called as a module (hooks path) minus nothing: the whole call
Part "step": the seed step (zero_grad, forward, cross-entropy, backward, Adam) at each --batches
size: its wall time, the sum of the op times vitc.profiler records (forward kernels, backward
nodes, gradient accumulation), and the rest, which is Python, the binding, node bookkeeping and the
engine's walk; per op call (calls = forward ops + backward nodes + accumulations per step) that rest
is the per-op overhead inside a real step. PyTorch's number next to it is its step at batch 1,
which is mostly its own fixed cost (it has no cheap equivalent of the profiler's sum here).

Both frameworks run in this one process with OMP_WAIT_POLICY=PASSIVE (see bench/vit_step.py for
why). Run by hand through the machine's timing lock, never as a test.
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # vitc's default; see bench/vit_step.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "models"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vitc  # noqa: E402
from common import SEED, vitc_batch, vitc_model  # noqa: E402


def per_call_us(fn, n, reps):
    """fn() runs n calls; the median over reps of its time / n, in µs (one untimed run first)"""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) / n)
    return 1e6 * statistics.median(ts)


def op_cases(n):
    """name -> (vitc loop, torch loop), each running n calls"""
    va, vb = vitc.ones(1), vitc.ones(1)
    vg = vitc.ones(1).requires_grad_()
    ta, tb = torch.ones(1), torch.ones(1)
    tg = torch.ones(1).requires_grad_()
    add_id = vitc._C.ops["add"]
    vw, vbias = vitc.ones(1, 1), vitc.ones(1)
    tw, tbias = torch.ones(1, 1), torch.ones(1)
    vx1, tx1 = vitc.ones(1, 1), torch.ones(1, 1)
    vlin, tlin = vitc.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    call = vitc._C.call

    def v_binding():
        for _ in range(n):
            call(add_id, (va, vb))

    def t_binding():
        for _ in range(n):
            torch.add(ta, tb)

    def v_add():
        for _ in range(n):
            va + vb

    def t_add():
        for _ in range(n):
            ta + tb

    def v_record():
        for _ in range(n):
            vg + vb

    def t_record():
        for _ in range(n):
            tg + tb

    def chain(x, b):
        y = x
        for _ in range(n):
            y = y + b
        return y.sum()

    def timed_backward(x, b):
        def run():
            x.grad = None
            loss = chain(x, b)
            t0 = time.perf_counter()
            loss.backward()
            return time.perf_counter() - t0
        return run

    def v_linear():
        for _ in range(n):
            vitc.nn.functional.linear(vx1, vw, vbias)

    def t_linear():
        for _ in range(n):
            torch.nn.functional.linear(tx1, tw, tbias)

    def v_module():
        with vitc.no_grad():
            for _ in range(n):
                vlin(vx1)

    def t_module():
        with torch.no_grad():
            for _ in range(n):
                tlin(tx1)

    return {"binding": (v_binding, t_binding), "add": (v_add, t_add), "add+record": (v_record, t_record),
            "backward/node": (timed_backward(vg, vb), timed_backward(tg, tb)),
            "linear": (v_linear, t_linear), "module (no_grad)": (v_module, t_module)}


def run_ops(a):
    n = 2000
    print(f"per op call, µs (one-element tensors, {n} calls per loop, median of {a.reps} loops)")
    print(f"  {'':18s} {'vitc':>8s} {'torch':>8s} {'torch/vitc':>10s}")
    for name, (vf, tf) in op_cases(n).items():
        if name == "backward/node":  # only the backward() call is timed; the chain is built outside
            vf(), tf()
            v = 1e6 * statistics.median(vf() for _ in range(a.reps)) / n
            t = 1e6 * statistics.median(tf() for _ in range(a.reps)) / n
        else:
            v, t = per_call_us(vf, n, a.reps), per_call_us(tf, n, a.reps)
        print(f"  {name:18s} {v:8.2f} {t:8.2f} {t / v:10.2f}", flush=True)


def vitc_step_parts(batch, reps):
    """(median wall ms, op ms per step, calls per step) of the seed step at `batch`"""
    m, opt = vitc_model("seed")
    x, y = vitc_batch("seed", batch)

    def step():
        opt.zero_grad()
        vitc.cross_entropy(m(x), y).backward()
        opt.step()
    for _ in range(3):
        step()
    walls, ops, calls = [], [], 0
    for _ in range(reps):  # each step alone under the profiler: wall and op sum of the same step
        with vitc.profiler.profile() as p:
            step()
        ev = p.events()
        walls.append(p.wall_ns / 1e6)
        ops.append(sum(e.ns for e in ev) / 1e6)
        calls = len(ev)
    i = walls.index(statistics.median_low(walls))
    plain = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        plain.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(plain), walls[i], ops[i], calls


def torch_step_ms(batch, reps):
    from torch_vit import TorchViT
    torch.manual_seed(0)
    m = TorchViT(**SEED)
    opt = torch.optim.Adam(m.parameters(), lr=5e-4)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    for _ in range(3):
        step()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        ts.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ts)


def run_step(a):
    print(f"seed train step, {a.threads} threads: wall (unprofiled), profiled wall = ops + rest; "
          f"rest per op call")
    print(f"  {'batch':>5s} {'vitc ms':>8s} {'prof ms':>8s} {'ops ms':>8s} {'rest ms':>8s} {'rest %':>7s} "
          f"{'calls':>6s} {'us/call':>8s} {'torch ms':>9s}")
    for b in a.batch_list:
        plain, wall, ops, calls = vitc_step_parts(b, a.reps)
        time.sleep(0.3)
        t = torch_step_ms(b, a.reps)
        time.sleep(0.3)
        rest = wall - ops
        print(f"  {b:5d} {plain:8.2f} {wall:8.2f} {ops:8.2f} {rest:8.2f} {100 * rest / wall:6.1f}% {calls:6d} "
              f"{1e3 * rest / calls:8.2f} {t:9.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--batches", default="1,25,50,100")
    ap.add_argument("--parts", default="ops,step")
    a = ap.parse_args()
    a.batch_list = [int(b) for b in a.batches.split(",")]
    vitc.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    parts = a.parts.split(",")
    print(f"vitc {vitc.__file__}, torch {torch.__version__}")
    if "ops" in parts:
        run_ops(a)
    if "step" in parts:
        run_step(a)


if __name__ == "__main__":
    main()
