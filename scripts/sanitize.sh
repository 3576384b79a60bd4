#!/usr/bin/env bash
# Run the core's tests under AddressSanitizer + UBSan: build a sanitized copy of the package in a
# temporary directory (the normal build stays untouched) and run the C-facing tests against it
# with the sanitizer runtime preloaded into Python. Any sanitizer report fails the run (-s: a
# sanitizer that halts the process must not have its report swallowed by pytest's capture).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, but not through the venv's symlink
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r setup.py pyproject.toml csrc vitc tests "$work"/
rm -f "$work"/vitc/_C*.so
(cd "$work" && VITC_DEBUG=1 "$PY" setup.py build_ext --inplace -q >/dev/null)
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
cd "$work"
# leaks: CPython and NumPy keep interned objects alive at exit, so leak checking is off; vitc's
# own leak checks are the allocator-balance tests (tests/opcheck.check_allocation_failures)
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    PYTHONPATH=. "$PY" -m pytest -q -s -p no:cacheprovider -x tests/ops tests/test_tensor.py tests/test_autograd.py tests/test_profiler.py tests/data/test_augment_*.py \
    tests/test_determinism.py tests/test_memory_safety.py tests/test_fuzz_memory.py tests/test_threads.py tests/test_allocator.py "$@"
