"""vitc.plan.plan(): peak memory and step time of a training configuration, predicted without
running it (vitc.plan.memory, vitc.plan.timing)."""
import numbers

from .calibration import load_calibration
from .config import resolve_config
from .memory import OPTIMIZERS, memory_breakdown
from .timing import time_breakdown

__all__ = ["Plan", "plan", "parse_bytes", "format_bytes", "available_memory"]

_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000 ** 2, "MB": 1000 ** 2, "G": 1000 ** 3, "GB": 1000 ** 3,
          "T": 1000 ** 4, "TB": 1000 ** 4, "KIB": 1024, "MIB": 1024 ** 2, "GIB": 1024 ** 3, "TIB": 1024 ** 4}


def parse_bytes(text):
    """'8GiB', '512MB', '1.5G', 123 -> bytes (int)."""
    if isinstance(text, numbers.Real) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().upper().replace(" ", "")
        i = len(s)
        while i and not (s[i - 1].isdigit() or s[i - 1] == "."):
            i -= 1
        try:
            value = float(s[:i]) * _UNITS[s[i:]]
        except (ValueError, KeyError):
            raise ValueError(f"plan: cannot read a memory size from {text!r} (e.g. 8GiB, 512MB, 1e9)") from None
    if not value > 0:
        raise ValueError(f"plan: a memory size must be positive, got {text!r}")
    return int(value)


def format_bytes(n):
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def available_memory():
    """MemAvailable from /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Plan:
    """The planner's prediction for one configuration: .peak_bytes, .step_seconds, .memory (a
    MemoryBreakdown), .time (a TimeBreakdown), .fits(cap); str() is the readable breakdown."""

    def __init__(self, config, batch, optimizer, threads, memory, time, calibration):
        self.config, self.batch, self.optimizer, self.threads = config, batch, optimizer, threads
        self.memory, self.time, self.calibration = memory, time, calibration

    @property
    def peak_bytes(self):
        return self.memory.peak

    @property
    def step_seconds(self):
        return None if self.time is None else self.time.total

    @property
    def input_bytes(self):
        """The image batch itself, float32: the data loader's NumPy array, outside the allocator."""
        c = self.config
        return 4 * self.batch * c.channels * c.image_size[0] * c.image_size[1]

    @property
    def parameter_count(self):
        return self.config.num_parameters()

    def fits(self, memory_cap):
        """True when the predicted peak plus the input batch is at most memory_cap (bytes or a size string). A cap below
        the parameters alone is an error: nothing of this model could run in it."""
        cap = parse_bytes(memory_cap)
        if cap < self.memory.parameters:
            raise ValueError(f"plan: memory cap {format_bytes(cap)} is below the parameters alone "
                             f"({format_bytes(self.memory.parameters)}) of {self.config.name}")
        return self.peak_bytes + self.input_bytes <= cap

    def __repr__(self):
        t = "?" if self.step_seconds is None else f"{self.step_seconds:.3g} s"
        return (f"Plan({self.config.name}, batch={self.batch}, optimizer={self.optimizer!r}, "
                f"peak={format_bytes(self.peak_bytes)}, step={t})")

    def __str__(self):
        c, m = self.config, self.memory
        lines = [f"plan: {c.name} — {c.num_parameters():,} parameters, {c.depth} blocks × width {c.dim} "
                 f"(MLP {c.mlp_dim}, {c.heads} heads × {c.dim_head}), {c.tokens} tokens, pool {c.pool!r}",
                 f"      batch {self.batch}, optimizer {self.optimizer}, {self.threads} threads",
                 "memory (allocator blocks):",
                 f"  parameters        {format_bytes(m.parameters):>12}",
                 f"  gradients         {format_bytes(m.gradients):>12}",
                 f"  optimizer state   {format_bytes(m.optimizer_blocks):>12}   ({m.optimizer_state:,} bytes exact)",
                 f"  saved activations {format_bytes(m.activation_bytes):>12}"]
        for k, v in sorted(m.activations.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {k:<16}{format_bytes(v):>12}")
        lines += [f"  backward transient{format_bytes(m.transient):>12}",
                  f"  (size-class rounding included above: {format_bytes(m.rounding)})",
                  f"  PEAK              {format_bytes(self.peak_bytes):>12}   (vitc.memory_stats()['peak_bytes'])",
                  f"  + input batch     {format_bytes(self.input_bytes):>12}   (NumPy, outside the allocator; the "
                  "interpreter and libraries are not counted)"]
        if self.time is not None:
            lines.append(f"step time: {self.step_seconds:.4g} s ({self.time.flops / 1e9:.3g} GFLOP forward+backward)")
            for k, v in sorted(self.time.parts.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {k:<22}{v * 1e3:10.2f} ms")
        return "\n".join(lines)


def _expect_batch(batch):
    if not isinstance(batch, numbers.Integral) or isinstance(batch, bool):
        raise TypeError(f"plan: batch must be an int, got {type(batch).__name__}")
    if batch < 1:
        raise ValueError(f"plan: batch must be >= 1, got {batch}")
    return int(batch)


def plan(model_or_config, batch, optimizer="adam", threads=None, model_kwargs=None, timing=True,
         recalibrate=False):
    """Predict one training step's peak memory and time without running it.

    model_or_config: a registered model name (with model_kwargs), a dict of ViT arguments with
    scaling_vit's conventions (dim, depth, heads, mlp_dim required; heads must divide dim), a
    ModelConfig or a built vitc ViT. optimizer: one of vitc.plan.OPTIMIZERS ('adam', 'adamw',
    'adam_bf16m' = Adam with a bfloat16 first moment, 'adam_bf16' = both moments bfloat16,
    'adafactor', 'sgd', 'sgd_momentum'). threads: the thread count to time for (default the
    current one). timing=False skips the step time (and any calibration). The model is never built
    from a name or dict, and nothing of its size is allocated."""
    cfg = resolve_config(model_or_config, model_kwargs)
    batch = _expect_batch(batch)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"plan: unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if threads is not None and (not isinstance(threads, numbers.Integral) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"plan: threads must be a positive int, got {threads!r}")
    import vitc
    threads = vitc.get_num_threads() if threads is None else int(threads)
    mem = memory_breakdown(cfg, batch, optimizer)
    tb, cal = None, None
    if timing:
        cal = load_calibration(threads, recalibrate=recalibrate)
        tb = time_breakdown(cfg, batch, optimizer, cal["rates"])
    return Plan(cfg, batch, optimizer, threads, mem, tb, cal)
