"""Over-smoothing (Gong et al., arXiv 2104.12753): the metrics against NumPy loops, the three losses
against torch float64 references and finite differences, the reference code's variants against torch
re-implementations of ChengyueGongR/PatchVisionTransformer deit/models.py, talking heads, bad input,
and a learning test with every loss on."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from vitc import diagnostics as dg
from vitc import nn
from vitc import oversmoothing as osm
from vitc.models import create_model

from opcheck import check_op

RNG = np.random.default_rng(22)


def _f64(fn):
    """a torch reference computed in float64, returned as float32 (check_op's torch side is float32)"""
    return lambda *ts: fn(*[t.double() for t in ts]).float()


# ---- metrics ------------------------------------------------------------------------------------

def _loop_similarity(h, prefix):
    out = []
    for img in h[:, prefix:].astype(np.float64):
        n, acc = len(img), 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    acc += img[i] @ img[j] / (max(np.linalg.norm(img[i]), 1e-8) * max(np.linalg.norm(img[j]), 1e-8))
        out.append(acc / (n * (n - 1)))
    return np.mean(out)


def _loop_spread(a, prefix, keys):
    vals = []
    for b in range(a.shape[0]):
        for h in range(a.shape[1]):
            for i in range(prefix, a.shape[2]):
                row = a[b, h, i, prefix:] if keys == "patches" else a[b, h, i]
                row = row.astype(np.float64)
                vals.append(np.sqrt(np.mean((row - row.mean()) ** 2)))
    return np.mean(vals)


@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_token_similarity_equals_pair_loop(prefix):
    feats = [RNG.standard_normal((3, 7 + prefix, 5)).astype(np.float32) + 0.5 * k for k in range(3)]
    feats[1][0, prefix] = 0.0  # a zero token: cosine 0 with everything (the 1e-8 floor)
    got = dg.token_similarity(feats, prefix)
    np.testing.assert_allclose(got, [_loop_similarity(f, prefix) for f in feats], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("keys", ["all", "patches"])
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_attention_spread_equals_loop(keys, prefix):
    t = 6 + prefix
    maps = [np.exp(RNG.standard_normal((2, 3, t, t)) * s) for s in (0.3, 2.0)]
    maps = [(m / m.sum(-1, keepdims=True)).astype(np.float32) for m in maps]
    got = dg.attention_spread(maps, prefix, keys)
    np.testing.assert_allclose(got, [_loop_spread(m, prefix, keys) for m in maps], rtol=1e-10)
    assert got[1] > got[0]  # peakier maps spread less evenly


@pytest.mark.parametrize("name,kw", [("vit_seed_mnist", {}), ("vit_seed_mnist", dict(class_token=False, pool="gap")),
                                     ("vit_bn_seed_mnist", {}), ("deit_mnist_distilled", {}),
                                     ("deepvit_seed_mnist", {}), ("vit_seed_mnist", dict(attn_reuse_from=0))])
def test_report_on_registry_models_matches_recorder_and_loops(name, kw):
    vitc.manual_seed(0)
    model = create_model(name, depth=2, dim=32, heads=2, dim_head=8, mlp_dim=32, **kw)
    x = vitc.rand(3, 1, 28, 28)
    rep = dg.over_smoothing_report(model, x)
    p = model.num_prefix_tokens
    assert rep.num_patches == 16 and rep.num_prefix_tokens == p
    with dg.AttentionRecorder(model) as rec, vitc.no_grad():
        model.eval()
        model(x)
    feats = [f.numpy() for f in rec.features()]
    np.testing.assert_allclose(rep.token_similarity, [_loop_similarity(f, p) for f in feats], rtol=1e-9)
    maps = [m.numpy() for m in rec.maps("softmax")]
    np.testing.assert_allclose(rep.attention_spread, [_loop_spread(m, p, "all") for m in maps], rtol=1e-9)
    np.testing.assert_allclose(rec.over_smoothing().token_similarity, rep.token_similarity)


def test_per_epoch_log_reads_the_training_forward(tmp_path):
    vitc.manual_seed(1)
    model = create_model("vit_seed_mnist", depth=2, dim=32, heads=2, dim_head=8, mlp_dim=32)
    log = dg.OverSmoothingLog(keys="patches")
    x = vitc.rand(2, 1, 28, 28)
    with dg.AttentionRecorder(model) as rec:
        model.train()
        model(x).sum().backward()  # an ordinary training forward: the log needs no second one
        r = log.record(0, rec)
    want = dg.over_smoothing_report(model, x, keys="patches", train_mode=True)
    np.testing.assert_allclose(r["token_similarity"], want.token_similarity, rtol=1e-6)
    np.testing.assert_allclose(r["attention_spread"], want.attention_spread, rtol=1e-6)
    assert log.records == [r] and r["epoch"] == 0
    path = dg.plot_over_smoothing({"a": want, "b": want.summary()}, str(tmp_path / "os.png"))
    assert (tmp_path / "os.png").stat().st_size > 1000 and path.endswith("os.png")


def test_metric_bad_input():
    with pytest.raises(ValueError, match="patch token"):
        dg.token_similarity([np.zeros((2, 2, 4), np.float32)], 1)   # one patch token left
    with pytest.raises(ValueError, match="patch token"):
        dg.attention_spread([np.ones((1, 1, 2, 2), np.float32)], 2)
    with pytest.raises(ValueError, match="keys"):
        dg.attention_spread([np.ones((1, 1, 3, 3), np.float32)], 1, keys="cls")
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        dg.token_similarity([np.zeros((2, 4, 4), np.float32)], -1)

    class NoPrefix(nn.Module):  # blocks, but no say on which tokens are patches
        def __init__(self):
            super().__init__()
            self.block = nn.TransformerBlock(8, heads=2, dim_head=4)

        def forward(self, x):
            return self.block(x)
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        dg.over_smoothing_report(NoPrefix(), vitc.rand(1, 5, 8))


# ---- losses: value and gradients against torch float64 and finite differences -------------------

def _torch_cos_penalty(h):
    u = h / h.norm(dim=2, keepdim=True).clamp_min(1e-8)
    g = u @ u.transpose(1, 2)
    n = h.shape[1]
    return ((g.sum((1, 2)) - g.diagonal(dim1=1, dim2=2).sum(1)) / (n * (n - 1))).mean()


def test_cosine_penalty_matches_torch_and_finite_differences():
    h = RNG.standard_normal((3, 9, 6)).astype(np.float32) + 0.3
    check_op(osm.cosine_penalty, _f64(_torch_cos_penalty), [h], rtol=1e-5, atol=1e-6)


def test_cosine_penalty_gradient_is_the_closed_form():
    h = RNG.standard_normal((1, 5, 4)).astype(np.float32)
    t = vitc.from_numpy(h)
    t.requires_grad = True
    osm.cosine_penalty(t).backward()
    x = h[0].astype(np.float64)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / nrm
    g_u = 2 * (u.sum(0) - u) / (5 * 4)
    g_h = (g_u - u * np.sum(u * g_u, axis=1, keepdims=True)) / nrm  # (I − ûûᵀ)/‖h‖ · ∂/∂û
    np.testing.assert_allclose(t.grad.numpy()[0], g_h, rtol=1e-4, atol=1e-6)


def _torch_contrastive_paper(e, h):
    pos = (e * h).sum(-1)
    neg = (e * h.mean(1, keepdim=True)).sum(-1)
    return (-(pos - torch.logsumexp(torch.stack([pos, neg]), 0))).mean()


def _torch_contrastive_code(e, h, grid=(4, 4), high_k=7):
    # the reference's similarity() (deit/models.py, VisionTransformer.forward), re-implemented: patches
    # (B, D, gh, gw), context_target = e
    b, n, d = h.shape
    patches = h.permute(0, 2, 1).reshape(b, d, *grid)
    low = F.avg_pool2d(patches, kernel_size=high_k, stride=1, padding=(high_k - 1) // 2) - patches / high_k ** 2
    low = low * (high_k ** 2) / (high_k ** 2 - 1)
    high = (patches.mean(dim=(2, 3), keepdim=True) - patches / n) * n / (n - 1)
    pos = (e * patches.reshape(b, d, -1).permute(0, 2, 1)).sum(-1).reshape(-1, 1)
    neg = (e * high.reshape(b, d, -1).permute(0, 2, 1)).sum(-1).reshape(-1, 1)
    neg2 = (e * low.reshape(b, d, -1).permute(0, 2, 1)).sum(-1).reshape(-1, 1)
    return -torch.log(torch.cat((pos, neg, neg2), dim=-1).softmax(dim=-1)[:, 0] + 1e-8).mean()


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_patch_contrastive_matches_torch(variant):
    e = (0.4 * RNG.standard_normal((2, 16, 5))).astype(np.float32)
    h = (0.4 * RNG.standard_normal((2, 16, 5))).astype(np.float32)
    ref = _torch_contrastive_paper if variant == "paper" else _torch_contrastive_code
    # e is the detached first-layer representation: no gradient reaches it
    check_op(lambda a, b: osm.patch_contrastive_loss(a, b, variant), _f64(lambda a, b: ref(a.detach(), b)), [e, h],
             rtol=1e-5, atol=1e-6, grad_inputs=[1])
    te, th = vitc.from_numpy(e), vitc.from_numpy(h)
    te.requires_grad = th.requires_grad = True
    osm.patch_contrastive_loss(te, th, variant).backward()
    assert te.grad is None and th.grad is not None


def test_code_contrastive_on_a_non_square_grid_matches_torch():
    e = (0.4 * RNG.standard_normal((2, 12, 3))).astype(np.float32)
    h = (0.4 * RNG.standard_normal((2, 12, 3))).astype(np.float32)
    got = osm.patch_contrastive_loss(vitc.from_numpy(e), vitc.from_numpy(h), "code", grid=(3, 4), kernel=3).item()
    want = _torch_contrastive_code(torch.from_numpy(e).double(), torch.from_numpy(h).double(), (3, 4), 3).item()
    assert abs(got - want) < 1e-5


def test_patch_mixing_loss_matches_torch():
    z = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    y = RNG.integers(0, 5, (3, 4))
    check_op(lambda a: osm.patch_mixing_loss(a, vitc.from_numpy(y)),
             _f64(lambda a: F.cross_entropy(a.reshape(12, 5), torch.from_numpy(y).reshape(12))), [z])


def test_region_mixing_loss_matches_the_reference_code():
    b, grid, d, k = 4, (4, 4), 6, 5
    h = RNG.standard_normal((b, 16, d)).astype(np.float32)
    mask = np.zeros(grid, np.float32)
    mask[1:3, 0:3] = 1
    y = RNG.integers(0, k, b)
    perm = np.array([2, 0, 3, 1])  # the reference pairs by a random permutation
    eye = np.eye(k, dtype=np.float32)
    targets = [eye[y], eye[y[perm]]]
    vitc.manual_seed(3)
    head = nn.Linear(d, k)
    th = torch.nn.Linear(d, k).double()
    with torch.no_grad():
        th.weight.copy_(torch.from_numpy(head.weight.detach().numpy()))
        th.bias.copy_(torch.from_numpy(head.bias.detach().numpy()))

    def vfn(a):
        return osm.region_mixing_loss(a, head, [mask, 1 - mask], [vitc.from_numpy(t) for t in targets])

    def tfn(a):
        patches = a.double().permute(0, 2, 1).reshape(b, d, *grid)
        loss = 0.
        for m, t in zip([torch.from_numpy(mask).double(), 1 - torch.from_numpy(mask).double()], targets):
            avg = (patches * m.reshape(1, 1, *grid)).mean(dim=(2, 3)) * torch.ones_like(m).sum() / (m.sum() + 1e-4)
            logits = th(avg)
            loss = loss + m.sum() / torch.ones_like(m).sum() * torch.nn.KLDivLoss(reduction="batchmean")(
                (1e-8 + logits.softmax(dim=-1)).log(), torch.from_numpy(t).double())
        return loss.float()
    check_op(vfn, tfn, [h], rtol=1e-5, atol=1e-6)


def test_patch_mix_moves_whole_patches_and_labels_them():
    x = RNG.random((4, 1, 28, 28)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    pm = osm.patch_mix(vitc.from_numpy(x), vitc.from_numpy(y), 5, 7, draws=(0.75, 1, 2))
    # λ 0.75 on a 4×4 grid: side ⌊4·√0.25⌋ = 2, centre (1, 2): rows [0, 2), cols [1, 3) from the partner
    own = np.ones((4, 4), bool)
    own[0:2, 1:3] = False
    np.testing.assert_array_equal(pm.own, own)
    assert pm.lam == 0.75 and list(pm.partner) == [3, 2, 1, 0]
    m = pm.images.numpy()
    for b in range(4):
        for r in range(4):
            for c in range(4):
                src = b if own[r, c] else 3 - b
                np.testing.assert_array_equal(m[b, :, 7 * r:7 * r + 7, 7 * c:7 * c + 7],
                                              x[src, :, 7 * r:7 * r + 7, 7 * c:7 * c + 7])
    np.testing.assert_array_equal(pm.patch_labels.numpy(), np.where(own.reshape(1, -1), y[:, None], y[::-1, None]))
    t = pm.targets.numpy()
    np.testing.assert_allclose(t[0, 0], 0.75)
    np.testing.assert_allclose(t[0, 3], 0.25)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)


# ---- talking heads ------------------------------------------------------------------------------

def test_talking_heads_match_the_reference_attention():
    vitc.manual_seed(4)
    att = nn.Attention(12, heads=3, dim_head=4, qkv_bias=True, talking_heads=True)
    x = RNG.standard_normal((2, 5, 12)).astype(np.float32)
    params = {n: torch.from_numpy(p.detach().numpy().copy()).double().requires_grad_() for n, p in att.named_parameters()}

    def ref(t):  # the reference Attention with use_talk (deit/models.py), re-implemented
        b, n, c = t.shape
        qkv = F.linear(t, params["to_qkv.weight"], params["to_qkv.bias"]).reshape(b, n, 3, 3, 4).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * 4 ** -0.5
        a = F.linear(a.permute(0, 2, 3, 1), params["talk_pre"]).permute(0, 3, 1, 2).softmax(dim=-1)
        a = F.linear(a.permute(0, 2, 3, 1), params["talk_post"]).permute(0, 3, 1, 2)
        o = (a @ v).transpose(1, 2).reshape(b, n, 12)
        return F.linear(o, params["to_out.0.weight"], params["to_out.0.bias"])
    tx = torch.from_numpy(x).double().requires_grad_()
    vx = vitc.from_numpy(x)
    vx.requires_grad = True
    w = RNG.standard_normal((2, 5, 12))
    out = att(vx)
    np.testing.assert_allclose(out.detach().numpy(), ref(tx).detach().numpy(), rtol=1e-4, atol=1e-5)
    (out * vitc.from_numpy(w.astype(np.float32))).sum().backward()
    (ref(tx) * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(vx.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-5)
    for n, p in att.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), params[n].grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=n)


def test_talking_heads_off_by_default_and_recorded():
    assert nn.Attention(8, heads=2, dim_head=4).talk_pre is None
    vitc.manual_seed(5)
    model = create_model("vit_seed_mnist", depth=2, dim=16, heads=2, dim_head=8, mlp_dim=16,
                         over_smoothing=dict(talking_heads=True))
    rep = dg.over_smoothing_report(model.model, vitc.rand(2, 1, 28, 28))  # spread on the softmax maps
    assert np.all(np.isfinite(rep.attention_spread))
    with pytest.raises(ValueError, match="talking heads"):
        nn.Attention(8, heads=2, dim_head=4, attn="reattention").add_talking_heads()


# ---- the wrapper, bad input, learning ----------------------------------------------------------

def test_wrapper_bad_input():
    vit = create_model("vit_seed_mnist", depth=1, dim=16, heads=2, dim_head=8, mlp_dim=16)
    with pytest.raises(ValueError, match="cos"):
        osm.OverSmoothing(vit, cos=-1.0)
    with pytest.raises(ValueError, match="no patch tokens"):
        osm.OverSmoothing(create_model("resnet18") if "resnet18" in vitc.models.list_models() else nn.Linear(2, 2))
    with pytest.raises(ValueError, match="batch"):
        osm.patch_mix(vitc.rand(1, 1, 28, 28), vitc.tensor(np.array([1])), 10, 7)
    with pytest.raises(ValueError, match="batch"):
        osm.OverSmoothing(vit, mix=1.0).loss(vitc.rand(1, 1, 28, 28), vitc.tensor(np.array([1])))
    with pytest.raises(ValueError, match="grid"):
        osm.patch_contrastive_loss(vitc.rand(2, 16, 4), vitc.rand(2, 16, 4), "code", grid=(3, 5))
    with pytest.raises(ValueError, match="16 cells"):
        osm.region_mixing_loss(vitc.rand(2, 12, 4), nn.Linear(4, 3), [np.ones(16)], [vitc.rand(2, 3)])
    with pytest.raises(ValueError, match="patch token"):
        osm.cosine_penalty(vitc.rand(2, 1, 4))
    with pytest.raises(ValueError, match="variant"):
        osm.patch_contrastive_loss(vitc.rand(2, 4, 4), vitc.rand(2, 4, 4), "paperish")
    with pytest.raises(ValueError, match="labels"):
        osm.patch_mix(vitc.rand(2, 1, 28, 28), vitc.tensor(np.array([1, 12])), 10, 7)


def test_create_model_wraps_any_registry_model():
    for name in ("deit_mnist", "deit_mnist_distilled", "vit_bn_seed_mnist", "deepvit_seed_mnist"):
        vitc.manual_seed(6)
        m = create_model(name, depth=1, over_smoothing=dict(cos=1.0, cons=1.0, mix=1.0))
        m.train()
        x, y = vitc.rand(4, 1, 28, 28), vitc.tensor(np.array([0, 1, 2, 3]))
        total, parts = m.loss(x, y)
        assert set(parts) == {"ce", "cos", "cons", "mix"}
        total.backward()
        assert m.patch_head.weight.grad is not None and np.isfinite(total.item())
        # the patch embedding still trains (through the main loss; ℓ_cons sees it detached, tested above)
        assert m.model.to_patch_embedding[-1].weight.grad is not None


def test_learning_with_all_three_losses():
    """Two classes told apart by which half of the image is bright; a 2-block ViT with ℓ_cos, ℓ_cons
    and ℓ_mix all on must learn them, and every loss term must stay finite."""
    vitc.manual_seed(7)
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 64)
    x = (0.1 * rng.standard_normal((64, 1, 28, 28))).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, :14] += 1.0 if c == 0 else 0.0
        x[i, 0, 14:] += 1.0 if c == 1 else 0.0
    model = create_model("vit_seed_mnist", depth=2, dim=32, heads=2, dim_head=16, mlp_dim=32, num_classes=2,
                         over_smoothing=dict(cos=1.0, cons=1.0, mix=1.0, contrastive_variant="code"))
    opt = vitc.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(60):
        idx = rng.choice(64, 16, replace=False)
        model.train()
        opt.zero_grad()
        loss, parts = model.loss(vitc.from_numpy(x[idx]), vitc.from_numpy(y[idx]))
        loss.backward()
        opt.step()
        assert all(np.isfinite(v.item()) for v in parts.values())
        first = first if first is not None else parts["ce"].item()
    model.eval()
    with vitc.no_grad():
        acc = np.mean(np.argmax(model(vitc.from_numpy(x)).numpy(), 1) == y)
    assert acc >= 0.9, acc
    assert parts["ce"].item() < first
