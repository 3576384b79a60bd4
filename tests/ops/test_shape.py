"""Shape ops against PyTorch, forward and backward: reshape/permute/contiguous, expand/broadcast,
squeeze/unsqueeze, cat/stack, split/chunk/unbind, narrow/select, flip, repeat; and their errors."""
import numpy as np
import pytest
import torch

import vitc
from opcheck import check_op, rand


def same(fn, *shapes, noncontig=False, **kw):
    check_op(fn, fn, [rand(*s) for s in shapes], noncontig=noncontig, **kw)


# ---- reshape / permute / contiguous (existing ops) ----------------------------------------------

def test_reshape_permute_contiguous():
    same(lambda x: x.reshape(6, -1), (3, 2, 4))
    same(lambda x: x.reshape(-1), (3, 4), noncontig=True)
    same(lambda x: x.permute(2, 0, 1), (2, 3, 4))
    same(lambda x: x.transpose(0, 1).contiguous(), (3, 4))
    same(lambda x: x.flatten(1), (2, 3, 4), noncontig=True)


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (9, 33), (64, 49), (3, 40, 17), (2, 3, 65, 8), (200, 300)])
def test_transposed_copy_is_exact(shape):
    """Copies of transposed views (the tiled 8×8 register path in core/tensor.c for a unit-stride
    second-to-last source dim) equal numpy's bit for bit, NaN payloads included, over tile edges,
    outer dims, strided outer dims and offsets, serial and parallel sizes."""
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    a = rng.standard_normal(shape).astype(np.float32)
    bits = a.view(np.uint32)
    bits.flat[::7] = 0x7FC01234  # quiet NaNs with a payload
    t = vitc.tensor(a)
    views = [(t.transpose(-1, -2), a.swapaxes(-1, -2))]
    if len(shape) >= 3:
        views.append((t[::2].transpose(-1, -2), a[::2].swapaxes(-1, -2)))
        views.append((t[1:].transpose(-1, -2), a[1:].swapaxes(-1, -2)))
    views.append((t[..., 1:].transpose(-1, -2), a[..., 1:].swapaxes(-1, -2)))
    for v, want in views:
        got = v.contiguous().numpy()
        assert got.shape == want.shape
        assert np.array_equal(got.view(np.uint32), np.ascontiguousarray(want).view(np.uint32))
        flat = v.reshape(-1, v.shape[-1]).numpy()
        assert np.array_equal(flat.view(np.uint32), np.ascontiguousarray(want).reshape(-1, want.shape[-1]).view(np.uint32))


# ---- expand / broadcast -------------------------------------------------------------------------

@pytest.mark.parametrize("shape,target", [((1, 5, 1), (3, -1, 4)), ((3,), (2, 4, 3)), ((2, 1), (2, 0)), ((), (3, 2)),
                                          ((4, 1), (4, 1)), ((1, 1), (2, 5, 1, 3))])
def test_expand(shape, target):
    same(lambda x: x.expand(*target), shape)
    same(lambda x: x.expand(target), shape)


def test_expand_noncontiguous_and_views():
    same(lambda x: x.expand(3, 4, 2), (4, 1), noncontig=True)
    same(lambda x: x.expand_as(torch.zeros(2, 3, 4) if isinstance(x, torch.Tensor) else vitc.zeros(2, 3, 4)), (3, 1))
    same(lambda x: x.broadcast_to((5, 3)), (3,))
    check_op(lambda x: vitc.broadcast_to(x, (2, 3)), lambda x: torch.broadcast_to(x, (2, 3)), [rand(1, 3)])
    v = vitc.zeros(3, 1).expand(3, 4)
    assert v.stride() == (1, 0)
    a, b = vitc.broadcast_tensors(vitc.zeros(3, 1), vitc.zeros(4))
    assert a.shape == b.shape == (3, 4)


def test_expand_errors():
    x = vitc.zeros(3, 2)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        x.expand(3, 4)
    with pytest.raises(ValueError):
        x.expand(2)
    with pytest.raises(ValueError):
        x.expand(-1, 3, 2)
    with pytest.raises(TypeError):
        x.expand(3, 2.0)


# ---- squeeze / unsqueeze / movedim ------------------------------------------------------------

def test_squeeze_unsqueeze():
    for f in (lambda x: x.squeeze(), lambda x: x.squeeze(0), lambda x: x.squeeze(-1), lambda x: x.squeeze(1),
              lambda x: x.squeeze((0, 3)), lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(2)):
        same(f, (1, 3, 1, 1))
    same(lambda x: x.unsqueeze(1).squeeze(2), (4, 1), noncontig=True)
    check_op(lambda x: vitc.squeeze(vitc.unsqueeze(x, 0)), lambda x: torch.squeeze(torch.unsqueeze(x, 0)), [rand(2, 3)])
    same(lambda x: x.unsqueeze(0), ())
    z = vitc.zeros(3)
    assert z.unsqueeze(1).data_ptr() == z.data_ptr() and z.unsqueeze(1).shape == (3, 1)
    with pytest.raises(vitc.IndexError):
        vitc.zeros(2, 3).unsqueeze(3)
    with pytest.raises(vitc.IndexError):
        vitc.zeros(2, 3).squeeze(2)


