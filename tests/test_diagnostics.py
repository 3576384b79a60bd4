"""vitc.diagnostics (DeepViT, arXiv 2103.11886 eq. 2): the attention-collapse metrics against NumPy
loops written from the
paper's definitions, recording during training, plots, and bad input."""
import numpy as np
import pytest

import vitc
from vitc import diagnostics as D
from vitc import nn, optim
from vitc.models import create_model


def ref_similarity(maps):
    """P-DeepViT eq. 2 with explicit loops: cosine of a^p_{h,t} = A^p[b, h, :, t] and a^q_{h,t}"""
    L = len(maps)
    B, H, T, _ = maps[0].shape
    out = np.zeros((L, L))
    for p in range(L):
        for q in range(L):
            acc = []
            for b in range(B):
                for h in range(H):
                    for t in range(T):
                        x, y = maps[p][b, h, :, t].astype(np.float64), maps[q][b, h, :, t].astype(np.float64)
                        acc.append(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
            out[p, q] = np.mean(acc)
    return out


def _softmax_maps(L, B=2, H=3, T=5, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, (L, B, H, T, T))
    e = np.exp(s - s.max(-1, keepdims=True))
    return list((e / e.sum(-1, keepdims=True)).astype(np.float32))


def test_similarity_matches_numpy_loops():
    maps = _softmax_maps(4)
    sim = D.attention_similarity(maps)
    np.testing.assert_allclose(sim, ref_similarity(maps), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(sim), 1.0, rtol=1e-12)
    # signed maps (re-attention's Â can be negative) are handled by the same formula
    rng = np.random.default_rng(1)
    signed = [rng.normal(size=(2, 2, 4, 4)).astype(np.float32) for _ in range(3)]
    np.testing.assert_allclose(D.attention_similarity(signed), ref_similarity(signed), rtol=1e-10, atol=1e-12)


def test_similar_blocks_counts_adjacent_pairs():
    sim = np.eye(5)
    for k, v in zip(range(1, 5), (0.95, 0.5, 0.91, 0.9)):
        sim[k - 1, k] = sim[k, k - 1] = v
    assert D.similar_blocks(sim) == 2            # 0.95 and 0.91; 0.9 is not > 0.9
    assert D.similar_blocks(sim, threshold=0.4) == 4
    assert D.similar_blocks(sim, threshold=1.0) == 0


def test_head_and_feature_similarity_match_numpy():
    maps = _softmax_maps(2, B=2, H=3, T=4)
    hs = D.head_similarity(maps)
    for k, a in enumerate(maps):
        for h in range(3):
            for g in range(3):
                acc = [a[b, h, :, t] @ a[b, g, :, t] / (np.linalg.norm(a[b, h, :, t]) * np.linalg.norm(a[b, g, :, t]))
                       for b in range(2) for t in range(4)]
                assert hs[k, h, g] == pytest.approx(np.mean(acc), rel=1e-6)
    rng = np.random.default_rng(2)
    feats = [rng.normal(size=(2, 3, 5)) for _ in range(3)]
    fs = D.feature_similarity(feats)
    for k, f in enumerate(feats):
        ref = np.mean([f[b, t] @ feats[-1][b, t] / (np.linalg.norm(f[b, t]) * np.linalg.norm(feats[-1][b, t]))
                       for b in range(2) for t in range(3)])
        assert fs[k] == pytest.approx(ref, rel=1e-10)
    assert fs[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["vit_seed_mnist", "deepvit_seed_mnist", "deepvit_seed_mnist_ln"])
def test_report_on_registry_models(name, tmp_path):
    vitc.manual_seed(0)
    m = create_model(name, depth=3)
    x = np.random.default_rng(0).uniform(0, 1, (4, 1, 28, 28)).astype(np.float32)
    rep = D.collapse_report(m, x)
    assert len(rep.maps) == 3 and rep.maps[0].shape == (4, 8, 17, 17)
    assert rep.similarity.shape == (3, 3) and rep.head_similarity.shape == (3, 8, 8)
    assert rep.feature_similarity.shape == (3,) and rep.feature_similarity[-1] == pytest.approx(1.0)
    assert 0 <= rep.n_similar <= 2
    # the maps are the ones the model returns itself (Â for re-attention), eval mode
    m.eval()
    with vitc.no_grad():
        _, ref = m(vitc.from_numpy(x), return_attention=True)
    for a, r in zip(rep.maps, ref):
        np.testing.assert_array_equal(a, r.numpy())
    np.testing.assert_allclose(rep.similarity, ref_similarity(rep.maps), rtol=1e-8, atol=1e-10)
    soft = D.softmax_maps(m, x)
    np.testing.assert_allclose(np.sum(soft[0], axis=-1), 1.0, rtol=1e-5)  # softmax rows, before any mixing
    np.testing.assert_allclose(rep.softmax_similarity, ref_similarity(soft), rtol=1e-8, atol=1e-10)
    if name == "vit_seed_mnist":
        np.testing.assert_array_equal(rep.softmax_similarity, rep.similarity)
    s = rep.summary()
    assert s["depth"] == 3 and len(s["adjacent_similarity"]) == 2
    paths = D.plot_report(rep, tmp_path)
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_recorder_during_training_needs_no_second_forward():
    vitc.manual_seed(0)
    m = create_model("deepvit_seed_mnist", depth=2, dim=32, heads=4, dim_head=8, mlp_dim=64)
    calls = []
    m.register_forward_hook(lambda mod, args, out: calls.append(1))
    opt = optim.Adam(m.parameters(), lr=1e-3)
    x = vitc.randn(4, 1, 28, 28)
    y = vitc.tensor(np.array([0, 1, 2, 3]))
    with D.AttentionRecorder(m) as rec:
        loss = nn.CrossEntropyLoss()(m(x), y)
        loss.backward()
        opt.step()
        rep = rec.report()
    assert len(calls) == 1
    assert len(rep.maps) == 2 and rep.maps[0].shape == (4, 4, 17, 17)
    assert rep.feature_similarity is not None
    assert all(not b.attn.record_attention and b.attn.last_attention is None for b in m.transformer.layers)
    assert len(rec.maps()) == 2  # still available from the recorder


def test_bad_input():
    with pytest.raises(ValueError, match="threshold must be in"):
        D.similar_blocks(np.eye(3), threshold=1.5)
    with pytest.raises(ValueError, match="threshold must be in"):
        D.similar_blocks(np.eye(3), threshold=-0.1)
    with pytest.raises(TypeError, match="threshold"):
        D.similar_blocks(np.eye(3), threshold="0.9")
    with pytest.raises(ValueError, match="square"):
        D.similar_blocks(np.ones((2, 3)))
    with pytest.raises(ValueError, match="no vitc.nn.Attention"):
        D.collapse_report(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="threshold must be in"):
        D.collapse_report(create_model("vit_seed_mnist", depth=1), np.zeros((2, 1, 28, 28), np.float32),
                          threshold=2)
    with pytest.raises(ValueError, match=r"shape \(B, heads, T, T\)"):
        D.attention_similarity([np.zeros((2, 3, 4, 5))])
    with pytest.raises(ValueError, match="layers must agree"):
        D.attention_similarity([np.zeros((2, 3, 4, 4)), np.zeros((2, 2, 4, 4))])
    with pytest.raises(ValueError, match="non-empty"):
        D.attention_similarity([])
    with pytest.raises(RuntimeError, match="no forward"):
        with D.AttentionRecorder(create_model("vit_seed_mnist", depth=1)) as rec:
            rec.maps()
    # a model whose re-attention matrix has the wrong shape: a clear error naming theta
    m = create_model("deepvit_seed_mnist", depth=1)
    m.transformer.layers[0].attn.reattn_weight = nn.Parameter(vitc.zeros(8, 4))
    with pytest.raises(ValueError, match=r"theta must have shape \(8, 8\)"):
        D.collapse_report(m, np.zeros((2, 1, 28, 28), np.float32))


def test_every_per_block_diagnostic_accepts_a_single_tensor():
    """One block's output or map, passed alone (not in a list), is read as a list of one by every
    diagnostic (feature_similarity used to refuse it while the others accepted it)."""
    rng = np.random.default_rng(3)
    f = rng.standard_normal((2, 5, 4)).astype(np.float32)
    a = rng.random((2, 3, 5, 5)).astype(np.float32)
    for x in (f, vitc.from_numpy(f)):
        np.testing.assert_allclose(D.feature_similarity(x), D.feature_similarity([x]))
        np.testing.assert_allclose(D.feature_similarity(x), [1.0])
        np.testing.assert_allclose(D.token_similarity(x), D.token_similarity([x]))
    for m in (a, vitc.from_numpy(a)):
        np.testing.assert_allclose(D.attention_similarity(m), D.attention_similarity([m]))
        np.testing.assert_allclose(D.head_similarity(m), D.head_similarity([m]))
        np.testing.assert_allclose(D.attention_spread(m), D.attention_spread([m]))
    with pytest.raises(ValueError, match="feature_similarity: expected a non-empty list"):
        D.feature_similarity([])
