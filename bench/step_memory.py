"""A train step's own memory, vitc against PyTorch, with vitc's memory switches on and off (issue 26).

    PYTHONPATH=. .venv/bin/python bench/step_memory.py                 # seed and DeiT-Tiny, all settings
    PYTHONPATH=. .venv/bin/python bench/step_memory.py --cases deit --json out.json

Two measurements per case (seed ViT batch 100, DeiT-Tiny-shaped batch 32, as bench/suite.py):
  rss    a fresh process per framework and setting (bench/suite.py --memory: import, build the model,
         3 train steps at 2 threads) reports VmHWM minus its RSS right after import+build, the step's
         own memory; the ratio is against PyTorch eager's same number
  alloc  (vitc only) the allocator's deterministic byte counts in a fresh process: the step's peak of
         live bytes above those before it, the live bytes right after the forward, and the bytes the
         tape keeps for backward (vitc.profiler.saved_tensors), per op with --breakdown
Memory is not time: the numbers hold on a loaded machine (RSS can vary by a few MB with the kernel's
page handling; the alloc bytes are exact). The switches' time cost is measured with bench/ab.py or
bench/suite.py on a quiet machine, not here.

Settings: vitc's environment switches, read at every forward ("default" leaves them all unset):
  VITC_ATTN_RECOMPUTE=1  attention recomputes its softmax maps in backward (csrc/ops/attention/drivers.h);
                         unset: where T >= 2·head_dim (DeiT-Tiny yes, the seed ViT no); 0: never;
                         2: as 1, and qkv_attention also recomputes its attention output
  VITC_QKV_RECOMPUTE=1   qkv_attention recomputes its qkv projection and attention output in backward
  VITC_FFN_RECOMPUTE=1   linear_gelu_linear recomputes its pre-activation in backward (csrc/ops/ffn.c)
  VITC_LN_RECOMPUTE      unset or 1: an op that saves a LayerNorm's output keeps the LayerNorm's node
                         instead and the output is rebuilt before its backward (autograd/engine.c); 0: kept
The named settings turn their switches on and every other switch off, except "default" (all unset)
and "ln-kept" (all unset but VITC_LN_RECOMPUTE=0: the default before LayerNorm outputs were rebuilt).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

SWITCHES = ("VITC_ATTN_RECOMPUTE", "VITC_QKV_RECOMPUTE", "VITC_FFN_RECOMPUTE", "VITC_LN_RECOMPUTE")
SETTINGS = {  # name -> the switches it turns on (all unset in "default"; "keep" sets them all to 0)
    "default": None,
    "ln-kept": None,
    "keep": (),
    "ln": ("VITC_LN_RECOMPUTE",),
    "maps+out+ln": ("VITC_ATTN_RECOMPUTE=2", "VITC_LN_RECOMPUTE"),
    "maps": ("VITC_ATTN_RECOMPUTE",),
    "maps+out": ("VITC_ATTN_RECOMPUTE=2",),
    "qkv": ("VITC_QKV_RECOMPUTE",),
    "maps+qkv": ("VITC_ATTN_RECOMPUTE", "VITC_QKV_RECOMPUTE"),
    "ffn": ("VITC_FFN_RECOMPUTE",),
    "all": SWITCHES,
}
MB = 2 ** 20


def env_for(setting):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")
    on = dict(kv.partition("=")[::2] for kv in SETTINGS[setting] or ())
    for s in SWITCHES:
        if SETTINGS[setting] is None:
            env.pop(s, None)
        else:
            env[s] = (on[s] or "1") if s in on else "0"
    if setting == "ln-kept":
        env["VITC_LN_RECOMPUTE"] = "0"
    return env


def last_json(p):
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def rss_probe(framework, case, setting):
    """bench/suite.py's fresh-process memory probe: {base_rss_kb, maxrss_kb, ...}"""
    p = subprocess.run([sys.executable, os.path.join(HERE, "suite.py"), "--memory", framework, "--case", case],
                       capture_output=True, text=True, env=env_for(setting))
    return last_json(p)


