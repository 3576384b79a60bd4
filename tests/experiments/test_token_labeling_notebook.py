"""notebooks/lvvit_token_labeling.ipynb executed with nbclient on a tiny subset, one epoch, two arms."""
import os
import tempfile

import pytest

from nbrun import run_notebook

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
def test_token_labeling_notebook_executes_on_a_subset():
    text, pngs = run_notebook("lvvit_token_labeling.ipynb", dict(
        VITC_NB_SUBSET="128", VITC_NB_TEST_SUBSET="64", VITC_NB_EPOCHS="1", VITC_NB_SEEDS="2",
        VITC_NB_TEACHER_EPOCHS="1", VITC_NB_THREADS="2", VITC_NB_ARMS="plain,tl_mixtoken"))
    assert "λ after MixToken" in text and "teacher resnet_mnist: test accuracy" in text
    assert "tl_mixtoken:" in text and "over 2 seeds" in text
    # the log names the results relative to the run's folder: the same text on every execution
    assert "written: tl-run/results.md" in text and tempfile.gettempdir() + "/" not in text
    assert pngs >= 2
