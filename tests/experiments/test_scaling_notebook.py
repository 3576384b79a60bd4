"""notebooks/scaling_vit.ipynb executed with nbclient on a tiny setting."""
import os

import pytest

from nbrun import run_notebook

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
def test_scaling_notebook_executes_small():
    text, pngs = run_notebook("scaling_vit.ipynb", dict(VITC_NB_SIZES="8x1x16x2,16x1x32x2", VITC_NB_BUDGETS="2,3,4",
                                                        VITC_NB_CHUNK="64", VITC_NB_BOOTSTRAP="20",
                                                        VITC_NB_THREADS="1"))
    assert "ViT-B/16 forward: 17.56 G multiply-adds" in text
    assert "c: true 0.1" in text and "d > 0 needed" in text
    assert "| 16x1x32x2 |" in text and "Compute spanned" in text
    assert "adafactor  state" in text
    assert "35 points, 10 on the frontier" in text  # the committed run, refitted
    assert pngs >= 3  # synthetic fit, power-law figure, bf16 trace