def alloc_probe(case, breakdown):
    """in this (fresh) process: the allocator's bytes over the second of two train steps"""
    import vitc
    from common import vitc_batch, vitc_model
    vitc.set_num_threads(2)
    m, opt = vitc_model(case)
    x, y = vitc_batch(case)
    res = {}
    for step in range(2):  # the second step: the optimizer state exists, as in steady training
        opt.zero_grad()
        before = vitc.memory_stats()["live_bytes"]
        vitc.reset_peak_memory_stats()
        loss = vitc.cross_entropy(m(x), y)
        after_fwd = vitc.memory_stats()["live_bytes"]
        rows = vitc.profiler.saved_tensors(loss)
        loss.backward()
        opt.step()
        res = {"peak_mb": (vitc.memory_stats()["peak_bytes"] - before) / MB, "after_forward_mb": (after_fwd - before) / MB,
               "saved_mb": sum(r.bytes for r in rows) / MB}
        if breakdown:
            res["breakdown"] = [dict(r._asdict()) for r in rows]
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="seed,deit", help="comma list of seed, deit")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch's probe (ratios need it)")
    ap.add_argument("--breakdown", action="store_true", help="print the saved-bytes table per op")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--alloc-probe", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.alloc_probe:
        return alloc_probe(a.alloc_probe, a.breakdown)
    cases, settings = a.cases.split(","), a.settings.split(",")
    for c in cases:
        if c not in ("seed", "deit"):
            ap.error(f"--cases: unknown case {c!r}")
    for s in settings:
        if s not in SETTINGS:
            ap.error(f"--settings: unknown setting {s!r}; choose from {', '.join(SETTINGS)}")
    out = {}
    for case in cases:
        torch = None if a.no_torch else rss_probe("torch", case, "default")
        torch_mb = (torch["maxrss_kb"] - torch["base_rss_kb"]) / 1024 if torch and "error" not in torch else None
        out[case] = {"torch": torch, "torch_step_mb": torch_mb, "vitc": {}}
        print(f"{case}: PyTorch eager step memory {torch_mb if torch_mb is None else round(torch_mb, 1)} MB", flush=True)
        print(f"  {'setting':<10} {'step MB (RSS)':>14} {'/ torch':>8} {'alloc peak MB':>14} {'after fwd MB':>13} "
              f"{'saved MB':>9}", flush=True)
        for s in settings:
            r = rss_probe("vitc", case, s)
            p = subprocess.run([sys.executable, __file__, "--alloc-probe", case] + (["--breakdown"] if a.breakdown else []),
                               capture_output=True, text=True, env=env_for(s))
            al = last_json(p)
            step_mb = (r["maxrss_kb"] - r["base_rss_kb"]) / 1024 if "error" not in r else None
            out[case]["vitc"][s] = {"rss": r, "step_mb": step_mb, "alloc": al}
            ratio = f"{step_mb / torch_mb:.2f}x" if step_mb is not None and torch_mb else "-"
            fmt = lambda k: f"{al[k]:.1f}" if k in al else "error"
            print(f"  {s:<10} {step_mb if step_mb is None else round(step_mb, 1):>14} {ratio:>8} {fmt('peak_mb'):>14} "
                  f"{fmt('after_forward_mb'):>13} {fmt('saved_mb'):>9}", flush=True)
            if "error" in r or "error" in al:
                print("    error:", r.get("error") or al.get("error"), flush=True)
            if a.breakdown and "breakdown" in al:
                from vitc.profiler import SavedRow, saved_tensors_table
                print("    " + saved_tensors_table([SavedRow(**row) for row in al["breakdown"]]).replace("\n", "\n    "))
    if a.json:
        from vitc.io import write_text_atomic
        write_text_atomic(a.json, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
