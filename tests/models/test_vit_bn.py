"""vitc.models.ViTBNFFN / ViTBN (the ViT+BatchNorm article) against a plain-PyTorch reference of the article's classes
(Batch_Norm = rearrange 'b n d -> b d n' + BatchNorm1d; the experiment's --backend torch models):
logits and every gradient in train mode, running statistics and eval logits after several Adam
steps, the article's first-block-only bug, the registry, a learning run and bad inputs."""
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn as tnn

import vitc
from vitc import nn, optim
from vitc.experiments._torch_vit_bn import TorchViTFamily
from vitc.models import ViT, ViTBN, ViTBNFFN, create_model, list_models

sys.path.insert(0, os.path.dirname(__file__))
from torch_vit import copy_weights  # noqa: E402

CFG = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8, dim_head=64,
           mlp_dim=128)
SMALL = dict(CFG, depth=3)
# parity tolerances (docs/choices.md): norm/GEMM outputs rtol 1e-4 atol 1e-5; gradients rtol 1e-3 atol 1e-5
OUT_TOL = dict(rtol=1e-4, atol=1e-5)
GRAD_TOL = dict(rtol=1e-3, atol=1e-5)


def _close(a, b, what, elementwise=OUT_TOL, rel=1e-5):
    """The elementwise parity tolerance and, tensor-wise, max|a − b| ≤ rel·max|b| (the issue's ≤1e-5)."""
    np.testing.assert_allclose(a, b, **elementwise, err_msg=what)
    scale = np.abs(b).max()
    if scale > 1e-6:  # exactly-zero gradients (BN invariances) are float noise; the atol above covers them
        assert np.abs(a - b).max() <= rel * scale, f"{what}: max|Δ| {np.abs(a - b).max():.3g} > {rel}·{scale:.3g}"


# ---- the PyTorch reference: the experiment's --backend torch models (vitc/experiments/_torch_vit_bn.py,
# plain PyTorch written from the article's classes, no vitc code), so these tests hold that backend to
# the parity tolerances as well --------------------------------------------------------------------

def torch_bn_model(norm, cfg, first_block_only=False):
    """norm='layer': the article's ViTBNFFN; norm='batch': its ViTBN (both with the article-era qkv bias)."""
    return TorchViTFamily(**cfg, norm=norm, ffn_norm="batch", qkv_bias=True, first_block_only=first_block_only)


MODELS = {"ViTBNFFN": (ViTBNFFN, "layer"), "ViTBN": (ViTBN, "batch")}


def _pair(name, cfg, seed=0, bug=False):
    cls, norm = MODELS[name]
    vitc.manual_seed(seed)
    vm = cls(**cfg, bn_first_block_only=bug)
    tm = copy_weights(vm, torch_bn_model(norm, cfg, first_block_only=bug))
    return vm, tm


def _data(b, seed=0, classes=10):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (b, 1, 28, 28)).astype(np.float32), rng.integers(0, classes, b).astype(np.int64)


def _grads_match(vm, tm):
    tp = dict(tm.named_parameters())
    assert [n for n, _ in vm.named_parameters()] == list(tp)
    for n, p in vm.named_parameters():
        if tp[n].grad is None:
            assert p.grad is None, n
            continue
        assert p.grad is not None, n
        _close(p.grad.numpy(), tp[n].grad.numpy(), n, GRAD_TOL)


