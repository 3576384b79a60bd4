"""python -m vitc.train on each kind of data set (tiny files written here), held-out splits, Mixup/CutMix, EMA,
gradient accumulation through the command line, and MLflow logging."""
import json
import os
import pickle

import numpy as np
import pytest

from vitc.train import cli_data
from vitc.train.cli_data import IndexView, OptionError

from trainer_helpers import (SMALL, TINY, assert_same_weights, needs_data_helper, needs_fmnist, run_main,
                             weights)

# a one-block ViT for 8×8 images of any channel count (the data set gives channels and classes)
TINY8 = ["--model-kwargs", "patch_size=4", "depth=1", "dim=16", "heads=2", "dim_head=8", "mlp_dim=32"]
FAST = ["--epochs", "1", "--batch-size", "20", "--no-progress"]


class Arrays:
    def __init__(self, n, classes=None):
        self.images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
        self.labels = np.arange(n) % 3
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def test_held_out_split_is_seeded_disjoint_and_complete():
    ds = Arrays(50, classes=("a", "b", "c", "d"))
    train, val = cli_data._split(ds, 0.2, 7, "here")
    assert len(train) == 40 and len(val) == 10
    assert sorted(np.concatenate([train.indices, val.indices]).tolist()) == list(range(50))
    again, _ = cli_data._split(ds, 0.2, 7, "here")
    other, _ = cli_data._split(ds, 0.2, 8, "here")
    assert np.array_equal(train.indices, again.indices) and not np.array_equal(train.indices, other.indices)
    assert val.classes == ds.classes and cli_data.num_classes(ds) == 4
    np.testing.assert_array_equal(val.images[:, 0, 0, 0], val.indices)  # gathered once, in the view's order
    np.testing.assert_array_equal(val.labels, val.indices % 3)
    assert val[3][0][0, 0, 0] == val.indices[3]
    with pytest.raises(OptionError, match="--val-split 0.001 of the 50 samples in here leaves an empty split"):
        cli_data._split(ds, 0.001, 0, "here")
    assert cli_data.num_classes(Arrays(10)) == 3  # no classes: 1 + the largest label
    first = cli_data._first(ds, 5)
    assert isinstance(first, IndexView) and len(first) == 5 and cli_data._first(ds, 500) is ds


def _npz(path, n, seed, channels=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, channels, 8, 8), dtype=np.float32)
    np.savez(path, x=x, y=(x[:, 0, :4].mean((1, 2)) > 0.5).astype(np.int64) + 2 * (x[:, 0, 4:].mean((1, 2)) > 0.5))


def test_npz_file_split_and_folder(tmp_path):
    needs_data_helper("NpzDataset")
    _npz(tmp_path / "all.npz", 100, 0, channels=2)
    code, out, err = run_main("--dataset", "npz", "--data-root", tmp_path / "all.npz", "--val-split", "0.25", *TINY8,
                              *FAST, "--history", tmp_path / "h.json")
    assert code == 0, err
    assert "(75 train / 25 test images of 2x8x8, 4 classes)" in out
    assert json.loads((tmp_path / "h.json").read_text())["model_kwargs"]["num_classes"] == 4
    d = tmp_path / "dir"
    d.mkdir()
    _npz(d / "train.npz", 60, 1)
    _npz(d / "test.npz", 30, 2)
    code, out, err = run_main("--dataset", "npz", "--data-root", d, *TINY8, *FAST, "--test-subset", "20")
    assert code == 0, err
    assert "(60 train / 20 test images of 1x8x8" in out
    os.remove(d / "train.npz")
    code, _, err = run_main("--dataset", "npz", "--data-root", d, *TINY8, *FAST)
    assert code == 2 and "is a directory without train.npz" in err


