"""vitc.models.ViT against a plain-PyTorch ViT with the same weights: logits, every parameter
gradient and 20 Adam steps; the registry; init statistics; bad inputs."""
import os
import sys

import numpy as np
import pytest
import torch

import vitc
from vitc import nn, optim
from vitc.models import ViT, create_model, list_models, posemb_sincos_1d, register_model

sys.path.insert(0, os.path.dirname(__file__))
from torch_vit import TorchViT, copy_weights, torch_posemb_sincos_1d  # noqa: E402

SEED_CFG = dict(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8, dim_head=64,
                mlp_dim=128)
GELU = os.environ.get("VITC_TEST_GELU", "none")  # 'tanh' lets the parity run without the exact-GELU op

VARIANTS = {
    "seed": dict(SEED_CFG),
    "mean-pe1d-bias": dict(SEED_CFG, depth=2, pool="mean", pos_emb="pe1d", qkv_bias=True),
    "sincos-1head-timm-like": dict(image_size=16, patch_size=4, num_classes=5, channels=3, dim=32, depth=2, heads=1,
                                   dim_head=32, mlp_dim=64, pos_emb="sincos1d", norm_eps=1e-6, patch_norm=False),
}


def _pair(cfg, seed=0):
    vitc.manual_seed(seed)
    vm = ViT(**cfg, gelu=GELU)
    tm = copy_weights(vm, TorchViT(**cfg, gelu=GELU))
    return vm, tm


def _data(cfg, b, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (b, cfg["channels"], cfg["image_size"], cfg["image_size"])).astype(np.float32)
    y = rng.integers(0, cfg["num_classes"], b).astype(np.int64)
    return x, y


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_and_all_gradients_match_torch(name):
    cfg = VARIANTS[name]
    vm, tm = _pair(cfg)
    x, y = _data(cfg, 6)
    vz = vm(vitc.tensor(x))
    tz = tm(torch.tensor(x))
    np.testing.assert_allclose(vz.detach().numpy(), tz.detach().numpy(), rtol=1e-4, atol=1e-5)
    vitc.cross_entropy(vz, vitc.tensor(y)).backward()
    torch.nn.functional.cross_entropy(tz, torch.tensor(y)).backward()
    tgrads = dict(tm.named_parameters())
    names = [n for n, _ in vm.named_parameters()]
    assert names == list(tgrads)
    for n, p in vm.named_parameters():
        assert p.grad is not None, n
        np.testing.assert_allclose(p.grad.numpy(), tgrads[n].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=n)


def test_twenty_adam_steps_match_torch():
    cfg = dict(SEED_CFG, depth=3)
    vm, tm = _pair(cfg, seed=1)
    vo = optim.Adam(vm.parameters(), lr=5e-4)
    to = torch.optim.Adam(tm.parameters(), lr=5e-4)
    vl, tl = [], []
    for step in range(20):
        x, y = _data(cfg, 10, seed=100 + step)
        vo.zero_grad()
        loss = nn.CrossEntropyLoss()(vm(vitc.tensor(x)), vitc.tensor(y))
        loss.backward()
        vo.step()
        vl.append(loss.item())
        to.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        to.step()
        tl.append(tloss.item())
    np.testing.assert_allclose(vl, tl, rtol=1e-4, atol=1e-5)
    assert vl[-1] < vl[0]
    for (n, p), (_, q) in zip(vm.named_parameters(), tm.named_parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-3, atol=1e-4, err_msg=n)


