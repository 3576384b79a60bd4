"""`import vitc` reaches every subpackage; the ones not needed to train load on first use."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_subpackages_are_reachable_after_import_vitc():
    code = ("import vitc\n"
            "print(callable(vitc.io.save_safetensors), callable(vitc.train.fit), vitc.diagnostics.__name__,"
            " vitc.eval.__name__, vitc.search.__name__, vitc.profiler.__name__, vitc.nn.Linear.__name__,"
            " callable(vitc.save), callable(vitc.load), vitc.utils.ModelEma.__name__)\n"
            "from vitc.utils.data import DataLoader\n"  # torch.utils.data's path, renamed
            "print(DataLoader is vitc.data.DataLoader, callable(vitc.plan))\n")
    assert _run(code).split("\n") == [
        "True True vitc.diagnostics vitc.eval vitc.search vitc.profiler Linear True True ModelEma", "True True"]


def test_lazy_subpackages_load_only_on_use_and_distributed_needs_no_mpi():
    code = ("import sys, vitc\n"
            "print('vitc.train' in sys.modules, 'vitc.diagnostics' in sys.modules, 'vitc.distributed' in sys.modules)\n"
            "from vitc import train\n"
            "vitc.distributed.launched_world_size\n"
            "print('vitc.train' in sys.modules, 'vitc.distributed' in sys.modules, 'mpi4py' in sys.modules)\n"
            "print(all(n in dir(vitc) for n in ('io', 'train', 'diagnostics', 'distributed', 'save')))\n")
    assert _run(code).split("\n") == ["False False False", "True True False", "True"]


def test_unknown_attribute_is_an_attribute_error():
    code = ("import vitc\n"
            "try:\n    vitc.no_such_thing\nexcept AttributeError as e:\n    print(e)\n"
            "print(hasattr(vitc, 'trian'))\n")
    assert _run(code).split("\n") == ["module 'vitc' has no attribute 'no_such_thing'", "False"]
