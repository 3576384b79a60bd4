"""Every GEMM of the seed ViT, DeiT-Tiny and LV-ViT-Tiny-MNIST train steps: vitc's own kernels (csrc/kernels/gemm.c)
against OpenBLAS through the same vitc build and against torch.matmul.

    PYTHONPATH=. .venv/bin/python bench/gemm.py                 # 1 and 2 threads
    PYTHONPATH=. .venv/bin/python bench/gemm.py --threads 2 --reps 30

All four run in one process, interleaved: each repetition times vitc with every GEMM on its own
kernel (vitc._C._gemm_mode("own")), the same build with every GEMM on OpenBLAS
(_gemm_mode("blas")), its default dispatch (_gemm_mode("auto")) and torch.matmul, back to back,
so drifts in machine load hit all four alike; medians and the median of per-repetition ratios are
reported. Both frameworks share the process, so both run with OMP_WAIT_POLICY=PASSIVE
(set before either loads, as bench/ops.py). Shapes are (m, n, k) of
C = op(A)·op(B): 'x·Wᵀ' a linear forward, 'g·W' an input gradient, 'gᵀ·x' a weight gradient
(A transposed). 'vitc auto' is the default dispatch (own_gemm_wins and mirror_wins in gemm.c),
'auto takes' names its path ('blas-mirrored': OpenBLAS on Cᵀ = Bᵀ·A, transposed back; 'own-at512': the
AVX-512 weight-gradient kernel, kernels/gemm_at512.c, which 'vitc own' also takes for every Aᵀ·B on AVX-512).
GFLOP/s = 2mnk / time.
Run by hand, never as a test.
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# (label, m, n, k, form)
SHAPES = [
    ("seed qkv fwd", 1700, 1536, 64, "xWt"), ("seed proj fwd", 1700, 64, 512, "xWt"),
    ("seed fc1 fwd", 1700, 128, 64, "xWt"), ("seed fc2 fwd", 1700, 64, 128, "xWt"),
    ("seed proj dx", 1700, 512, 64, "gW"), ("seed qkv dx", 1700, 64, 1536, "gW"),
    ("seed fc1 dx", 1700, 64, 128, "gW"), ("seed fc2 dx", 1700, 128, 64, "gW"),
    ("seed qkv dW", 1536, 64, 1700, "gtx"), ("seed proj dW", 64, 512, 1700, "gtx"),
    ("seed fc1 dW", 128, 64, 1700, "gtx"), ("seed fc2 dW", 64, 128, 1700, "gtx"),
    ("deit qkv fwd", 6304, 576, 192, "xWt"), ("deit fc1 fwd", 6304, 768, 192, "xWt"),
    ("deit fc2 fwd", 6304, 192, 768, "xWt"), ("deit fc2 dx", 6304, 768, 192, "gW"),
    ("deit qkv dx", 6304, 192, 576, "gW"), ("deit fc1 dW", 768, 192, 6304, "gtx"),
    ("deit qkv dW", 576, 192, 6304, "gtx"), ("deit fc2 dW", 192, 768, 6304, "gtx"),
    ("lvvit qkv fwd", 6400, 192, 64, "xWt"), ("lvvit proj fwd", 6400, 64, 64, "xWt"),
    ("lvvit fc2 fwd", 6400, 64, 192, "xWt"), ("lvvit qkv dx", 6400, 64, 192, "gW"),
    ("lvvit fc1 dW", 192, 64, 6400, "gtx"), ("lvvit fc2 dW", 64, 192, 6400, "gtx"),
    ("lvvit-s fc1 fwd", 6400, 288, 96, "xWt"), ("lvvit-s fc2 fwd", 6400, 96, 288, "xWt"),
    ("lvvit-s proj fwd", 6400, 96, 96, "xWt"), ("lvvit-s fc1 dW", 288, 96, 6400, "gtx"),
    ("lvvit-s fc2 dW", 96, 288, 6400, "gtx"),
    ("sgemm 2048", 2048, 2048, 2048, "gW"),
]


def operands(lib, m, n, k, form, rng):
    import numpy as np
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if form == "xWt":   # A (m, k), B = Wᵀ with W (n, k)
        a, b = lib.from_numpy(r(m, k)), lib.from_numpy(r(n, k))
        return a, b.t() if hasattr(b, "t") else b.T
    if form == "gW":    # A (m, k), B (k, n)
        return lib.from_numpy(r(m, k)), lib.from_numpy(r(k, n))
    a = lib.from_numpy(r(k, m))  # gᵀ·x: A = gᵀ with g (k, m)
    return a.t(), lib.from_numpy(r(k, n))


def bench(threads, reps, only=None):
    import numpy as np
    import torch
    sys.path.insert(0, ROOT)
    import vitc
    torch.set_num_threads(threads)
    vitc.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for label, m, n, k, form in SHAPES:
        if only and not any(o in label for o in only.split(",")):
            continue
        va, vb = operands(vitc, m, n, k, form, rng)
        ta, tb = operands(torch, m, n, k, form, np.random.default_rng(0))
        runs = {"own": lambda: vitc.matmul(va, vb), "blas": lambda: vitc.matmul(va, vb),
                "auto": lambda: vitc.matmul(va, vb), "torch": lambda: torch.matmul(ta, tb)}
        ts = {key: [] for key in runs}
        for rep in range(2 + (reps if m * n * k < 2 ** 30 else max(3, reps // 5))):
            for key, fn in runs.items():
                vitc._C._gemm_mode(key if key in ("blas", "auto") else "own")
                t0 = time.perf_counter()
                fn()
                if rep >= 2:
                    ts[key].append(time.perf_counter() - t0)
        vitc._C._gemm_mode("auto")
        med = {key: statistics.median(v) for key, v in ts.items()}
        ratio = {key: statistics.median(x / y for x, y in zip(ts[key], ts["own"])) for key in ("blas", "auto", "torch")}
        rows.append(dict(label=label, form=form, m=m, n=n, k=k, **{f"{key}_s": v for key, v in med.items()},
                         blas_over_own=ratio["blas"], auto_over_own=ratio["auto"], torch_over_own=ratio["torch"],
                         auto=vitc._C._gemm_auto_path(form == "gtx", m, n, k)))
    return rows


def table(threads, rows):
    lines = [f"{threads} thread(s): median ms (GFLOP/s); ratios = median of per-repetition time ratios, > 1: own "
             "kernel faster", "", "| GEMM | m×n×k | vitc own | vitc on OpenBLAS | vitc auto | torch | OpenBLAS / own "
             "| torch / own | auto takes | OpenBLAS / auto |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gf = lambda s: 2 * r["m"] * r["n"] * r["k"] / s * 1e-9  # noqa: E731
        lines.append(f"| {r['label']} ({r['form']}) | {r['m']}×{r['n']}×{r['k']} | {1e3 * r['own_s']:.3f} "
                     f"({gf(r['own_s']):.0f}) | {1e3 * r['blas_s']:.3f} ({gf(r['blas_s']):.0f}) | "
                     f"{1e3 * r['auto_s']:.3f} ({gf(r['auto_s']):.0f}) | "
                     f"{1e3 * r['torch_s']:.3f} ({gf(r['torch_s']):.0f}) | {r['blas_over_own']:.2f} | "
                     f"{r['torch_over_own']:.2f} | {r['auto']} | {r['blas_over_own'] / r['auto_over_own']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", default=None, help="comma-separated parts of labels, e.g. 'seed,sgemm'")
    ap.add_argument("--out", default=None, help="write gemm.md and gemm.json into this directory")
    a = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # vitc's default; see bench/vit_step.py
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg(),
           "command": "python bench/gemm.py " + " ".join(sys.argv[1:]), "runs": {}}
    md = [f"Command: `{res['command']}` ({res['date']})", ""]
    for t in [int(x) for x in a.threads.split(",")]:
        rows = bench(t, a.reps, a.only)
        res["runs"][t] = rows
        md.append(table(t, rows))
        print(md[-1], flush=True)
    res["load_after"] = os.getloadavg()
    md.append(f"load average before {res['load_before']}, after {res['load_after']}")
    if a.out:
        sys.path.insert(0, ROOT)
        from vitc.io import atomic_write

        def writer(text):
            def w(tmp):
                with open(tmp, "w") as f:
                    f.write(text)
            return w
        atomic_write(os.path.join(a.out, "gemm.json"), writer(json.dumps(res, indent=1)))
        atomic_write(os.path.join(a.out, "gemm.md"), writer("\n".join(md) + "\n"))


if __name__ == "__main__":
    main()
