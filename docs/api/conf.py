"""Sphinx configuration of vitc's API reference, generated from the docstrings.

Build: ``python -m sphinx -W -n -b html docs/api <out>`` from the repository root with vitc built in
place (``python setup.py build_ext --inplace``); tests/test_docs_build.py does it, so a docstring that
breaks the build, or a page that points at a name that no longer exists, fails the tests.
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

import vitc  # noqa: E402  (after the path: the checkout's vitc, with its built _C)

project = "vitc"
author = "the vitc authors"
release = version = vitc.__version__
extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = True
# references that have no page on purpose: other packages' types, the C extension's base type, and
# private base classes (shown as "Bases:"); any other unresolved reference fails the build
nitpick_ignore_regex = [(r"py:.*", r"(numpy|np|torch|optuna|safetensors)\..*"),
                        (r"py:.*", r"vitc\._C\..*"),
                        (r"py:class", r"vitc\.(\w+\.)*_\w+")]

# the tensor functions live in vitc/_ops/<family>.py but are vitc.<name> to a user: list every
# family's __all__ under vitc.<name>, so a new op appears in the reference without editing a page
_FAMILIES = ["elementwise", "reduce", "blas", "shape", "indexing", "activation", "norm", "conv", "loss",
             "attention", "ffn", "optim_ops", "roi_align", "augment"]


def _op_families():
    """The autofunction entries of every op family, as reST (appended to ops.rst when it is read)."""
    import importlib
    lines = ["", ".. currentmodule:: vitc", ""]
    for family in _FAMILIES:
        mod = importlib.import_module(f"vitc._ops.{family}")
        names = [n for n in getattr(mod, "__all__", []) if hasattr(vitc, n)]
        if not names:
            continue
        title = family.replace("_", " ")
        lines += [title, "-" * len(title), ""] + [f".. autofunction:: {n}" for n in names] + [""]
    return "\n".join(lines)


def _registered_models():
    """One autofunction entry per registered model constructor (appended to models.rst)."""
    from vitc.models import registry
    lines = ["", "Registered models", "-----------------", "",
             "``create_model(name, **overrides)`` calls one of these; keyword arguments override the defaults.", ""]
    for name in registry.list_models():
        fn = registry._MODELS[name]
        lines.append(f".. autofunction:: {fn.__module__}.{fn.__qualname__}" if fn.__name__ == name else
                     f".. py:function:: vitc.models.{name}(**overrides)\n\n   Registered alias of "
                     f"``{fn.__module__}.{fn.__qualname__}``.")
    return "\n".join(lines) + "\n"


def _add_op_families(app, docname, source):
    if docname == "ops":
        source[0] += _op_families()
    elif docname == "models":
        source[0] += _registered_models()


def setup(app):
    app.connect("source-read", _add_op_families)
