"""The notebooks are committed executed (outputs of the tests' small runs), so a reader sees what
they print and draw without running them; no error outputs, no per-run timing metadata (which
would change on every re-execution)."""
import glob
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_committed_with_its_outputs(path):
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path}: not executed top to bottom once: {counts}"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"], f"{path} has an error output"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path} shows no figure"
    assert any(o["output_type"] == "stream" and o["name"] == "stdout" for o in outputs)
    assert not [c for c in code if "execution" in c.get("metadata", {})], f"{path} carries timing metadata"
