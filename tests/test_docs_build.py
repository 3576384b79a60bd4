"""The API reference (docs/api, Sphinx autodoc) builds from the docstrings with every warning an
error: a docstring whose markup breaks, a page naming a function that no longer exists, or a
cross-reference to a missing target (nitpicky mode) fails here instead of rotting."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build(src, out, doctrees):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-q",
                           "-b", "html", "-d", str(doctrees), str(src), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_api_reference_builds_without_warnings(tmp_path):
    import sphinx  # noqa: F401  (pinned in the test extra; a missing Sphinx is a broken install, not a skip)
    r = _build(os.path.join(ROOT, "docs", "api"), tmp_path / "html", tmp_path / "doctrees")
    assert r.returncode == 0, r.stdout + r.stderr
    html = (tmp_path / "html")
    models = (html / "models.html").read_text(encoding="utf-8")
    assert "create_model" in models and "load_timm_state_dict" in models
    assert all(name in models for name in ("vit_seed_mnist", "deit_mnist_distilled", "vit_scaling_Ti_16"))
    ops = (html / "ops.html").read_text(encoding="utf-8")
    assert 'id="vitc.scaled_dot_product_attention"' in ops and 'id="vitc.matmul"' in ops
    for page in ("tensor", "nn", "optim", "data", "losses", "train", "diagnostics", "io", "more"):
        assert (html / f"{page}.html").exists(), page


def test_a_broken_reference_fails_the_build(tmp_path):
    """The same configuration refuses a page that names a function vitc does not have."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(open(os.path.join(ROOT, "docs", "api", "conf.py"), encoding="utf-8").read()
                                 .replace('os.path.join(os.path.dirname(__file__), "..", "..")', repr(ROOT)))
    (src / "index.rst").write_text("t\n=\n\n.. autofunction:: vitc.no_such_function\n\nSee :func:`vitc.nowhere`.\n")
    r = _build(src, tmp_path / "html", tmp_path / "doctrees")
    assert r.returncode != 0
    assert "no_such_function" in r.stderr and "vitc.nowhere" in r.stderr
