"""Thread pools and thread scaling of the seed ViT train step, measured so a busy machine disturbs
it little: per-thread CPU time (from /proc/self/task) next to wall-clock.

    PYTHONPATH=. .venv/bin/python bench/threads.py                                  # this build
    PYTHONPATH=. .venv/bin/python bench/threads.py --builds openmp=.,pthread=/tmp/pth --rounds 3
    PYTHONPATH=. .venv/bin/python bench/threads.py --torch     # and PyTorch eager, same measures

--builds runs each build (a directory holding a built `vitc` package) in its own process,
alternating round by round. To make the pthread-OpenBLAS build next to the default one:
    VITC_BLAS=pthread python setup.py build_ext --build-lib /tmp/pth -q && cp -r vitc/*.py vitc/*/ /tmp/pth/vitc/
(or copy the package and relink _C against /usr/lib/x86_64-linux-gnu/openblas-pthread).

Per step it reports wall ms, total CPU ms (all threads: work plus any spinning) and the main
thread's CPU ms. On an idle machine wall >= main-thread CPU, so
    scaling bound = (1-thread CPU per step) / (2-thread main-thread CPU per step)
is what 1 -> 2 threads could give if the other core were free; total CPU above the 1-thread CPU
is time the pools spend waiting (OpenBLAS's pthread pool spins in sched_yield). Run by hand.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import SEED, vitc_train_step  # noqa: E402


def thread_cpu():
    """{tid: CPU seconds} of this process's threads"""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return out


def torch_step(threads):
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "models"))
    from torch_vit import TorchViT
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = TorchViT(**SEED)
    x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
    opt = torch.optim.Adam(m.parameters(), lr=5e-4)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return step, None


def vitc_step(threads):
    import vitc
    vitc.set_num_threads(threads)
    return vitc_train_step("seed"), vitc._C.alloc_stats


def measure(threads, steps, framework="vitc"):
    step, alloc_stats = (torch_step if framework == "torch" else vitc_step)(threads)
    for _ in range(3):
        step()
    main = os.getpid()  # the main thread's tid equals the pid
    c0, t0 = thread_cpu(), time.perf_counter()
    for _ in range(steps):
        step()
    wall, c1 = time.perf_counter() - t0, thread_cpu()
    total = sum(c1.values()) - sum(c0.get(k, 0.0) for k in c1)
    s = alloc_stats() if alloc_stats else {}
    return {"threads": threads, "wall_ms": 1e3 * wall / steps, "cpu_ms": 1e3 * total / steps,
            "main_cpu_ms": 1e3 * (c1[main] - c0[main]) / steps, "alloc_live": s.get("live"),
            "alloc_cached": s.get("cached")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builds", default=None, help="name=dir,name=dir (default: this interpreter's vitc)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--torch", action="store_true", help="also PyTorch eager (tests/models/torch_vit.py), own process")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--framework", default="vitc", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.child, a.steps, a.framework)))
        return
    builds = dict(b.split("=", 1) for b in a.builds.split(",")) if a.builds else {"this": None}
    if a.torch:
        builds["torch"] = None
    rows = {(b, th): [] for b in builds for th in (1, 2)}
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for r in range(a.rounds):
        for b, path in builds.items():
            for th in (1, 2):
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = os.path.abspath(path)
                fw = "torch" if b == "torch" and a.torch else "vitc"
                p = subprocess.run([sys.executable, __file__, "--child", str(th), "--steps", str(a.steps),
                                    "--framework", fw],
                                   capture_output=True, text=True, env=env, check=True)
                rows[(b, th)].append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"{'build':10s} thr {'wall ms':>9s} {'CPU ms':>9s} {'main CPU':>9s}   (medians of {a.rounds} runs × {a.steps} steps)")
    med = {}
    for (b, th), rs in rows.items():
        med[(b, th)] = {k: statistics.median(r[k] for r in rs) for k in ("wall_ms", "cpu_ms", "main_cpu_ms")}
        m = med[(b, th)]
        print(f"{b:10s} {th:3d} {m['wall_ms']:9.1f} {m['cpu_ms']:9.1f} {m['main_cpu_ms']:9.1f}")
    if a.torch:
        for b in builds:
            if b != "torch":
                print(f"{b} vs torch eager, 1-thread CPU per step: {med[('torch', 1)]['cpu_ms'] / med[(b, 1)]['cpu_ms']:.2f}x;"
                      f" 2-thread main-thread CPU: {med[('torch', 2)]['main_cpu_ms'] / med[(b, 2)]['main_cpu_ms']:.2f}x")
    for b in builds:
        one, two = med[(b, 1)], med[(b, 2)]
        print(f"{b}: 1->2 thread wall speed-up {one['wall_ms'] / two['wall_ms']:.2f}x; bound from CPU times "
              f"{one['cpu_ms'] / two['main_cpu_ms']:.2f}x; 2-thread CPU overhead {two['cpu_ms'] - one['cpu_ms']:+.1f} ms/step")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
