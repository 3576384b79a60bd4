"""MAPHead against timm's AttentionPoolLatent with the same weights: output and every gradient."""
import functools

import numpy as np
import pytest
import torch
from timm.layers import AttentionPoolLatent

import vitc
from vitc import nn


def _pair(dim, heads, mlp_dim, qkv_bias=True):
    vitc.manual_seed(0)
    m = nn.MAPHead(dim, heads, mlp_dim, qkv_bias=qkv_bias)
    t = AttentionPoolLatent(dim, num_heads=heads, mlp_ratio=mlp_dim / dim, qkv_bias=qkv_bias,
                            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6)).double()
    rng = np.random.default_rng(0)
    names = {"probe": "latent", "mlp.net.0.weight": "mlp.fc1.weight", "mlp.net.0.bias": "mlp.fc1.bias",
             "mlp.net.3.weight": "mlp.fc2.weight", "mlp.net.3.bias": "mlp.fc2.bias"}
    sd = {}
    for k, p in m.named_parameters():
        v = rng.normal(0, 0.3, size=p.shape).astype(np.float32)
        p.data.copy_(vitc.from_numpy(v))
        sd[names.get(k, k)] = torch.from_numpy(v.astype(np.float64))
    missing, unexpected = t.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return m, t, names


@pytest.mark.parametrize("dim,heads,mlp_dim,n,qkv_bias", [(16, 4, 32, 7, True), (24, 3, 40, 1, False)])
def test_matches_timm_forward_and_grads(dim, heads, mlp_dim, n, qkv_bias):
    m, t, names = _pair(dim, heads, mlp_dim, qkv_bias)
    x = np.random.default_rng(1).normal(size=(5, n, dim)).astype(np.float32)
    g = np.random.default_rng(2).normal(size=(5, dim)).astype(np.float32)
    xv = vitc.from_numpy(x.copy()).requires_grad_()
    yv = m(xv)
    (yv * vitc.from_numpy(g)).sum().backward()
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    yt = t(xt)
    (yt * torch.from_numpy(g.astype(np.float64))).sum().backward()
    np.testing.assert_allclose(yv.detach().numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xv.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    tp = dict(t.named_parameters())
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[names.get(k, k)].grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=k)


def test_learns_to_pick_the_marked_token():
    """the class is the feature of one token whose position varies: attention pooling must find it"""
    vitc.manual_seed(0)
    rng = np.random.default_rng(0)
    head, cls = nn.MAPHead(16, 2, 32), nn.Linear(16, 4)
    opt = vitc.optim.Adam(list(head.parameters()) + list(cls.parameters()), lr=3e-3)
    losses = []
    for step in range(150):
        y = rng.integers(0, 4, 32)
        x = rng.normal(0, 0.5, size=(32, 6, 16)).astype(np.float32)
        pos = rng.integers(0, 6, 32)
        x[np.arange(32), pos, 0] = 4.0          # the marker
        x[np.arange(32), pos, 1 + y] += 3.0      # the label lives in the marked token only
        loss = vitc.cross_entropy(cls(head(vitc.from_numpy(x))), vitc.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])


def test_bad_input():
    with pytest.raises(ValueError, match=r"heads \(3\) must divide dim \(16\)"):
        nn.MAPHead(16, 3, 32)
    with pytest.raises(ValueError, match=r"tokens of shape \(B, N, 16\)"):
        nn.MAPHead(16, 4, 32)(vitc.zeros(2, 16))