def test_movedim():
    same(lambda x: x.movedim(0, -1), (2, 3, 4))
    same(lambda x: x.movedim((0, 1), (2, 0)), (2, 3, 4))


# ---- cat / stack ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 16, 17, 20])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_many(count, dim):
    rng = np.random.default_rng(count)
    shapes = []
    for i in range(count):
        s = [2, 3, 2]
        s[dim] = int(rng.integers(0, 3))
        shapes.append(tuple(s))
    check_op(lambda *xs: vitc.cat(xs, dim), lambda *xs: torch.cat(xs, dim), [rand(*s) for s in shapes],
             fd=count <= 3)


@pytest.mark.parametrize("count", [1, 2, 16, 17, 20])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_stack_many(count, dim):
    check_op(lambda *xs: vitc.stack(xs, dim), lambda *xs: torch.stack(xs, dim), [rand(3, 2) for _ in range(count)],
             fd=count <= 2)


def test_cat_some_require_grad_and_noncontig():
    arrs = [rand(2, 3), rand(2, 1), rand(2, 4), rand(2, 0)]
    check_op(lambda *xs: vitc.cat(xs, 1), lambda *xs: torch.cat(xs, 1), arrs, grad_inputs=[1, 2])
    check_op(lambda *xs: vitc.cat(xs, 1), lambda *xs: torch.cat(xs, 1), arrs[:3], noncontig=True)
    check_op(lambda *xs: vitc.stack(xs, 2), lambda *xs: torch.stack(xs, 2), [rand(3, 2)] * 3, noncontig=True,
             grad_inputs=[0])
    many = [rand(2, 2) for _ in range(18)]
    check_op(lambda *xs: vitc.cat(xs, 0), lambda *xs: torch.cat(xs, 0), many, grad_inputs=[0, 5, 17], fd=False)


def test_cat_legacy_empty_and_dtypes():
    check_op(lambda a, b, c: vitc.cat([a, b, c], 1), lambda a, b, c: torch.cat([a, b, c], 1),
             [rand(0), rand(2, 3), rand(2, 2)])
    assert vitc.cat([vitc.zeros(0), vitc.zeros(0)], 1).shape == (0,)
    i = vitc.cat([vitc.tensor([1, 2]), vitc.tensor([3])])
    assert i.dtype is vitc.int64 and i.tolist() == [1, 2, 3]
    m = vitc.cat([vitc.tensor([1, 2]), vitc.tensor([0.5])])
    assert m.dtype is vitc.float32 and m.tolist() == [1, 2, 0.5]
    b = vitc.stack([vitc.tensor([True]), vitc.tensor([False])], 1)
    assert b.dtype is vitc.bool and b.tolist() == [[True, False]]
    big = [vitc.full((3,), i) for i in range(40)]
    assert vitc.stack(big, 1).numpy().tolist() == np.stack([np.full(3, i) for i in range(40)], 1).tolist()


def test_cat_large_parallel():
    check_op(lambda a, b: vitc.cat([a, b], 1), lambda a, b: torch.cat([a, b], 1), [rand(300, 200), rand(300, 100)],
             noncontig=True, fd=False)


def test_cat_stack_errors():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        vitc.cat([vitc.zeros(2, 3), vitc.zeros(2, 4)])
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        vitc.cat([vitc.zeros(2, 3), vitc.zeros(3)])
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        vitc.stack([vitc.zeros(2, 3), vitc.zeros(3, 2)])
    with pytest.raises(ValueError, match=r"tensor 18 has shape \(2, 4\)"):
        vitc.cat([vitc.zeros(2, 3)] * 18 + [vitc.zeros(2, 4)])
    with pytest.raises(ValueError, match="non-empty"):
        vitc.cat([])
    with pytest.raises(ValueError):
        vitc.cat([vitc.zeros(())])
    with pytest.raises(TypeError):
        vitc.cat(vitc.zeros(3))
    with pytest.raises(TypeError):
        vitc.cat([vitc.zeros(3), np.zeros(3)])
    with pytest.raises(vitc.IndexError):
        vitc.cat([vitc.zeros(3)], 1)
    with pytest.raises(vitc.IndexError):
        vitc.stack([vitc.zeros(3)], 2)


# ---- split / chunk / unbind / narrow / select -------------------------------------------------

@pytest.mark.parametrize("fn", [lambda x: x.split(2), lambda x: x.split(2, 1), lambda x: x.split(1, -1),
                                lambda x: x.split([1, 3, 1], 1), lambda x: x.split(3, 0), lambda x: x.split([5], 1),
                                lambda x: x.chunk(2), lambda x: x.chunk(3, 1), lambda x: x.chunk(5, 2),
                                lambda x: x.unbind(0), lambda x: x.unbind(2), lambda x: x.unbind(-2)])
