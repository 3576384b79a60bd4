"""Dataset, TensorDataset, Subset, ConcatDataset, random_split (torch.utils.data's names and
rounding) and default_collate on tuple / dict / nested samples."""
import collections

import numpy as np
import pytest
import torch

import vitc
import vitc.data as vd


def test_tensor_dataset_takes_arrays_and_tensors():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    ds = vd.TensorDataset(x, vitc.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6) * 10)
    assert len(ds) == 6
    a, b, c = ds[-1]
    np.testing.assert_array_equal(a, x[5])
    assert int(b) == 2 and int(c) == 50
    with pytest.raises(ValueError, match=r"different first dimensions \[6, 5\]"):
        vd.TensorDataset(x, np.arange(5))
    with pytest.raises(ValueError, match="at least one"):
        vd.TensorDataset()
    with pytest.raises(ValueError, match="scalar"):
        vd.TensorDataset(np.float32(3))
    with pytest.raises(IndexError, match="index 6 out of range"):
        ds[6]
    with pytest.raises(TypeError, match="index must be an int"):
        ds[1.0]


def test_subset_concat_and_add():
    a = vd.TensorDataset(np.arange(5))
    b = vd.TensorDataset(np.arange(5, 8))
    both = a + b
    assert isinstance(both, vd.ConcatDataset) and len(both) == 8
    assert [int(both[i][0]) for i in range(8)] == list(range(8))
    assert int(both[-3][0]) == 5
    sub = vd.Subset(both, [7, 0, 4])
    assert [int(sub[i][0]) for i in range(3)] == [7, 0, 4]
    with pytest.raises(IndexError):
        vd.Subset(a, [5])
    with pytest.raises(TypeError, match="indices"):
        vd.Subset(a, [0.5])
    with pytest.raises(TypeError, match="dataset"):
        vd.ConcatDataset([a, 3])
    with pytest.raises(NotImplementedError, match="__getitem__"):
        vd.Dataset()[0]


@pytest.mark.parametrize("n,lengths", [
    (10, [0.5, 0.5]), (10, [0.3, 0.3, 0.4]), (11, [0.3, 0.3, 0.4]), (7, [0.1, 0.9]), (100, [0.7, 0.2, 0.1]),
    (5, [1 / 3, 1 / 3, 1 / 3]), (10, [3, 7]), (3, [0, 3]),
])
def test_random_split_lengths_match_torch(n, lengths):
    ours = vd.random_split(vd.TensorDataset(np.arange(n)), lengths, seed=0)
    theirs = torch.utils.data.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    seen = sorted(int(s[i][0]) for s in ours for i in range(len(s)))
    assert seen == list(range(n))  # disjoint and covering


def test_random_split_is_seeded():
    ds = vd.TensorDataset(np.arange(50))
    idx = lambda parts: [p.indices for p in parts]  # noqa: E731
    assert idx(vd.random_split(ds, [0.8, 0.2], seed=4)) == idx(vd.random_split(ds, [40, 10], seed=4))
    assert idx(vd.random_split(ds, [40, 10], seed=4)) != idx(vd.random_split(ds, [40, 10], seed=5))
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    assert idx(vd.random_split(ds, [25, 25], generator=g1)) == idx(vd.random_split(ds, [25, 25], generator=g2))


