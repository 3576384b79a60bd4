"""A PyTorch training script and its vitc twin (examples/pytorch_twin/): the twin is the PyTorch script with
`torch` renamed `vitc` and nothing else, and both run and learn."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWIN = os.path.join(ROOT, "examples", "pytorch_twin")
DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def _code(name):  # the script without its module docstring
    text = open(os.path.join(TWIN, name)).read()
    assert text.startswith('"""')
    return text.split('"""', 2)[2]


def test_the_vitc_script_is_the_pytorch_script_renamed():
    torch_code, vitc_code = _code("train_torch.py"), _code("train_vitc.py")
    assert "torch" in torch_code and "torch" not in vitc_code
    assert re.sub(r"\btorch\b", "vitc", torch_code) == vitc_code


@pytest.mark.skipif(not os.path.exists(DATA), reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.parametrize("script", ["train_torch.py", "train_vitc.py"])
def test_both_scripts_run_and_learn(script):
    if script == "train_torch.py":
        pytest.importorskip("torch")
    r = subprocess.run([sys.executable, os.path.join(TWIN, script), "2000", "2"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    epochs = re.findall(r"train accuracy ([\d.]+), ema moved ([\d.]+)", r.stdout)
    assert len(epochs) == 2, r.stdout
    accuracy, moved = map(float, epochs[-1])
    assert accuracy > 0.7, r.stdout  # 10 classes: chance is 0.1
    # the EMA written with *= and += moved off the initial weights (a silent no-op *= leaves it there)
    assert moved > 1e-3, r.stdout