def test_split_family(fn):
    same(fn, (4, 5, 3))
    same(fn, (4, 5, 3), noncontig=True)


def test_split_functions_and_views():
    check_op(lambda x: vitc.split(x, [2, 0, 2]), lambda x: torch.split(x, [2, 0, 2]), [rand(4, 2)])
    check_op(lambda x: vitc.chunk(x, 3, 1), lambda x: torch.chunk(x, 3, 1), [rand(2, 6)])
    check_op(lambda x: vitc.unbind(x, 1), lambda x: torch.unbind(x, 1), [rand(2, 6)])
    x = vitc.zeros(6, 4)
    assert all(p.data_ptr() == x.data_ptr() + 16 * 2 * i for i, p in enumerate(x.split(2)))
    assert [p.shape for p in vitc.zeros(0, 2).chunk(3)] == [(0, 2)] * 3
    assert vitc.zeros(0, 2).unbind(0) == ()


@pytest.mark.parametrize("pieces,used", [(3, [1]), (3, [0, 2]), (5, [3]), (2, [])])
def test_split_partial_gradient(pieces, used):
    a = rand(pieces * 2, 3)
    v = vitc.from_numpy(a.copy()).requires_grad_()
    t = torch.from_numpy(a.copy()).requires_grad_()
    vs, ts = v.split(2), t.split(2)
    w = [rand(2, 3) for _ in range(pieces)]
    vl = sum((vs[i] * vitc.from_numpy(w[i])).sum() for i in used) + (vs[0] * 0).sum()
    tl = sum((ts[i] * torch.from_numpy(w[i])).sum() for i in used) + (ts[0] * 0).sum()
    vl.backward()
    tl.backward()
    np.testing.assert_allclose(v.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_split_errors():
    x = vitc.zeros(4, 3)
    with pytest.raises(ValueError, match="sum"):
        x.split([1, 2])
    with pytest.raises(ValueError):
        x.split(0)
    with pytest.raises(ValueError):
        x.chunk(0)
    with pytest.raises(vitc.IndexError):
        x.split(1, 2)
    with pytest.raises(TypeError):
        x.split(1.5)


def test_narrow_select():
    same(lambda x: x.narrow(1, 1, 3), (3, 5))
    same(lambda x: x.narrow(0, -2, 2), (3, 5), noncontig=True)
    same(lambda x: x.narrow(1, 5, 0), (3, 5))
    same(lambda x: x.select(1, -1), (3, 5, 2))
    same(lambda x: x.select(0, 2), (3, 5), noncontig=True)
    check_op(lambda x: vitc.narrow(x, 0, 1, 1), lambda x: torch.narrow(x, 0, 1, 1), [rand(3)])
    check_op(lambda x: vitc.select(x, 0, 1), lambda x: torch.select(x, 0, 1), [rand(3)])
    x = vitc.zeros(3, 5)
    with pytest.raises(vitc.IndexError):
        x.narrow(1, 3, 3)
    with pytest.raises(vitc.IndexError):
        x.select(0, 3)
    with pytest.raises(vitc.IndexError):
        x.select(2, 0)


def test_slice_op_checks_in_c():
    # the C op validates on its own (Python callers are not trusted)
    from vitc._tensor import _call
    x = vitc.zeros(3, 4)
    with pytest.raises(vitc.IndexError):
        _call("slice", (x,), ranges=(0, 3, 1, 2, 3, 1))
    with pytest.raises(ValueError):
        _call("slice", (x,), ranges=(0, 3, 1, 0, 2, -1))
    with pytest.raises(vitc.IndexError):
        _call("slice", (x,), ranges=(3, 0, 0, 0, 4, 1))
    with pytest.raises(ValueError):
        _call("slice", (x,), ranges=(0, 3, 1))
    with pytest.raises(ValueError):
        _call("split", (x,), dim=0, drop=0, sizes=(1, 1))
    with pytest.raises(ValueError):
        _call("index_select", (x, vitc.tensor([0])), dim=0, ndims=3, wrap=0)


# ---- flip / repeat ----------------------------------------------------------------------------

def test_flip_repeat():
    same(lambda x: x.flip(0), (3, 4))
    same(lambda x: x.flip((0, 2)), (2, 3, 4), noncontig=True)
    same(lambda x: x.flip(-1), (5,))
    same(lambda x: x.flip([]), (2, 3))
    same(lambda x: x.repeat(2, 3), (2, 3))
    same(lambda x: x.repeat(2, 1, 3), (2, 3), noncontig=True)
    same(lambda x: x.repeat(1, 1), (2, 3))
    same(lambda x: x.repeat(3), ())
    with pytest.raises(ValueError):
        vitc.zeros(2, 3).flip((0, 0))
    with pytest.raises(ValueError):
        vitc.zeros(2, 3).repeat(2)
