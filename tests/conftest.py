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
