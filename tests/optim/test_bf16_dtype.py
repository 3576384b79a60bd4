"""vitc.bfloat16 as a storage dtype: conversions bitwise as torch.bfloat16, NumPy bits exchange,
safetensors BF16, and a clear TypeError from ops that compute in float32."""
import pickle

import numpy as np
import pytest
import torch

import vitc
from vitc.io import load_safetensors, save_safetensors


def _torch_bits(x32):
    """float32 array -> torch's bfloat16 bits (uint16)."""
    return torch.from_numpy(x32).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def _vitc_bits(x32):
    return vitc.bfloat16_bits(vitc.from_numpy(x32).to(vitc.bfloat16)).copy()


def _check_against_torch(x32):
    got, want = _vitc_bits(x32), _torch_bits(x32)
    nan = np.isnan(x32)
    # every NaN becomes the quiet NaN 0x7FC0 (c10's round_to_nearest_even; torch's vectorized CPU
    # cast writes 0xFFFF, also a NaN, so torch is compared on non-NaN inputs only)
    assert (got[nan] == 0x7FC0).all()
    assert np.isnan(torch.from_numpy(want[nan].view(np.int16)).view(torch.bfloat16).float().numpy()).all()
    mismatch = np.flatnonzero(got[~nan] != want[~nan])
    assert mismatch.size == 0, f"first mismatch at float32 bits {x32[~nan].view(np.uint32)[mismatch[0]]:#010x}"


def test_every_bf16_pattern_round_trips_through_float32():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    b = vitc.bfloat16_from_bits(bits.copy())
    assert b.dtype is vitc.bfloat16 and b.shape == (65536,)
    f = b.float().numpy()
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(f.view(np.uint32), want.view(np.uint32))  # exact widening, NaN payloads too
    np.testing.assert_array_equal(f.view(np.uint32), bits.astype(np.uint32) << 16)
    back = vitc.bfloat16_bits(b.float().to(vitc.bfloat16))
    nan = np.isnan(f)
    np.testing.assert_array_equal(back[~nan], bits[~nan])
    assert (back[nan] == 0x7FC0).all()


def test_float32_rounding_boundaries_match_torch():
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    # below, at and above the halfway point to the next bf16, and the extremes of the interval
    lows = np.array([0x0001, 0x3FFF, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF], dtype=np.uint32)
    x = (hi[:, None] | lows[None, :]).reshape(-1).view(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4028235e38, -3.4028235e38, 1e-45, -1e-45,
                         1.1754942e-38, 1.0, 1.00390625, 1.01171875], dtype=np.float32)
    payload_nans = np.array([0x7F800001, 0xFF800001, 0x7FC00001, 0xFFFFFFFF, 0x7FBFFFFF], dtype=np.uint32).view(np.float32)
    _check_against_torch(np.concatenate([x, specials, payload_nans]))


def test_rounding_rules_by_hand():
    v = lambda bits32: int(_vitc_bits(np.array([bits32], dtype=np.uint32).view(np.float32))[0])  # noqa: E731
    assert v(0x3F808000) == 0x3F80  # halfway, even below: stays
    assert v(0x3F818000) == 0x3F82  # halfway, odd below: rounds up to even
    assert v(0x3F808001) == 0x3F81  # above halfway
    assert v(0x7F7FFFFF) == 0x7F80  # max finite float32 overflows to +inf
    assert v(0xFF7F8000) == 0xFF80  # -inf
    assert v(0x80000000) == 0x8000 and v(0x00000001) == 0x0000  # -0 kept; the smallest subnormal rounds to 0
    assert v(0xFFC12345) == 0x7FC0  # NaN sign and payload dropped


def test_other_dtypes_convert_through_float32_like_torch():
    ints = np.array([0, 1, -3, 257, 2 ** 24 + 1, -(2 ** 40) - 12345, 2 ** 62], dtype=np.int64)
    got = vitc.bfloat16_bits(vitc.from_numpy(ints).to(vitc.bfloat16))
    want = torch.from_numpy(ints).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got, want)
    b = vitc.tensor([0.0, -2.5, 3.7, 1e10]).to(vitc.bfloat16)
    np.testing.assert_array_equal(b.long().numpy(), torch.tensor([0.0, -2.5, 3.7, 1e10]).bfloat16().long().numpy())
    np.testing.assert_array_equal(b.bool().numpy(), [False, True, True, True])
    assert vitc.tensor([True, False]).to(vitc.bfloat16).tolist() == [1.0, 0.0]


