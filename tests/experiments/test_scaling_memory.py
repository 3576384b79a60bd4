"""python -m vitc.experiments.scaling_memory on a tiny grid: files, the planner beside every
measurement (memory within 10 %, exact state bytes), resumption, bad arguments. Times are recorded,
never asserted on."""
import json
import os

import pytest

TINY = ["--depths", "1", "--widths", "32,64", "--mlp-ratios", "2", "--batch-size", "2", "--image-size", "28",
        "--patch", "14", "--repeats", "1", "--calibration-repeats", "1", "--calibration-widths", "32,64", "--num-classes", "10",
        "--memory-cap", "2MiB", "--threads", "1"]


def test_tiny_sweep_and_resume(tmp_path):
    from vitc.experiments import scaling_memory
    out = tmp_path / "res"
    res = scaling_memory.main(TINY + ["--out", str(out)])
    runs = res["runs"]
    assert len(runs) == 2 * 3 and {r["setup"] for r in runs} == {"baseline", "gap_bf16m", "adafactor"}
    for r in runs:
        assert abs(r["memory_error"]) < 0.10
        assert r["predicted_state_bytes"] == r["state_bytes"]
        assert r["measured_seconds"] > 0 and r["predicted_seconds"] > 0 and r["load_factor"] > 0
        assert r["predicted_seconds_load_adjusted"] == pytest.approx(r["predicted_seconds"] * r["load_factor"])
    by = {r["name"]: r for r in runs}
    # the paper's ordering of the setups' state: f32 Adam > bf16-m Adam > Adafactor
    assert by["baseline_d1_w64_m128"]["state_bytes"] > by["gap_bf16m_d1_w64_m128"]["state_bytes"] > \
        by["adafactor_d1_w64_m128"]["state_bytes"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"]["memory"]["n"] == 6 and len(saved["calibrations"]) == 1
    assert saved["calibrations"][0]["probe_s"] > 0 and saved["summary"]["time_load_adjusted"]["n"] == 6
    md = (out / "results.md").read_text()
    assert "| memory (all) | 6 |" in md and "fits pred/meas" in md
    for name in ("fits_map.png", "predicted_vs_measured.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    files = sorted(os.listdir(out / "runs"))
    mtimes = {p: os.path.getmtime(out / "runs" / p) for p in files}
    again = scaling_memory.main(TINY + ["--out", str(out)])  # every run kept, none measured again
    assert {p: os.path.getmtime(out / "runs" / p) for p in files} == mtimes and again["calibrations"] == []
    assert [r["measured_peak"] for r in again["runs"]] == [r["measured_peak"] for r in runs]


@pytest.mark.parametrize("bad", [["--widths", "48"], ["--setups", "lion"], ["--depths", "0"], ["--memory-cap", "x"],
                                 ["--repeats", "0"], ["--image-size", "30"]])
def test_bad_arguments(tmp_path, bad):
    from vitc.experiments import scaling_memory
    with pytest.raises(SystemExit):
        scaling_memory.main(TINY + bad + ["--out", str(tmp_path)])
