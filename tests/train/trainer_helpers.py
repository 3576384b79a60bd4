"""Helpers of the trainer's tests: run ``python -m vitc.train`` in this process (or as a subprocess), tiny models."""
import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
# a one-block vit_seed_mnist without dropout: each CLI run below trains in well under a second
TINY = ["--model-kwargs", "depth=1", "dim=16", "heads=2", "dim_head=8", "mlp_dim=32"]
SMALL = ["--subset", "200", "--test-subset", "100", "--epochs", "1", "--batch-size", "50", "--no-progress"]


def run_main(*argv):
    """(exit status, stdout, stderr) of vitc.train's main(argv) run here."""
    from vitc.train.__main__ import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def run_subprocess(*argv, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "vitc.train", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def weights(path):
    from vitc.io import load_safetensors
    return load_safetensors(path, as_numpy=True)


def assert_same_weights(a, b, **tol):
    assert set(a) == set(b)
    for k in a:
        if tol:
            np.testing.assert_allclose(a[k], b[k], err_msg=k, **tol)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")


def needs_data_helper(*names):
    """Skip when vitc.data lacks one of ``names`` (another helper adds them)."""
    import vitc.data
    missing = [n for n in names if not hasattr(vitc.data, n)]
    if missing:
        pytest.skip(f"needs vitc.data.{', '.join(missing)} (the data helper)")


def needs_optim(name):
    from vitc import optim
    if not (hasattr(optim, name) or hasattr(optim.lr_scheduler, name)):
        pytest.skip(f"needs vitc.optim {name} (the optimizer helper)")
