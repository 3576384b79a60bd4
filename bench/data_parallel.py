"""Data parallelism on one machine: 2 MPI ranks × 1 thread against 1 process × 2 threads, the same
global batch (seed step: 100, DeiT-Tiny step: 32), and the gradient allreduce's share of a step.
Also, on paper, the gradient bytes each registered model sends per step and the time a network needs.

    PYTHONPATH=. .venv/bin/python bench/data_parallel.py --model seed --steps 20     # both layouts, timed
    PYTHONPATH=. .venv/bin/python bench/data_parallel.py --model deit --steps 10
    PYTHONPATH=. .venv/bin/python bench/data_parallel.py --bytes                     # the table, no timing

Runs mpirun itself (as root it sets OMPI_ALLOW_RUN_AS_ROOT*). Run by hand on a quiet machine, never as a test.
The step is bench/common.py's vitc_train_step with vitc.distributed's gradient averaging before Adam's step.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BATCH, vitc_batch, vitc_model  # noqa: E402


def worker(model, steps, ranks):
    """Time ``steps`` train steps at the global batch split over ``ranks`` ranks; rank 0 prints a JSON line."""
    import vitc
    ctx = None
    if ranks > 1:
        from vitc.distributed import init
        ctx = init()
    rank = ctx.rank if ctx else 0
    m, opt = vitc_model(model)
    local = BATCH[model] // ranks
    x, y = vitc_batch(model, local, seed=rank)  # each rank its own slice of a global batch
    stepper = ctx.averaging(opt) if ctx else opt
    if ctx:
        ctx.broadcast_state(m)

    def step():
        opt.zero_grad(set_to_none=False)
        vitc.cross_entropy(m(x), y).backward()
        stepper.step()
    for _ in range(3):
        step()
    if ctx:
        ctx.barrier()
        ctx.allreduce_seconds, ctx.allreduce_calls = 0.0, 0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        out = {"model": model, "ranks": ranks, "threads": vitc.get_num_threads(), "global_batch": BATCH[model],
               "median_step_s": statistics.median(times), "steps": steps}
        if ctx:
            out["allreduce_s_per_step"] = ctx.allreduce_seconds / steps
        print(json.dumps(out), flush=True)


def run(model, steps):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    one = subprocess.run([sys.executable, __file__, "--worker", "--model", model, "--steps", str(steps),
                          "--ranks", "1"], env=dict(env, OMP_NUM_THREADS="2"), capture_output=True, text=True,
                         check=True)
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("mpirun not found: apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py")
    env.update(OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    two = subprocess.run([mpirun, "-np", "2", "--bind-to", "core", sys.executable, __file__, "--worker", "--model",
                          model, "--steps", str(steps), "--ranks", "2"], env=env, capture_output=True, text=True,
                         check=True)
    a, b = json.loads(one.stdout.strip().splitlines()[-1]), json.loads(two.stdout.strip().splitlines()[-1])
    print(f"{model}: 1 rank x 2 threads {a['median_step_s'] * 1e3:.1f} ms/step; 2 ranks x 1 thread "
          f"{b['median_step_s'] * 1e3:.1f} ms/step (of which allreduce {b['allreduce_s_per_step'] * 1e3:.2f} ms); "
          f"speed-up {a['median_step_s'] / b['median_step_s']:.2f}x")


def bytes_table():
    """Gradient bytes per step of every registered model (float32, one value per parameter) and the
    time a ring allreduce needs to move them: each rank sends and receives 2(N-1)/N of the bytes,
    i.e. about twice the gradient for large N (Patarasuk & Yuan, 2009)."""
    from vitc.models import create_model, list_models
    from vitc.models.vit import SCALING_SHAPES
    print("| model | parameters | gradient MB/step | ring allreduce at 10 Gb/s | at 100 Gb/s |")
    print("|---|---|---|---|---|")
    for name in list_models():
        n = _parameters(name, create_model, SCALING_SHAPES)
        mb = 4 * n / 1e6
        wire = 2 * 4 * n * 8  # bits each rank moves, large N
        print(f"| {name} | {n:,} | {mb:.2f} | {wire / 10e9 * 1e3:.2f} ms | {wire / 100e9 * 1e3:.3f} ms |")


def _parameters(name, create_model, scaling_shapes):
    """Parameter count; the big Scaling-ViT models (up to 1.8e9 parameters) are counted from 1- and 2-block
    copies (blocks are identical), never allocated whole."""
    if not name.startswith("vit_scaling_"):
        return create_model(name).num_parameters()
    depth = scaling_shapes[name.split("_")[2]][1]
    one, two = (create_model(name, depth=d).num_parameters() for d in (1, 2))
    return one + (depth - 1) * (two - one)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="seed", choices=sorted(BATCH))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--bytes", action="store_true", help="print the gradient-bytes table and exit")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.bytes:
        bytes_table()
    elif a.worker:
        worker(a.model, a.steps, a.ranks)
    else:
        run(a.model, a.steps)


if __name__ == "__main__":
    main()
