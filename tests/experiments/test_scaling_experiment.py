"""python -m vitc.experiments.scaling: every subcommand on a tiny setting (files, figures, resumption,
the report subcommand) and bad arguments."""
import json
import os

import pytest

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
TINY = ["--no-mlflow", "--chunk", "64", "--batch-size", "32", "--warmup", "1", "--timescale", "4",
        "--test-subset", "60", "--shot-pool", "10", "--fewshot-seeds", "1", "--bootstrap", "20", "--threads", "1"]
SMALL = "8x1x16x2"


def _files(d):
    return sorted(os.listdir(d))


@needs_data
def test_power_law_branches_fit_and_resume(tmp_path):
    from vitc.experiments.scaling import main
    args = ["power-law", *TINY, "--sizes", f"{SMALL},16x1x32x2", "--budgets", "2,3,4", "--out", str(tmp_path)]
    res = main(args)
    d = tmp_path / "power-law"
    assert {"results.json", "results.md", "power_law.png", "images_seen.png", "points"} <= set(_files(d))
    assert not (d / "ckpt").exists()  # checkpoints removed once the points are saved
    pts = res["points"]
    assert len(pts) == 6 and all(p["images_seen"] == p["config"]["epochs"] * 64 for p in pts)
    # cooldown branches: 2 epochs from the long run's epoch-1 checkpoint, 3 from epoch 2; the longest is the run itself
    assert [p["extra_epochs"] for p in pts[:3]] == [1, 1, 0]
    assert pts[0]["history"]["test_accuracy"][:1] == pts[2]["history"]["test_accuracy"][:1]  # shared start
    assert pts[3]["flops"] / pts[3]["images_seen"] > pts[0]["flops"] / pts[0]["images_seen"]
    md = (d / "results.md").read_text()
    assert "| 16x1x32x2 |" in md and "Compute spanned" in md and "Fit to the upstream error frontier" in md
    mtimes = {p: os.path.getmtime(d / "points" / p) for p in _files(d / "points")}
    again = main(args)  # resumes: every point is read back, nothing retrained
    assert {p: os.path.getmtime(d / "points" / p) for p in _files(d / "points")} == mtimes
    assert [p["upstream_error"] for p in again["points"]] == [p["upstream_error"] for p in pts]
    main(["report", "--out", str(tmp_path), "--experiments", "power-law", "--bootstrap", "10"])


@needs_data
def test_sweeps_tiny(tmp_path):
    from vitc.experiments.scaling import main
    base = [*TINY, "--size", SMALL, "--out", str(tmp_path)]
    heads = main(["heads", *base, "--epochs", "2", "--seeds", "1"])
    assert [r["pool"] for r in heads["rows"]] == ["cls", "gap", "map"]
    assert heads["rows"][0]["params"] != heads["rows"][1]["params"]  # class token vs MAP probe
    wd = main(["weight-decay", *base, "--epochs", "2", "--head-decays", "0,30", "--body-decays", "0.03,3"])
    assert len(wd["cells"]) == 4 and "Best 10-shot cell" in (tmp_path / "weight-decay" / "results.md").read_text()
    # width 32: the (96, 32) qkv and (32, 32) kernels reach Adafactor's factoring threshold (32)
    opt = main(["optimizers", *base, "--epochs", "2", "--size", "32x1x32x2"])
    sb = {r["optimizer"]: r["state_bytes"] for r in opt["rows"]}
    p4 = opt["rows"][0]["param_bytes"]
    assert sb["adam-f32"] == 2 * p4 and sb["adam-bf16m"] == sb["adam-bf16v"] == 3 * p4 // 2
    assert sb["adafactor"] < sb["adam-bf16m"]  # factored second moment
    tr = opt["trace"]
    assert tr["f32"][-1] == pytest.approx(tr["exact"][-1], rel=1e-3)
    assert tr["bf16"][-1] > 5 * tr["exact"][-1]  # the bf16 second moment does not decay
    rl = main(["rsqrt-vs-linear", *base, "--budgets", "2,4"])
    assert [p["images_seen"] for p in rl["linear"]] == [128, 256]
    assert rl["cost_flops"]["rsqrt_with_branches"] < rl["cost_flops"]["separate_linear_runs"]
    for name, png in (("heads", "heads.png"), ("weight-decay", "weight_decay.png"), ("optimizers", "optimizers.png"),
                      ("rsqrt-vs-linear", "rsqrt_vs_linear.png")):
        assert (tmp_path / name / png).read_bytes()[:4] == b"\x89PNG"
        assert json.loads((tmp_path / name / "results.json").read_text())["experiment"] == name


def test_bad_arguments(tmp_path, capsys):
    from vitc.experiments.scaling import main
    with pytest.raises(SystemExit):
        main(["power-law", "--sizes", "30x2x64x4", "--out", str(tmp_path)])  # 4 heads do not divide 30
    assert "heads (4) must divide the width (30)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["heads", "--size", "big", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--warmup"):
        main(["power-law", "--budgets", "1", "--warmup", "100", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="upstream-classes"):
        main(["heads", "--upstream-classes", "9", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["report", "--out", str(tmp_path / "none")])
