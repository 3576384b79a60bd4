"""Decoupled head/body weight decay groups (Zhai et al. 2021 §3.1, big_vision's wd_mults)."""
import numpy as np
import pytest

import vitc
from vitc import optim
from vitc.models import ViT
from vitc.optim import param_groups_by_pattern, param_groups_head_body_decay

CFG = dict(image_size=8, patch_size=4, num_classes=3, channels=1, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32,
           class_token=False, pool="map", patch_norm=False)


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_head_body_split_kernels_only():
    m = ViT(**CFG)
    groups = {g["weight_decay"]: _names(m, g) for g in param_groups_head_body_decay(m, 3.0, 0.03)}
    assert groups[3.0] == ["mlp_head.weight"]
    assert "attn_pool.q.weight" in groups[0.03] and "transformer.layers.0.attn.to_qkv.weight" in groups[0.03]
    assert {"mlp_head.bias", "pos_embedding", "attn_pool.probe", "attn_pool.norm.weight",
            "transformer.norm.weight"} <= set(groups[0.0])
    assert sum(len(v) for v in groups.values()) == len(list(m.parameters()))


def test_first_rule_wins_and_frozen_left_out():
    m = ViT(**CFG)
    m.attn_pool.q.weight.requires_grad_(False)
    groups = {g["weight_decay"]: _names(m, g) for g in param_groups_by_pattern(
        m, [(r"attn_pool", 0.5), (r"attn_pool\.kv", 9.0), (r"to_qkv", 0.1)], default=0.0)}
    assert "attn_pool.kv.weight" in groups[0.5] and 9.0 not in groups
    assert groups[0.1] == ["transformer.layers.0.attn.to_qkv.weight"]
    assert "attn_pool.q.weight" not in sum(groups.values(), [])


def test_adamw_decays_by_lr_times_wd():
    """with zero gradients an AdamW step only decays: θ ← θ·(1 − lr·wd) per group"""
    vitc.manual_seed(0)
    m = ViT(**CFG)
    before = {n: p.detach().numpy().copy() for n, p in m.named_parameters()}
    opt = optim.AdamW(param_groups_head_body_decay(m, 3.0, 0.03), lr=0.01)
    for p in m.parameters():
        p.grad = vitc.zeros(*p.shape)
    opt.step()
    after = dict(m.named_parameters())
    np.testing.assert_allclose(after["mlp_head.weight"].detach().numpy(), before["mlp_head.weight"] * (1 - 0.03),
                               rtol=1e-6)
    np.testing.assert_allclose(after["attn_pool.kv.weight"].detach().numpy(),
                               before["attn_pool.kv.weight"] * (1 - 0.0003), rtol=1e-6)
    np.testing.assert_array_equal(after["pos_embedding"].detach().numpy(), before["pos_embedding"])


def test_bad_rules():
    m = ViT(**CFG)
    with pytest.raises(TypeError, match=r"rules\[0\] must be a \(regex, weight_decay\) pair"):
        param_groups_by_pattern(m, ["head"])
    with pytest.raises(ValueError, match="not a valid regex"):
        param_groups_by_pattern(m, [("(", 1.0)])
    with pytest.raises(ValueError, match="weight decay"):
        param_groups_by_pattern(m, [("head", -1.0)])
