"""Adam with a bfloat16 first moment and the modified Adafactor train a small seed ViT on a
Fashion-MNIST subset, and vitc.train.fit resumes them from a checkpoint exactly."""
import os

import numpy as np
import pytest

import vitc
from vitc import nn, optim
from vitc import train as vtrain
from vitc.data import DataLoader, FashionMNIST
from vitc.models import create_model

HAVE_FMNIST = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
pytestmark = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST not installed")
TINY = dict(depth=2, dim=32, heads=2, dim_head=16, mlp_dim=64)

MAKERS = {
    "adam_f32": lambda ps: optim.AdamW(ps, lr=5e-3, weight_decay=0.05, max_grad_norm=1.0),
    "adam_bf16": lambda ps: optim.AdamW(ps, lr=5e-3, weight_decay=0.05, mu_dtype=vitc.bfloat16, max_grad_norm=1.0),
    "adafactor": lambda ps: optim.Adafactor(ps, lr=5e-3, weight_decay=0.05, max_grad_norm=1.0),
}


def _loaders(seed=0):
    tr = DataLoader(FashionMNIST(subset=300), batch_size=50, shuffle=True, seed=seed, to_tensor=vitc.from_numpy)
    te = DataLoader(FashionMNIST(train=False, subset=200), batch_size=100, to_tensor=vitc.from_numpy)
    return tr, te


def _setup(name, seed=0):
    vitc.manual_seed(seed)
    model = create_model("vit_seed_mnist", **TINY)
    return model, MAKERS[name](model.parameters())


def _fit(name, epochs=3):
    model, opt = _setup(name)
    tr, te = _loaders()
    return vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), epochs, progress=False, log=None)


def test_learns():
    """18 steps (3 epochs of 300 images): both learn; a bf16 first moment tracks float32 Adam."""
    ref, bf16, ada = _fit("adam_f32"), _fit("adam_bf16"), _fit("adafactor")
    for h in (bf16, ada):
        assert h["train_loss_sum"][-1] < 0.85 * h["train_loss_sum"][0]
        assert h["test_accuracy"][-1] > 0.3  # 10 classes: chance is 0.1
    assert abs(bf16["train_loss_sum"][-1] - ref["train_loss_sum"][-1]) < 0.02 * ref["train_loss_sum"][-1]


@pytest.mark.parametrize("name", ["adam_bf16", "adafactor"])
def test_fit_resume_equals_uninterrupted_run(name, tmp_path):
    model, opt = _setup(name)
    tr, te = _loaders()
    full = vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 2, progress=False, log=None,
                      checkpoint_dir=str(tmp_path / "a"))
    ref = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    model, opt = _setup(name)
    tr, te = _loaders()
    vtrain.fit(model, tr, te, opt, nn.CrossEntropyLoss(), 1, progress=False, log=None,
               checkpoint_dir=str(tmp_path / "b"))
    model2, opt2 = _setup(name, seed=7)
    tr, te = _loaders()
    resumed = vtrain.fit(model2, tr, te, opt2, nn.CrossEntropyLoss(), 2, progress=False, log=None,
                         checkpoint_dir=str(tmp_path / "b"), resume=True)
    assert resumed["train_loss_sum"] == full["train_loss_sum"]
    for k, v in model2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k], err_msg=k)
    bf16_state = [v for st in opt2.state_dict()["state"].values() for v in st.values() if v.dtype is vitc.bfloat16]
    assert bf16_state  # the bfloat16 moments went through the checkpoint as bfloat16
