"""Execute a notebook of notebooks/ with nbclient, its size set through VITC_NB_* environment
variables (the notebooks read them to run small), and return its code-cell outputs."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_notebook(name, env, cwd=ROOT, timeout=240):
    """Run notebooks/<name> with ``env`` added to the kernel's environment (vitc importable from
    this checkout); returns (text of all stream outputs, number of PNG outputs)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    env = dict(env, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "".join(o.get("text", "") for o in outs), sum("image/png" in o.get("data", {}) for o in outs)
