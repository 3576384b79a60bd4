"""python -m vitc.experiments.deepvit (a tiny run: files, JSON, markdown, plots; bad arguments) and
notebooks/deepvit_reattention.ipynb executed small with nbclient."""
import json
import os

import pytest
from nbrun import run_notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")


@needs_data
def test_experiment_tiny_run(tmp_path):
    from vitc.experiments import deepvit
    out = tmp_path / "res"
    res = deepvit.main(["--depths", "2,3", "--epochs", "1", "--subset", "100", "--test-subset", "50", "--probe", "4",
                        "--dim", "16", "--heads", "2", "--dim-head", "8", "--batch-size", "50", "--out", str(out)])
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert [(r["variant"], r["depth"]) for r in saved["runs"]] == [("mhsa", 2), ("reattention", 2), ("mhsa", 3),
                                                                    ("reattention", 3)]
    for r in saved["runs"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0 <= r["n_similar"] <= r["depth"] - 1
        assert len(r["similarity"]) == r["depth"] and len(r["history"]["train_loss"]) == 1
    assert saved["runs"][0]["test_accuracy"] == res["runs"][0]["test_accuracy"]
    md = (out / "results.md").read_text()
    assert "| reattention | 3 |" in md
    for name in ("accuracy_vs_depth.png", "collapse_vs_depth.png", "reattention_d3_similarity.png",
                 "mhsa_d2_curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


@pytest.mark.parametrize("argv,msg", [(["--depths", "0,8"], "positive"), (["--depths", "a"], "integers"),
                                      (["--variants", "mhsa,linear"], "variants"), (["--threshold", "1.5"], "threshold")])
def test_experiment_bad_arguments(argv, msg, tmp_path):
    from vitc.experiments import deepvit
    with pytest.raises(SystemExit, match=msg):
        deepvit.main(argv + ["--out", str(tmp_path)])


@needs_data
def test_notebook_runs_small():
    text, pngs = run_notebook("deepvit_reattention.ipynb", dict(VITC_NB_SUBSET="300", VITC_NB_EPOCHS="1",
                                                                VITC_NB_DEPTH="3"))
    assert "similar blocks" in text and "reuse from block 1" in text
    assert pngs >= 2
