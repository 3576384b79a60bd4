"""This machine's per-op throughput, measured once and cached.

A short calibration times vitc's own ops forward + backward (the fastest of a few repeats, since
other processes may share the cores) at a grid of widths: Linear, the fused attention op with its
projections (qkv_attention) and the fused MLP (linear_gelu_linear) per FLOP, LayerNorm and the
elementwise add per element, the fixed cost of one autograd op, and each optimizer's step per
parameter. The fused ops are timed themselves because their rate is far from a bare GEMM's: a GEMM
on operands that stay in cache measured 2-3x faster per FLOP than the same FLOPs inside a
training step. The result is cached as JSON in the user's cache directory
(``VITC_CACHE_DIR``, else ``$XDG_CACHE_HOME/vitc``, else ``~/.cache/vitc``), keyed by the CPU model,
its flags, the thread count and the vitc version: a different machine, thread count or vitc
recalibrates. The file is written with vitc.io.write_text_atomic.
"""
import hashlib
import json
import os
import time

import numpy as np

import vitc

__all__ = ["cache_dir", "cache_path", "machine_key", "calibrate", "probe_seconds", "load_calibration", "CALIBRATION_WIDTHS"]

FORMAT = 2
CALIBRATION_WIDTHS = (32, 64, 128, 256, 512)
_CACHE_FILE = "plan_calibration.json"


def cache_dir():
    d = os.environ.get("VITC_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vitc")


def cache_path():
    return os.path.join(cache_dir(), _CACHE_FILE)


def _cpu():
    model, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model, flags


def machine_key(threads=None):
    """(key, description): what a calibration is valid for."""
    threads = vitc.get_num_threads() if threads is None else int(threads)
    model, flags = _cpu()
    desc = dict(cpu=model, flags_sha1=hashlib.sha1(flags.encode()).hexdigest()[:12], threads=threads,
                vitc=vitc.__version__, format=FORMAT)
    key = hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
    return key, desc


def _best(fn, repeats):
    fn()  # warm: caches, the allocator, packed panels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _fwd_bwd(make_out, inputs):
    def run():
        for t in inputs:
            t.grad = None
        make_out().sum().backward()
    return run


def _rand(*shape, grad=True):
    t = vitc.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 0.1)
    return t.requires_grad_(grad)


