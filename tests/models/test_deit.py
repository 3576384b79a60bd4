"""vitc.models.DeiT against timm's VisionTransformerDistilled with the same weights (through
to_timm_state_dict): both heads' logits in training mode, the fused eval output, every parameter
gradient; the inference heads; the registry; a short training run; bad inputs."""
import numpy as np
import pytest
import timm
import torch

import vitc
from vitc import optim
from vitc.models import DeiT, create_model, list_models
from vitc.models.deit import fuse_heads, load_timm_state_dict, to_timm_state_dict

CFG = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=48, depth=2, heads=3, dim_head=16,
           mlp_dim=96, qkv_bias=True, norm_eps=1e-6, patch_norm=False)


def _timm(cfg, distilled=True):
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return timm.create_model(name, pretrained=False, img_size=cfg["image_size"], patch_size=cfg["patch_size"],
                             in_chans=cfg["channels"], num_classes=cfg["num_classes"], embed_dim=cfg["dim"],
                             depth=cfg["depth"], num_heads=cfg["heads"], mlp_ratio=cfg["mlp_dim"] / cfg["dim"])


def _pair(cfg=CFG, seed=0):
    vitc.manual_seed(seed)
    vm = DeiT(**cfg)
    tm = _timm(cfg)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in to_timm_state_dict(vm).items()}, strict=True)
    return vm, tm


def _data(b, seed=0, cfg=CFG):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (b, cfg["channels"], cfg["image_size"], cfg["image_size"])).astype(np.float32)
    return x, rng.integers(0, cfg["num_classes"], b).astype(np.int64)


def test_training_outputs_and_all_gradients_match_timm():
    vm, tm = _pair()
    tm.set_distilled_training(True)
    vm.train(), tm.train()
    x, y = _data(5)
    vc, vd = vm(vitc.tensor(x))
    tc, td = tm(torch.tensor(x))
    for a, b in ((vc, tc), (vd, td)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-5)
    # a loss that weights the two heads differently, so a swapped head would show
    w = np.random.default_rng(3).standard_normal((5, 10)).astype(np.float32)
    (vitc.cross_entropy(vc, vitc.tensor(y)) + (vd * vitc.tensor(w)).sum()).backward()
    (torch.nn.functional.cross_entropy(tc, torch.tensor(y)) + (td * torch.tensor(w)).sum()).backward()
    vg = to_timm_state_dict(vm, {n: p.grad for n, p in vm.named_parameters()})
    tg = {n: p.grad for n, p in tm.named_parameters()}
    assert set(vg) == set(tg)
    for n in tg:
        np.testing.assert_allclose(vg[n], tg[n].numpy(), rtol=1e-4, atol=1e-5, err_msg=n)


