"""The performance suite of issue 8: vitc against PyTorch eager and torch.compile, each framework in
its own worker process, interleaved in one run; markdown + JSON + PNG curves in bench/results/.

    PYTHONPATH=. .venv/bin/python bench/suite.py                  # everything (~15 min on 2 idle cores)
    PYTHONPATH=. .venv/bin/python bench/suite.py --quick          # fewer reps, no curves, no DeiT at 1 thread
    PYTHONPATH=. .venv/bin/python bench/suite.py --only seed_train --frameworks vitc,torch

What it measures (each at 1 and 2 threads unless noted):
  seed_train   seed 004 ViT (28×28, patch 7, dim 64, depth 6, 8 heads × 64, MLP 128), batch 100:
               zero_grad, forward, cross-entropy, backward, Adam step
  seed_eval    the same model's forward at batch 5000 under no_grad / eval mode
  deit_train   a DeiT-Tiny-shaped step (224×224, patch 16, dim 192, depth 12, 3 heads, MLP 768,
               1000 classes), batch 32, AdamW; vitc's vit_tiny_patch16_224 vs timm's deit_tiny_patch16_224
  lvvit_train  issue 21's LV-ViT-Tiny-MNIST step (conv stem, aux head, MixToken with fixed draws, token
               labeling loss with dense labels, AdamW), batch 128: bench/common.py's vitc step against the
               PyTorch reimplementation of the TokenLabeling definitions (tests/models/torch_lvvit.py), 2
               threads only; the markdown adds its speed-up over the seed step's (issue 21's ratio)
  seed_bn_*    seed 004's ViTBN and ViTBNFFN (issue 5; same sizes), train and eval likewise: vitc's
               vit_bn_seed_mnist / vit_bnffn_seed_mnist against the experiment's PyTorch twins
               (vitc/experiments/_torch_vit_bn.py, loaded by path so the torch worker never loads vitc)
  sgemm        a 2048³ sgemm in each framework's own BLAS, the machine's peak for the GFLOP/s column
  memory       peak RSS (VmHWM: ru_maxrss of a process started alone) of a fresh process per framework
               that imports, builds the model and runs 3 train steps; also the growth over the RSS
               right after import+build (the step's own memory)
  curves       (2 threads, vitc and torch eager) step time against batch 25…800 and depth 2…32, as PNG

Workers are persistent processes fed commands on stdin, so torch.compile compiles once per shape;
every case runs in blocks (vitc block, torch block, compile block, repeat) so load drifts hit all
alike. Each worker keeps its framework's default threading settings (vitc: OMP_WAIT_POLICY=PASSIVE with GOMP_SPINCOUNT=20000;
torch: its own). GFLOP/s are counted from the model shape (forward_flops below: 2·m·n·k per GEMM
and per attention product; a train step counts 3× the forward). Run by hand, never as a test.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

sys.path.insert(0, HERE)
from common import DEIT, SEED  # noqa: E402  (bench/'s one copy of the two model shapes)

# lvvit_tiny_mnist's shape (vitc/models/lvvit.py), for the torch twin and the FLOP count
LVVIT = dict(image_size=28, patch_size=4, channels=1, num_classes=10, dim=64, depth=4, heads=4, mlp_dim=192,
             skip_lam=1.0, stem_width=16)


def forward_flops(cfg, b):
    """2·(multiply-adds) of every GEMM and attention product in one forward pass at batch b."""
    n = (cfg["image_size"] // cfg["patch_size"]) ** 2
    t, d, inner, f = n + 1, cfg["dim"], cfg["heads"] * cfg["dim_head"], cfg["mlp_dim"]
    pd = cfg["channels"] * cfg["patch_size"] ** 2
    per_block = 2 * b * t * (d * 3 * inner + inner * d + 2 * d * f) + 2 * 2 * b * cfg["heads"] * t * t * cfg["dim_head"]
    return 2 * b * n * pd * d + cfg["depth"] * per_block + 2 * b * d * cfg["num_classes"]


def lvvit_forward_flops(cfg, b):
    """forward_flops for LV-ViT: the 4-conv stem (7×7/2, two 3×3, the P/2 projection) instead of the
    linear patch embedding, and the aux head over every patch token besides the class head"""
    h, w, c, d, k = cfg["image_size"] // 2, cfg["stem_width"], cfg["channels"], cfg["dim"], cfg["num_classes"]
    n = (cfg["image_size"] // cfg["patch_size"]) ** 2
    half = cfg["patch_size"] // 2
    stem = 2 * b * h * h * w * (c * 49 + 2 * w * 9) + 2 * b * n * d * w * half * half
    blocks = forward_flops(dict(cfg, dim_head=d // cfg["heads"], patch_size=cfg["patch_size"]), b)
    blocks -= 2 * b * n * cfg["channels"] * cfg["patch_size"] ** 2 * d  # forward_flops' linear embedding
    return stem + blocks + 2 * b * n * d * k


# ---- worker side: builds models in one framework, runs steps on command ------------------------

def load_by_path(path):
    """import one file as a module without importing its package (the torch worker never loads vitc)"""
    import importlib.util
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rss_kb(field="VmRSS"):
    """this process's resident set (VmRSS) or its peak (VmHWM), kB"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class VitcRunner:
    def __init__(self, threads):
        import vitc
        self.v = vitc
        vitc.set_num_threads(threads)

    def sgemm(self, n):
        a, b = self.v.randn(n, n), self.v.randn(n, n)
        return lambda: self.v.matmul(a, b)

    def build(self, model, mode, batch, cfg):
        import numpy as np
        v = self.v
        v.manual_seed(0)
        rng = np.random.default_rng(0)
        if model == "lvvit":
            from common import vitc_lvvit_step
            m = v.models.create_model("lvvit_tiny_mnist", num_classes=cfg["num_classes"])
            blk = m.transformer.layers[0]
            got = dict(image_size=m.image_size[0], patch_size=m.patch_size[0], channels=m.channels,
                       dim=m.pos_embedding.shape[-1], depth=len(m.transformer.layers), heads=blk.attn.heads,
                       mlp_dim=blk.ff.net[0].weight.shape[0], skip_lam=blk.skip_lam,
                       stem_width=m.to_patch_embedding.conv1.out_channels)
            if any(got[k] != cfg[k] for k in got):  # the torch twin is built from cfg
                raise ValueError(f"lvvit_tiny_mnist is {got}, the suite's LVVIT {cfg}")
            return vitc_lvvit_step(batch)
        if model == "deit":
            m = v.models.create_model("vit_tiny_patch16_224")
            opt_cls = v.optim.AdamW
        elif "registry" in cfg:  # a seed-004 BN model, by its registry name
            m = v.models.create_model(cfg["registry"])
            opt_cls = v.optim.Adam
        else:
            m = v.models.ViT(**cfg)
            opt_cls = v.optim.Adam
        x = v.from_numpy(rng.uniform(0, 1, (batch, cfg["channels"], cfg["image_size"], cfg["image_size"]))
                         .astype(np.float32))
        y = v.from_numpy(rng.integers(0, cfg["num_classes"], batch).astype(np.int64))
        if mode == "eval":
            m.eval()

            def run():
                with v.no_grad():
                    m(x)
            return run
        opt = opt_cls(m.parameters(), lr=5e-4)

        def step():
            opt.zero_grad()
            v.cross_entropy(m(x), y).backward()
            opt.step()
        return step


