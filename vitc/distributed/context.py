"""The MPI communicator of a data-parallel run: collectives with a timeout, gradient averaging, state broadcast."""
import os
import sys
import threading
import time

import numpy as np

from .._tensor import enable_grad, no_grad
from ._launch import launched_world_size

__all__ = ["Context", "init", "current"]

_INSTALL = ("vitc.distributed needs mpi4py and an MPI library: on Debian `apt-get install openmpi-bin "
            "libopenmpi-dev`, then `pip install mpi4py` (or `pip install 'vitc[distributed]'`)")
_DEFAULT_TIMEOUT = 300.0
_context = None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(f"{_INSTALL} ({e})") from None
    return MPI


def _timeout_from_env():
    text = os.environ.get("VITC_DIST_TIMEOUT")
    if text is None:
        return _DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"VITC_DIST_TIMEOUT must be a number of seconds, got {text!r}") from None
    return value


class Context:
    """One MPI job as seen by this rank. Build it with ``init()``."""

    def __init__(self, comm, mpi, timeout):
        if not timeout > 0:
            raise ValueError(f"vitc.distributed: timeout must be > 0 seconds, got {timeout!r}")
        self.comm, self.MPI = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout)
        self.allreduce_seconds = 0.0  # time spent in gradient allreduces (bench/)
        self.allreduce_calls = 0
        self._pending = None  # (operation, start time) of the collective in progress
        self._watchdog = threading.Thread(target=self._watch, name="vitc-distributed-watchdog", daemon=True)
        self._watchdog.start()

    def __repr__(self):
        return f"vitc.distributed.Context(rank={self.rank}, size={self.size}, timeout={self.timeout:g} s)"

    # ---- failure handling -----------------------------------------------------------------------

    def _watch(self):
        period = min(0.5, self.timeout / 4)
        while True:
            time.sleep(period)
            pending = self._pending
            if pending is not None and time.monotonic() - pending[1] > self.timeout:
                self.abort(f"vitc.distributed: rank {self.rank} of {self.size} waited more than {self.timeout:g} s "
                           f"in {pending[0]}; another rank died or hangs (timeout: init(timeout=...) or "
                           f"VITC_DIST_TIMEOUT). Aborting the job.")

    def abort(self, message, code=1):
        """Print ``message`` and end every rank of the job (MPI_Abort)."""
        sys.stderr.write(message.rstrip() + "\n")
        sys.stderr.flush()
        self.comm.Abort(code)

    def _collective(self, operation, fn):
        self._pending = (operation, time.monotonic())
        try:
            return fn()
        finally:
            self._pending = None

    # ---- collectives ----------------------------------------------------------------------------

    def barrier(self, operation="barrier"):
        self._collective(operation, self.comm.Barrier)

    def sum_(self, array, operation="allreduce"):
        """Sum a contiguous NumPy array over the ranks, in place (one MPI_Allreduce, GIL released)."""
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable):
            raise TypeError("vitc.distributed: sum_ needs a writeable C-contiguous NumPy array")
        self._collective(operation, lambda: self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM))
        return array

    def sum_floats(self, *values):
        """Sums over the ranks of a few Python numbers (float64), as a NumPy array."""
        out = np.array(values, dtype=np.float64)
        return self.sum_(out, "allreduce of the epoch's statistics")

    def broadcast_state(self, model):
        """Overwrite every parameter and buffer with rank 0's values (at start, so all ranks begin equal)."""
        with no_grad():
            for name, t in model.state_dict().items():
                arr = t.numpy()
                self._collective(f"broadcast of {name}", lambda: self.comm.Bcast(arr, root=0))

    def average_buffers(self, model):
        """Average floating-point buffers (BatchNorm running mean/var) over the ranks; integer buffers
        (num_batches_tracked) are equal on every rank already."""
        with no_grad():
            for name, b in model.named_buffers():
                arr = b.numpy()
                if arr.dtype.kind == "f" and arr.size:
                    self.sum_(arr, f"allreduce of buffer {name}")
                    arr *= arr.dtype.type(1.0 / self.size)

    def average_gradients(self, optimizer):
        """Average the gradients of a vitc optimizer over the ranks: one in-place allreduce of each
        group's flat gradient buffer, then a scale by 1/size (exact for a power-of-two size)."""
        flats = getattr(optimizer, "_flat", None)
        if flats is None:
            raise TypeError(f"vitc.distributed: need a vitc.optim optimizer, got {type(optimizer).__name__}")
        scale = np.float32(1.0 / self.size)
        with no_grad():
            for fg in flats:
                if fg.n == 0:
                    continue
                fg.sync()  # gradients not yet in the flat buffer are gathered into it
                buf = fg.grad.numpy()
                t0 = time.perf_counter()
                self.sum_(buf, f"gradient allreduce ({fg.n} floats)")
                self.allreduce_seconds += time.perf_counter() - t0
                self.allreduce_calls += 1
                buf *= scale

    def averaging(self, optimizer):
        """``optimizer`` whose ``step()`` first averages the gradients over the ranks."""
        return GradientAveraging(self, optimizer)


class GradientAveraging:
    """Wraps a vitc optimizer: ``step()`` = average gradients over the ranks, then the optimizer's step.
    Everything else (zero_grad, param_groups, state_dict, ...) is the wrapped optimizer's."""

    def __init__(self, context, optimizer):
        self.context, self.optimizer = context, optimizer

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self.context.average_gradients(self.optimizer)
        self.optimizer.step()
        return loss

    def __getattr__(self, name):
        return getattr(self.optimizer, name)


def _abort_on_uncaught(context):
    """An uncaught exception on one rank ends the whole job instead of leaving the others in a collective."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        context.abort(f"vitc.distributed: rank {context.rank} of {context.size} failed with "
                      f"{kind.__name__}: {value}; aborting the job.")
    sys.excepthook = hook


def init(timeout=None):
    """The job's Context (made once; later calls return it). Imports mpi4py: RuntimeError naming
    what to install when it is missing. timeout: seconds a collective may wait before the job is
    aborted (default VITC_DIST_TIMEOUT or 300)."""
    global _context
    if _context is not None:
        return _context
    MPI = _import_mpi()
    _context = Context(MPI.COMM_WORLD, MPI, _timeout_from_env() if timeout is None else timeout)
    if _context.size > 1:
        _abort_on_uncaught(_context)
    return _context


def current(distributed=None):
    """The Context fit() should use: ``distributed`` None = only when launched by mpirun with more than
    one process, True = always (init() raises when MPI is missing), False = never."""
    if distributed is None:
        distributed = launched_world_size() > 1
    elif not isinstance(distributed, bool):
        raise TypeError(f"distributed must be None or a bool, got {type(distributed).__name__}")
    return init() if distributed else None
