"""Build vitc._C from csrc/ against the NumPy C API, OpenBLAS (pkg-config) and OpenMP.

Portable by default: -O3 without -march=native, so a wheel runs on any x86-64; hot kernels pick
AVX2/AVX-512 paths at run time. VITC_NATIVE=1 adds -march=native for a local build.
"""
import glob
import os
import shlex
import subprocess

import numpy
from setuptools import Extension, setup


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "openblas"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            "vitc needs OpenBLAS found by pkg-config: apt-get install libopenblas-dev pkg-config"
        ) from e
    return shlex.split(out)


cflags = pkg_config("--cflags")
libs = pkg_config("--libs")
extra_compile = ["-O3", "-std=gnu11", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unused-function", "-fno-strict-aliasing"] + cflags
if os.environ.get("VITC_NATIVE"):
    extra_compile.append("-march=native")
if os.environ.get("VITC_DEBUG"):
    extra_compile += ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                      "-fno-omit-frame-pointer"]

sources = sorted(glob.glob("csrc/**/*.c", recursive=True))
ext = Extension(
    "vitc._C",
    sources=sources,
    include_dirs=[numpy.get_include(), "csrc"],
    extra_compile_args=extra_compile,
    extra_link_args=["-fopenmp"] + libs + (["-fsanitize=address,undefined"] if os.environ.get("VITC_DEBUG") else []),
    depends=sorted(glob.glob("csrc/**/*.h", recursive=True) + glob.glob("csrc/**/*.def", recursive=True)),
)

setup(ext_modules=[ext])
