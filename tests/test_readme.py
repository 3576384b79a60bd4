"""README.md's ```python blocks run as they stand (the README is the code; nothing is copied here).

Each block is executed in a fresh namespace from a scratch directory; what it prints is checked
against what the README says it shows."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def python_blocks(text):
    """The bodies of the fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    BLOCKS = python_blocks(f.read())


def test_the_readme_has_its_quick_start_blocks():
    assert len(BLOCKS) >= 3
    assert any("loss.backward()" in b and "zero_grad()" in b and "no_grad()" in b for b in BLOCKS)
    assert any("load_timm_state_dict" in b for b in BLOCKS)
    assert any("AttentionRecorder" in b for b in BLOCKS)


def test_block_extraction_keeps_only_python_fences():
    text = "x\n```bash\nls\n```\n```python\nprint(1)\n```\ntext ```python inline```\n```python\na = 2\nb = 3\n```\n"
    assert python_blocks(text) == ["print(1)\n", "a = 2\nb = 3\n"]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    code = BLOCKS[index]
    if "FashionMNIST(" in code and not HAVE_FMNIST:
        pytest.skip("Fashion-MNIST not installed (Debian dataset-fashion-mnist)")
    for module in ("timm", "torch"):
        if re.search(rf"^import {module}\b", code, flags=re.M):
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    if "FashionMNIST(" in code:  # the training script: better than chance after its short run
        accuracy = float(re.search(r"test accuracy (\d+\.\d)%", out).group(1))
        assert 20.0 < accuracy <= 100.0, out
    if "load_timm_state_dict" in code:  # same weights, same logits
        assert float(re.search(r"logit difference: (\S+)", out).group(1)) < 1e-4, out
    if "AttentionRecorder" in code:  # 6 blocks of (batch 8, 8 heads, 17 tokens, 17 tokens)
        assert out.startswith("6 (8, 8, 17, 17)"), out
