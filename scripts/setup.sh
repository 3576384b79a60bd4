#!/usr/bin/env bash
# Set up vitc on a fresh Debian machine: system packages, a venv in .venv, the package (built from
# csrc/) with its test dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
# openmpi-bin + libopenmpi-dev: vitc.distributed (mpirun, mpi4py); postgresql: the shared Optuna study of the search tests
PKGS="build-essential pkg-config libopenblas-dev libopenblas-openmp-dev dataset-fashion-mnist openmpi-bin libopenmpi-dev postgresql"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.vitc-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || \
   [ -n "$(find csrc -newer "$stamp" -print -quit 2>/dev/null)" ]; then
    .venv/bin/pip install -q --upgrade pip setuptools wheel
    .venv/bin/pip install -q -e '.[test,experiments,distributed]'
    touch "$stamp"
fi
