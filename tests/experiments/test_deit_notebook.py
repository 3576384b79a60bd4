"""notebooks/deit_distillation.ipynb executed with nbclient on a 256-image subset, 1 epoch."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
def test_deit_notebook_executes_on_a_subset():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "deit_distillation.ipynb"), as_version=4)
    keys = ("VITC_NB_SUBSET", "VITC_NB_EPOCHS", "VITC_NB_TEACHER_EPOCHS", "VITC_NB_THREADS", "PYTHONPATH")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(VITC_NB_SUBSET="256", VITC_NB_EPOCHS="1", VITC_NB_TEACHER_EPOCHS="1", VITC_NB_THREADS="2",
                      PYTHONPATH=ROOT + os.pathsep + (old["PYTHONPATH"] or ""))
    try:
        nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                resources={"metadata": {"path": ROOT}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outs)
    for run in ("teacher", "none", "soft", "hard"):
        assert f"final test accuracy {run:>7}" in text
    assert "| hard | deit_mnist_distilled |" in text
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 2
