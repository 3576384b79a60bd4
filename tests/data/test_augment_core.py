"""The augment op family (csrc/ops/augment.c) as C ops: the same draws at any thread count, no
autograd, clean failure on every injected allocation failure, and checked raw arguments."""
import numpy as np
import pytest

import vitc
import vitc.data as vd
from vitc._ops import augment
from opcheck import assert_same_at_1_and_2_threads, check_allocation_failures


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = vitc.from_numpy(rng.standard_normal((64, 3, 12, 12)).astype(np.float32))
    y = vitc.from_numpy(rng.integers(0, 10, 64))
    u8 = vitc.from_numpy(rng.integers(0, 256, (64, 3, 12, 12)).astype(np.float32))
    return x, y, u8


def run_all(x, y, u8):
    fill = vitc.full((3,), 128.0)
    outs = augment.mixup(x, y, 5, 0, num_classes=10, mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")
    outs += augment.random_erase(x, 5, 0, probability=0.7, mode="pixel", min_count=1, max_count=2)
    outs += augment.rand_augment(u8, fill, 5, 0, num_ops=3, prob=0.9)
    return [o.numpy().copy() for o in outs]


def test_same_draws_at_any_thread_count():
    args = inputs()
    assert_same_at_1_and_2_threads(lambda: run_all(*args))


def test_no_autograd_and_inputs_untouched():
    x, y, u8 = inputs()
    x.requires_grad_(True)
    before = x.detach().numpy().copy()
    xm, ys, _ = augment.mixup(x, y, 1, 0, num_classes=10, mixup_alpha=1.0)
    assert not xm.requires_grad and xm.grad_fn is None
    er, _ = augment.random_erase(x, 1, 0, probability=1.0)
    assert not er.requires_grad
    np.testing.assert_array_equal(x.detach().numpy(), before)


@pytest.mark.parametrize("which", ["mixup", "random_erase", "rand_augment"])
def test_allocation_failures(which):
    x, y, u8 = inputs()
    fill = vitc.full((3,), 128.0)
    work = {
        "mixup": lambda: augment.mixup(x, y, 1, 0, num_classes=10, mixup_alpha=0.8, cutmix_alpha=1.0),
        "random_erase": lambda: augment.random_erase(x, 1, 0, probability=1.0, mode="rand"),
        "rand_augment": lambda: augment.rand_augment(u8, fill, 1, 0),
    }[which]
    check_allocation_failures(work)


def test_raw_argument_checks():
    x, y, u8 = inputs()
    fill = vitc.full((3,), 128.0)
    with pytest.raises(ValueError, match="num_classes"):
        augment.mixup(x, y, 0, 0, num_classes=0)
    with pytest.raises(ValueError, match="alpha"):
        augment.mixup(x, y, 0, 0, num_classes=10, mixup_alpha=float("nan"))
    with pytest.raises(ValueError, match="at least one channel"):
        augment.random_erase(vitc.zeros((2, 1, 0, 3)), 0, 0)
    with pytest.raises(ValueError, match="min_area"):
        augment.random_erase(x, 0, 0, min_area=float("nan"))
    with pytest.raises(ValueError, match="magnitude"):
        augment.rand_augment(u8, fill, 0, 0, magnitude=10.5)
    with pytest.raises(ValueError, match="fill"):
        augment.rand_augment(u8, vitc.full((3,), 300.0), 0, 0)
    with pytest.raises(ValueError, match="fill must have one value per channel"):
        augment.rand_augment(u8, vitc.full((2,), 1.0), 0, 0)
    # empty batches are fine
    assert augment.rand_augment(vitc.zeros((0, 3, 4, 4)), fill, 0, 0)[0].shape == (0, 3, 4, 4)
    assert augment.random_erase(vitc.zeros((0, 3, 4, 4)), 0, 0)[0].shape == (0, 3, 4, 4)


def test_seed_none_follows_the_global_generator_and_leaves_private_streams_alone():
    x, y, _ = inputs()
    vitc.manual_seed(3)
    a = vd.Mixup(mixup_alpha=1.0, num_classes=10)(x, y)[0].numpy().copy()
    state = vitc._C.get_rng_state()
    assert state[1] == 128  # the batch-mode call reserved its 128 counters from the global stream
    vd.Mixup(mixup_alpha=1.0, num_classes=10, seed=9)(x, y)
    assert vitc._C.get_rng_state() == state  # a private stream does not move the global one
    vitc.manual_seed(3)
    np.testing.assert_array_equal(vd.Mixup(mixup_alpha=1.0, num_classes=10)(x, y)[0].numpy(), a)
