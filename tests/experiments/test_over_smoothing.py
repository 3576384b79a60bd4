"""python -m vitc.experiments.over_smoothing on a tiny subset (files, resumption, bad arguments) and
notebooks/over_smoothing.ipynb executed small."""
import json
import os

import pytest

from nbrun import run_notebook

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
TINY = ["--depths", "1,2", "--drop-paths", "0.1", "--seeds", "0,1", "--epochs", "1", "--subset", "40",
        "--test-subset", "20", "--probe", "4", "--dim", "16", "--heads", "2", "--batch-size", "20", "--no-mlflow"]


@needs_data
def test_tiny_run_and_resume(tmp_path):
    from vitc.experiments import over_smoothing
    out = tmp_path / "res"
    over_smoothing.main(TINY + ["--out", str(out)])
    saved = json.loads((out / "results.json").read_text())
    names = sorted(p for p in os.listdir(out / "runs"))
    # base and all with both seeds, cos/cons/mix with the first, re-attention only at the largest depth
    assert len(saved["runs"]) == len(names) == 2 * (2 + 3 + 2) + 1
    for r in saved["runs"]:
        assert len(r["token_similarity"]) == len(r["attention_spread"]) == r["depth"]
        assert len(r["per_epoch_over_smoothing"]) == 1 and 0 <= r["test_accuracy"] <= 1
    assert {r["arm"] for r in saved["runs"]} == {"base", "cos", "cons", "mix", "all", "reattention"}
    md = (out / "results.md").read_text()
    assert "| reattention | 2 | 0.1 |" in md and "(n=2)" in md
    for name in ("similarity_vs_layer.png", "spread_vs_layer.png", "accuracy.png", "collapse_vs_similarity.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    mtimes = {p: os.path.getmtime(out / "runs" / p) for p in names}
    again = over_smoothing.main(TINY + ["--out", str(out)])  # resumes: every run is kept, none retrained
    assert {p: os.path.getmtime(out / "runs" / p) for p in names} == mtimes
    assert [r["test_accuracy"] for r in again["runs"]] == [r["test_accuracy"] for r in saved["runs"]]
    rep = over_smoothing.main(TINY + ["--report-only", "--depths", "9", "--out", str(out)])  # trains nothing
    assert sorted(r["test_accuracy"] for r in rep["runs"]) == sorted(r["test_accuracy"] for r in saved["runs"])
    assert rep["depths"] == [1, 2] and {p: os.path.getmtime(out / "runs" / p) for p in names} == mtimes
    over_smoothing.main(TINY[:-1] + ["--lr", "0.01", "--arms", "base", "--depths", "1", "--seeds", "0", "--out", str(out),
                                     "--no-mlflow"])
    assert os.path.getmtime(out / "runs" / "base_d1_dp0.1_s0.json") > mtimes["base_d1_dp0.1_s0.json"]  # retrained


@pytest.mark.parametrize("argv,msg", [(["--arms", "base,foo"], "arms"), (["--depths", "0"], "depths"),
                                      (["--drop-paths", "x"], "drop-paths"), (["--dim", "10", "--heads", "4"], "divide")])
def test_bad_arguments(argv, msg, tmp_path):
    from vitc.experiments import over_smoothing
    with pytest.raises(SystemExit, match=msg):
        over_smoothing.main(argv + ["--out", str(tmp_path), "--no-mlflow"])


@needs_data
def test_notebook_runs_small():
    text, pngs = run_notebook("over_smoothing.ipynb", dict(VITC_NB_SUBSET="60", VITC_NB_EPOCHS="1",
                                                           VITC_NB_DEPTH="2", VITC_NB_THREADS="2"))
    assert "token similarity by block" in text and "test accuracy" in text
    assert pngs >= 1
