"""vitc.save / vitc.load (safetensors underneath, never pickle) and NumPy-only tools handed a state dict."""
import os
import pickle

import numpy as np
import pytest
import safetensors.numpy

import vitc


def _model():
    vitc.manual_seed(0)
    return vitc.models.create_model("vit_seed_mnist", depth=1)


def test_state_dict_round_trip_is_bitwise(tmp_path):
    sd = _model().state_dict()
    path = tmp_path / "m.safetensors"
    vitc.save(sd, path)
    back = vitc.load(path)
    assert isinstance(back, dict) and set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype is v.dtype and np.array_equal(back[k].numpy(), v.numpy()), k


def test_single_tensor_comes_back_as_a_tensor(tmp_path):
    t = vitc.randn(3, 5)
    vitc.save(t, tmp_path / "t.st")
    back = vitc.load(tmp_path / "t.st")
    assert isinstance(back, vitc.Tensor)
    assert np.array_equal(back.numpy(), t.numpy())


@pytest.mark.parametrize("make", [
    lambda: vitc.randn(4, 3).to(vitc.bfloat16),
    lambda: vitc.tensor([[-(2 ** 62), 7], [2 ** 40, -1]], dtype=vitc.int64),
    lambda: vitc.tensor([True, False, True]),
])
def test_dtypes_round_trip(tmp_path, make):
    t = make()
    vitc.save({"x": t, "y": vitc.zeros(2)}, tmp_path / "d.st")
    back = vitc.load(tmp_path / "d.st")["x"]
    assert back.dtype is t.dtype
    if t.dtype is vitc.bfloat16:
        assert np.array_equal(vitc.bfloat16_bits(back), vitc.bfloat16_bits(t))
    else:
        assert np.array_equal(back.numpy(), t.numpy())


def test_numpy_values_are_accepted(tmp_path):
    vitc.save({"a": np.arange(6, dtype=np.int64).reshape(2, 3)}, tmp_path / "n.st")
    assert vitc.load(tmp_path / "n.st")["a"].numpy().tolist() == [[0, 1, 2], [3, 4, 5]]


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "m.st"
    vitc.save({"a": vitc.ones(2)}, path)
    with pytest.raises(TypeError):  # a bad value fails before anything is written
        vitc.save({"a": vitc.zeros(2), "b": "text"}, path)
    assert vitc.load(path)["a"].numpy().tolist() == [1.0, 1.0]
    assert os.listdir(tmp_path) == ["m.st"]


def test_refuses_objects_it_would_have_to_pickle(tmp_path):
    with pytest.raises(TypeError, match="never pickle"):
        vitc.save([vitc.ones(2)], tmp_path / "l.st")
    with pytest.raises(TypeError, match="state_dict"):
        vitc.save(_model(), tmp_path / "m.st")


def test_non_safetensors_and_damaged_files_name_the_path(tmp_path):
    pth = tmp_path / "ckpt.pth"
    pth.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="ckpt.pth is not a valid safetensors file"):
        vitc.load(pth)
    good = tmp_path / "good.st"
    vitc.save({"w": vitc.randn(64)}, good)
    data = bytearray(good.read_bytes())
    cut = tmp_path / "cut.st"
    cut.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match="cut.st"):
        vitc.load(cut)
    data[-3] ^= 0x10  # one flipped bit in the data: the CRC-32 catches it
    flip = tmp_path / "flip.st"
    flip.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="flip.st.*damaged"):
        vitc.load(flip)
    with pytest.raises(FileNotFoundError, match="nope.st"):
        vitc.load(tmp_path / "nope.st")


def test_files_from_other_tools_load_as_a_dict(tmp_path):
    path = tmp_path / "np.st"
    safetensors.numpy.save_file({"w": np.full((2, 2), 3.0, np.float32)}, path)
    assert vitc.load(path)["w"].numpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]


def test_safetensors_numpy_gets_a_clear_error_and_a_clean_path(tmp_path):
    sd = _model().state_dict()
    with pytest.raises(AttributeError, match=r"not a NumPy dtype.*vitc\.io\.to_numpy"):
        safetensors.numpy.save_file(sd, tmp_path / "bad.st")
    path = tmp_path / "ok.st"
    safetensors.numpy.save_file(vitc.io.to_numpy(sd), path)
    back = safetensors.numpy.load_file(path)
    for k, v in sd.items():
        assert np.array_equal(back[k], v.numpy()), k
    with pytest.raises(TypeError, match="bfloat16"):
        vitc.io.to_numpy({"h": vitc.zeros(2).to(vitc.bfloat16)})
