"""python -m vitc.experiments.token_labeling on a tiny Fashion-MNIST subset: teacher, label map, arms,
table, figures, resuming; the stale-map guard; argument errors; and an LV-ViT-mnist with token labeling
learning on real data."""
import json
import os

import numpy as np
import pytest

import vitc
from vitc import optim
from vitc.data.relabel import TokenLabelBatches, dataset_checksum, generate_label_map, load_label_map
from vitc.experiments import token_labeling as exp
from vitc.experiments.token_labeling.cli import _load
from vitc.experiments.token_labeling.runs import evaluate
from vitc.losses import TokenLabelingLoss
from vitc.models import create_model

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
TINY = ["--subset", "128", "--test-subset", "64", "--batch-size", "64", "--epochs", "1", "--seeds", "2",
        "--teacher-epochs", "1", "--threads", "2", "--no-mlflow", "--model", "lvvit_tiny_mnist"]


@needs_data
def test_experiment_runs_resumes_and_writes_the_table(tmp_path):
    out = tmp_path / "r"
    res = exp.main(TINY + ["--arms", "plain,tl_mixtoken", "--out", str(out)])
    data = json.loads((out / "results.json").read_text())
    assert [r["arm"] for r in data["rows"]] == ["plain", "tl_mixtoken"] and all(r["seeds"] == 2 for r in data["rows"])
    assert 0 <= data["teacher_accuracy"] <= 1 and (out / "arms.png").exists() and (out / "curves.png").exists()
    md = (out / "results.md").read_text()
    assert "| tl_mixtoken | tl + MixToken | 2 |" in md and "Teacher (resnet_mnist)" in md
    assert sorted(os.listdir(out / "runs")) == ["plain_seed0.json", "plain_seed1.json", "tl_mixtoken_seed0.json",
                                                "tl_mixtoken_seed1.json"]
    # a rerun reuses teacher, map and finished runs; a new arm is trained alone
    res2 = exp.main(TINY + ["--arms", "plain,tl_mixtoken,control", "--out", str(out)])
    assert res2["rows"][:2] == res["rows"]
    assert res2["rows"][2]["arm"] == "control"
    # --report-only tabulates what is finished and trains nothing (skip has no runs)
    res_r = exp.main(TINY + ["--arms", "plain,skip", "--report-only", "--out", str(out)])
    assert [r["arm"] for r in res_r["rows"]] == ["plain"] and res_r["rows"][0] == res["rows"][0]
    # RandAugment (geometric ops warping the map) changes the settings: those runs are trained again
    res3 = exp.main(TINY + ["--arms", "tl", "--seeds", "1", "--randaug", "rand-m9-mstd0.5-inc1", "--out", str(out)])
    assert res3["records"][0]["config"]["randaug"] == "rand-m9-mstd0.5-inc1"


def test_bad_arguments():
    with pytest.raises(SystemExit, match="--arms"):
        exp.main(["--arms", "nope"])
    with pytest.raises(SystemExit, match="beta"):
        exp.main(["--beta", "-1"])


@needs_data
def test_a_stale_label_map_is_refused(tmp_path):
    class A:
        subset, test_subset, data_root = 64, 64, None
    x, y, _ = _load(A, True)
    path = str(tmp_path / "m.safetensors")
    generate_label_map(create_model("resnet_mnist"), x, path, checksum=dataset_checksum(x, y))
    with pytest.raises(ValueError, match="another data set"):
        load_label_map(path, checksum=dataset_checksum(x[:, :, ::-1], y))


@needs_data
def test_lvvit_mnist_with_token_labeling_learns_on_real_data():
    class A:
        subset, test_subset, data_root = 512, 300, None
    x, y, k = _load(A, True)
    xt, yt, _ = _load(A, False)
    vitc.manual_seed(0)
    model = create_model("lvvit_tiny_mnist", depth=2)
    # no teacher map: every token learns the image label (the control's setting), MixToken on
    batches = TokenLabelBatches(x, y, None, 64, model.grid_size, num_classes=k, seed=0, scale=None, flip=0.0)
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    loss_fn = TokenLabelingLoss(beta=0.5)
    before = evaluate(model, xt, yt)["aux"]
    losses = []
    for _ in range(3):
        for xb, yc, ytok in batches:
            loss = loss_fn(model(xb), yc, ytok)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    after = evaluate(model, xt, yt)
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.3
    # chance is 10 %; the class head and the aux rule both learned
    assert after["aux"] > 0.3 and after["cls"] > 0.3 and after["aux"] > before + 0.2, (before, after)
