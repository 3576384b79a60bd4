"""Same seed and thread count: a bitwise-identical training run (counter RNG, fixed reduction order)."""
import numpy as np
import pytest

import vitc
from vitc.models import ViT


def _train(threads, steps=3):
    vitc.set_num_threads(threads)
    vitc.manual_seed(1234)
    m = ViT(image_size=8, patch_size=4, num_classes=3, dim=16, depth=2, heads=2, mlp_dim=32, channels=1,
            dim_head=8, dropout=0.1, emb_dropout=0.1)
    opt = vitc.optim.Adam(m.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    x = vitc.from_numpy(rng.uniform(0, 1, (20, 1, 8, 8)).astype(np.float32))
    y = vitc.from_numpy(rng.integers(0, 3, 20))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = vitc.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, {k: v.numpy().copy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_same_threads_is_bitwise_identical(threads):
    l1, s1 = _train(threads)
    l2, s2 = _train(threads)
    assert l1 == l2
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    vitc.set_num_threads(2)
