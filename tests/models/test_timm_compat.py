"""timm's names on vitc's ViT family: keyword aliases, model-name aliases checked against timm's own
models (same parameter shapes; same outputs after loading timm's state_dict), and the load_state_dict
pointer to load_timm_state_dict."""
import numpy as np
import pytest
import timm
import torch

import vitc
from vitc.models import DeiT, ViT, ViTBNFFN, create_model, load_timm_state_dict, to_timm_state_dict

from timm_helpers import assert_same_outputs  # noqa: E402

# timm's name -> whether vitc builds it as a DeiT (distillation token) ; every one must match timm exactly
ALIASES = ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "deit_tiny_patch16_224",
           "deit_small_patch16_224", "deit_base_patch16_224", "deit_tiny_distilled_patch16_224",
           "deit_small_distilled_patch16_224", "deit_base_distilled_patch16_224"]
# small overrides given in timm's names to both libraries (a full 224-px forward is too slow for the suite)
SMALL = dict(img_size=32, depth=2, num_classes=7)


def _timm_shapes(m):
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("name", ALIASES)
def test_alias_has_timms_parameter_shapes(name):
    tm = timm.create_model(name, pretrained=False, device="meta")  # shapes only, no memory, no init
    want = {k: tuple(v.shape) for k, v in tm.state_dict().items() if not k.startswith("blocks.") or
            k.startswith("blocks.0.")}
    vm = create_model(name, depth=1)  # full width, one block (vitc's init of a whole ViT-S takes seconds)
    got = {k: tuple(v.shape) for k, v in to_timm_state_dict(vm).items()}
    assert got == want
    assert isinstance(vm, DeiT) == ("distilled" in name)
    narrow = create_model(name, embed_dim=8, num_heads=1)  # the default depth, cheaply
    assert len(narrow.transformer.layers) == len(tm.blocks)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_alias_outputs_match_timm_after_loading_its_state_dict(name):
    torch.manual_seed(0)
    tm = timm.create_model(name, pretrained=False, **SMALL)
    vm = create_model(name, **SMALL)
    load_timm_state_dict(vm, tm.state_dict())
    x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    assert_same_outputs(tm, vm, x)


@pytest.mark.parametrize("pool", ["token", "avg", "map"])
def test_global_pool_and_timm_kwargs_match_timm(pool):
    kw = dict(img_size=24, patch_size=8, in_chans=2, num_classes=5, embed_dim=48, depth=2, num_heads=3,
              mlp_ratio=2.5, qkv_bias=False, global_pool=pool, class_token=pool != "avg")
    torch.manual_seed(1)
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw)
    vm = ViT(norm_eps=1e-6, patch_norm=False, **kw)
    assert vm.mlp_head.weight.shape == (5, 48) and vm.transformer.layers[0].attn.heads == 3
    assert (vm.fc_norm is not None) == (pool == "avg")  # timm norms after the average
    load_timm_state_dict(vm, tm.state_dict())
    x = np.random.default_rng(1).normal(size=(2, 2, 24, 24)).astype(np.float32)
    assert_same_outputs(tm, vm, x)


def test_dropout_and_drop_path_names_follow_timms_schedule():
    vm = create_model("vit_tiny_patch16_224", img_size=32, depth=4, drop_path_rate=0.3, attn_drop_rate=0.1,
                      proj_drop_rate=0.1, pos_drop_rate=0.2)
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=4, drop_path_rate=0.3)
    want = [getattr(b.drop_path1, "drop_prob", 0.0) for b in tm.blocks]
    got = [getattr(b.drop_path, "drop_prob", 0.0) for b in vm.transformer.layers]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    assert vm.transformer.layers[0].attn.attn_drop == 0.1 and vm.dropout.p == 0.2


def test_timm_names_reach_every_constructor():
    for cls in (ViT, DeiT, ViTBNFFN):
        m = cls(img_size=16, patch_size=8, in_chans=1, num_classes=3, embed_dim=32, depth=1, num_heads=2)
        assert (m.image_size, m.channels, m.transformer.layers[0].attn.heads) == ((16, 16), 1, 2)
    m = create_model("lvvit_tiny_mnist", num_classes=4, drop_path_rate=0.1)
    assert m.mlp_head.weight.shape[0] == 4
    m = create_model("vit_seed_mnist", in_chans=1, img_size=14)
    assert m.image_size == (14, 14)


def test_timm_and_vitc_name_disagreeing_is_an_error():
    with pytest.raises(ValueError, match="img_size=64 .* image_size=32 disagree"):
        create_model("vit_tiny_patch16_224", img_size=64, image_size=32)
    with pytest.raises(ValueError, match="in_chans=1 .* channels=3 disagree"):
        ViT(image_size=16, patch_size=8, num_classes=2, dim=16, depth=1, heads=2, mlp_dim=8, in_chans=1, channels=3)
    m = create_model("vit_tiny_patch16_224", img_size=32, image_size=(32, 32), depth=1)  # agreeing is fine
    assert m.image_size == (32, 32)
    with pytest.raises(ValueError, match="global_pool must be one of"):
        create_model("vit_tiny_patch16_224", global_pool="")
    with pytest.raises(ValueError, match="attn_drop_rate=0.1, proj_drop_rate=0.0"):
        create_model("vit_tiny_patch16_224", attn_drop_rate=0.1, depth=1)
    with pytest.raises(ValueError, match="init_values=0.1 has no vitc counterpart"):
        create_model("vit_tiny_patch16_224", init_values=0.1)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        create_model("vit_tiny_patch16_224", num_heads=5)


def test_load_state_dict_points_to_load_timm_state_dict():
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, **SMALL)
    vm = create_model("vit_tiny_patch16_224", **SMALL)
    with pytest.raises(RuntimeError, match=r"timm's names .*vitc\.models\.load_timm_state_dict\(model, state_dict\)"):
        vm.load_state_dict(tm.state_dict())
    with pytest.raises(RuntimeError) as e:  # a vitc mismatch says nothing about timm
        vm.load_state_dict({"other": np.zeros(1, np.float32)})
    assert "timm" not in str(e.value)