def _image(path, size, value):
    from PIL import Image
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_image_folder_resized_with_a_held_out_split_or_its_val_folder(tmp_path):
    needs_data_helper("ImageFolder", "Resize", "CenterCrop", "ToTensor")
    root = tmp_path / "imgs"
    for k, cls in enumerate(("cat", "dog", "emu")):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            _image(root / cls / f"{i}.png", (12 + i, 10 + 2 * k), 40 * k + i)  # sizes differ: resized to 8
    code, out, err = run_main("--dataset", "imagefolder", "--data-root", root, "--img-size", "8", "--val-split", "0.2",
                              *TINY8, *FAST)
    assert code == 0, err
    assert "(24 train / 6 test images of 3x8x8, 3 classes)" in out
    code, _, err = run_main("--dataset", "imagefolder", "--data-root", root, *TINY8, *FAST)
    assert code == 2 and "needs --img-size" in err
    split = tmp_path / "split"
    for part, classes in (("train", ("cat", "dog")), ("val", ("cat", "dog"))):
        for cls in classes:
            (split / part / cls).mkdir(parents=True)
            for i in range(4):
                _image(split / part / cls / f"{i}.jpg", (9, 9), 100 * (cls == "dog") + i)
    code, out, err = run_main("--dataset", "imagefolder", "--data-root", split, "--img-size", "8", *TINY8, *FAST)
    assert code == 0, err
    assert "(8 train / 8 test images of 3x8x8, 2 classes)" in out
    (split / "val" / "dog").rename(split / "val" / "dingo")
    code, _, err = run_main("--dataset", "imagefolder", "--data-root", split, "--img-size", "8", *TINY8, *FAST)
    assert code == 2 and "(cat, dingo) differ from those of" in err


def _cifar_batch(path, n, seed, label_key):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: rng.integers(0, 5, n).tolist()}
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def test_cifar10_archive(tmp_path):
    needs_data_helper("CIFAR10")
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for i in range(1, 6):
        _cifar_batch(d / f"data_batch_{i}", 8, i, b"labels")
    _cifar_batch(d / "test_batch", 10, 9, b"labels")
    names = [f"class{k}".encode() for k in range(10)]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    code, out, err = run_main("--dataset", "cifar10", "--data-root", tmp_path, "--model-kwargs", "patch_size=8",
                              "depth=1", "dim=16", "heads=2", "dim_head=8", "mlp_dim=32", *FAST)
    assert code == 0, err
    assert "(40 train / 10 test images of 3x32x32, 10 classes)" in out


@needs_fmnist
def test_accumulation_through_the_command_line(tmp_path):
    small = [a for a in SMALL if a not in ("--batch-size", "50")]
    code, out, err = run_main(*small, *TINY, "--batch-size", "100", "--save", tmp_path / "a.safetensors")
    assert code == 0, err
    code, out, err = run_main(*small, *TINY, "--batch-size", "50", "--accum-steps", "2",
                              "--save", tmp_path / "b.safetensors")
    assert code == 0 and "batch 50 x 2 accumulated" in out, err
    assert_same_weights(weights(tmp_path / "a.safetensors"), weights(tmp_path / "b.safetensors"), rtol=1e-4, atol=2e-6)


@needs_fmnist
def test_mixup_and_cutmix(tmp_path):
    code, out, err = run_main(*SMALL, *TINY, "--mixup", "0.8", "--cutmix", "1.0", "--label-smoothing", "0.1",
                              "--clip-grad", "1.0", "--optimizer", "adamw", "--scheduler", "step")
    assert code == 0, err
    assert "mean of 4 batches" in out
    code, _, err = run_main(*SMALL, *TINY, "--mixup", "0.8", "--batch-size", "25")
    assert code == 2 and "must be even" in err


@needs_fmnist
def test_ema_reported_saved_and_resumed(tmp_path):
    utils = pytest.importorskip("vitc.utils", reason="needs vitc.utils.ModelEma (the utilities helper)")
    if not hasattr(utils, "ModelEma"):
        pytest.skip("needs vitc.utils.ModelEma (the utilities helper)")
    args = [*SMALL, *TINY, "--ema", "--ema-decay", "0.5", "--checkpoint-dir", tmp_path / "ck"]
    code, out, err = run_main(*args, "--save", tmp_path / "w.safetensors", "--metrics", tmp_path / "m.csv")
    assert code == 0, err
    assert "EMA test accuracy" in out and "final test accuracy" in out and ", EMA " in out
    assert set(weights(tmp_path / "w-ema.safetensors")) == set(weights(tmp_path / "w.safetensors"))
    assert "ema_test_loss" in (tmp_path / "m.csv").read_text().splitlines()[0]
    code, out, err = run_main(*args, "--epochs", "2", "--resume")
    assert code == 0 and "epoch 2/2" in out and "EMA test accuracy" in out, err


@needs_fmnist
def test_mlflow_run_has_the_options_and_the_epochs(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    code, out, err = run_main(*SMALL, *TINY, "--epochs", "2", "--tracking-uri", uri, "--experiment-name", "t")
    assert code == 0, err
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.run_id in out
    assert run.data.params["model"] == "vit_seed_mnist" and run.data.params["epochs"] == "2"
    assert json.loads(run.data.params["model_kwargs"].replace("'", '"'))["depth"] == 1
    for name in ("training_loss", "validation_loss", "validation_accuracy", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2], name
