"""python -m vitc.experiments.deit on a tiny Fashion-MNIST subset: the teacher is trained, saved and
reloaded, the three students run with the full recipe, the table and JSON are written; the recipe
pieces (weight-decay groups, the batch pipeline) and argument errors."""
import json
import os

import numpy as np
import pytest

import vitc
from vitc.data import Mixup
from vitc.experiments import deit as exp
from vitc.models import create_model

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
TINY = ["--subset", "256", "--test-subset", "200", "--batch-size", "64", "--test-batch-size", "200", "--epochs", "1",
        "--no-progress", "--threads", "2"]


@needs_data
def test_experiment_runs_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "r"
    res = exp.main(TINY + ["--teacher-epochs", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| teacher | resnet_mnist |" in printed and "| hard | deit_mnist_distilled |" in printed
    md = (out / "results.md").read_text()
    data = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in data["rows"]] == ["teacher", "none", "soft", "hard"]
    assert set(data["rows"][2]["test_accuracy"]) == {"cls", "dist", "avg", "sum_softmax"}
    assert set(data["rows"][1]["test_accuracy"]) == {"cls"}
    for r in data["rows"]:
        assert all(0.0 <= a <= 1.0 for a in r["test_accuracy"].values())
    assert "soft τ=3 λ=0.1" in md and data["machine"]["threads"] == 2
    assert res["rows"][0]["test_accuracy"] == data["rows"][0]["test_accuracy"]
    # the saved teacher reloads with the same accuracy and skips training
    out2 = tmp_path / "r2"
    res2 = exp.main(TINY + ["--teacher", str(out / "teacher.safetensors"), "--runs", "hard", "--out", str(out2)])
    assert res2["rows"][0]["test_accuracy"] == res["rows"][0]["test_accuracy"]
    assert res2["rows"][0]["train_time"] == 0.0 and [r["run"] for r in res2["rows"]] == ["teacher", "hard"]
    # the same seed repeats the hard run exactly (augmentations and dropping are seeded)
    assert res2["rows"][1]["test_accuracy"] == res["rows"][3]["test_accuracy"]


def test_weight_decay_groups():
    m = create_model("deit_mnist_distilled", depth=1)
    no_decay, decay = exp.param_groups_weight_decay(m, 0.05)
    names = {id(p): n for n, p in m.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embedding", "cls_token", "dist_token", "mlp_head.bias", "transformer.norm.weight"} <= nd
    assert all(p.ndim >= 2 for p in decay["params"]) and "mlp_head.weight" in {names[id(p)] for p in decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert len(no_decay["params"]) + len(decay["params"]) == len(list(m.parameters()))


def test_recipe_transform_mixes_and_normalizes():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 1, 28, 28)).astype(np.float32)
    y = np.arange(8) % 10
    plain = exp.RecipeTransform(0.5, 0.25)
    xn, yn = plain(x, y, np.random.default_rng(1))
    np.testing.assert_allclose(xn, (x - 0.5) / 0.25, rtol=1e-6)
    assert yn is y
    t = exp.RecipeTransform(0.5, 0.25, mixup=Mixup(0.8, 1.0, num_classes=10))
    xm, ym = t(x, y, np.random.default_rng(1))
    assert ym.shape == (8, 10) and ym.dtype == np.float32
    np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-6)
    xm2, ym2 = t(x, y, np.random.default_rng(1))
    np.testing.assert_array_equal(xm, xm2)  # seeded by the generator


def test_bad_arguments():
    with pytest.raises(SystemExit, match="--runs"):
        exp.main(["--runs", "soft,medium"])
    with pytest.raises(SystemExit, match="even"):
        exp.main(["--batch-size", "63"])
