"""Shared setup for the vitc.data tests: module loading, a network guard, small IDX fixtures."""

import importlib.util
import os
import sys
import urllib.request

import numpy as np
import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_vitc_data():
    # vitc.data needs only NumPy; when the package (or its C core) cannot be imported yet, load
    # the subpackage on its own so these tests still run. It uses relative imports only.
    try:
        import vitc.data
        return vitc.data
    except ImportError:
        folder = os.path.join(_REPO, "vitc", "data")
        spec = importlib.util.spec_from_file_location(
            "_vitc_data_standalone", os.path.join(folder, "__init__.py"),
            submodule_search_locations=[folder])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


# Tests import the package under test as `import _vitc_data_under_test as vd`.
sys.modules["_vitc_data_under_test"] = _load_vitc_data()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any real download attempt fails the test instead of touching the network."""
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"test tried to open {url!r}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def make_split(n, seed=0, h=28, w=28, classes=10):
    """Random uint8 images (n, h, w) and uint8 labels (n,) that cover every class if n >= classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


@pytest.fixture
def idx_root(tmp_path):
    """A folder with small MNIST-named IDX files: 50 train and 20 test samples, gzip-compressed."""
    vd = sys.modules["_vitc_data_under_test"]
    for prefix, n, seed in (("train", 50, 1), ("t10k", 20, 2)):
        images, labels = make_split(n, seed)
        vd.write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        vd.write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path