class TorchRunner:
    def __init__(self, threads, compiled=False):
        import torch
        self.torch, self.compiled = torch, compiled
        torch.set_num_threads(threads)

    def lvvit_step(self, batch, cfg):
        """bench/lvvit_step.py's PyTorch step (random weights: the time does not depend on them)"""
        torch = self.torch
        tl = load_by_path(os.path.join(ROOT, "tests", "models", "torch_lvvit.py"))
        m = tl.LVViT(cfg["image_size"], cfg["patch_size"], cfg["channels"], cfg["num_classes"], cfg["dim"],
                     cfg["depth"], cfg["heads"], cfg["mlp_dim"], cfg["skip_lam"], cfg["stem_width"])
        m.train()
        fwd = torch.compile(m) if self.compiled else m
        grid = cfg["image_size"] // cfg["patch_size"]
        x = torch.randn(batch, cfg["channels"], cfg["image_size"], cfg["image_size"])
        y = torch.distributions.Dirichlet(torch.ones(cfg["num_classes"])).sample((batch,))
        yt = torch.distributions.Dirichlet(torch.ones(cfg["num_classes"])).sample((batch, grid * grid))
        target = torch.cat([y[:, None], y[:, None], yt], 1)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        draw = (0.6, grid // 2, grid // 2)

        def step():
            opt.zero_grad()
            tl.token_label_ce(fwd(x, draw=draw), target, dense_weight=0.5).backward()
            opt.step()
        return step

    def sgemm(self, n):
        a, b = self.torch.randn(n, n), self.torch.randn(n, n)
        return lambda: a @ b

    def build(self, model, mode, batch, cfg):
        torch = self.torch
        torch.manual_seed(0)
        if model == "lvvit":
            return self.lvvit_step(batch, cfg)
        if model == "deit":
            import timm
            m = timm.create_model("deit_tiny_patch16_224", pretrained=False)
            opt_cls = torch.optim.AdamW
        elif "registry" in cfg:
            family = load_by_path(os.path.join(ROOT, "vitc", "experiments", "_torch_vit_bn.py")).TorchViTFamily
            m = family(**{k: cfg[k] for k in BN_SIZES}, **cfg["torch_options"])
            opt_cls = torch.optim.Adam
        else:
            m = load_by_path(os.path.join(ROOT, "tests", "models", "torch_vit.py")).TorchViT(**cfg)
            opt_cls = torch.optim.Adam
        x = torch.rand(batch, cfg["channels"], cfg["image_size"], cfg["image_size"])
        y = torch.randint(0, cfg["num_classes"], (batch,))
        fwd = torch.compile(m) if self.compiled else m
        if mode == "eval":
            m.eval()

            def run():
                with torch.no_grad():
                    fwd(x)
            return run
        opt = opt_cls(m.parameters(), lr=5e-4)

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(fwd(x), y).backward()
            opt.step()
        return step


def worker(framework, threads):
    """Read one JSON command per line, answer one JSON line: {'times': [...], ...} or {'error': ...}."""
    if framework == "vitc":
        runner = VitcRunner(threads)
    else:
        runner = TorchRunner(threads, compiled=framework == "torch_compile")
    cache = {}
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the protocol
    out.write(json.dumps({"ready": framework}) + "\n")  # imported: see Worker.wait_ready
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            key = json.dumps({k: cmd[k] for k in ("case", "mode", "batch", "cfg")}, sort_keys=True)
            if key not in cache:
                t0 = time.perf_counter()
                fn = runner.sgemm(cmd["batch"]) if cmd["case"] == "sgemm" else \
                    runner.build(cmd["case"], cmd["mode"], cmd["batch"], cmd["cfg"])
                fn()  # compiles (torch.compile), fills caches
                cache.clear()  # one model alive at a time, so memory stays comparable
                cache[key] = fn
                build_s = time.perf_counter() - t0
            else:
                build_s = 0.0
            fn = cache[key]
            for _ in range(cmd.get("warmup", 1)):
                fn()
            times = []
            for _ in range(cmd["reps"]):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            ans = {"times": times, "build_s": build_s}
        except Exception as e:  # reported in the results, e.g. torch.compile failing on this machine
            ans = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]}
        out.write(json.dumps(ans) + "\n")
        out.flush()


