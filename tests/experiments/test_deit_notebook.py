"""notebooks/deit_distillation.ipynb executed with nbclient on a 256-image subset, 1 epoch."""
import os
import tempfile

import pytest

from nbrun import run_notebook

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
def test_deit_notebook_executes_on_a_subset():
    text, pngs = run_notebook("deit_distillation.ipynb", dict(VITC_NB_SUBSET="256", VITC_NB_EPOCHS="1",
                                                              VITC_NB_TEACHER_EPOCHS="1", VITC_NB_THREADS="2"))
    for run in ("teacher", "none", "soft", "hard"):
        assert f"final test accuracy {run:>7}" in text
    assert "| hard | deit_mnist_distilled |" in text
    # the log names the results relative to the run's folder: the same text on every execution
    assert "written: deit-run/results.md, results.json" in text and tempfile.gettempdir() + "/" not in text
    assert pngs >= 2
