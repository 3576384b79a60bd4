"""DeepViT (arXiv 2103.11886): a re-attention ViT against a plain-PyTorch one with the same weights (logits,
every gradient, Adam steps with the BatchNorm running statistics, eval after training), attention
reuse, the registry entries, learning, and a 32-block model that trains with and without
re-attention."""
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn as tnn

import vitc
from vitc import nn, optim
from vitc.models import ViT, create_model

sys.path.insert(0, os.path.dirname(__file__))
from torch_vit import TorchViT, copy_weights  # noqa: E402


class TorchReAttention(tnn.Module):
    """The official dvit_repo ReAttention math (dvit_repo models/layers.py) with vitc's parameter names: Θ as an (H, H)
    matrix (the squeezed Conv2d(H, H, 1) weight), θ, BatchNorm2d(H) / LayerNorm(H) over the heads."""

    def __init__(self, dim, heads, dim_head, norm="batch", bias=True, scale_maps=False):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale, self.norm_kind, self.scale_maps = heads, dim_head ** -0.5, norm, scale_maps
        self.reattn_weight = tnn.Parameter(torch.zeros(heads, heads))
        self.reattn_bias = tnn.Parameter(torch.zeros(heads)) if bias else None
        self.to_qkv = tnn.Linear(dim, inner * 3, bias=False)
        self.reattn_norm = (tnn.BatchNorm2d(heads) if norm == "batch" else tnn.LayerNorm(heads) if norm == "layer"
                            else tnn.Identity())
        self.to_out = tnn.Sequential(tnn.Linear(inner, dim), tnn.Dropout(0.0))

    def forward(self, x, reuse_map=None):
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        a = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        a = torch.nn.functional.conv2d(a, self.reattn_weight[:, :, None, None], self.reattn_bias)
        if self.norm_kind == "layer":
            a = self.reattn_norm(a.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            a = self.reattn_norm(a)
        if self.scale_maps:
            a = a * self.scale
        self.map = a
        return self.to_out((a @ v).transpose(1, 2).reshape(b, n, -1))


def torch_deepvit(cfg, norm="batch", bias=True, scale_maps=False):
    tm = TorchViT(**{k: v for k, v in cfg.items() if k not in ("attn", "reattn_norm", "reattn_bias", "reattn_scale")})
    for blk in tm.transformer.layers:
        blk.attn = TorchReAttention(cfg["dim"], cfg["heads"], cfg["dim_head"], norm, bias, scale_maps)
    return tm


CFG = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=32, depth=3, heads=4, dim_head=16,
           mlp_dim=64, attn="reattention")
VARIANTS = {
    "batch": dict(reattn_norm="batch"),
    "layer-nobias": dict(reattn_norm="layer", reattn_bias=False),
    "batch-scaled": dict(reattn_norm="batch", reattn_scale=True),
}


def _pair(extra, seed=0):
    cfg = dict(CFG, **extra)
    vitc.manual_seed(seed)
    vm = ViT(**cfg)
    tm = copy_weights(vm, torch_deepvit(cfg, extra.get("reattn_norm", "batch"), extra.get("reattn_bias", True),
                                        extra.get("reattn_scale", False)))
    return vm, tm


def _data(b, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (b, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, b).astype(np.int64))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_gradients_and_running_stats_match_torch(name):
    vm, tm = _pair(VARIANTS[name])
    x, y = _data(6)
    vz, tz = vm(vitc.tensor(x)), tm(torch.tensor(x))
    np.testing.assert_allclose(vz.detach().numpy(), tz.detach().numpy(), rtol=1e-4, atol=1e-5)
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    torch.nn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    tp = dict(tm.named_parameters())
    assert [n for n, _ in vm.named_parameters()] == list(tp)
    for n, p in vm.named_parameters():
        if n.endswith("attn.reattn_bias") and VARIANTS[name]["reattn_norm"] == "batch":
            continue  # exactly 0 under batch statistics; both give float32 noise (tests/ops/test_reattention.py)
        np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=n)
    tb = dict(tm.named_buffers())
    for n, b in vm.named_buffers():
        if n in tb:
            np.testing.assert_allclose(b.numpy(), tb[n].numpy(), rtol=1e-5, atol=1e-7, err_msg=n)


def test_adam_steps_then_eval_match_torch():
    vm, tm = _pair(VARIANTS["batch"], seed=1)
    # θ's gradient is exactly 0 under batch statistics, so both frameworks hand Adam float32 noise,
    # which it scales to full steps; θ is left out (it matters in eval, where it is compared)
    vps = [p for n, p in vm.named_parameters() if not n.endswith("reattn_bias")]
    tps = [p for n, p in tm.named_parameters() if not n.endswith("reattn_bias")]
    vo, to = optim.Adam(vps, lr=1e-3), torch.optim.Adam(tps, lr=1e-3)
    vl, tl = [], []
    for step in range(6):
        x, y = _data(8, seed=100 + step)
        vo.zero_grad()
        loss = nn.CrossEntropyLoss()(vm(vitc.tensor(x)), vitc.tensor(y))
        loss.backward()
        vo.step()
        to.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        to.step()
        vl.append(loss.item())
        tl.append(tloss.item())
    np.testing.assert_allclose(vl, tl, rtol=1e-4, atol=1e-5)
    vm.eval()
    tm.eval()
    x, _ = _data(5, seed=7)
    with vitc.no_grad(), torch.no_grad():
        np.testing.assert_allclose(vm(vitc.tensor(x)).numpy(), tm(torch.tensor(x)).numpy(), rtol=1e-3, atol=1e-4)
    nbt = vm.state_dict()["transformer.layers.0.attn.reattn_norm.num_batches_tracked"].numpy()
    assert int(nbt) == 6