@pytest.mark.parametrize("lengths,kwargs,exc,match", [
    ([10, 10], {}, ValueError, "sum to 20 but the dataset has 50"),
    ([0.5, 0.4], {}, ValueError, "sum to 1"),
    ([60, -10], {}, ValueError, "non-negative"),
    ([25, 0.5], {}, TypeError, "all ints or all fractions"),
    ([], {}, ValueError, "empty"),
    ([25, 25], dict(seed=1, generator=np.random.default_rng()), ValueError, "not both"),
    ([25, 25], dict(generator=3), TypeError, "Generator"),
    ([25, 25], dict(seed=-1), ValueError, "seed"),
])
def test_random_split_bad_arguments(lengths, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        vd.random_split(vd.TensorDataset(np.arange(50)), lengths, **kwargs)


Point = collections.namedtuple("Point", "x y")


def test_default_collate_structures():
    samples = [({"a": np.full((2,), i, np.float64), "b": [i, i + 1]}, i, "n%d" % i, Point(i, 0.5))
               for i in range(3)]
    d, label, names, pt = vd.default_collate(samples)
    assert d["a"].dtype == np.float32 and d["a"].shape == (3, 2)
    assert d["b"].dtype == np.int64 and d["b"].tolist() == [[0, 1], [1, 2], [2, 3]]  # a list of numbers is one array
    assert label.dtype == np.int64 and label.tolist() == [0, 1, 2]
    assert names == ["n0", "n1", "n2"]
    assert isinstance(pt, Point) and pt.x.tolist() == [0, 1, 2] and pt.y.dtype == np.float32
    # A list holding arrays is a sequence of fields (as torch collates it), and tensors of
    # either library are stacked.
    fields = vd.default_collate([[np.zeros(2), vitc.ones(3), torch.ones(1, dtype=torch.bool)]] * 4)
    assert isinstance(fields, list) and [f.shape for f in fields] == [(4, 2), (4, 3), (4, 1)]
    assert fields[2].dtype == np.bool_


@pytest.mark.parametrize("samples,exc,match", [
    ([{"a": 1}, {"b": 1}], ValueError, r"sample 1 has keys \['b'\]"),
    ([(1, 2), (1,)], ValueError, "sample 1 is a tuple of 1 fields"),
    ([np.zeros((3, 4)), np.zeros((3, 5))], ValueError, r"sample 1 has shape \(3, 5\).*Resize"),
    ([None, None], TypeError, "None"),
    ([object(), object()], TypeError, "cannot batch sample 0 of type object"),
    ([np.array(["a"]), np.array(["b"])], TypeError, "dtype <U1"),
    ([], ValueError, "non-empty"),
])
def test_default_collate_errors(samples, exc, match):
    with pytest.raises(exc, match=match):
        vd.default_collate(samples)


def test_default_collate_refuses_pil_images_with_a_hint():
    from PIL import Image
    with pytest.raises(TypeError, match="ToTensor"):
        vd.default_collate([Image.new("RGB", (2, 2))] * 2)


def test_loader_collate_fn_and_dict_samples():
    class Dicts(vd.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.full((2, 2), i, np.float32), "y": i}

    batches = list(vd.DataLoader(Dicts(), batch_size=2))
    assert [b["y"].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert isinstance(batches[0]["x"], vitc.Tensor) and batches[0]["x"].dtype is vitc.float32
    sums = list(vd.DataLoader(Dicts(), batch_size=2, collate_fn=lambda s: sum(d["y"] for d in s)))
    assert sums == [1, 5, 4]  # a custom collate_fn's result is used as returned
    with pytest.raises(TypeError, match=r"transform= needs \(x, y\) batches, got a dict"):
        list(vd.DataLoader(Dicts(), batch_size=2, transform=vd.RandomHorizontalFlip()))
    loader = vd.DataLoader(Dicts(), batch_size=2, pin_memory=True)  # accepted; nothing to pin on a CPU
    assert loader.pin_memory and len(list(loader)) == 3


def test_two_array_tensor_dataset_gather_equals_item_by_item():
    x = np.random.default_rng(0).random((13, 2, 3))  # float64 and int32 become float32 and int64 either way
    ds = vd.TensorDataset(x, np.arange(13, dtype=np.int32))
    assert ds.images is ds.arrays[0]
    with pytest.raises(AttributeError):
        vd.TensorDataset(x, x, x).images
    kw = dict(batch_size=4, shuffle=True, seed=7, to_tensor=None)
    fast = list(vd.DataLoader(ds, **kw))
    slow = list(vd.DataLoader(vd.Subset(ds, range(13)), **kw))
    for (a, b), (c, d) in zip(fast, slow, strict=True):
        assert a.dtype == c.dtype == np.float32 and b.dtype == d.dtype == np.int64
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
