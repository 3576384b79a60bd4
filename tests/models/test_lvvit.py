"""LV-ViT pieces (conv stem, skip_lam blocks, aux head, MixToken) and TokenLabelingLoss against a torch
reimplementation of the TokenLabeling definitions (tests/models/torch_lvvit.py), loaded through the
official state-dict layout: outputs, loss, every gradient, BatchNorm statistics, optimizer steps."""
import os
import sys

import numpy as np
import pytest
import torch

import vitc
from vitc import optim
from vitc.losses import TokenLabelingLoss
from vitc.models import ViT, create_model, list_models
from vitc.models.lvvit import load_official_state_dict, official_names, to_official_state_dict
from vitc.nn.mix_token import MixTokenPlan, mixtoken_box

sys.path.insert(0, os.path.dirname(__file__))
from torch_lvvit import LVViT, rand_bbox, token_label_ce  # noqa: E402

CFG = dict(image_size=16, patch_size=4, num_classes=6, channels=2, dim=24, depth=2, heads=3, dim_head=8,
           mlp_dim=72, patch_embed="conv", stem_width=8, skip_lam=2.0, aux_head=True, mix_token=True, init="timm")


def _pair(seed=0, cfg=CFG):
    vitc.manual_seed(seed)
    vm = ViT(**cfg)
    tm = LVViT(cfg["image_size"], cfg["patch_size"], cfg["channels"], cfg["num_classes"], cfg["dim"], cfg["depth"],
               cfg["heads"], cfg["mlp_dim"], cfg["skip_lam"], cfg["stem_width"])
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in to_official_state_dict(vm).items()}, strict=True)
    return vm, tm


def _data(b, k=6, n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, 2, 16, 16)).astype(np.float32)
    y = rng.dirichlet(np.ones(k), b).astype(np.float32)
    yt = rng.dirichlet(np.ones(k), (b, n)).astype(np.float32)
    return x, y, yt


def _compare_grads(vm, tm):
    vg = to_official_state_dict(vm, {n: p.grad for n, p in vm.named_parameters()})
    for n, p in tm.named_parameters():
        np.testing.assert_allclose(vg[n], p.grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=n)