def test_construction_views_copies_and_python_values():
    z = vitc.zeros(2, 3, dtype=vitc.bfloat16)
    assert z.dtype is vitc.bfloat16 and z.element_size() == 2 and z.tolist() == [[0.0] * 3] * 2
    f = vitc.full((3,), 1.00390625, dtype=vitc.bfloat16)
    assert f.tolist() == [1.0, 1.0, 1.0]  # rounded on the way in (ties to even)
    b = vitc.tensor([[1.5, -2.0, 3.0], [4.0, 5.0, 6.0]]).to(vitc.bfloat16)
    assert b.permute(1, 0).contiguous().reshape(6).tolist() == [1.5, 4.0, -2.0, 5.0, 3.0, 6.0]
    assert b[1].tolist() == [4.0, 5.0, 6.0] and b[0, 1].item() == -2.0
    z.copy_(b)
    assert z.tolist() == b.tolist()
    assert "dtype=vitc.bfloat16" in repr(b)
    assert vitc.as_dtype("bfloat16") is vitc.bfloat16
    t = vitc.tensor([1.00390625, 2.0], dtype=vitc.bfloat16)
    assert t.dtype is vitc.bfloat16 and t.tolist() == [1.0, 2.0]
    assert vitc.tensor(t).dtype is vitc.bfloat16 and vitc.tensor(t, dtype=vitc.float32).tolist() == [1.0, 2.0]
    assert vitc.arange(3, dtype=vitc.bfloat16).tolist() == [0.0, 1.0, 2.0]
    again = pickle.loads(pickle.dumps(b))
    np.testing.assert_array_equal(vitc.bfloat16_bits(again), vitc.bfloat16_bits(b))
    assert again.dtype is vitc.bfloat16


def test_numpy_exchange_is_explicit():
    b = vitc.tensor([1.0, 2.0]).to(vitc.bfloat16)
    with pytest.raises(TypeError, match=r"float\(\)\.numpy\(\)"):
        b.numpy()
    bits = vitc.bfloat16_bits(b)
    assert bits.dtype == np.uint16 and bits.tolist() == [0x3F80, 0x4000]
    bits[0] = 0x4040  # a view: writes go to the tensor
    assert b.tolist() == [3.0, 2.0]
    with pytest.raises(TypeError, match="bfloat16 tensor"):
        vitc.bfloat16_bits(vitc.ones(2))
    with pytest.raises(TypeError, match="uint16"):
        vitc.bfloat16_from_bits(np.ones(2, np.float32))
    with pytest.raises(TypeError):
        vitc.from_numpy(np.ones(2, np.uint16))  # a uint16 array is not silently taken as bfloat16
    with pytest.raises(TypeError):
        vitc.as_dtype(np.uint16)


def test_compute_ops_refuse_bfloat16_by_name():
    b = vitc.ones(2, 3).to(vitc.bfloat16)
    for fn, op in [(lambda: b + b, "add"), (lambda: vitc.exp(b), "exp"), (lambda: b.sum(), "sum"),
                   (lambda: vitc.matmul(b, vitc.ones(3, 2)), "matmul"),
                   (lambda: vitc.nn.Linear(3, 4)(b), "linear")]:
        with pytest.raises(TypeError, match="bfloat16") as e:
            fn()
        assert op in str(e.value), str(e.value)
    with pytest.raises(RuntimeError, match="float32"):
        b.requires_grad = True


def test_safetensors_bf16_round_trip_torch_readable_and_checked(tmp_path):
    import safetensors.torch

    b = vitc.randn(4, 5).to(vitc.bfloat16)
    p = tmp_path / "b.safetensors"
    save_safetensors({"b": b, "f": vitc.ones(3)}, p)
    back = load_safetensors(p)
    assert back["b"].dtype is vitc.bfloat16 and back["f"].dtype is vitc.float32
    np.testing.assert_array_equal(vitc.bfloat16_bits(back["b"]), vitc.bfloat16_bits(b))
    assert load_safetensors(p, as_numpy=True)["b"].dtype == np.uint16
    t = safetensors.torch.load_file(str(p))
    assert t["b"].dtype == torch.bfloat16
    np.testing.assert_array_equal(t["b"].view(torch.int16).numpy().view(np.uint16), vitc.bfloat16_bits(b))
    # written by torch, read by vitc
    q = tmp_path / "t.safetensors"
    w = torch.randn(7).bfloat16()
    safetensors.torch.save_file({"w": w}, str(q))
    np.testing.assert_array_equal(vitc.bfloat16_bits(load_safetensors(q)["w"]), w.view(torch.int16).numpy().view(np.uint16))
    # one flipped bit in the bf16 payload is caught by the CRC-32
    raw = bytearray(p.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    raw[8 + n] ^= 0x01  # "b" is the first tensor in the data section
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        load_safetensors(p)
