"""Measure what the planner predicts: the allocator's peak over one steady-state training step
(vitc.memory_stats), the process's resident set, and the step's wall time (min over repeats)."""
import time

import numpy as np

import vitc
from vitc import nn, optim

__all__ = ["make_optimizer", "measure_step", "rss_bytes"]


def make_optimizer(name, params, lr=1e-3):
    """The optimizer the planner's name stands for."""
    if name == "adam":
        return optim.Adam(params, lr=lr)
    if name == "adamw":
        return optim.AdamW(params, lr=lr)
    if name == "adam_bf16m":
        return optim.Adam(params, lr=lr, mu_dtype=vitc.bfloat16)
    if name == "adam_bf16":
        return optim.Adam(params, lr=lr, mu_dtype=vitc.bfloat16, nu_dtype=vitc.bfloat16)
    if name == "adafactor":
        return optim.Adafactor(params, lr=lr)
    if name == "sgd":
        return optim.SGD(params, lr=lr)
    if name == "sgd_momentum":
        return optim.SGD(params, lr=lr, momentum=0.9)
    from .memory import OPTIMIZERS
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def rss_bytes(field="VmRSS"):
    """The process's resident set now (VmRSS of /proc/self/status), or its high-water mark since the
    last reset_rss_peak() with field='VmHWM'; 0 where there is no such file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_rss_peak():
    """Reset VmHWM to the current RSS (Linux: '5' into /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_step(cfg, batch, optimizer="adam", repeats=3, seed=0):
    """Build cfg's ViT, take one warm-up step, then ``repeats`` steps. Returns peak_bytes (the
    allocator's peak over a steady step minus what was live before the model was built), state_bytes,
    step_seconds (the fastest step), all_seconds, rss_start (before the model) and rss_peak (the
    process's resident high-water mark over building and stepping; 0 when it cannot be reset)."""
    from vitc.models.vit import ViT
    vitc.empty_cache()  # blocks cached by earlier work would hide this run's resident memory
    rss_start = rss_bytes()
    can_hwm = reset_rss_peak()
    live0 = vitc.memory_stats()["live_bytes"]
    vitc.manual_seed(seed)
    model = ViT(**cfg.vit_kwargs())
    model.train()
    opt = make_optimizer(optimizer, model.parameters())
    rng = np.random.default_rng(seed)
    x = vitc.from_numpy(rng.standard_normal((batch, cfg.channels) + tuple(cfg.image_size)).astype(np.float32))
    y = vitc.from_numpy(rng.integers(0, cfg.num_classes, batch).astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step()  # the first step gathers the gradients into the flat buffer and creates the state
    times, peak = [], 0
    for _ in range(max(1, repeats)):
        vitc.reset_peak_memory_stats()
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        del loss
        peak = max(peak, vitc.memory_stats()["peak_bytes"] - live0)
    out = dict(peak_bytes=int(peak), state_bytes=int(opt.state_bytes()), step_seconds=min(times),
               all_seconds=times, rss_start=rss_start, rss_peak=rss_bytes("VmHWM") if can_hwm else 0)
    del model, opt, x, y
    return out
