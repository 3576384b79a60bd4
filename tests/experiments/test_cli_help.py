"""Every experiment's --help shows the defaults (sub-commands included)."""
import argparse
import importlib
import importlib.util
import pkgutil

import pytest

import vitc.experiments
from vitc.experiments.common import show_defaults

# every experiment package (a folder with a cli.py), so a new one cannot forget its defaults
EXPERIMENTS = sorted(m.name for m in pkgutil.iter_modules(vitc.experiments.__path__)
                     if m.ispkg and importlib.util.find_spec(f"vitc.experiments.{m.name}.cli") is not None)


def _parsers(parser):
    out = [parser]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            out += list(a.choices.values())
    return out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_shows_every_default(name):
    parser = importlib.import_module(f"vitc.experiments.{name}.cli").build_parser()
    checked = 0
    for p in _parsers(parser):
        text = " ".join(p.format_help().split())  # one line: defaults may wrap
        for a in p._actions:
            if not a.option_strings or a.default in (None, False, argparse.SUPPRESS):
                continue
            assert f"default: {a.default}" in text or "default" in a.help, (name, a.option_strings)
            checked += 1
    assert checked >= 5


def test_show_defaults_keeps_a_stated_default_and_skips_none():
    p = argparse.ArgumentParser()
    p.add_argument("--a", type=int, default=3)
    p.add_argument("--b", default=None, help="first N (default: all)")
    p.add_argument("--c", default="x", help="says its default: x")
    p.add_argument("--flag", action="store_true")
    text = " ".join(show_defaults(p).format_help().split())
    assert "--a A (default: 3)" in text
    assert "(default: all)" in text and "(default: None)" not in text
    assert text.count("default: x") == 1 and "(default: False)" not in text
