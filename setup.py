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


def pkg_config(*args, path=None):
    env = dict(os.environ, PKG_CONFIG_PATH=path) if path else None
    try:
        out = subprocess.run(["pkg-config", *args, "openblas"], check=True, capture_output=True, text=True,
                             env=env).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            "vitc needs OpenBLAS found by pkg-config: apt-get install libopenblas-dev pkg-config"
        ) from e
    return shlex.split(out)


def openblas_variant():
    """pkg-config path of Debian's OpenMP build of OpenBLAS, or None for the system default.

    GEMMs and vitc's own kernels then share one libgomp thread pool instead of OpenBLAS's pthread
    pool and libgomp's fighting over the cores: on 2 cores the pthread pool spent ~60 ms of CPU
    per seed-ViT step spinning in sched_yield, the shared pool ~6 ms (bench/threads.py).
    VITC_BLAS=pthread|default keeps the system default; VITC_BLAS=openmp insists on the variant.
    """
    want = os.environ.get("VITC_BLAS", "auto")
    libdir = pkg_config("--variable=libdir")[0].rstrip("/")
    pc = os.path.join(os.path.dirname(libdir), "openblas-openmp", "pkgconfig")
    if want in ("pthread", "default"):
        return None
    if os.path.isfile(os.path.join(pc, "openblas.pc")):
        return pc
    if want == "openmp":
        raise SystemExit("VITC_BLAS=openmp: apt-get install libopenblas-openmp-dev")
    return None


blas_pc = openblas_variant()
cflags = pkg_config("--cflags", path=blas_pc)
libs = pkg_config("--libs", path=blas_pc)
if blas_pc:  # the variant shares the system library's soname: find it by rpath, not the alternatives link
    libs.append("-Wl,-rpath," + pkg_config("--variable=libdir", path=blas_pc)[0].rstrip("/"))
extra_compile = ["-O3", "-std=gnu11", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unused-function", "-fno-strict-aliasing"] + cflags
if os.environ.get("VITC_NATIVE"):
    extra_compile.append("-march=native")
if os.environ.get("VITC_DEBUG"):
    # -fexpensive-optimizations: at -O1 GCC skips the pass that contracts a*b+c into FMA, and the kernels
    # written on vector types (vec8.h) would then round differently from the intrinsic (AVX-512) ones
    extra_compile += ["-O1", "-fexpensive-optimizations", "-g", "-fsanitize=address,undefined",
                      "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]

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
