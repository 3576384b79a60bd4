"""vitc.plan's memory model against the allocator: predicted peaks within 10 % of
vitc.memory_stats()'s measured peak, optimizer state bytes exactly state_bytes(), size classes
exactly the allocator's, parameter shapes exactly the model's."""
import numpy as np
import pytest

import vitc
from vitc.models import create_model
from vitc.models.vit import ViT
from vitc.plan import OPTIMIZERS, block_bytes, memory_breakdown, optimizer_state_bytes, resolve_config
from vitc.plan.measure import make_optimizer, measure_step

SMALL = [dict(dim=64, depth=2, heads=2, mlp_dim=256, image_size=56, pool="gap"),
         dict(dim=96, depth=2, heads=3, mlp_dim=192, image_size=56, pool="cls", class_token=True),
         dict(dim=64, depth=1, heads=2, mlp_dim=128, image_size=56, pool="map", num_classes=10)]


@pytest.mark.parametrize("spec", SMALL, ids=lambda s: s["pool"])
@pytest.mark.parametrize("optimizer,batch", [("adam", 8), ("adafactor", 2), ("adam_bf16m", 8)])
def test_predicted_peak_within_10_percent_of_measured(spec, optimizer, batch):
    cfg = resolve_config(spec)
    measured = measure_step(cfg, batch, optimizer, repeats=1)["peak_bytes"]
    predicted = memory_breakdown(cfg, batch, optimizer).peak
    assert abs(predicted / measured - 1) < 0.10, (predicted, measured)


def test_registered_model_peak_within_10_percent():
    cfg = resolve_config("vit_seed_mnist")  # class token, patch norms, dim_head 64 ≠ dim / heads
    measured = measure_step(cfg, 16, "adam", repeats=1)["peak_bytes"]
    assert abs(memory_breakdown(cfg, 16, "adam").peak / measured - 1) < 0.10


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name,kw", [("vit_seed_mnist", {}), ("vit_scaling_Ti_16", dict(image_size=32, depth=2))])
def test_state_bytes_exact_and_parameters_match_the_model(optimizer, name, kw):
    cfg = resolve_config(name, kw)
    model = create_model(name, **kw)
    assert cfg.num_parameters() == model.num_parameters()
    assert sorted(cfg.param_shapes()) == sorted(tuple(p.shape) for p in model.parameters())
    opt = make_optimizer(optimizer, model.parameters())
    assert optimizer_state_bytes(cfg.param_shapes(), optimizer) == opt.state_bytes()
    assert memory_breakdown(cfg, 1, optimizer).optimizer_state == opt.state_bytes()


def test_state_bytes_ordering_of_the_papers_setups():
    shapes = resolve_config("vit_scaling_B_16").param_shapes()
    f32, bf16m, fac = (optimizer_state_bytes(shapes, o) for o in ("adam", "adam_bf16m", "adafactor"))
    n = sum(int(np.prod(s)) for s in shapes)
    assert (f32, bf16m) == (8 * n, 6 * n) and 2 * n < fac < 3 * n  # factored second moments are small


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 1024, 1025, 1153, 4096, 5000, 123457, 1 << 20, (1 << 20) + 1])
def test_block_bytes_is_the_allocators_size_class(n):
    vitc.empty_cache()
    before = vitc.memory_stats()["live_bytes"]
    t = vitc.empty(-(-n // 4))  # float32 elements covering n bytes
    got = vitc.memory_stats()["live_bytes"] - before
    assert got == block_bytes(4 * t.numel())
    assert 4 * t.numel() <= got <= max(4 * t.numel() + 63, 1.125 * 4 * t.numel())  # ≤ 12.5 % past 1 KiB


def test_planning_a_huge_model_allocates_nothing():
    before = vitc.memory_stats()["live_bytes"]
    p = vitc.plan.plan("vit_scaling_G_14", 64, "adafactor", timing=False)
    assert p.parameter_count > 1.8e9 and p.peak_bytes > 4 * p.parameter_count * 2
    assert vitc.memory_stats()["live_bytes"] == before


def test_a_built_vit_plans_like_its_config():
    spec = SMALL[1]
    cfg = resolve_config(spec)
    model = ViT(**cfg.vit_kwargs())
    assert resolve_config(model).param_shapes() == cfg.param_shapes()
    assert memory_breakdown(resolve_config(model), 4).peak == memory_breakdown(cfg, 4).peak