def test_attention_reuse_forward_and_gradients_match_torch():
    """blocks after r multiply their own v with block r's maps; block r's parameters get the
    gradient of every user"""
    cfg = dict(CFG, depth=4, attn="mhsa", attn_reuse_from=1)
    vitc.manual_seed(3)
    vm = ViT(**cfg)
    tm = copy_weights(vm, TorchViT(**{k: v for k, v in cfg.items() if k not in ("attn", "attn_reuse_from")}))
    shared = {}

    def attn_fwd(self, x, i):
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        a = shared["A"] if i > 1 else (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        if i == 1:
            shared["A"] = a
        return self.to_out((a @ v).transpose(1, 2).reshape(b, n, -1))

    for i, blk in enumerate(tm.transformer.layers):
        blk.attn.forward = (lambda self, i: (lambda x: attn_fwd(self, x, i)))(blk.attn, i)
    x, y = _data(4)
    vz, (tz) = vm(vitc.tensor(x)), tm(torch.tensor(x))
    np.testing.assert_allclose(vz.detach().numpy(), tz.detach().numpy(), rtol=1e-4, atol=1e-5)
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    torch.nn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    tp = dict(tm.named_parameters())
    for n, p in vm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=n)
    # later blocks' q, k projections are unused
    w = vm.transformer.layers[3].attn.to_qkv.weight.grad.numpy()
    assert not w[:2 * 4 * 16].any() and w[2 * 4 * 16:].any()
    _, maps = vm(vitc.tensor(x), return_attention=True)
    np.testing.assert_array_equal(maps[3].detach().numpy(), maps[1].detach().numpy())


def test_registry_and_options():
    m = create_model("deepvit_seed_mnist", depth=2)
    a = m.transformer.layers[0].attn
    assert a.attn == "reattention" and isinstance(a.reattn_norm, nn.BatchNorm2d)
    assert tuple(a.reattn_weight.shape) == (8, 8) and tuple(a.reattn_bias.shape) == (8,)
    assert isinstance(create_model("deepvit_seed_mnist_ln", depth=1).transformer.layers[0].attn.reattn_norm,
                      nn.LayerNorm)
    assert len(create_model("deepvit_mnist_d32").transformer.layers) == 32
    mixed = ViT(**dict(CFG, attn=["mhsa", "mhsa", "reattention"]))
    assert [b.attn.attn for b in mixed.transformer.layers] == ["mhsa", "mhsa", "reattention"]
    # every registered model accepts the option
    vt = create_model("vit_tiny_patch16_224", depth=1, attn="reattention", image_size=32, num_classes=3)
    z = vt(vitc.randn(2, 3, 32, 32))
    assert z.shape == (2, 3)
    with pytest.raises(ValueError, match="attn must be 'mhsa' or 'reattention'"):
        ViT(**dict(CFG, attn="linear"))
    with pytest.raises(ValueError, match="reattn_norm"):
        ViT(**dict(CFG, reattn_norm="group"))
    with pytest.raises(ValueError, match="sequence of depth=3"):
        ViT(**dict(CFG, attn=["mhsa"]))
    with pytest.raises(ValueError, match="attn_reuse_from"):
        ViT(**dict(CFG, attn_reuse_from=3))


def _train(model, steps, lr=1e-3, b=16, seed=0):
    """a tiny separable task: one fixed random template per class plus noise (patch LayerNorm keeps a
    template's shape, where it would erase a plain brightness cue)"""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 1, (4, 1, 28, 28)).astype(np.float32)
    opt = optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        y = rng.integers(0, 4, b)
        x = (templates[y] + rng.normal(0, 0.3, (b, 1, 28, 28))).astype(np.float32)
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(vitc.tensor(x)), vitc.tensor(y.astype(np.int64)))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_deepvit_learns():
    vitc.manual_seed(0)
    m = create_model("deepvit_seed_mnist", depth=2, dim=32, heads=4, dim_head=8, mlp_dim=64, num_classes=4)
    losses = _train(m, 40)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


@pytest.mark.parametrize("attn", ["mhsa", "reattention"])
def test_32_block_model_trains(attn):
    vitc.manual_seed(0)
    m = create_model("deepvit_mnist_d32", attn=attn, dim=16, heads=2, dim_head=8, mlp_dim=32, num_classes=4)
    losses = _train(m, 25, lr=1e-3, b=8)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
