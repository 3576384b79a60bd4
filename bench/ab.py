"""A/B of whole train steps between two environments (or two checkouts), interleaved: two worker
processes stay alive and take turns running blocks of steps, so this VM's speed drifts (10-40 %
within an hour) hit both alike. Sequential runs of separate processes cannot resolve a 5 % change
here; this can.

    PYTHONPATH=. .venv/bin/python bench/ab.py "VITC_GEMM=blas" ""          # env A vs env B
    PYTHONPATH=. .venv/bin/python bench/ab.py "" "" --root-b /work/wt/other  # this tree vs another build
    PYTHONPATH=. .venv/bin/python bench/ab.py "" "OMP_WAIT_POLICY=ACTIVE" --threads 1 --model deit
    PYTHONPATH=. .venv/bin/python bench/ab.py "" "" --threads 1 --threads-b 2  # thread scaling, interleaved
    PYTHONPATH=. .venv/bin/python bench/ab.py "" "" --root-b DIR --model ffn-deit --block 5  # one op
    PYTHONPATH=. .venv/bin/python bench/ab.py "" "" --root-b DIR --batch 25          # a small-batch seed step

Each side is "NAME=VALUE NAME=VALUE ..." added to the environment ("" for none). Prints the median
step time of each side and the median of per-round ratios B/A (> 1: B slower). Run by hand,
never as a test.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OPS, vitc_op_step, vitc_train_step  # noqa: E402


def worker(model, threads, block, batch=None):
    """read a line, run `block` timed steps, answer their times as one JSON line"""
    import time

    import vitc
    vitc.set_num_threads(threads)
    step = vitc_op_step(model) if model in OPS else vitc_train_step(model, batch)
    for _ in range(3):
        step()
    print(json.dumps({"ready": vitc.__file__}), flush=True)
    for _ in sys.stdin:
        step()  # one untimed step after the other side ran: caches refilled
        ts = []
        for _ in range(block):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        print(json.dumps(ts), flush=True)


def spawn(env_spec, root, threads, a):
    env = dict(os.environ)
    for kv in env_spec.split():
        k, _, v = kv.partition("=")
        env[k] = v
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", root, "--model", a.model,
                          "--threads", str(threads), "--block", str(a.block), "-", "-"]
                         + (["--batch", str(a.batch)] if a.batch else []),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    return p, json.loads(p.stdout.readline())["ready"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("env_a")
    ap.add_argument("env_b")
    ap.add_argument("--root-a", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--root-b", default=None, help="checkout for side B (default: --root-a)")
    ap.add_argument("--model", choices=["seed", "deit", "lvvit", *OPS], default="seed",
                    help="a whole train step, or one fused op forward+backward at a step's shape")
    ap.add_argument("--batch", type=int, default=None, help="train step batch (default: the model's, seed 100)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threads-b", type=int, default=None, help="side B's thread count (default: --threads)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        # the venv's editable install would load /work/main's build whatever the path says: drop it
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, a.worker)
        return worker(a.model, a.threads, a.block, a.batch)
    sides = {}
    threads_b = a.threads_b or a.threads
    for name, env_spec, root, th in (("A", a.env_a, a.root_a, a.threads), ("B", a.env_b, a.root_b or a.root_a, threads_b)):
        sides[name] = spawn(env_spec, root, th, a)
        print(f"{name}: {env_spec or '(no change)'}, {th} thread(s) -> {sides[name][1]}", flush=True)
    ts = {"A": [], "B": []}
    ratios = []
    try:
        for r in range(a.rounds):
            got = {}
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                p = sides[name][0]
                p.stdin.write("go\n")
                p.stdin.flush()
                got[name] = json.loads(p.stdout.readline())
                ts[name] += got[name]
            ratios.append(statistics.median(got["B"]) / statistics.median(got["A"]))
    finally:
        for p, _ in sides.values():
            p.stdin.close()
            p.wait()
    med = {k: 1e3 * statistics.median(v) for k, v in ts.items()}
    th = f"{a.threads} thread(s)" if threads_b == a.threads else f"A {a.threads} / B {threads_b} threads"
    what = "op fwd+bwd" if a.model in OPS else f"step (batch {a.batch})" if a.batch else "step"
    print(f"{a.model} {what}, {th}, {a.rounds} rounds of {a.block}: A {med['A']:.1f} ms, "
          f"B {med['B']:.1f} ms; B/A per round: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