def test_eval_heads_match_timm_and_the_formulas():
    vm, tm = _pair(seed=1)
    vm.eval(), tm.eval()
    x, _ = _data(4, seed=1)
    with vitc.no_grad():
        avg = vm(vitc.tensor(x)).numpy()
        zc = vm(vitc.tensor(x), head="cls").numpy()
        zd = vm(vitc.tensor(x), head="dist").numpy()
        ss = vm(vitc.tensor(x), head="sum_softmax").numpy()
        vm.train()
        both = [z.numpy() for z in vm(vitc.tensor(x))]  # no dropout: train == eval numerics
    with torch.no_grad():
        t_avg = tm(torch.tensor(x)).numpy()  # timm's eval output: the average of the two heads' logits
    np.testing.assert_allclose(avg, t_avg, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(zc, both[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(zd, both[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(avg, (zc + zd) / 2, rtol=1e-6, atol=1e-6)
    ref = torch.softmax(torch.tensor(zc), -1) + torch.softmax(torch.tensor(zd), -1)
    np.testing.assert_allclose(ss, ref.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(zc, zd)  # two different heads
    vm.head = "dist"
    vm.eval()
    with vitc.no_grad():
        np.testing.assert_array_equal(vm(vitc.tensor(x)).numpy(), zd)
        assert np.array_equal(fuse_heads(vitc.tensor(zc), vitc.tensor(zd), "avg_logits").numpy(),
                              fuse_heads(vitc.tensor(zc), vitc.tensor(zd), "avg").numpy())


def test_timm_weights_load_into_vitc():
    vitc.manual_seed(2)
    torch.manual_seed(2)
    tm = _timm(CFG).eval()
    vm = DeiT(**CFG)
    load_timm_state_dict(vm, tm.state_dict())
    vm.eval()
    x, _ = _data(3, seed=2)
    with vitc.no_grad():
        a = vm(vitc.tensor(x)).numpy()
    with torch.no_grad():
        b = tm(torch.tensor(x)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unexpected timm key 'extra'"):
        load_timm_state_dict(vm, {"extra": np.zeros(1, np.float32)})


def test_registry_shapes_match_timm():
    assert {"deit_tiny_distilled_patch16_224", "deit_small_distilled_patch16_224", "deit_mnist_distilled",
            "deit_mnist"} <= set(list_models("deit*"))
    vm = create_model("deit_tiny_distilled_patch16_224", depth=1)
    tm = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=1)
    ours = {k: v.shape for k, v in to_timm_state_dict(vm).items()}
    assert ours == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    assert vm.pos_embedding.shape == (1, 14 * 14 + 2, 192)
    small = create_model("deit_mnist_distilled")
    assert small.pos_embedding.shape == (1, 18, 96) and small.dist_token.shape == (1, 1, 96)
    base = create_model("deit_mnist")
    assert not isinstance(base, DeiT) and base.pos_embedding.shape == (1, 17, 96)
    # with distillation token and head: exactly one token and one Linear(D, K) more than the baseline
    assert small.num_parameters() - base.num_parameters() == 96 + 96 * 10 + 10 + 96


def test_timm_init_statistics():
    vitc.manual_seed(0)
    m = create_model("deit_mnist_distilled", dim=192, heads=3, dim_head=64)
    d = m.dist_token.detach().numpy()
    assert abs(d.std() - 0.02) < 0.006 and abs(m.pos_embedding.detach().numpy().std() - 0.02) < 0.002
    assert abs(m.dist_head.weight.detach().numpy().std() - 0.02) < 0.001
    assert np.all(m.dist_head.bias.detach().numpy() == 0)


def _learnable(b, seed):
    x, y = _data(b, seed=seed)
    return x * 0.3 + (y / 9.0)[:, None, None, None].astype(np.float32), y  # brightness tells the class


def test_deit_learns_and_adamw_steps_match_timm():
    vm, tm = _pair(seed=4)
    tm.set_distilled_training(True)
    vo = optim.AdamW(vm.parameters(), lr=2e-3, weight_decay=0.05)
    to = torch.optim.AdamW(tm.parameters(), lr=2e-3, weight_decay=0.05)
    x, y = _learnable(32, seed=5)
    xt, yt = vitc.tensor(x), vitc.tensor(y)
    losses, tlosses = [], []
    for step in range(40):
        vo.zero_grad()
        zc, zd = vm(xt)
        loss = vitc.cross_entropy(zc, yt) * 0.5 + vitc.cross_entropy(zd, yt) * 0.5
        loss.backward()
        vo.step()
        losses.append(loss.item())
        if step < 5:
            to.zero_grad()
            tc, td = tm(torch.tensor(x))
            ty = torch.tensor(y)
            tl = (torch.nn.functional.cross_entropy(tc, ty) + torch.nn.functional.cross_entropy(td, ty)) / 2
            tl.backward()
            to.step()
            tlosses.append(tl.item())
    np.testing.assert_allclose(losses[:5], tlosses, rtol=1e-4, atol=1e-5)
    assert losses[-1] < 0.6 * losses[0], losses
    vm.eval()
    with vitc.no_grad():
        assert (vm(xt).numpy().argmax(1) == y).mean() > 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="pool must be 'cls'"):
        DeiT(**CFG, pool="mean")
    with pytest.raises(ValueError, match="head must be one of"):
        DeiT(**CFG, head="max")
    m = DeiT(**CFG).eval()
    with pytest.raises(ValueError, match="head must be one of"):
        m(vitc.zeros(1, 1, 28, 28), head="both")
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        m(vitc.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="patch_norm"):
        to_timm_state_dict(DeiT(**dict(CFG, patch_norm=True)))


def test_attention_maps_include_both_prefix_tokens():
    m = DeiT(**CFG)
    (zc, zd), maps = m(vitc.rand(2, 1, 28, 28), return_attention=True)
    assert zc.shape == zd.shape == (2, 10) and len(maps) == 2 and maps[0].shape == (2, 3, 18, 18)
