"""The README's promise for bad input: ValueError, TypeError, RuntimeError or IndexError naming the
argument or file, never another exception type. Each case here escaped that set once
(ZeroDivisionError, a bare IndexError, OverflowError, safetensors' SafetensorError,
json.JSONDecodeError, a 2 GB gzip inflation); the sweeps below cover the class, not only the case."""
import inspect
import json
import math
import os

import numpy as np
import pytest
import torch

import vitc

PROMISED = (ValueError, TypeError, RuntimeError, IndexError)


def _public_functions():
    skip = {"manual_seed", "set_num_threads", "no_grad", "enable_grad", "set_grad_enabled", "Tensor", "dtype",
            "as_dtype", "IndexError", "OutOfMemoryError",
            # process-wide allocator policy: set_cache_limit(0, 0) is valid and would turn caching off for every
            # later test (test_tensor's allocator test); tests/test_allocator.py covers their bad input
            "set_cache_limit", "empty_cache", "reset_peak_memory_stats", "memory_stats",
            # process-wide memory switches; tests/test_step_memory.py covers their bad input
            "set_recompute", "get_recompute", "recompute"}
    return [n for n in sorted(dir(vitc)) if not n.startswith("_") and n not in skip
            and callable(getattr(vitc, n)) and not inspect.isclass(getattr(vitc, n))]


SCALARS = [(), (0,), (-1,), (1,), (0, 0), (0, -1), (-1, 0), ((0,),), ((),), (math.inf,), (math.nan,), (-math.inf,),
           (0, math.inf), (math.inf, 0), (0, 1, math.nan), (0, 10 ** 30), (1e300,)]
# Not swept: Python ints beyond float range (10**400) as scalar operands (add, sub, clamp, full):
# float() raises OverflowError in the op wrappers, as PyTorch does ("int too big to convert").


@pytest.mark.parametrize("name", _public_functions())
def test_0d_tensors_and_non_finite_or_huge_scalars_raise_only_promised_errors(name):
    """Every public function with a 0-d tensor and dims 0/-1/1, and with inf, NaN and huge numbers
    where sizes or dims go: a result or a promised exception (int(inf) once leaked OverflowError,
    movedim on a 0-d tensor a bare IndexError)."""
    fn = getattr(vitc, name)
    for extra in SCALARS:
        for args in ((vitc.tensor(1.5),) + extra, extra):
            try:
                fn(*args)
            except PROMISED:
                pass


@pytest.mark.parametrize("src, dst", [(0, 0), (-1, 0), (0, -1), ((), ()), ((0,), (-1,))])
def test_movedim_on_a_0d_tensor_is_the_tensor_as_in_pytorch(src, dst):
    out = vitc.movedim(vitc.tensor(2.5), src, dst)
    assert out.shape == () and out.item() == torch.movedim(torch.tensor(2.5), src, dst).item()
    with pytest.raises(vitc.IndexError, match="dim 1 out of range for a 0-d tensor"):
        vitc.movedim(vitc.tensor(2.5), 1, 0)


@pytest.mark.parametrize("args, words", [((0, math.inf), "finite"), ((0, math.nan), "finite"),
                                         ((-math.inf, 0), "finite"), ((0, 1, math.nan), "finite"),
                                         ((0, 10 ** 400), "too many elements"), ((0, 1e30), "size out of range")])
def test_arange_with_non_finite_or_huge_bounds_is_a_value_error(args, words):
    with pytest.raises(ValueError, match=words):
        vitc.arange(*args)
    with pytest.raises((RuntimeError, OverflowError)):  # PyTorch refuses them too
        torch.arange(*args)


def test_damaged_checkpoint_files_name_the_file(tmp_path):
    from vitc import train as vtrain
    from vitc.io import load_safetensors, save_safetensors
    p = tmp_path / "m.safetensors"
    save_safetensors({"a": np.ones(8, np.float32)}, p)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 5])
    with pytest.raises(ValueError, match=str(p)):
        load_safetensors(p)
    model = vitc.nn.Linear(2, 2)
    ck = vtrain.save_checkpoint(str(tmp_path / "ck"), 1, model)
    with open(os.path.join(ck, "state.json"), "w") as f:
        f.write('{"epoch": 1, "model": "Lin')
    with pytest.raises(ValueError, match=r"state\.json is damaged \(not valid JSON"):
        vtrain.load_checkpoint(ck, model)
    with pytest.raises(json.JSONDecodeError):  # what used to escape
        json.loads('{"epoch": 1, "model": "Lin')
