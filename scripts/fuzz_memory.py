"""Long fuzz of memory ownership (issue 19): the random cases of tests/test_fuzz_memory.py
(in-place writes into transposed / sliced / selected / expanded / zero-size views of writable,
read-only and vitc-owned memory, sources aliasing the destination), checked against NumPy.

    PYTHONPATH=. python scripts/fuzz_memory.py [--calls 100000] [--seed 0]

Prints the number of cases and vitc calls and every mismatch; exit status 1 if any case failed
(a crash ends the process with the signal's status)."""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_fuzz_memory import check_case, random_case  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100000, help="stop after this many vitc calls")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = calls = failures = 0
    t0 = time.time()
    while calls < args.calls:
        case = random_case(rng)
        try:
            calls += check_case(case)
        except AssertionError as e:
            failures += 1
            print(f"FAIL case {cases}: {case!r}\n  {str(e).splitlines()[0] if str(e) else 'assertion'}", flush=True)
        cases += 1
    print(f"{cases} cases, {calls} vitc calls, {failures} failures, seed {args.seed}, {time.time() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
