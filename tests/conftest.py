import os
import sys

# tests import their helpers (opcheck) by name
sys.path.insert(0, os.path.dirname(__file__))
# the suite runs on 2 cores: keep the core at 2 threads unless told otherwise
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _fresh_opcheck_rng():
    """Each test draws its data from the same seed, whatever ran before it."""
    import opcheck
    opcheck.RNG.bit_generator.state = np.random.default_rng(0).bit_generator.state
    yield


@pytest.fixture(autouse=True)
def _restore_thread_counts():
    """A test that sets a thread count (e.g. the trainer's --threads 1, run in-process) does not pass it on:
    vitc's and torch's reductions may round differently at another count, and parity tolerances are tight."""
    import vitc
    before = vitc.get_num_threads()
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    yield
    if vitc.get_num_threads() != before:
        vitc.set_num_threads(before)
    torch = sys.modules.get("torch")
    if torch is not None and torch_before is not None and torch.get_num_threads() != torch_before:
        torch.set_num_threads(torch_before)
