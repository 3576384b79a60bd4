"""Parameter.data = x: torch's rules. A same-shape tensor is adopted (an optimizer copies it into its flat
buffer at the next step); another shape is allowed, but a backward whose gradient no longer matches the
leaf (or its old .grad) raises RuntimeError as torch does, instead of adding a gradient of one size into
a .grad of another (before: a silent wrong-shape .grad, or a read past the smaller gradient's buffer)."""
import numpy as np
import pytest
import torch

import vitc
from vitc import nn, optim


def test_shape_change_after_forward_raises_at_backward_like_torch():
    w = nn.Parameter(vitc.randn(2, 3))
    y = (w * 2.0).sum()
    w.data = vitc.randn(5, 7)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(5, 7\)"):
        y.backward()
    tw = torch.nn.Parameter(torch.randn(2, 3))
    ty = (tw * 2).sum()
    tw.data = torch.randn(5, 7)
    with pytest.raises(RuntimeError):
        ty.backward()


@pytest.mark.parametrize("new_shape", [(2, 3), (2, 8)], ids=["smaller", "larger"])
def test_shape_change_with_an_old_grad_raises_at_backward_like_torch(new_shape):
    w = nn.Parameter(vitc.randn(2, 5))
    (w * 2.0).sum().backward()
    w.data = vitc.randn(*new_shape)
    with pytest.raises(RuntimeError, match=r"\.grad of shape \(2, 5\)"):
        (w * 2.0).sum().backward()
    assert tuple(w.grad.shape) == (2, 5)  # untouched
    w.grad = None  # then the new shape trains
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.full(new_shape, 2.0, np.float32))


def test_same_shape_data_is_used_by_forward_and_by_the_optimizer():
    m = nn.Linear(3, 2)
    o = optim.SGD(m.parameters(), lr=0.5)
    x = vitc.randn(4, 3)
    m(x).sum().backward()
    o.step()
    new = np.arange(6, dtype=np.float32).reshape(2, 3)
    m.weight.data = vitc.from_numpy(new.copy())
    np.testing.assert_array_equal(m.weight.detach().numpy(), new)
    o.zero_grad()
    m(x).sum().backward()
    g = m.weight.grad.numpy().copy()
    o.step()
    np.testing.assert_allclose(m.weight.detach().numpy(), new - 0.5 * g, rtol=1e-6)


def test_shape_change_with_an_optimizer_is_a_clear_error_at_step():
    m = nn.Linear(3, 2)
    o = optim.AdamW(m.parameters(), lr=0.1)
    m(vitc.randn(4, 3)).sum().backward()
    o.step()
    m.weight.data = vitc.randn(4, 3)
    m.bias.data = vitc.randn(4)
    o.zero_grad()
    m(vitc.randn(4, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="changed shape from"):
        o.step()


def test_another_dtype_is_refused():
    w = nn.Parameter(vitc.randn(2, 3))
    with pytest.raises(TypeError, match=r"Tensor\.data = \.\.\.: the new data is int64 but the tensor is float32"):
        w.data = vitc.zeros(2, 3).long()