@pytest.mark.parametrize("dense", [False, True])
def test_train_step_with_mixtoken_matches_reference(dense):
    vm, tm = _pair()
    vm.train(), tm.train()
    x, y, yt = _data(5)
    draw = (0.55, 2, 1)
    out = vm(vitc.tensor(x), mix_draw=draw)
    t_out = tm(torch.tensor(x), draw=draw)
    np.testing.assert_allclose(out.cls_logits.detach().numpy(), t_out[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.token_logits.detach().numpy(), t_out[1].detach().numpy(), rtol=1e-4, atol=1e-5)
    n = 16
    assert out.lam == pytest.approx(1 - (t_out[2][2] - t_out[2][0]) * (t_out[2][3] - t_out[2][1]) / n)
    assert out.lam < 1
    loss = TokenLabelingLoss(beta=1.0)(out, vitc.tensor(y), vitc.tensor(yt) if dense else None)
    tt = torch.cat([torch.tensor(y)[:, None], torch.tensor(y)[:, None], torch.tensor(yt)], 1) if dense else \
        torch.tensor(y)
    t_loss = token_label_ce(t_out, tt)
    np.testing.assert_allclose(loss.item(), t_loss.item(), rtol=1e-5)
    loss.backward()
    t_loss.backward()
    _compare_grads(vm, tm)
    # the stem's BatchNorm running statistics moved the same way
    vs = to_official_state_dict(vm)
    for name, t in tm.state_dict().items():
        if "running" in name:
            np.testing.assert_allclose(vs[name], t.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_eval_inference_rule_and_infer_cls():
    vm, tm = _pair(seed=1)
    vm.eval(), tm.eval()
    x = _data(3)[0]
    got = vm(vitc.tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, tm(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    vm.infer = "cls"
    with torch.no_grad():
        tm_cls = tm.head(tm.norm(_torch_tokens(tm, torch.tensor(x)))[:, 0])
    np.testing.assert_allclose(vm(vitc.tensor(x)).detach().numpy(), tm_cls.numpy(), rtol=1e-4, atol=1e-5)


def _torch_tokens(tm, x):
    h = tm.patch_embed(x).flatten(2).transpose(1, 2)
    h = torch.cat((tm.cls_token.expand(h.shape[0], -1, -1), h), 1) + tm.pos_embed
    for blk in tm.blocks:
        h = blk(h)
    return h


def test_adamw_steps_match_reference():
    vm, tm = _pair(seed=2)
    vm.train(), tm.train()
    vo = optim.AdamW(vm.parameters(), lr=1e-3, weight_decay=0.05)
    to = torch.optim.AdamW(tm.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = TokenLabelingLoss(beta=0.5)
    for step in range(3):
        x, y, yt = _data(4, seed=10 + step)
        draw = (0.3 + 0.2 * step, step % 4, (step + 1) % 4)
        vo.zero_grad(), to.zero_grad()
        loss_fn(vm(vitc.tensor(x), mix_draw=draw), vitc.tensor(y), vitc.tensor(yt)).backward()
        tt = torch.cat([torch.tensor(y)[:, None], torch.tensor(y)[:, None], torch.tensor(yt)], 1)
        token_label_ce(tm(torch.tensor(x), draw=draw), tt, dense_weight=0.5).backward()
        vo.step(), to.step()
    vs = to_official_state_dict(vm)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(vs[name], p.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("grid", [(4, 4), (7, 7), (3, 5)])
def test_mixtoken_box_equals_reference_formula(grid):
    rng = np.random.default_rng(0)
    for _ in range(200):
        lam, cx, cy = float(rng.uniform()), int(rng.integers(grid[0])), int(rng.integers(grid[1]))
        r0, c0, r1, c1 = mixtoken_box(lam, grid, cx, cy)
        assert (r0, c0, r1, c1) == tuple(int(v) for v in rand_bbox((1, 1) + grid, lam, cx, cy))
        plan = MixTokenPlan(2, grid, lam, cx, cy)
        assert plan.lam == pytest.approx(1 - (r1 - r0) * (c1 - c0) / (grid[0] * grid[1]))


def test_mixtoken_moves_tokens_of_the_partner_and_undoes_itself():
    plan = MixTokenPlan(3, (2, 2), 0.0, 1, 1)  # full-side cut centred at (1,1): rows 0:2, cols 0:2
    assert plan.box == (0, 0, 2, 2) and plan.lam == 0.0
    plan = MixTokenPlan(3, (4, 4), 0.75, 1, 2)  # cut side int(4·0.5)=2 -> rows 0:2, cols 1:3
    assert plan.box == (0, 1, 2, 3)
    x = np.arange(3 * 16 * 2, dtype=np.float32).reshape(3, 16, 2)
    got = plan.apply(vitc.tensor(x)).numpy()
    want = x.copy().reshape(3, 4, 4, 2)
    want[:, 0:2, 1:3] = x.reshape(3, 4, 4, 2)[::-1, 0:2, 1:3]
    np.testing.assert_array_equal(got, want.reshape(3, 16, 2))
    np.testing.assert_array_equal(plan.apply(vitc.tensor(got)).numpy(), x)


def test_without_dense_labels_every_token_takes_the_image_label():
    rng = np.random.default_rng(1)
    z, zt = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((3, 4, 5)).astype(np.float32)
    y = np.array([0, 3, 4])
    out = (vitc.tensor(z), vitc.tensor(zt), 1.0)
    onehot = np.eye(5, dtype=np.float32)[y]
    a = TokenLabelingLoss(0.5)(out, vitc.tensor(y)).item()
    b = TokenLabelingLoss(0.5)(out, vitc.tensor(onehot), vitc.tensor(np.repeat(onehot[:, None], 4, 1))).item()
    ref = token_label_ce((torch.tensor(z), torch.tensor(zt), (0, 0, 0, 0)), torch.tensor(onehot), dense_weight=0.5)
    assert a == pytest.approx(b, rel=1e-6) and a == pytest.approx(ref.item(), rel=1e-5)
    # β = 0: the class term alone
    c = TokenLabelingLoss(0.0)(out, vitc.tensor(y)).item()
    assert c == pytest.approx(torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y)).item(), rel=1e-5)


def test_official_layout_round_trip_and_registry():
    assert {"lvvit_tiny", "lvvit_small", "lvvit_medium", "lvvit_large", "lvvit_tiny_mnist",
            "lvvit_small_mnist"} <= set(list_models("lvvit*"))
    vm, tm = _pair(seed=3)
    vitc.manual_seed(9)
    other = ViT(**CFG)
    load_official_state_dict(other, tm.state_dict())
    for k, v in vm.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k].numpy(), v.numpy(), err_msg=k)
    with pytest.raises(ValueError, match="unexpected key"):
        load_official_state_dict(other, dict(tm.state_dict(), extra=torch.zeros(1)))
    m = create_model("lvvit_tiny_mnist")
    assert "blocks.3.mlp.fc2.weight" in official_names(m).values()


def test_lvvit_shapes():
    m = create_model("lvvit_small", num_classes=10)
    assert m.to_patch_embedding.proj.kernel_size == (8, 8) and m.to_patch_embedding.grid_size == (14, 14)
    assert len(m.transformer.layers) == 16 and m.transformer.layers[0].skip_lam == 2.0
    assert m.transformer.layers[0].ff.net[0].weight.shape == (1152, 384)
    large = create_model("lvvit_large", depth=1, num_classes=10)
    assert large.to_patch_embedding.conv1.weight.shape == (128, 3, 7, 7) and large.transformer.layers[0].skip_lam == 3


@pytest.mark.parametrize("extra", [dict(attn="reattention"), dict(norm="batch"), dict(drop_path=0.2),
                                   dict(class_token=False, pool="gap"), dict(pool="map")])
def test_pieces_compose_with_other_options(extra):
    vitc.manual_seed(0)
    m = ViT(**dict(CFG, **extra))
    m.train()
    x, y, yt = _data(4)
    out = m(vitc.tensor(x))
    assert tuple(out.token_logits.shape) == (4, 16, 6)
    TokenLabelingLoss()(out, vitc.tensor(y), vitc.tensor(yt)).backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    assert tuple(m(vitc.tensor(x)).shape) == (4, 6)


def test_conv_stem_and_skip_lam_on_deit():
    from vitc.models import DeiT
    vitc.manual_seed(0)
    m = DeiT(**dict(CFG, aux_head=False, mix_token=False))
    m.train()
    zc, zd = m(vitc.tensor(_data(2)[0]))
    assert tuple(zc.shape) == tuple(zd.shape) == (2, 6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="even patch size"):
        ViT(**dict(CFG, patch_size=(3, 3), image_size=15))
    with pytest.raises(ValueError, match="batch of at least 2"):
        ViT(**CFG)(vitc.tensor(_data(1)[0]))
    with pytest.raises(ValueError, match="beta"):
        TokenLabelingLoss(beta=-0.1)
    with pytest.raises(ValueError, match="mix_token=True needs aux_head"):
        ViT(**dict(CFG, aux_head=False))
    with pytest.raises(ValueError, match="skip_lam"):
        ViT(**dict(CFG, skip_lam=0.0))
    with pytest.raises(ValueError, match="centre"):
        mixtoken_box(0.5, (4, 4), 4, 0)
    m = ViT(**CFG)
    out = m(vitc.tensor(_data(3)[0]))
    with pytest.raises(ValueError, match="token_target"):
        TokenLabelingLoss()(out, vitc.tensor(_data(3)[1]), vitc.tensor(np.zeros((3, 15, 6), np.float32)))
    with pytest.raises(TypeError, match="TokenLabelingOutput|cls_logits"):
        TokenLabelingLoss()(out.cls_logits, vitc.tensor(_data(3)[1]))
