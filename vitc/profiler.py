"""Where a training step's time goes, op by op, like torch.profiler::

    with vitc.profiler.profile(record_shapes=True) as prof:
        loss = vitc.cross_entropy(model(x), y); loss.backward(); opt.step()
    print(prof.key_averages(group_by_input_shape=True).table(row_limit=15))


The C engine times every op's forward, every backward node and every gradient accumulation
(wall clock, so a multi-threaded kernel counts once). Only ops run on the thread that entered the
profiler are recorded. The time between ops (Python, the binding) is the rest of `prof.wall_ns`.
"""
import time
from collections import namedtuple

from . import _C

PHASES = ("forward", "backward", "accumulate_grad")

Event = namedtuple("Event", "name phase shape ns")


class EventList(list):
    """key_averages' rows, longest total first; .table() prints them"""

    def __init__(self, rows, wall_ns, shapes):
        super().__init__(rows)
        self.wall_ns, self.shapes = wall_ns, shapes

    def table(self, sort_by=None, row_limit=None):
        """sort_by: None (longest total first), "cpu_time_total" / "self_cpu_time_total" (the same:
        ops do not nest), "cpu_time" (mean per call) or "count"; row_limit: rows shown"""
        keys = {None: lambda r: -r.total_ns, "cpu_time_total": lambda r: -r.total_ns,
                "self_cpu_time_total": lambda r: -r.total_ns, "cpu_time": lambda r: -r.total_ns / r.calls,
                "count": lambda r: -r.calls}
        if sort_by not in keys:
            raise ValueError(f"table: sort_by must be one of {sorted(k for k in keys if k)} or None, got {sort_by!r}")
        if row_limit is not None and (not isinstance(row_limit, int) or row_limit < 0):
            raise ValueError(f"table: row_limit must be a non-negative int or None, got {row_limit!r}")
        rows = sorted(self, key=keys[sort_by])
        lines = [f"{'op':<34}" + (f" {'input shape':<20}" if self.shapes else "")
                 + f" {'calls':>6} {'total ms':>10} {'mean us':>10} {'% wall':>7}"]
        for r in rows[:row_limit]:
            share = 100.0 * r.total_ns / self.wall_ns if self.wall_ns else 0.0
            lines.append(f"{r.key:<34}" + (f" {str(r.shape):<20}" if self.shapes else "")
                         + f" {r.calls:>6} {r.total_ns / 1e6:>10.3f} {r.total_ns / r.calls / 1e3:>10.1f} {share:>6.1f}%")
        ops = sum(r.total_ns for r in self)
        lines.append(f"ops {ops / 1e6:.3f} ms of {self.wall_ns / 1e6:.3f} ms wall; "
                     f"{(self.wall_ns - ops) / 1e6:.3f} ms outside ops")
        return "\n".join(lines)


Row = namedtuple("Row", "key shape calls total_ns")


def _key(e):
    if e.phase == "forward":
        return e.name
    if e.phase == "backward":
        return e.name + "_backward"
    return "accumulate_grad"


class profile:
    """Context manager recording vitc ops on this thread; not reentrant (nesting raises RuntimeError)."""

    def __init__(self, record_shapes=False):
        self.record_shapes = bool(record_shapes)
        self._events = None
        self.wall_ns = 0

    def __enter__(self):
        _C._profiler_start()
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        raw = _C._profiler_stop()
        self.wall_ns = time.perf_counter_ns() - self._t0
        self._events = [Event(name, PHASES[phase], shape if self.record_shapes else None, ns)
                        for name, phase, shape, ns in raw]
        return False

    def events(self):
        if self._events is None:
            raise RuntimeError("profiler: no results until the `with` block has finished")
        return list(self._events)

    def key_averages(self, group_by_input_shape=False):
        """one row per op and phase (and input shape when asked; needs record_shapes=True)"""
        if group_by_input_shape and not self.record_shapes:
            raise ValueError("key_averages(group_by_input_shape=True) needs profile(record_shapes=True)")
        acc = {}
        for e in self.events():
            k = (_key(e), e.shape if group_by_input_shape else None)
            calls, ns = acc.get(k, (0, 0))
            acc[k] = (calls + 1, ns + e.ns)
        rows = [Row(k, s, c, ns) for (k, s), (c, ns) in acc.items()]
        rows.sort(key=lambda r: -r.total_ns)
        return EventList(rows, self.wall_ns, group_by_input_shape)
