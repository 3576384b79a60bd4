"""Where a training step's time goes, op by op, like torch.profiler::

    with vitc.profiler.profile(record_shapes=True) as prof:
        loss = vitc.cross_entropy(model(x), y); loss.backward(); opt.step()
    print(prof.key_averages(group_by_input_shape=True).table(row_limit=15))


The C engine times every op's forward, every backward node and every gradient accumulation
(wall clock, so a multi-threaded kernel counts once). Only ops run on the thread that entered the
profiler are recorded. The time between ops (Python, the binding) is the rest of `prof.wall_ns`.

Where a step's memory goes: saved_tensors(loss), before loss.backward(), sums the bytes every op's
autograd node keeps for backward (print with saved_tensors_table; bench/step_memory.py uses it).
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


SavedRow = namedtuple("SavedRow", "op nodes tensors bytes shared_bytes param_bytes rebuilt", defaults=(0,))


def saved_tensors(tensor):
    """What the tape behind `tensor` (a loss before .backward()) keeps saved for backward, per op:
    a list of SavedRow(op, nodes (that save anything), tensors, bytes, shared_bytes, param_bytes, rebuilt), largest
    `bytes` first. rebuilt: saved inputs not kept but made again right before the op's backward from
    the op that produced them (a LayerNorm output, see vitc.set_recompute); they hold no bytes.
    bytes: allocator blocks of the activations the op saves, each storage counted once in the whole
    tape (a storage saved by several ops is charged to the first in op-name order and also listed in
    the others' shared_bytes); param_bytes: saved leaf inputs (weights; their own bytes), which are not the step's
    memory. Sum of `bytes` = the activations alive between forward and backward because of the tape.
    A debug aid: it walks the graph once, nothing is recorded while ops run."""
    from ._tensor import Tensor
    if not isinstance(tensor, Tensor):
        raise TypeError(f"saved_tensors: expected a vitc Tensor, got {type(tensor).__name__}")
    rows = _C._saved_tensors(tensor)
    owners = {}
    for op, _, sid, _, block, leaf in rows:
        if not leaf and sid:
            owners.setdefault(sid, set()).add(op)
    acc = {}
    for op, _, sid, own, block, leaf in rows:
        a = acc.setdefault(op, {"nodes": set(), "tensors": 0, "bytes": 0, "shared": 0, "param": 0, "sids": set(),
                                "rebuilt": 0})
        if not sid:  # storage id 0: rebuilt at backward
            a["rebuilt"] += 1
            continue
        a["tensors"] += 1
        if leaf:
            a["param"] += own  # parameters may be views of one flat buffer
        elif sid not in a["sids"]:
            a["sids"].add(sid)
            if min(owners[sid]) == op:
                a["bytes"] += block
            if len(owners[sid]) > 1:
                a["shared"] += block
    node_counts = {}
    for op, slot, *_ in rows:
        if slot == 0:
            node_counts[op] = node_counts.get(op, 0) + 1
    out = [SavedRow(op, node_counts.get(op, 0), a["tensors"], a["bytes"], a["shared"], a["param"], a["rebuilt"])
           for op, a in acc.items()]
    out.sort(key=lambda r: (-r.bytes, r.op))
    return out


def saved_tensors_table(rows):
    """saved_tensors' rows as text, MB = 2**20 bytes"""
    lines = [f"{'op':<28} {'nodes':>6} {'tensors':>8} {'MB':>9} {'shared MB':>10} {'params MB':>10} {'rebuilt':>8}"]
    for r in rows:
        lines.append(f"{r.op:<28} {r.nodes:>6} {r.tensors:>8} {r.bytes / 2**20:>9.2f} {r.shared_bytes / 2**20:>10.2f} "
                     f"{r.param_bytes / 2**20:>10.2f} {r.rebuilt:>8}")
    lines.append(f"{'total':<28} {'':>6} {sum(r.tensors for r in rows):>8} {sum(r.bytes for r in rows) / 2**20:>9.2f}")
    return "\n".join(lines)
