"""python -m vitc.experiments.vit_batchnorm on tiny IDX files: experiment 1 on both backends with
MLflow, the Bayesian search with its persistent study, the PyTorch backend's models against vitc's,
and bad inputs that must fail before any training."""
import json
import os
import urllib.request

import numpy as np
import pytest
from nbrun import ROOT, run_notebook

import vitc
from vitc.data import write_idx
from vitc.experiments import vit_batchnorm as exp

TINY = {"depth": 2, "dim": 16, "heads": 2, "dim_head": 8, "mlp_dim": 32}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, *a, **k):
        raise AssertionError(f"test tried to open {url!r}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def data_root(tmp_path):
    """Fashion-MNIST-named IDX files: 40 train / 20 test images whose class is a bright quadrant."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    root.mkdir()
    for prefix, n in (("train", 40), ("t10k", 20)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            r, q = divmod(int(c) % 4, 2)
            x[i, r * 14:r * 14 + 14, q * 14:q * 14 + 14] += 150
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return str(root)


def _kw(tmp_path, data_root, **kw):
    base = dict(dataset="fashion-mnist", data_root=data_root, out=str(tmp_path / "out"), overrides=TINY,
                test_batch_size=20, mlflow=False, log=None)
    base.update(kw)
    return base


def test_fixed_lr_both_backends(tmp_path, data_root):
    pytest.importorskip("torch")
    doc = exp.run_fixed_lr(**_kw(tmp_path, data_root, lrs="0.0005,0.002", epochs=2, batch_size=10, subset=20,
                                 backend="vitc,torch"))
    out = tmp_path / "out"
    runs = doc["runs"]
    assert len(runs) == 2 * 2 * 5 and doc["meta"]["dataset"] == "Fashion-MNIST"
    for r in runs:
        assert r["epoch"] == [1, 2] and len(r["train_time"]) == 2 and all(t > 0 for t in r["test_time"])
        assert all(0 <= a <= 1 for a in r["test_accuracy"])
    # the PyTorch backend trains the same models from the same weights on the same batches
    by = {(r["backend"], r["model"], r["lr"]): r for r in runs}
    for m in exp.MODELS:
        a, b = by[("vitc", m, 0.0005)], by[("torch", m, 0.0005)]
        np.testing.assert_allclose(a["train_loss"][0], b["train_loss"][0], rtol=1e-3, err_msg=m)
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 20 and saved["meta"]["finished"]
    for name in ["fig_vitc_lr0.0005.png", "fig_torch_lr0.002.png", "fig_vitc_train_time_vs_lr.png",
                 "fig_torch_train_time_vs_lr.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    table = (out / "table.md").read_text()
    assert table.count("| vitc |") == 8 and table.count("| torch |") == 8 and "bug ×" in table
    # `report` rebuilds figures and table from results.json (e.g. after an interrupted run)
    (out / "table.md").unlink()
    (out / "fig_vitc_lr0.0005.png").unlink()
    assert exp.main(["report", "--out", str(out)]) == 0
    assert (out / "table.md").read_text() == table and (out / "fig_vitc_lr0.0005.png").exists()
    with pytest.raises(SystemExit, match="cannot read"):
        exp.main(["report", "--out", str(tmp_path / "nothing")])
    rows = exp.ratio_rows(runs)
    r = next(x for x in rows if x["backend"] == "vitc" and x["model"] == "ViTBN" and x["label"] == "lr0.0005")
    vit = by[("vitc", "ViT", 0.0005)]
    assert r["r_t"] == pytest.approx(np.median(vit["train_time"]) /
                                     np.median(by[("vitc", "ViTBN", 0.0005)]["train_time"]))
    assert r["g_t"] == pytest.approx(1 - 1 / r["r_t"])
    assert "bug_t" in next(x for x in rows if x["model"] == "ViTBN-article")
    assert r["r_t_min"] == pytest.approx(min(vit["train_time"]) / min(by[("vitc", "ViTBN", 0.0005)]["train_time"]))
    # a run whose epochs met another load gets a warning with the fastest-epoch ratios; steady runs none
    steady = [dict(x, train_time=[10.0, 10.5, 11.0]) for x in runs]
    assert "Load warning" not in exp.ratio_table(steady)
    loaded = [dict(x, train_time=[10.0, 30.0, 11.0]) if x["model"] == "ViT" else dict(x, train_time=[12.0, 12.5, 13.0])
              for x in runs]
    text = exp.ratio_table(loaded)
    assert "Load warning" in text and "ViT (vitc, lr0.0005) 10–30 s" in text and "ViTBN (vitc, lr0.0005) 0.83" in text
    assert all(r["mlflow_run_id"] is None for r in runs)


def test_fixed_lr_resume_adds_missing_cells(tmp_path, data_root):
    # a long run spans sessions: one backend or a few cells per invocation, one table at the end
    kw = _kw(tmp_path, data_root, models="ViT,ViTBN", epochs=1, batch_size=10, subset=20)
    first = exp.run_fixed_lr(lrs="0.001", **kw)
    kept = first["runs"][0]
    doc = exp.run_fixed_lr(lrs="0.001,0.002", resume=True, **kw)
    assert [(r["model"], r["lr"]) for r in doc["runs"]] == [("ViT", 0.001), ("ViTBN", 0.001), ("ViT", 0.002),
                                                             ("ViTBN", 0.002)]
    assert doc["runs"][0] == kept  # not re-run
    assert doc["meta"]["lrs"] == [0.001, 0.002] and len(doc["meta"]["invocations"]) == 2
    table = (tmp_path / "out" / "table.md").read_text()
    assert "lr0.001 |" in table and "lr0.002 |" in table
    # nothing left to do: no training, same runs
    again = exp.run_fixed_lr(lrs="0.001,0.002", resume=True, **kw)
    assert again["runs"] == doc["runs"]
    with pytest.raises(ValueError, match="epochs: 1 there, 2 now"):
        exp.run_fixed_lr(lrs="0.001", resume=True, **dict(kw, epochs=2))
    threads = vitc.get_num_threads()
    try:
        with pytest.raises(ValueError, match=f"threads: {threads} there, {threads + 1} now"):
            exp.run_fixed_lr(lrs="0.001", resume=True, threads=threads + 1, **kw)
    finally:
        vitc.set_num_threads(threads)


def test_pause_file_holds_the_run_and_is_not_timed(tmp_path, data_root, monkeypatch):
    pause = tmp_path / "PAUSE"
    pause.write_text("")
    clock = [0.0]
    slept = []

    def fake_sleep(s):  # a 5-second pause that the epoch's time must not contain
        slept.append(s)
        clock[0] += s
        if sum(slept) >= 5.0:
            pause.unlink()
    monkeypatch.setattr(exp.time, "sleep", fake_sleep)
    real = exp.time.perf_counter
    monkeypatch.setattr(exp.time, "perf_counter", lambda: real() + clock[0])
    lines = []
    doc = exp.run_fixed_lr(**_kw(tmp_path, data_root, models="ViT", lrs="0.001", epochs=1, batch_size=10, subset=20,
                                 pause_file=str(pause), log=lines.append))
    run = doc["runs"][0]
    assert run["paused"][0] == pytest.approx(5.0, abs=0.3) and run["train_time"][0] < 4.0
    paused_at = next(i for i, ln in enumerate(lines) if "paused" in ln)
    assert paused_at < next(i for i, ln in enumerate(lines) if "epoch 1/1" in ln)


def test_fixed_lr_logs_to_mlflow(tmp_path, data_root, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # honoured when --tracking-uri is not given
    doc = exp.run_fixed_lr(**_kw(tmp_path, data_root, models="ViT,ViTBN", lrs="0.002", epochs=2, batch_size=10,
                                 subset=20, mlflow=True, experiment="t"))
    assert doc["meta"]["mlflow_tracking_uri"] == uri
    # one MLflow run per backend × model × lr, the article's four metrics logged with their epoch as step
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    mruns = client.search_runs([client.get_experiment_by_name("t").experiment_id], max_results=100)
    assert sorted(x.info.run_name for x in mruns) == ["vitc-ViT-lr0.002", "vitc-ViTBN-lr0.002"]
    one = next(x for x in mruns if x.info.run_name == "vitc-ViTBN-lr0.002")
    assert one.data.params["learning_rate"] == "0.002" and one.data.params["bn_first_block_only"] == "False"
    rec = next(r for r in doc["runs"] if r["model"] == "ViTBN")
    assert rec["mlflow_run_id"] == one.info.run_id
    for key, metric in (("train_loss", "training_loss"), ("test_accuracy", "validation_accuracy"),
                        ("train_time", "training_time"), ("test_time", "validation_time")):
        hist = client.get_metric_history(one.info.run_id, metric)
        assert [h.step for h in hist] == [1, 2] and [h.value for h in hist] == pytest.approx(rec[key]), metric

def test_torch_backend_models_match_vitc(tmp_path, data_root):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).uniform(0, 1, (6, 1, 28, 28)).astype(np.float32)
    for m in exp.MODELS:
        v, t = exp._build(m, "vitc", 3, TINY), exp._build(m, "torch", 3, TINY)
        np.testing.assert_allclose(v(vitc.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=m)
        assert sum(p.numel() for p in t.parameters()) == v.num_parameters()


def test_bayes_search_persists_its_study(tmp_path, data_root, capsys):
    optuna = pytest.importorskip("optuna")
    storage = "sqlite:///" + str(tmp_path / "study.db")
    kw = _kw(tmp_path, data_root, models="vit,vitbn", trial_epochs=1, epochs=1, storage=storage)
    doc = exp.run_bayes_search(trials=3, **kw)
    assert set(doc["studies"]) == {"vitc/ViT", "vitc/ViTBN"}
    for key, s in doc["studies"].items():
        assert len(s["trials"]) == 3
        lo, hi = exp.LR_RANGE[key.endswith("BN")]
        for t in s["trials"]:
            assert lo <= t["params"]["lr"] <= hi and 20 <= t["params"]["batch_size"] <= 120
        assert s["best"]["value"] == max(t["value"] for t in s["trials"])
    assert {r["model"] for r in doc["runs"]} == {"ViT", "ViTBN"} and all(r["label"] == "optimised" for r in doc["runs"])
    out = tmp_path / "out"
    for name in ["fig_vitc_ViT_convergence.png", "fig_vitc_ViTBN_convergence.png", "fig_vitc_optimised.png",
                 "fig_vitc_search_lr.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert "table 2" in (out / "table.md").read_text()
    # the retrainings are kept one file each: asking again (the same study, settings) trains nothing
    monkey = pytest.MonkeyPatch()
    monkey.setattr(exp.runs, "train_and_test", lambda *a, **k: pytest.fail("retrained a finished model"))
    try:
        again = exp.run_bayes_search(trials=3, **kw)
    finally:
        monkey.undo()
    assert [r["test_accuracy"] for r in again["runs"]] == [r["test_accuracy"] for r in doc["runs"]]
    # the study lives in the storage: asking for 4 trials runs only one more
    doc = exp.run_bayes_search(trials=4, **dict(kw, epochs=0))
    assert len(doc["studies"]["vitc/ViT"]["trials"]) == 4
    st = optuna.load_study(study_name="vit_batchnorm-vitc-ViTBN", storage=storage)
    assert len(st.trials) == 4
    # the restarted worker drew a new point (its sampler's seed moves with the study's trials; with the
    # first run's seed, TPE's random start-up would give trial 0's parameters again)
    for name in ("vit_batchnorm-vitc-ViT", "vit_batchnorm-vitc-ViTBN"):
        params = [tuple(sorted(t.params.items())) for t in optuna.load_study(study_name=name, storage=storage).trials]
        assert len(set(params)) == 4, name
    # the record of the studies: a table and every trial in studies.json
    exp.main(["studies", "--storage", storage, "--study-prefix", "vit_batchnorm", "--out", str(tmp_path / "st")])
    text = capsys.readouterr().out
    assert "| vit_batchnorm-vitc-ViT | 4 | 4 | 4 | 0 | 0 | 0 |" in text, text
    rec = json.loads((tmp_path / "st" / "studies.json").read_text())
    assert set(rec) == {"vit_batchnorm-vitc-ViT", "vit_batchnorm-vitc-ViTBN"}
    vit = rec["vit_batchnorm-vitc-ViT"]
    assert [t["number"] for t in vit["trials"]] == [0, 1, 2, 3] and vit["counts"] == {"COMPLETE": 4}
    assert vit["best"]["value"] == max(t["value"] for t in vit["trials"])
    with pytest.raises(SystemExit, match="no study named nothing"):
        exp.main(["studies", "--storage", storage, "--study-prefix", "nothing"])


def test_retraining_resumes_after_the_last_saved_epoch(tmp_path, data_root):
    """a retraining killed after epoch 1 of 3 continues from its checkpoint: the same history and
    bit-identical weights as one uninterrupted run"""
    from vitc.io import load_safetensors
    from vitc.train import latest_checkpoint
    tr, te = exp.load_data("fashion-mnist", data_root, None, None, False)[1:3]
    kw = dict(test_batch_size=20, seed=1, overrides=TINY, log=None, checkpoint_key={"model": "ViTBN", "lr": 1e-3})
    whole_dir, cut_dir = str(tmp_path / "whole"), str(tmp_path / "cut")
    whole = exp.train_and_test("ViTBN", "vitc", 1e-3, 8, 3, tr, te, checkpoint_dir=whole_dir, **kw)
    exp.train_and_test("ViTBN", "vitc", 1e-3, 8, 1, tr, te, checkpoint_dir=cut_dir, **kw)  # "killed" after epoch 1
    seen = []
    resumed = exp.train_and_test("ViTBN", "vitc", 1e-3, 8, 3, tr, te, checkpoint_dir=cut_dir, on_epoch=seen.append, **kw)
    assert [r["epoch"] for r in seen] == [2, 3]  # epoch 1 was not trained again
    assert resumed["train_loss"] == whole["train_loss"] and resumed["test_accuracy"] == whole["test_accuracy"]
    a, b = (load_safetensors(os.path.join(latest_checkpoint(d), "model.safetensors")) for d in (whole_dir, cut_dir))
    assert set(a) == set(b) and len(a) > 0
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
    with pytest.raises(ValueError, match="checkpoint of other settings"):
        exp.train_and_test("ViTBN", "vitc", 1e-3, 8, 3, tr, te, checkpoint_dir=cut_dir,
                           **dict(kw, checkpoint_key={"model": "ViTBN", "lr": 2e-3}))
    with pytest.raises(ValueError, match="vitc backend only"):
        exp.train_and_test("ViTBN", "torch", 1e-3, 8, 1, tr, te, checkpoint_dir=cut_dir, **kw)


@pytest.mark.parametrize("change, match", [
    (dict(models="ViT,ViTXL"), "unknown model 'ViTXL'"),
    (dict(backend="jax"), "unknown backend 'jax'"),
    (dict(lrs="0.001,0"), "learning rate must be > 0"),
    (dict(lrs="-1e-3"), "learning rate must be > 0"),
    (dict(batch_size=1), "batch size 1 with BatchNorm models"),
    (dict(epochs=0), "epochs must be"),
    (dict(overrides={"depth": 1, "image_size": 32}), "image_size"),
])
def test_bad_input_fails_before_training(tmp_path, data_root, change, match):
    kw = _kw(tmp_path, data_root, lrs="0.001", epochs=1, batch_size=10)
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        exp.run_fixed_lr(**kw)
    assert not (tmp_path / "out" / "results.json").exists()


def test_cli_errors_and_batch_size_one_without_bn(tmp_path, data_root, capsys):
    with pytest.raises(SystemExit, match="unknown model"):
        exp.main(["fixed-lr", "--models", "resnet", "--data-root", data_root, "--dataset", "fashion-mnist"])
    with pytest.raises(SystemExit, match="learning rate must be > 0"):
        exp.main(["fixed-lr", "--lrs", "0", "--dataset", "fashion-mnist", "--data-root", data_root])
    with pytest.raises(SystemExit, match="batch size 1 with BatchNorm"):
        exp.main(["fixed-lr", "--batch-size", "1", "--models", "ViT,ViTBN", "--dataset", "fashion-mnist"])
    with pytest.raises(SystemExit, match="unknown backend"):
        exp.main(["bayes-search", "--backend", "tf", "--dataset", "fashion-mnist"])
    with pytest.raises(SystemExit, match="not valid JSON"):
        exp.main(["fixed-lr", "--model-overrides", "{depth", "--dataset", "fashion-mnist"])
    with pytest.raises(SystemExit, match="MNIST not available"):
        exp.main(["fixed-lr", "--dataset", "mnist", "--no-download", "--data-root", str(tmp_path / "none")])
    # batch size 1 is fine for the LayerNorm ViT; the CLI path end to end
    out = tmp_path / "cli"
    assert exp.main(["fixed-lr", "--models", "vit", "--lrs", "0.001", "--epochs", "1", "--batch-size", "1",
                     "--subset", "5", "--test-subset", "5", "--dataset", "fashion-mnist", "--data-root", data_root,
                     "--no-mlflow", "--out", str(out), "--model-overrides", json.dumps(TINY)]) == 0
    assert "data: Fashion-MNIST" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["command"].startswith("python -m vitc.experiments.vit_batchnorm fixed-lr")
    assert len(doc["runs"]) == 1 and doc["runs"][0]["batch_size"] == 1


def test_dataset_auto_falls_back_to_fashion_mnist(tmp_path):
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    name, tr, te, note = exp.load_data("auto", data_root=str(tmp_path / "no-mnist"), subset=10, test_subset=10,
                                       download=False)
    assert name == "Fashion-MNIST" and len(tr) == 10 and "MNIST not available" in note and "Fashion-MNIST" in note


def test_notebook_executes_small(tmp_path, data_root):
    text, pngs = run_notebook("vit_batchnorm.ipynb", dict(
        VITC_NB_SUBSET="20", VITC_NB_TEST_SUBSET="10", VITC_NB_EPOCHS="1", VITC_NB_LRS="0.001",
        VITC_NB_DATASET="fashion-mnist", VITC_NB_DATA_ROOT=data_root, VITC_NB_OVERRIDES=json.dumps(TINY)),
        cwd=tmp_path)
    assert "experiment 1 done" in text and "blocks that received a gradient: [0] of 2" in text
    assert "max |y - formula|" in text
    # the small run's four-panel figure and train time vs lr, then the committed full run's lr 1e-2 figures
    full = os.path.join(ROOT, "docs", "results", "vit_batchnorm_full")
    shown = [f for f in ("fig_vitc_lr0.01.png", "fig_torch_lr0.01.png") if os.path.exists(os.path.join(full, f))]
    assert f"full run: {len(shown)} figures shown" in text and pngs == 2 + len(shown)


def test_search_figures_name_the_trial_epochs_not_the_retraining_epochs():
    """a search with --trial-epochs 3 and --epochs 30 said '30 epoch(s) per trial' under its figures"""
    from vitc.experiments.vit_batchnorm.report import run_note
    meta = {"dataset": "Fashion-MNIST", "train_samples": 60000, "test_samples": 10000, "epochs": 30, "seed": 0}
    assert run_note(meta, what="epoch(s) per trial", epochs=3) == \
        "Fashion-MNIST: 60000 train / 10000 test images, 3 epoch(s) per trial, seed 0"
    assert "30 epoch(s)," in run_note(meta)
