"""Damaged checkpoints and weight files: every tensor's CRC-32 is checked on load, a damaged file raises
ValueError naming it (and the tensor), fit(resume=True) falls back to the newest intact checkpoint
with a warning, and files get the mode the umask says."""
import json
import os
import warnings

import numpy as np
import pytest

import vitc
from vitc import nn, optim
from vitc import train as vtrain
from vitc.io import CHECKSUM_KEY, load_safetensors, save_safetensors
from vitc.models import create_model

TINY = dict(depth=1, dim=16, heads=2, dim_head=8, mlp_dim=32)


def _setup(seed=0):
    vitc.manual_seed(seed)
    model = create_model("vit_seed_mnist", **TINY)
    return model, optim.AdamW(model.parameters(), lr=1e-3)


def _data(n_batches=2, seed=0):
    rng = np.random.default_rng(seed)
    return [(vitc.from_numpy(rng.standard_normal((4, 1, 28, 28)).astype(np.float32)),
             vitc.from_numpy(rng.integers(0, 10, 4).astype(np.int64))) for _ in range(n_batches)]


def _fit(model, opt, epochs, d, resume=False):
    data = _data()
    return vtrain.fit(model, data, data, opt, nn.CrossEntropyLoss(), epochs, progress=False, log=None,
                      checkpoint_dir=str(d), resume=resume)