def memory_probe(framework, case, steps=3):
    """Fresh process: import, build, run `steps` train steps; print RSS after build and ru_maxrss."""
    threads = 2
    runner = VitcRunner(threads) if framework == "vitc" else TorchRunner(threads, framework == "torch_compile")
    cfg = DEIT if case == "deit" else SEED
    fn = runner.build(case, "train", 32 if case == "deit" else 100, cfg)
    base = rss_kb()
    for _ in range(steps):
        fn()
    # ru_maxrss would be wrong here: Linux carries the parent's peak RSS across fork+exec into the
    # child's ru_maxrss (the orchestrator holds torch, ~700 MB), so report the peak of this
    # process's own address space, VmHWM, which is what ru_maxrss means for a process started alone
    print(json.dumps({"base_rss_kb": base, "maxrss_kb": rss_kb("VmHWM"),
                      "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


# ---- orchestrator -----------------------------------------------------------------------------

# case name -> the seed-004 experiment's model name (vitc/experiments/vit_batchnorm/config.py MODELS)
BN_CASES = {"seed_bnffn": "ViTBNFFN", "seed_bn": "ViTBN"}
BN_SIZES = ("image_size", "patch_size", "num_classes", "channels", "dim", "depth", "heads", "dim_head", "mlp_dim",
            "pool")


def model_cfgs():
    """case name -> the cfg its workers build from (JSON: it travels in the command)"""
    from vitc.experiments.vit_batchnorm import MODELS
    cfgs = {"seed": SEED}
    for case, name in BN_CASES.items():
        registry, _, torch_options = MODELS[name]
        cfgs[case] = dict({k: SEED[k] for k in BN_SIZES}, registry=registry, torch_options=torch_options)
    return cfgs


class Worker:
    """One framework's worker process. Workers start together; wait_ready() returns once the
    process has imported its framework. Timing before that measures the other worker's import:
    the batch curve used to start timing at once, and its first point (batch 25) ran while the
    torch worker was still importing torch on the same 2 cores (vitc's first reps 76 and 120 ms
    against 23 ms once both were idle; the issue's 67.9 ms at batch 25)."""

    def __init__(self, framework, threads):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env["OMP_NUM_THREADS"] = str(threads)
        self.framework = framework
        self.p = subprocess.Popen([sys.executable, __file__, "--worker", framework, "--threads", str(threads)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = False

    def wait_ready(self):
        if not self.ready:
            line = self.p.stdout.readline()
            if not line or "ready" not in json.loads(line):
                raise RuntimeError(f"{self.framework} worker did not start (exit {self.p.poll()}): {line!r}")
            self.ready = True
        return self

    def run(self, **cmd):
        self.wait_ready()
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            return {"error": f"{self.framework} worker died (exit {self.p.poll()})"}
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def summarize(times):
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_ms": 1e3 * statistics.median(times), "q1_ms": 1e3 * q[0], "q3_ms": 1e3 * q[2],
            "min_ms": 1e3 * min(times), "n": len(times)}


def interleaved(workers, rounds, block, **cmd):
    """rounds × (block reps in each worker in turn) -> {framework: summary or error}"""
    acc = {w.framework: [] for w in workers}
    errors = {}
    for _ in range(rounds):
        for w in workers:
            if w.framework in errors:
                continue
            r = w.run(reps=block, **cmd)
            if "error" in r:
                errors[w.framework] = r["error"]
            else:
                acc[w.framework] += r["times"]
    out = {f: summarize(t) for f, t in acc.items() if t}
    out.update({f: {"error": e} for f, e in errors.items()})
    return out


def run_cases(a, models, res, save):
    """fill res["cases"] and res["sgemm"], calling save() after each case (a long run that is cut
    short still leaves its finished rows on disk)"""
    res.update({"cases": [], "sgemm": {}})
    for th in a.thread_list:
        workers = [Worker(f, th) for f in a.framework_list]
        try:
            for w in workers:
                w.wait_ready()
            print(f"-- {th} thread(s)", flush=True)
            sg = interleaved(workers, a.rounds, 2, case="sgemm", mode="-", batch=2048, cfg=None)
            for f, r in sg.items():
                if "median_ms" in r:
                    r["gflops"] = 2 * 2048 ** 3 / (r["median_ms"] / 1e3) / 1e9
            res["sgemm"][th] = sg
            print("   sgemm 2048³:", {f: round(r.get("gflops", 0), 1) for f, r in sg.items()}, flush=True)
            cases = []
            for m, cfg in models.items():
                cases += [(m, "train", 100, cfg), (m, "eval", 5000, cfg)]
            if th == 2 or not a.quick:
                cases.append(("deit", "train", 32, DEIT))
            if th == 2:
                cases.append(("lvvit", "train", 128, LVVIT))
            for case, mode, batch, cfg in cases:
                if a.only and f"{case}_{mode}" not in a.only.split(","):
                    continue
                eval_like = mode == "eval" or case == "deit"
                rounds, block = (max(2, a.rounds // 2), 1) if eval_like else (a.rounds, a.block)
                r = interleaved(workers, rounds, block, case=case, mode=mode, batch=batch, cfg=cfg)
                flops = (lvvit_forward_flops if case == "lvvit" else forward_flops)(cfg, batch) * (3 if mode == "train" else 1)
                peak = max((x.get("gflops", 0) for x in sg.values()), default=0)
                for f, x in r.items():
                    if "median_ms" in x:
                        x["gflops"] = flops / (x["median_ms"] / 1e3) / 1e9
                        x["frac_peak"] = x["gflops"] / peak if peak else None
                row = {"case": f"{case}_{mode}", "threads": th, "batch": batch, "gflop": flops / 1e9, "results": r,
                       "load_avg": round(os.getloadavg()[0], 2)}
                res["cases"].append(row)
                print("  ", row["case"], {f: round(x.get("median_ms", float("nan")), 1) if "median_ms" in x
                                          else x["error"][:80] for f, x in r.items()}, flush=True)
                save()
        finally:
            for w in workers:
                w.close()


def run_curves(a):
    """step time vs batch and vs depth (--curve-threads threads, vitc and torch eager)"""
    workers = [Worker(f, a.curve_threads) for f in ("vitc", "torch")]
    curves = {"batch": {}, "depth": {}, "threads": a.curve_threads}
    try:
        for w in workers:  # both imported before the first timed step
            w.wait_ready()
        for b in (25, 50, 100, 200, 400, 800):
            curves["batch"][b] = interleaved(workers, 2, 2, case="seed", mode="train", batch=b, cfg=SEED)
            print("   batch", b, {f: round(x.get("median_ms", 0), 1) for f, x in curves["batch"][b].items()}, flush=True)
        for d in (2, 4, 8, 16, 32):
            cfg = dict(SEED, depth=d)
            curves["depth"][d] = interleaved(workers, 2, 2, case="seed", mode="train", batch=100, cfg=cfg)
            print("   depth", d, {f: round(x.get("median_ms", 0), 1) for f, x in curves["depth"][d].items()}, flush=True)
    finally:
        for w in workers:
            w.close()
    return curves


def plot_curves(curves, path):
    from vitc.experiments.common import pyplot, value_ticks
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (kind, label) in zip(axes, (("batch", "batch size (depth 6)"), ("depth", "depth (batch 100)"))):
        xs = sorted((k for k in curves[kind]), key=int)
        for f in ("vitc", "torch"):
            ys = [curves[kind][x][f]["median_ms"] if "median_ms" in curves[kind][x].get(f, {}) else float("nan")
                  for x in xs]
            ax.plot([int(x) for x in xs], ys, "o-", label=f)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        value_ticks(ax.xaxis, [int(x) for x in xs])  # the measured sizes (25 ... 800), not powers of two
        ax.set_xlabel(label)
        ax.set_ylabel("train step, ms (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", framealpha=0.8)
    fig.suptitle(f"seed ViT train step (Adam), {curves.get('threads', 2)} thread(s); each point the median "
                 "of 4 steps (2 rounds of 2) per framework, interleaved")
    fig.tight_layout()
    from vitc.io import atomic_write
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def memory(a, models):
    out = {}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")
    for case in ["seed", "deit"]:
        for f in a.framework_list:
            p = subprocess.run([sys.executable, __file__, "--memory", f, "--case", case], capture_output=True,
                               text=True, env=env)
            try:
                out[f"{case}/{f}"] = json.loads(p.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                out[f"{case}/{f}"] = {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:300]}
            print("   memory", case, f, out[f"{case}/{f}"], flush=True)
    return out


def fmt(x, key="median_ms", nd=1):
    return f"{x[key]:.{nd}f}" if key in x and x[key] is not None else ("error" if "error" in x else "-")


def markdown(res, cmdline):
    lines = [f"# vitc vs PyTorch: issue-8 suite", "", f"Command: `{cmdline}`  ", f"Date: {res['date']}; load average "
             f"before/after {res['load_before']} / {res['load_after']} on {os.cpu_count()} cores; torch "
             f"{res.get('torch', '?')}. Medians of interleaved blocks, each framework in its own process.", ""]
    fws = res["frameworks"]
    lines += ["| case | threads | load avg | " + " | ".join(f"{f} ms" for f in fws) + " | " +
              " | ".join(f"torch eager / {f}" for f in fws if f != "torch") +
              (" | torch_compile / vitc" if "torch_compile" in fws and "vitc" in fws else "") +
              " | vitc GFLOP/s (% of sgemm peak) |",
              "|" + "---|" * (4 + len(fws) + len(fws) - 1 + ("torch_compile" in fws and "vitc" in fws))]
    for row in res["cases"]:
        r = row["results"]
        ratios = []
        for f in fws:
            if f == "torch":
                continue
            ok = "median_ms" in r.get(f, {}) and "median_ms" in r.get("torch", {})
            ratios.append(f"{r['torch']['median_ms'] / r[f]['median_ms']:.2f}×" if ok else "-")
        if "torch_compile" in fws and "vitc" in fws:
            ok = "median_ms" in r.get("torch_compile", {}) and "median_ms" in r.get("vitc", {})
            ratios.append(f"{r['torch_compile']['median_ms'] / r['vitc']['median_ms']:.2f}×" if ok else "-")
        v = r.get("vitc", {})
        gf = f"{v['gflops']:.0f} ({100 * v['frac_peak']:.0f} %)" if v.get("frac_peak") else "-"
        lines.append(f"| {row['case']} (batch {row['batch']}) | {row['threads']} | {row.get('load_avg', '-')} | " +
                     " | ".join(fmt(r.get(f, {})) for f in fws) + " | " + " | ".join(ratios) + f" | {gf} |")
    lines += ["", "The % of peak compares with a 2048³ sgemm timed minutes earlier in the same run; on a loaded "
              "machine the two saw different loads (over 100 % is possible then).", "",
              "sgemm 2048³ GFLOP/s (each framework's BLAS): " + "; ".join(
        f"{th} thr: " + ", ".join(f"{f} {fmt(x, 'gflops', 0)}" for f, x in sg.items()) for th, sg in res["sgemm"].items())]
    for row in res["cases"]:
        errs = {f: x["error"] for f, x in row["results"].items() if "error" in x}
        if errs:
            lines.append(f"- {row['case']} {row['threads']} thr errors: {errs}")
    th = {}
    for row in res["cases"]:
        if row["case"] == "seed_train" and "median_ms" in row["results"].get("vitc", {}):
            th[row["threads"]] = row["results"]["vitc"]["median_ms"]
    if 1 in th and 2 in th:
        lines.append(f"- vitc seed step 1 → 2 threads: {th[1] / th[2]:.2f}×")
    speedup = {}
    for row in res["cases"]:
        r = row["results"]
        if row["threads"] == 2 and "median_ms" in r.get("vitc", {}) and "median_ms" in r.get("torch", {}):
            speedup[row["case"]] = r["torch"]["median_ms"] / r["vitc"]["median_ms"]
    if "lvvit_train" in speedup and "seed_train" in speedup:
        lines.append(f"- issue 21: LV-ViT's speed-up over PyTorch eager / the seed step's, 2 threads: "
                     f"{speedup['lvvit_train'] / speedup['seed_train']:.3f} (the two cases ran minutes apart; "
                     "bench/lvvit_step.py --with-seed interleaves all four steps)")
    if res.get("memory"):
        lines += ["", "| peak memory (VmHWM, 3 train steps, own process, 2 threads) | MB | MB above RSS after import+build |",
                  "|---|---|---|"]
        for k, x in res["memory"].items():
            if "maxrss_kb" in x:
                lines.append(f"| {k} | {x['maxrss_kb'] / 1024:.0f} | {(x['maxrss_kb'] - x['base_rss_kb']) / 1024:.0f} |")
            else:
                lines.append(f"| {k} | error: {x['error']} | |")
    if res.get("curves"):
        lines += ["", f"Step time vs batch and depth ({res['curves'].get('threads', 2)} thread(s)): `curves.png`.", "",
                  "| batch | vitc ms | torch ms | vitc ms/sample |", "|---|---|---|---|"]
        for b, r in sorted(res["curves"]["batch"].items(), key=lambda kv: int(kv[0])):
            v = r.get("vitc", {})
            lines.append(f"| {b} | {fmt(v)} | {fmt(r.get('torch', {}))} | "
                         f"{v['median_ms'] / int(b):.3f} |" if "median_ms" in v else f"| {b} | - | - | - |")
        lines += ["", "| depth | vitc ms | torch ms |", "|---|---|---|"]
        for d, r in sorted(res["curves"]["depth"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {d} | {fmt(r.get('vitc', {}))} | {fmt(r.get('torch', {}))} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--frameworks", default="vitc,torch,torch_compile")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds per case")
    ap.add_argument("--block", type=int, default=5, help="train steps per framework per round")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 3, no curves, DeiT at 2 threads only")
    ap.add_argument("--only", default=None, help="comma-separated cases, e.g. seed_train,deit_train")
    ap.add_argument("--no-curves", action="store_true")
    ap.add_argument("--parts", default="cases,memory,curves", help="which parts to run")
    ap.add_argument("--curve-threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default=RESULTS, help="directory for suite.md, suite.json, curves.png")
    ap.add_argument("--render", default=None, help="only re-write DIR/suite.md from DIR/suite.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--case", default="seed", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.render:  # re-write suite.md from a directory's suite.json
        with open(os.path.join(a.render, "suite.json")) as f:
            res = json.load(f)
        sys.path.insert(0, ROOT)
        from vitc.io import atomic_write

        def dump_md(tmp):
            with open(tmp, "w") as f:
                f.write(markdown(res, res.get("command", "python bench/suite.py")))
        return atomic_write(os.path.join(a.render, "suite.md"), dump_md)
    if a.worker:
        return worker(a.worker, int(a.threads))
    if a.memory:
        return memory_probe(a.memory, a.case)
    if a.quick:
        a.rounds, a.block, a.no_curves = 2, 3, True
    a.thread_list = [int(t) for t in a.threads.split(",")]
    a.framework_list = a.frameworks.split(",")
    sys.path.insert(0, ROOT)
    models = model_cfgs()
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "frameworks": a.framework_list,
           "load_before": [round(x, 2) for x in os.getloadavg()], "models": list(models)}
    try:
        import torch
        res["torch"] = torch.__version__
    except ImportError:
        pass
    cmdline = "python bench/suite.py " + " ".join(sys.argv[1:])
    res["command"] = cmdline

    def save():
        from vitc.io import atomic_write
        res["load_after"] = [round(x, 2) for x in os.getloadavg()]

        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump(res, f, indent=1)

        def dump_md(tmp):
            with open(tmp, "w") as f:
                f.write(markdown(res, cmdline))
        atomic_write(os.path.join(a.out, "suite.json"), dump)
        atomic_write(os.path.join(a.out, "suite.md"), dump_md)

    parts = a.parts.split(",")
    if "cases" in parts:
        run_cases(a, models, res, save)
    else:
        res.update({"cases": [], "sgemm": {}})
    if not a.no_memory and not a.only and "memory" in parts:
        res["memory"] = memory(a, models)
        save()
    if not a.no_curves and not a.only and "curves" in parts:
        res["curves"] = run_curves(a)
        plot_curves(res["curves"], os.path.join(a.out, "curves.png"))
    save()
    print(markdown(res, cmdline))

if __name__ == "__main__":
    main()
