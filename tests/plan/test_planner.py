"""vitc.plan: the calibration cache (written, reloaded, invalidated), the Plan object, the CLI, the
train guard and bad input. The calibration's measurements are replaced by a counter here: these
tests check the cache logic, not this machine's rates (the sweep's test runs a real calibration)."""
import json
import os

import pytest

import vitc
import vitc.plan
from vitc.plan import calibration as cal
from vitc.plan.__main__ import main as plan_cli

FAKE_RATES = {"linear_s_per_flop": {"32": 1e-10, "512": 2e-11}, "attention_s_per_flop": {"32": 1e-10, "512": 3e-11},
              "mlp_s_per_flop": {"64": 1e-10, "1024": 2e-11}, "layer_norm_s_per_element": 1e-9,
              "add_s_per_element": 5e-10, "op_overhead_s": 2e-6,
              "optimizer_s_per_param": {"adam": 1e-9, "adam_bf16m": 2e-9, "adafactor": 3e-9, "sgd": 5e-10}}


@pytest.fixture
def fake_calibration(tmp_path, monkeypatch):
    calls = []

    def measure(repeats, widths=cal.CALIBRATION_WIDTHS):
        calls.append(vitc.get_num_threads())
        return json.loads(json.dumps(FAKE_RATES))
    monkeypatch.setenv("VITC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cal, "_measure", measure)
    return calls


def test_calibration_cache_written_reloaded_invalidated(fake_calibration, monkeypatch):
    calls = fake_calibration
    e1 = cal.load_calibration(threads=1)
    assert calls == [1] and os.path.exists(cal.cache_path())
    stored = json.loads(open(cal.cache_path()).read())
    assert list(stored["entries"]) == [cal.machine_key(1)[0]] and e1["threads"] == 1 and e1["vitc"] == vitc.__version__
    assert cal.load_calibration(threads=1)["rates"] == e1["rates"] and calls == [1]  # reloaded, not measured
    cal.load_calibration(threads=2)                                                  # another thread count
    assert calls == [1, 2] and len(json.loads(open(cal.cache_path()).read())["entries"]) == 2
    monkeypatch.setattr(vitc, "__version__", "999.0")                                # another vitc
    cal.load_calibration(threads=1)
    assert calls == [1, 2, 1]
    key = cal.machine_key(1)[0]
    monkeypatch.setattr(cal, "_cpu", lambda: ("Some Other CPU", "sse2"))             # another machine
    assert cal.machine_key(1)[0] != key
    cal.load_calibration(threads=1)
    assert calls == [1, 2, 1, 1]
    cal.load_calibration(threads=1, recalibrate=True)
    assert len(calls) == 5
    with open(cal.cache_path(), "w") as f:                                           # damaged file
        f.write("{not json")
    cal.load_calibration(threads=1)
    assert len(calls) == 6 and json.loads(open(cal.cache_path()).read())["entries"]


def test_plan_object_and_breakdown(fake_calibration):
    p = vitc.plan("vit_seed_mnist", 32, "adam", threads=1)  # the module called = vitc.plan.plan
    q = vitc.plan.plan("vit_seed_mnist", 32, "adam", threads=1)
    assert p.peak_bytes == q.peak_bytes and p.step_seconds == q.step_seconds > 0
    text = str(p)
    for word in ("parameters", "gradients", "optimizer state", "attention maps", "mlp hidden", "PEAK", "step time"):
        assert word in text
    assert p.fits(p.peak_bytes + p.input_bytes) and not p.fits(p.peak_bytes - 1)
    assert p.fits("100GiB") and "Plan(vit_seed_mnist" in repr(p)
    bigger = vitc.plan.plan("vit_seed_mnist", 64, "adam", threads=1)
    assert bigger.peak_bytes > p.peak_bytes and bigger.step_seconds > p.step_seconds
    assert vitc.plan.plan("vit_seed_mnist", 32, "adafactor", timing=False).peak_bytes < p.peak_bytes


def test_bad_input():
    plan = vitc.plan.plan
    with pytest.raises(ValueError, match="heads .* must divide"):
        plan(dict(dim=100, depth=2, heads=3, mlp_dim=200), 4, timing=False)
    with pytest.raises(ValueError, match="heads .* must divide"):
        plan("vit_scaling_Ti_16", 4, model_kwargs=dict(heads=5), timing=False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        plan("vit_seed_mnist", 4, "lamb", timing=False)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        plan("vit_seed_mnist", 0, timing=False)
    with pytest.raises(TypeError, match="batch must be an int"):
        plan("vit_seed_mnist", 2.5, timing=False)
    with pytest.raises(ValueError, match="unknown model"):
        plan("no_such_vit", 4, timing=False)
    with pytest.raises(ValueError, match="not modelled"):
        plan("deepvit_seed_mnist", 4, timing=False)
    with pytest.raises(ValueError, match="needs 'mlp_dim'"):
        plan(dict(dim=64, depth=2, heads=2), 4, timing=False)
    with pytest.raises(ValueError, match="threads"):
        plan("vit_seed_mnist", 4, threads=0)
    with pytest.raises(TypeError):
        plan(3.0, 4)
    p = plan("vit_seed_mnist", 4, timing=False)
    with pytest.raises(ValueError, match="below the parameters"):
        p.fits("1MiB")
    with pytest.raises(ValueError, match="memory size"):
        p.fits("lots")


def test_cli(fake_calibration, capsys):
    assert plan_cli(["--model", "vit_seed_mnist", "--batch", "8", "--memory-cap", "1GiB", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "PEAK" in out and "step time" in out and "FITS in 1.00 GiB" in out
    assert plan_cli(["--model", "vit_seed_mnist", "--batch", "512", "--memory-cap", "20MiB", "--no-timing"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out
    assert plan_cli(["--model", "vit_scaling_g_14", "--batch", "8", "--optimizer", "adafactor", "--no-timing",
                     "--model-kwargs", '{"image_size": 112}', "--memory-cap", "64GiB"]) == 0
    assert "1,03" in capsys.readouterr().out  # ~1.04e9 parameters, never allocated
    assert plan_cli(["--model", "vit_seed_mnist", "--batch", "8", "--memory-cap", "1MiB", "--no-timing"]) == 2
    assert "below the parameters" in capsys.readouterr().err
    assert plan_cli(["--model", "vit_seed_mnist", "--batch", "8", "--model-kwargs", "[1]", "--no-timing"]) == 2
    with pytest.raises(SystemExit):
        plan_cli(["--model", "vit_seed_mnist", "--batch", "8", "--optimizer", "lamb"])


def test_train_guard(monkeypatch, capsys):
    from vitc.plan import check_training_fits
    with pytest.raises(SystemExit, match="does not fit") as e:
        check_training_fits("vit_seed_mnist", 4096, "adam", memory_cap="64MiB")
    assert "PEAK" in str(e.value) and "--force" in str(e.value)
    logged = []
    p = check_training_fits("vit_seed_mnist", 4096, "adam", memory_cap="64MiB", force=True, log=logged.append)
    assert p.peak_bytes > 64 << 20 and "training anyway" in logged[0]
    assert check_training_fits("vit_seed_mnist", 8, "sgd", memory_cap="1GiB").optimizer == "sgd_momentum"
    assert check_training_fits("deepvit_seed_mnist", 8, log=logged.append) is None and "not checked" in logged[-1]


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
                    reason="Fashion-MNIST not installed")
def test_train_cli_refuses_unless_forced(monkeypatch, tmp_path):
    from vitc.plan import guard
    from vitc.train.__main__ import main as train_main
    monkeypatch.setattr(guard, "available_memory", lambda: 8 << 20)  # 8 MiB "available"
    args = ["--subset", "20", "--test-subset", "20", "--batch-size", "10", "--test-batch-size", "10", "--epochs", "0",
            "--no-progress", "--threads", "1"]
    with pytest.raises(SystemExit, match="does not fit"):
        train_main(args)
    assert train_main(args + ["--force"]) == 0
