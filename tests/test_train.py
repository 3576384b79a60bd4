"""vitc.train and vitc.io: fit() on a small Fashion-MNIST subset, checkpoint resume equals an
uninterrupted run, a crash during save leaves the previous checkpoint intact, safetensors round
trips, the CLI (--help and a tiny run) and the notebook (executed with nbclient on a subset)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vitc
from vitc import nn, optim
from vitc.data import DataLoader, FashionMNIST
from vitc.io import load_safetensors, save_safetensors
from vitc.models import create_model
from vitc import train as vtrain
from nbrun import run_notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_data = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
TINY = dict(depth=2, dim=32, heads=2, dim_head=16, mlp_dim=64, dropout=0.1, emb_dropout=0.1)


def _loaders(n_train=300, n_test=200, seed=0):
    tr = DataLoader(FashionMNIST(subset=n_train), batch_size=50, shuffle=True, seed=seed, to_tensor=vitc.from_numpy)
    te = DataLoader(FashionMNIST(train=False, subset=n_test), batch_size=100, to_tensor=vitc.from_numpy)
    return tr, te


def _setup(seed=0, sched=True):
    vitc.manual_seed(seed)
    model = create_model("vit_seed_mnist", **TINY)
    opt = optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    s = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4) if sched else None
    return model, opt, s


@needs_data
def test_fit_learns_and_reports():
    model, opt, s = _setup()
    tr, te = _loaders()
    lines = []
    h = vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 3, scheduler=s, progress=False, log=lines.append)
    assert h["epoch"] == [1, 2, 3] and len(lines) == 3
    assert h["train_loss_sum"][-1] < h["train_loss_sum"][0]
    np.testing.assert_allclose(h["train_loss"], np.array(h["train_loss_sum"]) / 6)
    assert h["test_accuracy"][-1] > 0.2 and all(t > 0 for t in h["train_time"] + h["test_time"])
    assert h["lr"][0] == 2e-3 and h["lr"][1] < 2e-3  # the scheduler stepped once per epoch
    assert "test accuracy" in lines[0] and "sum of 6 batch means" in lines[0]
    assert f"train loss {h['train_loss'][0]:.4f} (mean of 6 batches;" in lines[0]  # the mean leads
    assert f"test loss {h['test_loss'][0]:.4f}," in lines[0] and 0 < h["test_loss"][0] < 5
    ev = vtrain.evaluate(model, te, nn.CrossEntropyLoss())
    assert ev["samples"] == 200 and ev["accuracy"] == pytest.approx(h["test_accuracy"][-1])
    assert model.training  # evaluate restores the mode


@needs_data
def test_resume_equals_uninterrupted_run(tmp_path):
    model, opt, s = _setup()
    tr, te = _loaders()
    full = vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 3, scheduler=s, progress=False, log=None,
                      checkpoint_dir=str(tmp_path / "a"))
    ref = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    model, opt, s = _setup()
    tr, te = _loaders()
    vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 1, scheduler=s, progress=False, log=None,
               checkpoint_dir=str(tmp_path / "b"))
    vitc.manual_seed(123)  # a fresh process: other RNG state, other initial weights
    model2, opt2, s2 = _setup(seed=7)
    tr, te = _loaders()
    resumed = vtrain.fit(model2, tr, te, opt2, nn.CrossEntropyLoss(), 3, scheduler=s2, progress=False, log=None,
                         checkpoint_dir=str(tmp_path / "b"), resume=True)
    assert resumed["epoch"] == [1, 2, 3]
    assert resumed["train_loss_sum"] == full["train_loss_sum"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    for k, v in model2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k], err_msg=k)
    assert sorted(os.listdir(tmp_path / "b")) == ["ckpt-000002", "ckpt-000003", "latest"]


@needs_data
def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, s = _setup()
    tr, te = _loaders(n_train=100, n_test=100)
    d = str(tmp_path)
    vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 1, scheduler=s, progress=False, log=None, checkpoint_dir=d)
    good = {k: v.numpy().copy() for k, v in load_safetensors(os.path.join(d, "ckpt-000001", "model.safetensors")).items()}
    real = vtrain.save_safetensors
    calls = []

    def crash(sd, path, metadata=None):
        calls.append(path)
        if path.endswith("optimizer.safetensors"):
            real(sd, path)  # the file is complete on disk, then the "power fails"
            raise OSError("simulated crash while saving")
        real(sd, path, metadata)

    monkeypatch.setattr(vtrain, "save_safetensors", crash)
    with pytest.raises(OSError, match="simulated crash"):
        vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 2, scheduler=s, progress=False, log=None,
                   checkpoint_dir=d, resume=True)
    assert calls
    assert sorted(os.listdir(d)) == ["ckpt-000001", "latest"]  # no half-written checkpoint left behind
    assert vtrain.latest_checkpoint(d).endswith("ckpt-000001")
    monkeypatch.setattr(vtrain, "save_safetensors", real)
    model3, opt3, s3 = _setup(seed=3)
    state = vtrain.load_checkpoint(vtrain.latest_checkpoint(d), model3, opt3, s3)
    assert state["epoch"] == 1
    for k, v in model3.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), good[k], err_msg=k)


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    from vitc.io import atomic_write
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == os.stat(tmp_path / "b.txt").st_mode & 0o777 == 0o640


def test_io_round_trip_and_atomic_write(tmp_path, monkeypatch):
    bn = nn.BatchNorm1d(3)
    sd = dict(bn.state_dict())
    sd["mask"] = vitc.tensor(np.array([True, False]))
    sd["halfish"] = np.arange(4, dtype=np.float64)
    p = tmp_path / "w.safetensors"
    save_safetensors(sd, p, metadata={"format": "vitc"})
    back = load_safetensors(p)
    assert back["num_batches_tracked"].dtype is vitc.int64 and back["num_batches_tracked"].shape == ()
    assert back["mask"].dtype is vitc.bool and back["halfish"].dtype is vitc.float32
    np.testing.assert_array_equal(back["running_var"].numpy(), np.ones(3))
    assert load_safetensors(p, as_numpy=True)["halfish"].dtype == np.float64
    bn2 = nn.BatchNorm1d(3)
    bn2.load_state_dict({k: back[k] for k in bn.state_dict()})

    import safetensors.numpy as stn
    before = p.read_bytes()

    def broken(arrays, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(stn, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_safetensors(sd, p)
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]
    with pytest.raises(TypeError):
        save_safetensors({"a": "text"}, tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "missing.safetensors")


def test_fit_bad_arguments():
    model, opt, _ = _setup(sched=False)
    with pytest.raises(ValueError, match="epochs"):
        vtrain.fit(model, [], [], opt, nn.CrossEntropyLoss(), -1)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        vtrain.fit(model, [], [], opt, nn.CrossEntropyLoss(), 1, resume=True)


def _cli(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "vitc.train", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_cli_help():
    r = _cli("--help")
    assert r.returncode == 0
    for flag in ("--model", "--dataset", "--epochs", "--batch-size", "--lr", "--subset", "--threads", "--seed",
                 "--checkpoint-dir"):
        assert flag in r.stdout
    r = _cli("--model", "nope")
    assert r.returncode != 0 and "vit_seed_mnist" in r.stderr


@needs_data
def test_cli_tiny_run(tmp_path):
    hist = tmp_path / "h.json"
    r = _cli("--model", "vit_seed_mnist", "--dataset", "fashion-mnist", "--epochs", "1", "--subset", "200",
             "--test-subset", "200", "--batch-size", "100", "--threads", "2", "--seed", "1", "--no-progress",
             "--checkpoint-dir", str(tmp_path / "ck"), "--history", str(hist), "--save", str(tmp_path / "w.safetensors"))
    assert r.returncode == 0, r.stderr
    assert "epoch 1/1" in r.stdout and "final test accuracy" in r.stdout
    h = json.loads(hist.read_text())["history"]
    assert len(h["test_accuracy"]) == 1 and os.path.exists(tmp_path / "ck" / "latest")
    assert "mlp_head.weight" in load_safetensors(tmp_path / "w.safetensors")


@needs_data
def test_notebook_executes_on_a_subset():
    text, pngs = run_notebook("vit_fashion_mnist.ipynb", dict(VITC_NB_SUBSET="200", VITC_NB_EPOCHS="1"))
    assert "final test accuracy" in text
    assert pngs >= 1


def test_checkpoint_of_another_model_is_refused(tmp_path):
    model, opt, _ = _setup()
    path = vtrain.save_checkpoint(str(tmp_path), 1, model, opt)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    wider = create_model("vit_seed_mnist", **dict(TINY, dim=48))  # same class, other shapes
    with pytest.raises(ValueError, match=r"(?s)does not fit this ViT.*size mismatch for"):
        vtrain.load_checkpoint(path, wider)
    shallower = create_model("vit_seed_mnist", **dict(TINY, depth=1))
    with pytest.raises(ValueError, match=r"(?s)ckpt-000001 does not fit.*Unexpected key"):
        vtrain.load_checkpoint(path, shallower)
    with pytest.raises(ValueError, match="written by a ViT model, cannot load it into a Linear"):
        vtrain.load_checkpoint(path, nn.Linear(3, 4))
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        vtrain.load_checkpoint(str(tmp_path / "nothing"), model)
    for k, v in model.state_dict().items():  # the failed loads did not touch the source model
        np.testing.assert_array_equal(v.numpy(), before[k])


_WRITER = r"""
import sys, vitc
from vitc import optim
from vitc.models import create_model
from vitc import train as vtrain
d = sys.argv[1]
model = create_model("vit_seed_mnist", depth=4, dim=128, heads=4, dim_head=32, mlp_dim=256)
opt = optim.Adam(model.parameters(), lr=1e-3)
print("ready", flush=True)
epoch = 0
while True:  # rewrite checkpoints as fast as possible until killed
    epoch += 1
    with vitc.no_grad():
        for p in model.parameters():
            p.fill_(float(epoch))
    vtrain.save_checkpoint(d, epoch, model, opt, keep=2)
"""


def test_killing_the_writer_keeps_a_readable_checkpoint(tmp_path):
    """SIGKILL a process in the middle of writing checkpoints, several times at random moments:
    each time the latest checkpoint loads and holds one epoch's weights in full."""
    import random
    import signal
    import time as _time

    d = str(tmp_path / "ck")
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rnd = random.Random(0)
    seen = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), d], stdout=subprocess.PIPE, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        assert proc.stdout.readline().strip() == b"ready"
        _time.sleep(rnd.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        path = vtrain.latest_checkpoint(d)
        assert path is not None
        model = create_model("vit_seed_mnist", depth=4, dim=128, heads=4, dim_head=32, mlp_dim=256)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        state = vtrain.load_checkpoint(path, model, opt, restore_rng=False)
        values = {float(v) for p in model.parameters() for v in np.unique(p.detach().numpy())}
        assert values == {float(state["epoch"])}  # every tensor from the same, complete save
        seen.append(state["epoch"])
    assert max(seen) > 1  # the writer really was rewriting checkpoints when it was killed
    vtrain.save_checkpoint(d, max(seen) + 1, model, opt)  # the next save clears killed saves' leftovers
    assert not [n for n in os.listdir(d) if n.startswith(".")]