def _flip_bit(path, offset, bit=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def _data_start(path):
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def test_every_single_bit_flip_in_tensor_data_is_refused_naming_file_and_tensor(tmp_path):
    p = str(tmp_path / "w.safetensors")
    sd = {"w": np.arange(24, dtype=np.float32).reshape(4, 6), "i": np.arange(3, dtype=np.int64),
          "m": np.array([True, False, True])}
    save_safetensors(sd, p)
    good = open(p, "rb").read()
    start = _data_start(p)
    for offset in range(start, len(good)):
        for bit in range(8):
            with open(p, "wb") as f:
                f.write(good)
            _flip_bit(p, offset, bit)
            with pytest.raises(ValueError, match=r"w\.safetensors: tensor '(w|i|m)' is damaged"):
                load_safetensors(p)
    with open(p, "wb") as f:
        f.write(good)
    out = load_safetensors(p, as_numpy=True)
    assert set(out) == set(sd) and all(np.array_equal(out[k], sd[k]) for k in sd)


def test_header_bit_flips_never_load_different_tensors(tmp_path):
    """A flip in the header either raises ValueError naming the file or leaves the tensors identical
    (e.g. a flip inside padding): never a third-party exception, never other values."""
    p = str(tmp_path / "h.safetensors")
    sd = {"a": np.linspace(-1, 1, 10, dtype=np.float32), "b": np.ones((2, 2), np.int64)}
    save_safetensors(sd, p, metadata={"note": "x"})
    good = open(p, "rb").read()
    refused = 0
    for offset in range(_data_start(p)):
        for bit in range(8):
            with open(p, "wb") as f:
                f.write(good)
            _flip_bit(p, offset, bit)
            try:
                out = load_safetensors(p, as_numpy=True)
            except ValueError as e:
                assert "h.safetensors" in str(e)
                refused += 1
                continue
            assert set(out) == set(sd)
            for k in sd:
                assert out[k].dtype == sd[k].dtype and np.array_equal(out[k], sd[k]), k
    assert refused > 0.9 * 8 * _data_start(p)


def test_truncated_or_garbage_file_is_a_value_error_naming_it(tmp_path):
    p = str(tmp_path / "t.safetensors")
    save_safetensors({"a": np.zeros(100, np.float32)}, p)
    good = open(p, "rb").read()
    for cut in (0, 4, 8, 20, len(good) - 1):
        with open(p, "wb") as f:
            f.write(good[:cut])
        with pytest.raises(ValueError, match="t.safetensors"):
            load_safetensors(p)
    with open(p, "wb") as f:
        f.write(b"\xff" * 64)
    with pytest.raises(ValueError, match="t.safetensors"):
        load_safetensors(p)


def test_files_without_checksums_still_load(tmp_path):
    import safetensors.numpy
    p = str(tmp_path / "old.safetensors")
    safetensors.numpy.save_file({"a": np.arange(5, dtype=np.float32)}, p)  # as older vitc versions wrote
    np.testing.assert_array_equal(load_safetensors(p)["a"].numpy(), np.arange(5, dtype=np.float32))
    with pytest.raises(ValueError, match="reserved"):
        save_safetensors({"a": np.zeros(1, np.float32)}, p, metadata={CHECKSUM_KEY: "{}"})


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_safetensors_and_checkpoint_modes_follow_the_umask(tmp_path, umask, mode):
    model, opt = _setup()
    old = os.umask(umask)
    try:
        save_safetensors({"a": np.zeros(3, np.float32)}, tmp_path / "a.safetensors")
        path = vtrain.save_checkpoint(str(tmp_path / "ck"), 1, model, opt)
    finally:
        os.umask(old)
    files = [tmp_path / "a.safetensors", tmp_path / "ck" / "latest"]
    files += [os.path.join(path, n) for n in ("model.safetensors", "optimizer.safetensors", "state.json")]
    for f in files:
        assert os.stat(f).st_mode & 0o777 == mode, f


def test_damaged_state_json_is_a_value_error_naming_it(tmp_path):
    model, opt = _setup()
    path = vtrain.save_checkpoint(str(tmp_path / "ck"), 3, model, opt)
    state_file = os.path.join(path, "state.json")
    good = open(state_file).read()
    for bad in (good[: len(good) // 2], "\xff garbage", "[1, 2]", good.replace('"epoch": 3', '"epoch": 4')):
        with open(state_file, "w") as f:
            f.write(bad)
        with pytest.raises(ValueError, match="state.json"):
            vtrain.load_checkpoint(path, model, opt)
    # a state.json written before the checksum existed (no "crc32" key) still loads
    state = json.loads(good)
    del state["crc32"]
    with open(state_file, "w") as f:
        json.dump(state, f)
    assert vtrain.load_checkpoint(path, model, opt)["epoch"] == 3


def test_damaged_checkpoint_loads_nothing(tmp_path):
    model, opt = _setup()
    _fit(model, opt, 1, tmp_path / "ck")  # the optimizer has state tensors now
    path = vtrain.latest_checkpoint(str(tmp_path / "ck"))
    other, other_opt = _setup(seed=1)
    before = {k: v.numpy().copy() for k, v in other.state_dict().items()}
    opt_file = os.path.join(path, "optimizer.safetensors")
    _flip_bit(opt_file, os.path.getsize(opt_file) - 1)
    with pytest.raises(ValueError, match=r"optimizer\.safetensors: tensor"):
        vtrain.load_checkpoint(path, other, other_opt)
    for k, v in other.state_dict().items():  # the model was not touched although its file was intact
        np.testing.assert_array_equal(v.numpy(), before[k])


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_resume_falls_back_to_the_previous_intact_checkpoint(tmp_path, damage):
    d = tmp_path / "ck"
    full_model, opt = _setup()
    full = _fit(full_model, opt, 3, tmp_path / "full")
    model, opt = _setup()
    _fit(model, opt, 2, d)
    assert sorted(n for n in os.listdir(d) if n.startswith("ckpt-")) == ["ckpt-000001", "ckpt-000002"]
    latest = os.path.join(vtrain.latest_checkpoint(str(d)), "model.safetensors")
    assert latest.endswith(os.path.join("ckpt-000002", "model.safetensors"))
    if damage == "truncate":
        with open(latest, "r+b") as f:
            f.truncate(os.path.getsize(latest) // 2)
    else:
        _flip_bit(latest, os.path.getsize(latest) - 3, 5)
    model2, opt2 = _setup(seed=7)
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint .*ckpt-000002.*model\.safetensors"):
        resumed = _fit(model2, opt2, 3, d, resume=True)
    # epoch 2 was redone from ckpt-000001: the same run as without the damage
    assert resumed["epoch"] == [1, 2, 3]
    assert resumed["train_loss_sum"] == full["train_loss_sum"]
    want = full_model.state_dict()
    for k, v in model2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), want[k].numpy(), err_msg=k)
    assert vtrain.load_checkpoint(vtrain.latest_checkpoint(str(d)), model2)["epoch"] == 3


def test_resume_with_every_checkpoint_damaged_raises(tmp_path):
    d = tmp_path / "ck"
    model, opt = _setup()
    _fit(model, opt, 2, d)
    for name in ("ckpt-000001", "ckpt-000002"):
        with open(d / name / "state.json", "w") as f:
            f.write("{")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no intact checkpoint.*ckpt-000002.*state.json.*ckpt-000001"):
            _fit(*_setup(), 3, d, resume=True)


def test_keep_is_checked_and_keep_1_leaves_nothing_to_fall_back_to(tmp_path):
    model, opt = _setup()
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="keep must be an int >= 1"):
            vtrain.save_checkpoint(str(tmp_path / "k"), 1, model, opt, keep=bad)
    d = str(tmp_path / "one")
    vtrain.save_checkpoint(d, 1, model, opt, keep=1)
    path = vtrain.save_checkpoint(d, 2, model, opt, keep=1)
    assert sorted(n for n in os.listdir(d) if n.startswith("ckpt-")) == ["ckpt-000002"]
    _flip_bit(os.path.join(path, "model.safetensors"), os.path.getsize(os.path.join(path, "model.safetensors")) - 1)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="no intact checkpoint"):
        _fit(*_setup(), 3, d, resume=True)


def test_names_and_dtypes_that_would_make_a_broken_file_are_refused_before_writing(tmp_path):
    p = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="__metadata__"):
        save_safetensors({"__metadata__": np.zeros(2, np.float32)}, p)
    assert not p.exists()
    big_endian = np.arange(4, dtype=">f4")
    save_safetensors({"a": big_endian}, p)
    np.testing.assert_array_equal(load_safetensors(p, as_numpy=True)["a"], big_endian)
