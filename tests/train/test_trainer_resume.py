"""python -m vitc.train --resume: refusals in one line, the checkpoint's options continue, equal to an uninterrupted run."""
import os

import pytest

from vitc import nn, optim
from vitc import train as vtrain

from trainer_helpers import SMALL, TINY, assert_same_weights, needs_fmnist, run_main, weights


def _refused(*argv):
    code, out, err = run_main(*argv)
    assert code == 2 and err.startswith("error: --resume: ") and err.count("\n") == 1, (code, out, err)
    return err


def test_an_empty_or_missing_checkpoint_directory_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _refused(*SMALL, "--resume", "--checkpoint-dir", tmp_path / "empty")
    assert f"--checkpoint-dir {tmp_path / 'empty'} is empty, no checkpoint to continue from" in err
    err = _refused(*SMALL, "--resume", "--checkpoint-dir", tmp_path / "missing")
    assert "does not exist" in err and not (tmp_path / "missing").exists()


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A checkpoint directory after 1 epoch at --lr 1e-3, and the weights of the same run over 2 epochs."""
    if not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
        pytest.skip("Fashion-MNIST not installed")
    d = tmp_path_factory.mktemp("resume")
    code, _, err = run_main(*SMALL, *TINY, "--lr", "1e-3", "--checkpoint-dir", d / "ck")
    assert code == 0, err
    code, _, err = run_main(*SMALL, *TINY, "--lr", "1e-3", "--epochs", "2", "--save", d / "full.safetensors")
    assert code == 0, err
    return d


@needs_fmnist
def test_another_model_or_other_model_kwargs_are_refused_naming_both(one_epoch):
    ck = one_epoch / "ck"
    err = _refused(*SMALL, "--model", "deit_mnist", "--resume", "--checkpoint-dir", ck)
    assert "holds a vit_seed_mnist {" in err and '"depth": 1' in err and "not the requested deit_mnist {" in err
    err = _refused(*SMALL, *TINY[:-1], "mlp_dim=64", "--resume", "--checkpoint-dir", ck)
    assert '"mlp_dim": 32' in err and '"mlp_dim": 64' in err


@needs_fmnist
def test_a_different_lr_is_refused_and_the_checkpoints_lr_is_used(one_epoch, tmp_path):
    ck = one_epoch / "ck"
    err = _refused(*SMALL, *TINY, "--lr", "0.1", "--resume", "--checkpoint-dir", ck)
    assert "--lr 0.1 differs from the checkpoint's --lr 0.001" in err
    err = _refused(*SMALL, *TINY, "--optimizer", "sgd", "--seed", "3", "--resume", "--checkpoint-dir", ck)
    assert "--optimizer sgd, --seed 3 differs from the checkpoint's --optimizer adam, --seed 0" in err
    # left out: the checkpoint's lr, printed in the header and used; equal to the uninterrupted run
    import shutil
    shutil.copytree(ck, tmp_path / "ck")
    code, out, err = run_main(*SMALL, *TINY, "--epochs", "2", "--resume", "--checkpoint-dir", tmp_path / "ck",
                              "--save", tmp_path / "resumed.safetensors")
    assert code == 0, err
    header, epoch_2 = out.splitlines()[0], [ln for ln in out.splitlines() if ln.startswith("epoch 2/2")]
    assert "adam lr 0.001," in header and "resuming " in header
    assert len(epoch_2) == 1 and epoch_2[0].endswith("lr 0.001")
    assert_same_weights(weights(tmp_path / "resumed.safetensors"), weights(one_epoch / "full.safetensors"))
    # given and equal: accepted
    code, out, err = run_main(*SMALL, *TINY, "--lr", "0.001", "--epochs", "2", "--resume", "--checkpoint-dir",
                              tmp_path / "ck")
    assert code == 0 and "adam lr 0.001," in out, err


@needs_fmnist
def test_a_cosine_schedule_of_another_length_is_refused(tmp_path):
    code, _, err = run_main(*SMALL, *TINY, "--scheduler", "cosine", "--epochs", "2", "--checkpoint-dir", tmp_path)
    assert code == 0, err
    err = _refused(*SMALL, *TINY, "--epochs", "4", "--resume", "--checkpoint-dir", tmp_path)
    assert "the checkpoint's cosine schedule spans --epochs 2, not 4" in err


@needs_fmnist
def test_a_checkpoint_written_by_fit_is_checked_by_fit(tmp_path):
    """No record of the command's options: an explicit --lr cannot be compared (refused); another model class
    is refused by load_checkpoint, in one line."""
    model = nn.Sequential(nn.Linear(4, 3))
    vtrain.save_checkpoint(str(tmp_path), 1, model, optim.Adam(model.parameters(), lr=1e-3))
    err = _refused(*SMALL, *TINY, "--lr", "1e-3", "--resume", "--checkpoint-dir", tmp_path)
    assert "has no record of its options, so --lr 0.001 cannot be checked" in err
    err = _refused(*SMALL, *TINY, "--epochs", "2", "--resume", "--checkpoint-dir", tmp_path)
    assert "written by a Sequential model, cannot load it into a ViT" in err


def _fit_checkpoint(tmp_path, lr=1e-3, weight_decay=0.0):
    """A checkpoint written by bare fit() (no record of the command's options) of the TINY model on random images."""
    import numpy as np
    import vitc
    from vitc.models import create_model
    model = create_model("vit_seed_mnist", depth=1, dim=16, heads=2, dim_head=8, mlp_dim=32)
    rng = np.random.default_rng(0)
    batches = [(vitc.from_numpy(rng.random((8, 1, 28, 28), dtype=np.float32)),
                vitc.from_numpy(rng.integers(0, 10, 8).astype(np.int64))) for _ in range(2)]
    vtrain.fit(model, batches, None, optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay), epochs=1,
               checkpoint_dir=str(tmp_path), progress=False, log=None)


def test_fit_records_its_options_in_every_checkpoint(tmp_path):
    _fit_checkpoint(tmp_path, lr=2e-3, weight_decay=0.05)
    path = vtrain._checkpoints_newest_first(str(tmp_path))[0]
    assert vtrain._read_state(path)["extra"]["fit_options"] == {"optimizer": "Adam", "lr": 2e-3,
                                                                "weight_decay": 0.05, "accum_steps": 1}


@needs_fmnist
def test_a_checkpoint_of_fit_compares_an_explicit_lr_with_what_fit_recorded(tmp_path):
    """Before, any explicit --lr was refused on a checkpoint of fit(); now the value fit() trained with is
    accepted and another one refused, naming both."""
    _fit_checkpoint(tmp_path)
    err = _refused(*SMALL, *TINY, "--lr", "2e-3", "--resume", "--checkpoint-dir", tmp_path)
    assert "--lr 0.002 differs from the --lr 0.001 fit() trained" in err
    err = _refused(*SMALL, *TINY, "--weight-decay", "0.1", "--resume", "--checkpoint-dir", tmp_path)
    assert "--weight-decay 0.1 differs from the --weight-decay 0.0 fit() trained" in err
    code, out, err = run_main(*SMALL, *TINY, "--epochs", "2", "--lr", "1e-3", "--resume", "--checkpoint-dir", tmp_path)
    assert code == 0, err
    assert "resumed from" in out and "lr 0.001" in out