def _buffers_match(vm, tm, rtol=1e-5, atol=1e-6):
    tb = dict(tm.named_buffers())
    vb = {k: v for k, v in vm.state_dict().items() if k in tb}
    assert set(vb) == set(tb) and any(k.endswith("running_var") for k in vb)
    for k, v in vb.items():
        np.testing.assert_allclose(v.numpy(), tb[k].numpy(), rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_train_mode_logits_and_gradients_match_torch(name, pool):
    cfg = dict(CFG, pool=pool)
    vm, tm = _pair(name, cfg)
    vm.train(), tm.train()
    x, y = _data(8)
    vz, tz = vm(vitc.tensor(x)), tm(torch.tensor(x))
    _close(vz.detach().numpy(), tz.detach().numpy(), "logits")
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    tnn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    _grads_match(vm, tm)
    _buffers_match(vm, tm)  # one forward's running-stat update


def _set_params(tm, vm):
    with torch.no_grad():
        for (n, p), (_, q) in zip(vm.named_parameters(), tm.named_parameters()):
            q.copy_(torch.from_numpy(p.detach().numpy()))


def _step(m, opt, x, y, backend):
    m.train()
    opt.zero_grad()
    if backend == "vitc":
        loss = vitc.cross_entropy(m(vitc.tensor(x)), vitc.tensor(y))
    else:
        loss = tnn.functional.cross_entropy(m(torch.tensor(x)), torch.tensor(y))
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("name", list(MODELS))
def test_adam_steps_running_stats_and_eval_match_torch(name):
    vm, tm = _pair(name, SMALL, seed=1)
    # BatchNorm makes the loss exactly invariant along some parameter directions (a Linear bias right
    # before a train-mode BN; in ViTBN anything adding a per-feature constant to the residual stream,
    # e.g. the v and out-projection biases). Their gradient is float noise (~1e-9) that differs between
    # frameworks, and Adam with ε=1e-8 turns it into ±lr steps in arbitrary directions. ε=1e-6 in both
    # keeps those steps ~1e-3·lr while real gradients (≥1e-4) are stepped as usual.
    vo = optim.Adam(vm.parameters(), lr=5e-4, eps=1e-6)
    to = torch.optim.Adam(tm.parameters(), lr=5e-4, eps=1e-6)
    batches = [_data(10, seed=100 + k) for k in range(5)]
    vl = [_step(vm, vo, x, y, "vitc") for x, y in batches]
    tl = [_step(tm, to, x, y, "torch") for x, y in batches]
    np.testing.assert_allclose(vl, tl, rtol=1e-4, atol=1e-5)
    for (n, p), (_, q) in zip(vm.named_parameters(), tm.named_parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-3, atol=1e-4, err_msg=n)
    assert int(vm.state_dict()["transformer.layers.0.ff.net.1.num_batches_tracked"].numpy()) == 5
    # eval mode on the same weights: the running statistics normalise; dx = γ·g/√(r_σ²+ε)
    _set_params(tm, vm)
    for k in dict(tm.named_buffers()):  # running stats as tracked by vitc (compared tightly below)
        tm.get_buffer(k).copy_(torch.from_numpy(vm.state_dict()[k].numpy()))
    vm.eval(), tm.eval()
    x, y = _data(7, seed=7)
    vz, tz = vm(vitc.tensor(x)), tm(torch.tensor(x))
    _close(vz.detach().numpy(), tz.detach().numpy(), "logits")
    vo.zero_grad(), to.zero_grad()
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    tnn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    _grads_match(vm, tm)
    before = {k: v.numpy().copy() for k, v in vm.state_dict().items() if "running" in k}
    with vitc.no_grad():
        a = vm(vitc.tensor(x)).numpy()
    assert all(np.array_equal(before[k], vm.state_dict()[k].numpy()) for k in before)  # eval: untouched
    np.testing.assert_array_equal(a, vz.detach().numpy())


@pytest.mark.parametrize("name", list(MODELS))
def test_running_statistics_over_adam_steps_match_torch(name):
    """vitc takes Adam steps; before each step the torch model gets vitc's weights (not its buffers),
    so both track running statistics through the same sequence of weights and batches."""
    vm, tm = _pair(name, SMALL, seed=2)
    vo = optim.Adam(vm.parameters(), lr=5e-3)
    for k in range(4):
        x, y = _data(12, seed=200 + k)
        _set_params(tm, vm)
        tm.train()
        with torch.no_grad():
            tm(torch.tensor(x))
        _step(vm, vo, x, y, "vitc")
        _buffers_match(vm, tm)
    assert int(vm.state_dict()["transformer.layers.1.ff.net.1.num_batches_tracked"].numpy()) == 4


@pytest.mark.parametrize("name", list(MODELS))
def test_first_block_only_reproduces_the_article_bug(name):
    vm, tm = _pair(name, CFG, bug=True)
    x, y = _data(6)
    vz, tz = vm(vitc.tensor(x)), tm(torch.tensor(x))
    _close(vz.detach().numpy(), tz.detach().numpy(), "logits")
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    tnn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    _grads_match(vm, tm)
    # only block 0 runs: blocks 1..5 get no gradient and see no batch
    assert vm.transformer.layers[0].attn.to_qkv.weight.grad is not None
    for i in range(1, 6):
        blk = vm.transformer.layers[i]
        assert all(p.grad is None for p in blk.parameters()), i
        assert int(blk.ff.net[1].num_batches_tracked.numpy()) == 0
    # same parameters as the correct model, different function
    ok = type(vm)(**CFG)
    ok.load_state_dict(vm.state_dict())
    assert ok.num_parameters() == vm.num_parameters()
    with vitc.no_grad():
        ok.eval(), vm.eval()
        assert not np.allclose(ok(vitc.tensor(x)).numpy(), vm(vitc.tensor(x)).numpy())


def test_structure_and_registry():
    names = {"vit_bn_seed_mnist", "vit_bnffn_seed_mnist", "vit_bn_seed_mnist_article", "vit_bnffn_seed_mnist_article"}
    assert names <= set(list_models())
    bn, ffn = create_model("vit_bn_seed_mnist"), create_model("vit_bnffn_seed_mnist")
    assert isinstance(bn, ViTBN) and isinstance(ffn, ViTBNFFN) and not ffn.bn_first_block_only
    assert create_model("vit_bn_seed_mnist_article").transformer.first_block_only
    assert len(bn.transformer.layers) == 6 and bn.pool == "cls" and bn.pos_emb == "learn"
    mods = lambda m, t: sum(isinstance(x, t) for x in m.modules())  # noqa: E731
    # ViTBN: no LayerNorm at all, 2 (patch) + 6·2 (attention, FFN) + 1 (final) token BNs
    assert mods(bn, nn.LayerNorm) == 0 and mods(bn, nn.TokenBatchNorm) == 15
    # ViTBNFFN: LN in the patch embedding (2), before attention (6) and at the end (1); BN in the FFNs
    assert mods(ffn, nn.LayerNorm) == 9 and mods(ffn, nn.TokenBatchNorm) == 6
    assert ffn.transformer.layers[0].attn.to_qkv.bias is not None  # article-era qkv bias
    assert ffn.to_patch_embedding[1].normalized_shape == (49,)
    assert bn.to_patch_embedding[1].num_features == 49 and bn.to_patch_embedding[3].num_features == 64
    small = create_model("vit_bn_seed_mnist", depth=2, pool="mean", pos_emb="pe1d")
    assert len(small.transformer.layers) == 2 and "pos_embedding" not in small.state_dict()
    # the article's get_model() with the BN class in place of ViT
    m = ViTBN(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8, dim_head=64,
              mlp_dim=128, pool="cls", dropout=0.0, emb_dropout=0.0, pos_emb="learn")
    assert m.num_parameters() == sum(p.numel() for p in torch_bn_model("batch", CFG).parameters())
    # the norm options compose into a plain ViT too
    v = ViT(**dict(CFG, depth=1), norm="batch")
    assert mods(v, nn.TokenBatchNorm) == 5 and mods(v, nn.LayerNorm) == 0


@pytest.mark.parametrize("name", ["vit_bn_seed_mnist", "vit_bnffn_seed_mnist"])
def test_learns(name):
    rng = np.random.default_rng(3)
    # 4 classes, each a bright 7×7 patch in a different quadrant, plus noise
    y = rng.integers(0, 4, 64)
    x = rng.uniform(0, 0.3, (64, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, r * 14:r * 14 + 7, q * 14:q * 14 + 7] += 0.7
    vitc.manual_seed(0)
    m = create_model(name, depth=2, num_classes=4, dim=32, heads=4, dim_head=16, mlp_dim=64)
    opt = optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        i = rng.permutation(64)[:32]
        opt.zero_grad()
        loss = vitc.cross_entropy(m(vitc.tensor(x[i])), vitc.tensor(y[i]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    m.eval()
    with vitc.no_grad():
        acc = (m(vitc.tensor(x)).numpy().argmax(1) == y).mean()
    assert acc > 0.9


def test_bad_inputs():
    with pytest.raises(TypeError, match="norm is fixed"):
        ViTBN(**CFG, norm="layer")
    with pytest.raises(ValueError, match="divisible by the patch size"):
        ViTBNFFN(**dict(CFG, patch_size=5))
    with pytest.raises(ValueError, match="pool"):
        ViTBN(**CFG, pool="max")
    with pytest.raises(ValueError, match="norm must be one of"):
        ViT(**CFG, norm="group")
    with pytest.raises(ValueError, match="ffn_norm"):
        ViT(**CFG, ffn_norm="rms")
    with pytest.raises(TypeError):
        ViTBN(28, 7, 10, 64, 6, 8, 128)
    m = ViTBN(**dict(CFG, depth=1))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        m(vitc.zeros(2, 1, 32, 32))
    # one value per feature cannot give batch statistics: raises, buffers untouched (as PyTorch's BN)
    bn = nn.TokenBatchNorm(4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(vitc.zeros(1, 1, 4))
    assert int(bn.num_batches_tracked.numpy()) == 0
    bn.eval()
    assert bn(vitc.ones(1, 1, 4)).shape == (1, 1, 4)  # eval uses the running statistics
