"""python -m vitc.train: --help, option checks, model keyword arguments, the per-epoch line, metrics and history."""
import argparse
import json
import re

import numpy as np
import pytest

import vitc
from vitc.train import cli_build
from vitc.train.__main__ import build_parser
from vitc.train.cli_data import OptionError

from trainer_helpers import SMALL, TINY, needs_fmnist, run_main, run_subprocess


def test_help_shows_every_default():
    text = build_parser().format_help()
    actions = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
    # each option's entry starts on its own line with its flag; it must state the default
    starts = [re.search(rf"^  {a.option_strings[-1]}\b", text, re.M).start() for a in actions]
    assert starts == sorted(starts)
    for a, begin, end in zip(actions, starts, starts[1:] + [len(text)]):
        entry = " ".join(text[begin:end].split())
        assert f"(default: {a.default})" in entry, entry


def test_model_kwargs_json_or_key_value():
    assert cli_build.parse_model_kwargs(None) == {}
    assert cli_build.parse_model_kwargs(['{"depth": 2, "pool": "mean"}']) == {"depth": 2, "pool": "mean"}
    got = cli_build.parse_model_kwargs(["depth=2", "pool=mean", "drop_path=0.1", "class_token=False",
                                        "image_size=[28,28]", "qkv_bias=true", "name=\"x\""])
    assert got == {"depth": 2, "pool": "mean", "drop_path": 0.1, "class_token": False, "image_size": [28, 28],
                   "qkv_bias": True, "name": "x"}
    for bad, match in ((["depth"], "not key=value"), (["depth=1", "depth=2"], "given twice"),
                       (["{depth: 1}"], "not a valid JSON"), (["[1]="], "not key=value")):
        with pytest.raises(OptionError, match=match):
            cli_build.parse_model_kwargs(bad)


def test_the_data_decides_size_channels_and_classes_under_the_models_own_names():
    info = {"channels": 3, "image_size": (32, 32), "num_classes": 7}
    model, kw = cli_build.build_model("resnet_mnist", {}, info)  # ResNet: in_channels, no image size
    assert kw == {"in_channels": 3, "num_classes": 7}
    x = vitc.from_numpy(np.zeros((2, 3, 32, 32), np.float32))
    assert tuple(model(x).shape) == (2, 7)
    model, kw = cli_build.build_model("vit_seed_mnist", {"patch_size": 8, "depth": 1}, info)
    assert kw == {"patch_size": 8, "depth": 1, "image_size": 32, "channels": 3, "num_classes": 7}
    assert tuple(model(x).shape) == (2, 7)
    _, kw = cli_build.build_model("vit_seed_mnist", {"depth": 1, "num_classes": 12},
                                  {"channels": 1, "image_size": (28, 14), "num_classes": 10})
    assert kw["num_classes"] == 12 and kw["image_size"] == [28, 14]  # the user's value wins
    with pytest.raises(OptionError, match=r"vit_seed_mnist with .*divisible by the patch size"):
        cli_build.build_model("vit_seed_mnist", {}, info)  # 32 px, patch 7
    with pytest.raises(OptionError, match="unexpected keyword argument 'no_such_option'"):
        cli_build.build_model("vit_seed_mnist", {"no_such_option": 1}, info)


def test_a_model_with_fewer_logits_than_classes_is_refused():
    model, _ = cli_build.build_model("resnet_mnist", {"num_classes": 5}, {"channels": 1, "image_size": (28, 28),
                                                                          "num_classes": 10})
    data = [(np.zeros((1, 28, 28), np.float32), 0)] * 2
    with pytest.raises(OptionError, match="gives 5 logits but the data set has 10 classes; pass --model-kwargs "
                                          "num_classes=10"):
        cli_build.check_logits(model, data, 10, "resnet_mnist")
    with pytest.raises(OptionError, match=r"does not take this data set's images \(3, 28, 28\)"):
        cli_build.check_logits(model, [(np.zeros((3, 28, 28), np.float32), 0)], 10, "resnet_mnist")
    assert model.training


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "--epochs must be >= 0"),
    (["--accum-steps", "0"], "--accum-steps must be >= 1"),
    (["--lr", "nan"], "--lr must be a finite number >= 0"),
    (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
    (["--clip-grad", "0"], "--clip-grad must be a positive number"),
    (["--model", "nope"], "unknown model 'nope'; available: "),
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--metrics", "m.txt"], "must end in .csv or .jsonl"),
    (["--dataset", "npz"], "--dataset npz needs --data-root"),
    (["--img-size", "32"], "--img-size resizes an imagefolder"),
    (["--model-kwargs", "depth"], "not key=value"),
])
def test_bad_options_end_with_one_error_line(argv, message):
    code, out, err = run_main(*argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_the_command_line_gives_one_line_and_status_2_without_a_traceback(tmp_path):
    r = run_subprocess("--resume", "--checkpoint-dir", tmp_path / "nothing")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert f"--checkpoint-dir {tmp_path / 'nothing'} does not exist" in r.stderr


@needs_fmnist
def test_epoch_line_metrics_and_history(tmp_path):
    m_csv, m_jsonl, hist = tmp_path / "m.csv", tmp_path / "m.jsonl", tmp_path / "h.json"
    code, out, err = run_main(*SMALL, *TINY, "--epochs", "2", "--metrics", m_csv, "--history", hist)
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2
    rows = m_csv.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "train_loss_sum", "train_loss"] and len(rows) == 3
    doc = json.loads(hist.read_text())
    h = doc["history"]
    assert h["epoch"] == [1, 2] and doc["model_kwargs"]["depth"] == 1 and doc["args"]["epochs"] == 2
    for i, line in enumerate(lines):  # the printed numbers are the recorded ones: mean first, then the sum
        mean, n, total, test_loss = re.search(r"train loss ([\d.]+) \(mean of (\d+) batches; sum of \d+ batch means "
                                              r"([\d.]+)\), test loss ([\d.]+)", line).groups()
        assert int(n) == 4 and float(mean) == pytest.approx(h["train_loss"][i], abs=1e-4)
        assert float(total) == pytest.approx(h["train_loss_sum"][i], abs=1e-4)
        assert float(test_loss) == pytest.approx(h["test_loss"][i], abs=1e-4)
        assert h["train_loss"][i] == pytest.approx(h["train_loss_sum"][i] / 4)
    assert 0 < h["test_loss"][0] < 10
    code, _, err = run_main(*SMALL, *TINY, "--metrics", m_jsonl)
    assert code == 0, err
    recs = [json.loads(ln) for ln in m_jsonl.read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1] and recs[0]["test_loss"] == pytest.approx(h["test_loss"][0])


