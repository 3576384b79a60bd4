"""vitc.models.ResNet (the DeiT experiment's convnet teacher) against a PyTorch ResNet with the same
module names and weights: train mode (batch statistics, running stats, every gradient) and eval
mode; a short training run; a safetensors checkpoint round trip; bad input."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

import vitc
from vitc import optim
from vitc.io import load_safetensors, save_safetensors
from vitc.models import ResNet, create_model


class TorchBlock(tnn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(c)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(c)
        self.downsample = (tnn.Sequential(tnn.Conv2d(cin, c, 1, stride, bias=False), tnn.BatchNorm2d(c))
                           if stride != 1 or cin != c else None)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(tnn.Module):
    def __init__(self, num_classes=10, in_channels=1, stem_channels=16, channels=(32, 64), blocks=(1, 1),
                 strides=(2, 2)):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(stem_channels)
        self.relu = tnn.ReLU()
        stages, cin = [], stem_channels
        for c, n, s in zip(channels, blocks, strides):
            stages.append(tnn.Sequential(TorchBlock(cin, c, s), *[TorchBlock(c, c, 1) for _ in range(n - 1)]))
            cin = c
        self.layers = tnn.ModuleList(stages)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for s in self.layers:
            x = s(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


CFG = dict(stem_channels=8, channels=(8, 16), blocks=(2, 1), strides=(1, 2))  # identity and conv shortcuts


def _pair(cfg=CFG, seed=0):
    vitc.manual_seed(seed)
    torch.manual_seed(seed)
    vm = ResNet(**cfg)
    with vitc.no_grad():  # non-trivial BN affine parameters and running stats
        for n, t in vm.state_dict().items():
            if n.endswith(("bn1.weight", "bn2.weight", "1.weight")) and t.ndim == 1:
                t.numpy()[...] = np.random.default_rng(len(n)).uniform(0.5, 1.5, t.shape)
            elif n.endswith("bias") and "fc" not in n:
                t.numpy()[...] = np.random.default_rng(len(n) + 1).uniform(-0.2, 0.2, t.shape)
    tm = TorchResNet(**cfg)
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in vm.state_dict().items()}, strict=True)
    return vm, tm


def _x(b, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (b, 1, 28, 28)).astype(np.float32)


def test_train_mode_outputs_running_stats_and_gradients_match_torch():
    vm, tm = _pair()
    vm.train(), tm.train()
    x = _x(6)
    y = np.arange(6) % 10
    vz, tz = vm(vitc.tensor(x)), tm(torch.tensor(x))
    np.testing.assert_allclose(vz.detach().numpy(), tz.detach().numpy(), rtol=1e-4, atol=1e-5)
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    torch.nn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    tg = dict(tm.named_parameters())
    assert [n for n, _ in vm.named_parameters()] == list(tg)
    for n, p in vm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tg[n].grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=n)
    tsd = tm.state_dict()
    for n, b in vm.named_buffers():
        np.testing.assert_allclose(b.numpy(), tsd[n].numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def test_eval_mode_matches_torch():
    vm, tm = _pair(seed=1)
    x = _x(4, seed=1)
    vm.train(), tm.train()
    with vitc.no_grad(), torch.no_grad():
        vm(vitc.tensor(x)), tm(torch.tensor(x))  # move the running stats
    vm.eval(), tm.eval()
    with vitc.no_grad(), torch.no_grad():
        a, b = vm(vitc.tensor(_x(4, seed=2))).numpy(), tm(torch.tensor(_x(4, seed=2))).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _learnable(b, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, b)
    x = rng.uniform(0, 0.3, (b, 1, 28, 28)).astype(np.float32)
    for i, k in enumerate(y):  # class k: a bright bar in row band k
        x[i, 0, 2 * k + 4:2 * k + 6, 4:24] += 1.0
    return x, y


def test_resnet_learns_and_checkpoint_round_trip(tmp_path):
    vitc.manual_seed(0)
    m = create_model("resnet_mnist", stem_channels=8, channels=(8, 16))
    opt = optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    x, y = _learnable(64, seed=3)
    xt, yt = vitc.tensor(x), vitc.tensor(y)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = vitc.cross_entropy(m(xt), yt)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    m.eval()
    path = tmp_path / "teacher.safetensors"
    save_safetensors(m.state_dict(), path)
    m2 = create_model("resnet_mnist", stem_channels=8, channels=(8, 16)).eval()
    m2.load_state_dict(load_safetensors(path))
    with vitc.no_grad():
        np.testing.assert_array_equal(m(xt).numpy(), m2(xt).numpy())
    assert "layers.0.0.bn1.running_var" in load_safetensors(path)


def test_registry_and_bad_input():
    m = create_model("resnet_mnist")
    assert m.num_parameters() == sum(p.numel() for p in TorchResNet().parameters())
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(vitc.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="equal length"):
        ResNet(channels=(8, 16), blocks=(1,), strides=(2, 2))
