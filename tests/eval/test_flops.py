"""vitc.eval.flops: the analytic ViT FLOP count against a hand count, the built model, and PyTorch's
FLOP counter on a timm ViT of the same shape."""
import pytest

from vitc.eval import vit_flop_breakdown, vit_forward_flops, vit_train_flops
from vitc.models import scaling_vit

# 8×8 grey image, patch 4 -> N = 4 patches; width 8, 1 block, 2 heads × 4, MLP 16, 3 classes
TINY = dict(image_size=8, patch_size=4, channels=1, dim=8, depth=1, heads=2, dim_head=4, mlp_dim=16, num_classes=3)


def test_hand_count_with_class_token():
    # T = 5 tokens; 2 FLOPs per multiply-add
    hand = {"patch_embed": 2 * 4 * 16 * 8, "qkv": 2 * 5 * 8 * 24, "attn_scores": 2 * 5 * 5 * 8,
            "attn_values": 2 * 5 * 5 * 8, "attn_proj": 2 * 5 * 8 * 8, "mlp": 2 * 2 * 5 * 8 * 16,
            "map_head": 0, "pre_logits": 0, "head": 2 * 8 * 3}
    assert vit_flop_breakdown(dict(TINY, pool="cls")) == hand
    assert vit_forward_flops(dict(TINY, pool="cls")) == 6992
    assert vit_train_flops(dict(TINY, pool="cls"), 10) == 3 * 6992 * 10


def test_hand_count_map_head_without_class_token():
    b = vit_flop_breakdown(dict(TINY, pool="map", class_token=False))
    # T = N = 4; MAP: q of the probe 2·8·8, k and v 2·4·8·16, scores + values 2·2·4·8, projection 2·8·8,
    # MLP 2·2·8·16
    assert b["qkv"] == 2 * 4 * 8 * 24 and b["attn_scores"] == 2 * 4 * 4 * 8
    assert b["map_head"] == 128 + 1024 + 128 + 128 + 512


@pytest.mark.parametrize("pool", ["cls", "gap", "map"])
def test_model_and_config_agree(pool):
    extra = {"class_token": pool == "cls"}
    m = scaling_vit("Ti/4", image_size=8, channels=1, num_classes=3, dim=8, depth=1, heads=2, dim_head=4,
                    mlp_dim=16, pool=pool, **extra)
    assert vit_forward_flops(m) == vit_forward_flops(dict(TINY, pool=pool, **extra))


def test_vit_b16_matches_the_published_count():
    # ViT-B/16 at 224 with a class token: 17.56 G multiply-adds (timm lists 17.6 GMACs)
    cfg = dict(image_size=224, patch_size=16, channels=3, dim=768, depth=12, heads=12, dim_head=64, mlp_dim=3072,
               num_classes=1000, pool="cls")
    assert vit_forward_flops(cfg) / 2 == pytest.approx(17.56e9, rel=2e-3)


def test_against_torch_flop_counter():
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from torch.utils.flop_counter import FlopCounterMode
    m = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=5,
                                                         embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0)
    for blk in m.blocks:
        blk.attn.fused_attn = False  # explicit q·kᵀ and attn·v matmuls (the counter skips the fused CPU kernel)
    x = torch.randn(3, 1, 16, 16)
    with FlopCounterMode(display=False) as fwd:
        y = m(x)
    with FlopCounterMode(display=False) as both:
        m(x).sum().backward()
    cfg = dict(image_size=16, patch_size=4, channels=1, dim=16, depth=2, heads=2, dim_head=8, mlp_dim=32,
               num_classes=5, pool="cls")
    assert y.shape == (3, 5)
    assert fwd.get_total_flops() == 3 * vit_forward_flops(cfg)
    # backward = 2 × forward for every matmul, except that training needs no gradient of the image,
    # which vitc's 3 × forward still counts for the patch embedding
    assert both.get_total_flops() == vit_train_flops(cfg, 3) - 3 * vit_flop_breakdown(cfg)["patch_embed"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="missing"):
        vit_forward_flops({"dim": 8})
    with pytest.raises(ValueError, match="divisible"):
        vit_forward_flops(dict(TINY, patch_size=3))
    with pytest.raises(ValueError, match="heads"):
        vit_forward_flops(dict(TINY, pool="map", dim=9, class_token=False))
    with pytest.raises(ValueError, match="images"):
        vit_train_flops(TINY, -1)
    with pytest.raises(ValueError, match="unsupported"):
        vit_forward_flops(dict(TINY, attn="reattention"))
    with pytest.raises(TypeError, match="ViT"):
        vit_forward_flops(object())


def test_one_head_spanning_the_width_has_no_output_projection():
    """vitc.nn.Attention drops to_out when heads == 1 and dim_head == dim: nothing to count (the count
    used to add it, while vitc.plan left it out)."""
    from vitc.models.vit import ViT
    cfg = dict(TINY, heads=1, dim_head=8, pool="cls")
    assert vit_flop_breakdown(cfg)["attn_proj"] == 0
    m = ViT(**cfg)
    assert not any(type(mod).__name__ == "Linear" and mod.in_features == mod.out_features == 8
                   for mod in m.transformer.layers[0].attn.modules())
    assert vit_forward_flops(m) == vit_forward_flops(cfg)


@pytest.mark.parametrize("config", [dict(TINY, pool="cls", class_token=True), dict(TINY, pool="map", class_token=False),
                                    dict(TINY, heads=1, dim_head=8, pool="gap", class_token=False),
                                    dict(TINY, pool="cls", class_token=True, pre_logits=5)])
def test_vitc_plan_counts_with_this_counter(config):
    """vitc.plan's step time takes its FLOPs from vitc.eval.flops: one counter for both."""
    from vitc.plan.config import resolve_config
    from vitc.plan.timing import time_breakdown
    rates = {"linear_s_per_flop": {"8": 1e-10}, "attention_s_per_flop": {"8": 1e-10}, "mlp_s_per_flop": {"8": 1e-10},
             "add_s_per_element": 1e-9, "layer_norm_s_per_element": 1e-9, "op_overhead_s": 1e-6,
             "optimizer_s_per_param": {"adam": 1e-9}}
    cfg = resolve_config(dict(config, qkv_bias=False))
    assert time_breakdown(cfg, 6, "adam", rates).flops == vit_train_flops(cfg.vit_kwargs(), 6) \
        == vit_train_flops(config, 6)