@needs_fmnist
def test_a_crash_keeps_the_finished_epochs_in_metrics_and_history(tmp_path, monkeypatch):
    import vitc.train as vtrain
    real = vtrain.train_one_epoch

    def crash_in_epoch_2(model, loader, optimizer, loss_fn, epoch=0, *a, **k):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash in epoch 2")
        return real(model, loader, optimizer, loss_fn, epoch, *a, **k)

    monkeypatch.setattr(vtrain, "train_one_epoch", crash_in_epoch_2)
    m, hist = tmp_path / "m.csv", tmp_path / "h.json"
    with pytest.raises(KeyboardInterrupt):
        run_main(*SMALL, *TINY, "--epochs", "3", "--metrics", m, "--history", hist)
    assert len(m.read_text().splitlines()) == 2  # header + epoch 1
    assert json.loads(hist.read_text())["history"]["epoch"] == [1]


def test_metrics_text_formats():
    from vitc.train.cli_record import metrics_text
    h = {"epoch": [1, 2], "train_loss": [0.5, 0.25], "test_loss": [None, 0.125]}
    assert metrics_text(h, "csv") == "epoch,train_loss,test_loss\n1,0.5,\n2,0.25,0.125\n"
    assert metrics_text(h, "jsonl") == ('{"epoch": 1, "train_loss": 0.5, "test_loss": null}\n'
                                        '{"epoch": 2, "train_loss": 0.25, "test_loss": 0.125}\n')


def test_explicit_options_are_told_apart_from_defaults():
    from vitc.train.__main__ import _explicit
    assert _explicit(["--lr", "5e-4", "--ema"]) == {"lr": 5e-4, "ema": True}
    assert _explicit([]) == {}
    assert isinstance(build_parser().parse_args([]), argparse.Namespace)


def test_the_recorder_replaces_epochs_that_run_again(tmp_path):
    from vitc.train.cli_record import EpochRecorder
    rec = EpochRecorder(str(tmp_path / "m.jsonl"), None, {}, {"epoch": [1, 2, 3], "test_loss": [0.3, 0.2, 0.1]})
    rec({"epoch": 3, "test_loss": 0.15})  # resumed from epoch 2's checkpoint (epoch 3's was damaged)
    assert rec.history == {"epoch": [1, 2, 3], "test_loss": [0.3, 0.2, 0.15]}
    assert [json.loads(ln)["test_loss"] for ln in (tmp_path / "m.jsonl").read_text().splitlines()] == [0.3, 0.2, 0.15]


def test_the_mlflow_missing_hint_names_an_option_the_command_has(monkeypatch):
    """The trainer has no --no-mlflow: without MLflow, --tracking-uri is refused with a hint to drop it; the
    experiments' Tracker says --no-mlflow only where the command has it (off_hint)."""
    import sys
    from vitc.experiments.common import Tracker
    from vitc.train.__main__ import build_parser
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.exceptions", None)
    code, _, err = run_main("--tracking-uri", "sqlite:///x.db", "--epochs", "0", "--no-progress")
    assert code == 2 and "--tracking-uri needs MLflow" in err and "drop --tracking-uri" in err, err
    assert "--no-mlflow" not in err
    options = {s for a in build_parser()._actions for s in a.option_strings}
    assert "--tracking-uri" in options and "--no-mlflow" not in options
    with pytest.raises(ValueError, match="or drop --tracking-uri$"):
        Tracker(True, ".", None, "x", off_hint="drop --tracking-uri")
    with pytest.raises(ValueError, match="or pass --no-mlflow$"):
        Tracker(True, ".", None, "x")
