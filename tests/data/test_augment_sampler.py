"""Repeated augmentation sampler (facebookresearch/deit samplers.py) and DataLoader(sampler=)."""
import numpy as np
import pytest

import vitc.data as vd


def test_spec_rule():
    n = 1000
    s = vd.RepeatAugSampler(n, num_repeats=3, seed=0)
    s.set_epoch(4)
    idx = np.array(list(s))
    assert len(idx) == len(s) == n // 256 * 256 == 768
    perm = s.permutation(4)
    assert sorted(perm) == list(range(n))
    # each index three times in a row, in the epoch's permutation order, then cut
    np.testing.assert_array_equal(idx, np.repeat(perm, 3)[:768])
    assert np.all(idx[0::3] == idx[1::3]) and np.all(idx[1::3] == idx[2::3])
    assert len(set(idx)) == 256  # ≈ n/3 distinct images per epoch
    # seeded by the epoch: the same epoch repeats, another one differs
    s.set_epoch(4)
    np.testing.assert_array_equal(list(s), idx)
    s.set_epoch(5)
    assert not np.array_equal(list(s), idx)
    np.testing.assert_array_equal(vd.RepeatAugSampler(n, shuffle=False).indices(), np.repeat(np.arange(n), 3)[:768])


@pytest.mark.parametrize("n, replicas, rnd", [(1000, 1, 256), (1000, 2, 256), (100, 1, 256), (777, 3, 0)])
def test_matches_timm_with_the_same_permutation(monkeypatch, n, replicas, rnd):
    torch = pytest.importorskip("torch")
    ds = pytest.importorskip("timm.data.distributed_sampler")
    for rank in range(replicas):
        ours = vd.RepeatAugSampler(n, num_replicas=replicas, rank=rank, seed=3, selected_round=rnd)
        ours.set_epoch(2)
        perm = torch.from_numpy(ours.permutation(2))
        monkeypatch.setattr(torch, "randperm", lambda *a, **k: perm)
        ref = ds.RepeatAugSampler(list(range(n)), num_replicas=replicas, rank=rank, selected_round=rnd)
        ref.set_epoch(2)
        assert len(ours) == len(ref)
        assert list(ours) == list(ref)


def test_dataloader_uses_the_sampler():
    x = np.arange(600, dtype=np.float32).reshape(600, 1, 1, 1)

    class DS:
        images, labels = x, np.arange(600)

        def __len__(self):
            return 600

        def __getitem__(self, i):
            return x[i], i

    sampler = vd.RepeatAugSampler(600, seed=1)
    loader = vd.DataLoader(DS(), batch_size=64, sampler=sampler, prefetch=0, to_tensor=None)
    assert len(loader) == -(-512 // 64)
    for epoch in range(2):
        ys = np.concatenate([y for _, y in loader])
        sampler.set_epoch(epoch)  # the loader set it for this epoch; compare with the same order
        np.testing.assert_array_equal(ys, sampler.indices(epoch))
        assert sampler.epoch == epoch
    with pytest.raises(ValueError, match="mutually exclusive"):
        vd.DataLoader(DS(), 8, shuffle=True, sampler=sampler)
    with pytest.raises(TypeError, match="sampler"):
        vd.DataLoader(DS(), 8, sampler=5)


@pytest.mark.parametrize("kwargs, err", [
    (dict(num_repeats=0), ValueError), (dict(num_repeats=1.5), TypeError), (dict(seed=-1), ValueError),
    (dict(rank=2, num_replicas=2), ValueError), (dict(shuffle=1), TypeError), (dict(selected_round=-1), ValueError),
])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        vd.RepeatAugSampler(100, **kwargs)
