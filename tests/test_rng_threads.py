"""The RNG's (seed, offset) is read and advanced under one lock: a draw racing a reseed in another
thread uses either the old state or the new one, never the old seed with the new offset
(csrc/core/rng.c vt_rng_reserve_seeded; before, vt_rng_fill read the seed, then reserved unlocked)."""
import threading

import numpy as np

import vitc
from vitc import _C

FAR = 1 << 40  # seed 2's offsets start here, so a mixed pair (seed 1, offset of seed 2) is recognisable
N, DRAWS = 4, 1500


def _table(seed, start):
    out = {}
    for k in range(DRAWS + 1):
        _C.set_rng_state(seed, start + N * k)
        out[vitc.rand(N).numpy().tobytes()] = (seed, k)
    return out


def test_draws_racing_reseeds_use_a_consistent_seed_and_offset():
    valid = {**_table(1, 0), **_table(2, FAR)}
    stop, seen = threading.Event(), []

    def reseed():
        while not stop.is_set():
            _C.set_rng_state(1, 0)
            _C.set_rng_state(2, FAR)

    t = threading.Thread(target=reseed)
    t.start()
    try:
        for _ in range(DRAWS):
            seen.append(vitc.rand(N).numpy().tobytes())
            _C.rng_reserve(0)  # the binding's reservation takes seed and base together too
    finally:
        stop.set()
        t.join()
    # the table covers every offset DRAWS draws can reach after either reseed
    unknown = [s for s in seen if s not in valid]
    assert not unknown, f"{len(unknown)} of {len(seen)} draws match no (seed, offset) pair"
    seed, offset = _C.get_rng_state()
    assert (seed, offset) in ((1, offset), (2, offset)) and (offset < FAR) == (seed == 1)
