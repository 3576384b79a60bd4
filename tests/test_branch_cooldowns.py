"""vitc.train.branch_cooldowns: cooldown branches of one long rsqrt run (Scaling ViT §3.5). A branch is
bit for bit the run that had its schedule from the start; branches agree until their cooldowns start;
an interrupted branch resumes; bad calls are refused."""
import os

import numpy as np
import pytest

import vitc
from vitc import nn, optim
from vitc import train as vtrain
from vitc.data import DataLoader
from vitc.io import load_safetensors
from vitc.optim.lr_scheduler import RsqrtLR

SPE = 3            # updates per epoch (48 samples, batches of 16)
WARMUP, TAU = 2, 4.0
DETERMINISTIC = ("epoch", "train_loss_sum", "train_loss", "test_accuracy", "test_loss", "lr")


class _Arrays:
    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        centers = np.random.default_rng(99).standard_normal((4, 10)).astype(np.float32) * 2
        self.labels = rng.integers(0, 4, n).astype(np.int64)
        self.images = (centers[self.labels] + rng.standard_normal((n, 10))).astype(np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def _loaders():
    tr = DataLoader(_Arrays(48, 1), batch_size=16, shuffle=True, seed=3, prefetch=0, to_tensor=vitc.from_numpy)
    te = DataLoader(_Arrays(32, 2), batch_size=16, prefetch=0, to_tensor=vitc.from_numpy)
    return tr, te


def _make(total, cooldown=0):
    def make():
        vitc.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 4))  # dropout: RNG
        opt = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.05)
        return model, opt, RsqrtLR(opt, total, warmup_steps=WARMUP, timescale=TAU, cooldown_steps=cooldown)
    return make


def _fit(make, epochs, **kw):
    model, opt, sched = make()
    tr, te = _loaders()
    h = vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), epochs, scheduler=sched, progress=False, log=None, **kw)
    return model, h


def _same(h1, h2, upto=None):
    return all(h1[k][:upto] == h2[k][:upto] for k in DETERMINISTIC)


def _weights(path):
    return load_safetensors(os.path.join(vtrain.latest_checkpoint(path), "model.safetensors"))


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """the long run: 1000 updates planned, no cooldown, stopped after 2 epochs (6 updates)"""
    d = tmp_path_factory.mktemp("long")
    _fit(_make(1000), 2, checkpoint_dir=str(d))
    return str(d)


def test_branch_equals_the_run_with_that_schedule_and_branches_split_at_cooldown(long_run, tmp_path):
    tr, te = _loaders()
    out = tmp_path / "branches"
    hs = vtrain.branch_cooldowns(long_run, [(12, 3), (18, 6)], _make(1000), tr, te, nn.CrossEntropyLoss(), out)
    for (total, cool), h in hs.items():
        model, ref = _fit(_make(total, cool), total // SPE)
        assert h["epoch"] == list(range(1, total // SPE + 1))
        assert _same(h, ref), (total, cool)
        stored = _weights(vtrain.branch_dir(out, total, cool))
        for name, p in model.state_dict().items():
            np.testing.assert_array_equal(stored[name].numpy(), p.numpy(), err_msg=name)
        assert h["lr"][-1] > 0 and ref["lr"][-1] > 0
    a, b = hs[(12, 3)], hs[(18, 6)]
    # the cooldowns start at updates 9 and 12 (epochs 4 and 5): epochs 1-3 ran the same rates; the rate of
    # a cooldown's first update is still rsqrt's (factor (S − s)/c = 1), its next ones are lower, so epoch 4
    # starts at the same rate and ends elsewhere
    assert _same(a, b, upto=3)
    assert a["lr"][3] == b["lr"][3] and a["train_loss_sum"][3] != b["train_loss_sum"][3]


def test_interrupted_branch_resumes_to_the_same_result(long_run, tmp_path):
    tr, te = _loaders()
    out = tmp_path / "b"
    stop_after_one = [lambda record: True]
    part = vtrain.branch_cooldowns(long_run, [(12, 3)], _make(1000), tr, te, nn.CrossEntropyLoss(), out,
                                   callbacks=stop_after_one)
    assert part[(12, 3)]["epoch"] == [1, 2, 3]  # the long run's two epochs and one of the branch
    full = vtrain.branch_cooldowns(long_run, [(12, 3)], _make(1000), tr, te, nn.CrossEntropyLoss(), out)
    _, ref = _fit(_make(12, 3), 4)
    assert _same(full[(12, 3)], ref)
    again = vtrain.branch_cooldowns(long_run, [(12, 3)], _make(1000), tr, te, nn.CrossEntropyLoss(), out)
    assert _same(again[(12, 3)], ref)  # a finished branch: its stored history, no more training


def test_bad_calls(long_run, tmp_path):
    tr, te = _loaders()
    f = vtrain.branch_cooldowns
    args = (_make(1000), tr, te, nn.CrossEntropyLoss(), tmp_path / "x")
    with pytest.raises(ValueError, match="whole number of epochs of 3"):
        f(long_run, [(13, 3)], *args)
    with pytest.raises(ValueError, match="before the current update 6"):
        f(long_run, [(9, 6)], *args)
    with pytest.raises(ValueError, match="listed twice"):
        f(long_run, [(12, 3), (12, 3)], *args)
    with pytest.raises(ValueError, match="pair"):
        f(long_run, [12], *args)
    with pytest.raises(ValueError, match="empty"):
        f(long_run, [], *args)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        f(tmp_path / "nothing", [(12, 3)], *args)
    # a directory holding another branch is refused, not silently continued
    other = tmp_path / "y"
    f(long_run, [(9, 3)], _make(1000), tr, te, nn.CrossEntropyLoss(), other, callbacks=[lambda r: True])
    os.rename(vtrain.branch_dir(other, 9, 3), vtrain.branch_dir(other, 12, 3))
    with pytest.raises(ValueError, match="total_steps=9, cooldown_steps=3, not"):
        f(long_run, [(12, 3)], _make(1000), tr, te, nn.CrossEntropyLoss(), other)
