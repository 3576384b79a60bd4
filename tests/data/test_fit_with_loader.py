"""vitc.train.fit on a plain DataLoader over a TensorDataset with no to_tensor argument: the loader's
vitc tensors go straight into the model, with and without worker processes."""
import numpy as np
import pytest

import vitc
import vitc.data as vd
from vitc import nn, optim
from vitc.train import fit


def _data(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32) * 0.3
    x[np.arange(n), 0, y, y] += 3.0  # the class is readable from one pixel
    return x, y


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fit_learns_from_a_plain_loader(num_workers):
    vitc.manual_seed(0)
    model = vitc.models.ViT(image_size=8, patch_size=4, num_classes=3, dim=16, depth=1, heads=2, mlp_dim=16,
                            channels=1, dim_head=8)
    # Subset: sample by sample (a TensorDataset of two arrays alone is gathered in this process).
    train = vd.DataLoader(vd.Subset(vd.TensorDataset(*_data(60, 1)), range(60)), batch_size=10, shuffle=True,
                          seed=0, num_workers=num_workers)
    test = vd.DataLoader(vd.TensorDataset(*_data(30, 2)), batch_size=15)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    history = fit(model, train, test, optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(), epochs=3,
                  progress=False, log=None)
    assert history["epoch"] == [1, 2, 3]
    assert all(np.isfinite(history["train_loss"]))
    assert history["train_loss"][-1] < history["train_loss"][0]  # it learns
    changed = [k for k, v in model.state_dict().items() if not np.array_equal(v.numpy(), before[k])]
    assert "pos_embedding" in changed or len(changed) > len(before) // 2


def test_fit_with_only_a_model_and_a_loader():
    # fit(model, DataLoader(ds)): AdamW with torch's defaults, cross-entropy, one epoch, no test pass
    vitc.manual_seed(0)
    model = vitc.models.ViT(image_size=8, patch_size=4, num_classes=3, dim=16, depth=1, heads=2, mlp_dim=16,
                            channels=1, dim_head=8)
    lines = []
    history = fit(model, vd.DataLoader(vd.TensorDataset(*_data(60, 1)), batch_size=10, shuffle=True, seed=0),
                  progress=False, log=lines.append)
    assert history["epoch"] == [1] and np.isfinite(history["train_loss"][0])
    assert np.isnan(history["test_accuracy"][0]) and history["test_loss"] == [None]
    assert "no test set" in lines[0] and "test accuracy" not in lines[0]
    first = fit(model, vd.DataLoader(vd.TensorDataset(*_data(60, 1)), batch_size=10), epochs=5, progress=False,
                log=None)["train_loss"]
    assert first[-1] < first[0]  # and it learns