def _rows(width):
    """Rows for a calibration op at this width: enough that activations leave L2 as a step's do,
    few enough that the whole calibration stays within seconds."""
    return max(520, (1 << 20) // width // 65 * 65)


def _measure(repeats, widths=CALIBRATION_WIDTHS):
    """Seconds per FLOP or per element of vitc's ops on this machine at the current thread count,
    timed on the fused ops a ViT block runs (qkv_attention, linear_gelu_linear) at a grid of widths,
    65 tokens an image."""
    r = {}
    T = 65
    linear, attn, ffn = {}, {}, {}
    for w in widths:
        R = _rows(w)
        B = R // T
        x, wt = _rand(R, w), _rand(w, w)
        linear[str(w)] = _best(_fwd_bwd(lambda: vitc.linear(x, wt), [x, wt]), repeats) / (6.0 * R * w * w)
        dh = min(64, w)
        h = w // dh
        xs, wq, bq = _rand(B, T, w), _rand(3 * w, w), _rand(3 * w)
        wo, bo = _rand(w, w), _rand(w)
        flops = 6.0 * R * w * 3 * w + 6.0 * R * w * w + 12.0 * B * h * T * T * dh
        attn[str(w)] = _best(_fwd_bwd(lambda: vitc.qkv_attention(xs, wq, bq, h, proj_weight=wo, proj_bias=bo),
                                      [xs, wq, bq, wo, bo]), repeats) / flops
        w1, b1, w2, b2 = _rand(4 * w, w), _rand(4 * w), _rand(w, 4 * w), _rand(w)
        ffn[str(2 * w)] = _best(_fwd_bwd(lambda: vitc.linear_gelu_linear(xs, w1, b1, w2, b2),
                                         [xs, w1, b1, w2, b2]), repeats) / (12.0 * R * w * 4 * w)
    r["linear_s_per_flop"] = linear        # keyed by sqrt(in·out)
    r["attention_s_per_flop"] = attn       # qkv_attention with its projections, keyed by sqrt(D·H·Dh)
    r["mlp_s_per_flop"] = ffn              # linear_gelu_linear, keyed by sqrt(D·F)
    x, g, b = _rand(8192, 128), _rand(128), _rand(128)
    r["layer_norm_s_per_element"] = _best(_fwd_bwd(lambda: vitc.layer_norm(x, (128,), g, b), [x, g, b]),
                                          repeats) / x.numel()
    a, c = _rand(8192, 128), _rand(8192, 128)
    r["add_s_per_element"] = _best(_fwd_bwd(lambda: a + c, [a, c]), repeats) / a.numel()
    s1, s2 = _rand(2, 2), _rand(2, 2)
    r["op_overhead_s"] = _best(_fwd_bwd(lambda: s1 + s2, [s1, s2]), repeats * 4) / 3.0  # add, sum, backward
    from .measure import make_optimizer
    opt_rate = {}
    for name in ("adam", "adam_bf16m", "adafactor", "sgd"):
        p = vitc.nn.Parameter(vitc.zeros(1024, 1024))
        opt = make_optimizer(name, [p])
        p.grad = vitc.ones(1024, 1024)
        opt_rate[name] = _best(opt.step, repeats) / p.numel()
        del opt, p
    r["optimizer_s_per_param"] = opt_rate
    return r


def probe_seconds(repeats=3):
    """The fastest forward + backward of a fixed pair of ops (qkv_attention and linear_gelu_linear,
    width 128, 16 images of 65 tokens): a load gauge. Its ratio between two moments is how much
    slower the machine runs at the second (other processes sharing the cores)."""
    B, T, w = 16, 65, 128
    xs, wq, bq, wo, bo = _rand(B, T, w), _rand(3 * w, w), _rand(3 * w), _rand(w, w), _rand(w)
    w1, b1, w2, b2 = _rand(4 * w, w), _rand(4 * w), _rand(w, 4 * w), _rand(w)

    def both():
        vitc.qkv_attention(xs, wq, bq, 2, proj_weight=wo, proj_bias=bo).sum().backward()
        vitc.linear_gelu_linear(xs, w1, b1, w2, b2).sum().backward()
    with vitc.enable_grad():
        return _best(both, repeats)


def _read_cache():
    try:
        with open(cache_path()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {"entries": {}}
    except (OSError, ValueError):
        return {"entries": {}}


def calibrate(threads=None, repeats=3, save=True, widths=CALIBRATION_WIDTHS):
    """Measure now (at ``threads``, default the current count) and, with save, store in the cache.
    widths: the grid of the fused ops (fewer widths: a quicker, coarser calibration; only the full
    grid is cached)."""
    widths = tuple(widths)
    save = save and widths == CALIBRATION_WIDTHS
    from vitc.io import write_text_atomic
    key, desc = machine_key(threads)
    old = vitc.get_num_threads()
    if threads is not None:
        vitc.set_num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        with vitc.enable_grad():
            probe = probe_seconds(repeats)
            rates = _measure(repeats, widths)
            probe = 0.5 * (probe + probe_seconds(repeats))
        entry = dict(desc, rates=rates, probe_s=probe, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     seconds=time.perf_counter() - t0)
    finally:
        vitc.set_num_threads(old)
    if save:
        data = _read_cache()
        data["entries"][key] = entry
        os.makedirs(cache_dir(), exist_ok=True)
        write_text_atomic(cache_path(), json.dumps(data, indent=1, sort_keys=True))
    return entry


def load_calibration(threads=None, recalibrate=False):
    """The cached calibration for this machine and thread count, measured (and cached) when there is
    none or it was made for another CPU, flags, thread count or vitc version."""
    key, desc = machine_key(threads)
    if not recalibrate:
        entry = _read_cache()["entries"].get(key)
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in desc.items()) and "rates" in entry:
            return entry
    return calibrate(threads)