def test_position_embeddings():
    for article in (False, True):
        ours = posemb_sincos_1d(17, 64, variant="article" if article else "lucidrains")
        ref = torch_posemb_sincos_1d(17, 64, article=article).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    # the article's formula, written out: ω_k = 10000^(−(k+1)/(D/2)), PE[t, k] = sin(t ω_k), PE[t, D/2+k] = cos
    t, k, d = 5, 3, 64
    w = 10000.0 ** (-(k + 1) / (d / 2))
    pe = posemb_sincos_1d(8, d, variant="article")
    assert pe[t, k] == pytest.approx(np.sin(t * w), abs=1e-6) and pe[t, d // 2 + k] == pytest.approx(np.cos(t * w), abs=1e-6)
    m = ViT(**dict(SEED_CFG, depth=1), pos_emb="pe1d")
    assert "pos_embedding" not in m.state_dict()  # a constant, not saved
    assert m.pos_embedding.shape == (1, 17, 64)
    with pytest.raises(ValueError, match="even"):
        posemb_sincos_1d(4, 7)


def test_registry():
    assert {"vit_seed_mnist", "vit_tiny_patch16_224"} <= set(list_models())
    m = create_model("vit_seed_mnist")
    assert m.num_parameters() == sum(p.numel() for p in TorchViT(**SEED_CFG).parameters())
    assert len(m.transformer.layers) == 6 and m.pool == "cls" and m.pos_emb == "learn"
    small = create_model("vit_seed_mnist", depth=2, pool="mean")
    assert len(small.transformer.layers) == 2 and small.pool == "mean"
    tiny = create_model("vit_tiny_patch16_224", depth=1)
    blk = tiny.transformer.layers[0]
    assert blk.attn.to_qkv.bias is not None and blk.norm1.eps == 1e-6
    assert tiny.to_patch_embedding[1].weight.shape == (192, 768)
    with pytest.raises(ValueError, match="unknown model 'nope'.*vit_seed_mnist"):
        create_model("nope")
    assert list_models("vit_tiny*") == ["vit_tiny_patch16_224"]

    @register_model
    def _test_tiny_vit(**kw):
        return ViT(**dict(SEED_CFG, depth=1), **kw)

    assert isinstance(create_model("_test_tiny_vit"), ViT)
    with pytest.raises(ValueError, match="already registered"):
        register_model(lambda **kw: None, name="_test_tiny_vit")


def test_init_statistics():
    vitc.manual_seed(0)
    m = ViT(**SEED_CFG)
    w = m.transformer.layers[0].attn.to_qkv.weight.detach().numpy()
    bound = 1 / np.sqrt(64)
    assert np.abs(w).max() <= bound and abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound
    pos = m.pos_embedding.detach().numpy()
    assert abs(pos.std() - 1) < 0.05 and abs(pos.mean()) < 0.05
    t = ViT(**SEED_CFG, init="timm")
    w = t.transformer.layers[0].attn.to_qkv.weight.detach().numpy()
    assert abs(w.std() - 0.02) < 0.001 and abs(w.mean()) < 0.001
    assert np.all(t.transformer.layers[0].ff.net[0].bias.detach().numpy() == 0)
    assert abs(t.cls_token.detach().numpy().std() - 0.02) < 0.01
    ln = t.transformer.layers[0].norm1
    assert np.all(ln.weight.detach().numpy() == 1) and np.all(ln.bias.detach().numpy() == 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="divisible by the patch size"):
        ViT(**dict(SEED_CFG, patch_size=5))
    with pytest.raises(ValueError, match="pool"):
        ViT(**SEED_CFG, pool="max")
    with pytest.raises(ValueError, match="pos_emb"):
        ViT(**SEED_CFG, pos_emb="2d")
    with pytest.raises(TypeError):
        ViT(28, 7, 10, 64, 6, 8, 128)  # keyword-only, as the article's class
    m = ViT(**dict(SEED_CFG, depth=1))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*image_size=\(28, 28\).*got \(2, 1, 32, 32\)"):
        m(vitc.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="got \\(2, 28, 28\\)"):
        m(vitc.zeros(2, 28, 28))
    with pytest.raises(TypeError):
        m(np.zeros((2, 1, 28, 28), np.float32))


def test_attention_maps_and_eval_mode():
    m = ViT(**dict(SEED_CFG, depth=2))
    x = vitc.rand(3, 1, 28, 28)
    logits, maps = m(x, return_attention=True)
    assert logits.shape == (3, 10) and len(maps) == 2 and maps[0].shape == (3, 8, 17, 17)
    np.testing.assert_allclose(maps[1].detach().numpy().sum(-1), 1.0, rtol=1e-5)
    m.eval()
    with vitc.no_grad():
        a = m(x).numpy()
        b = m(x).numpy()
    np.testing.assert_array_equal(a, b)


def test_seed_article_get_model_runs():
    """The article's get_model() with ViT from vitc (keyword names as in seed 004)."""
    def get_model():
        return ViT(image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8, dim_head=64,
                   mlp_dim=128, pool="cls", dropout=0.0, emb_dropout=0.0, pos_emb="learn")

    model = get_model()
    opt = optim.Adam(model.parameters(), lr=5e-4)
    x, y = _data(SEED_CFG, 4)
    opt.zero_grad()
    model.train()
    z = model(vitc.tensor(x))
    loss = nn.CrossEntropyLoss()(z, vitc.tensor(y))
    loss.backward()
    opt.step()
    model.eval()
    pred = z.detach().numpy().argmax(1)
    assert pred.shape == (4,)
