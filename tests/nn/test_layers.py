"""Every vitc.nn layer against its torch.nn counterpart (same weights: outputs, input and parameter
gradients, running buffers), and a learning test per module: the loss falls on a tiny problem."""
import numpy as np
import pytest
import torch

import vitc
from vitc import nn, optim

RNG = np.random.default_rng(0)


def _t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def compare(vmod, tmod, x, rtol=1e-4, atol=1e-5, train=True, grad=True):
    """Copy tmod's weights into vmod, run both on x, compare outputs, grads and buffers."""
    vmod.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})
    vmod.train(train)
    tmod.train(train)
    vx = vitc.tensor(x, requires_grad=grad)
    tx = _t(x, grad)
    vy, ty = vmod(vx), tmod(tx)
    np.testing.assert_allclose(vy.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=atol, err_msg="forward")
    if grad:
        g = RNG.standard_normal(ty.shape).astype(np.float32)
        (vy * vitc.tensor(g)).sum().backward()
        (ty * _t(g)).sum().backward()
        np.testing.assert_allclose(vx.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=atol, err_msg="input grad")
        tp = dict(tmod.named_parameters())
        for n, p in vmod.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=rtol, atol=atol, err_msg=n)
    tb = dict(tmod.named_buffers())
    for n, b in vmod.named_buffers():
        np.testing.assert_allclose(b.numpy(), tb[n].numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def x_(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- parity with torch.nn ---------------------------------------------------------------------

def test_linear():
    compare(nn.Linear(7, 5), torch.nn.Linear(7, 5), x_(3, 4, 7))
    compare(nn.Linear(7, 5, bias=False), torch.nn.Linear(7, 5, bias=False), x_(6, 7))
    with pytest.raises(ValueError, match="last dimension must be 7"):
        nn.Linear(7, 5)(vitc.zeros(2, 6))


def test_linear_default_init_bounds():
    vitc.manual_seed(0)
    lin = nn.Linear(400, 300)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    bound = 1 / 20
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound and abs(w.mean()) < 0.01 * bound


@pytest.mark.parametrize("eps,affine,bias", [(1e-5, True, True), (1e-6, True, False), (1e-5, False, False)])
def test_layer_norm(eps, affine, bias):
    t = torch.nn.LayerNorm(12, eps=eps, elementwise_affine=affine, bias=bias)
    if affine:
        with torch.no_grad():
            t.weight.normal_()
            if bias:
                t.bias.normal_()
    compare(nn.LayerNorm(12, eps=eps, elementwise_affine=affine, bias=bias), t, x_(2, 5, 12))


@pytest.mark.parametrize("shape", [(8, 6), (4, 6, 5)])
def test_batch_norm_1d(shape):
    t = torch.nn.BatchNorm1d(6)
    v = nn.BatchNorm1d(6)
    compare(v, t, x_(*shape))  # training: batch stats, running stats updated
    compare(v, t, x_(*shape))
    assert int(v.num_batches_tracked.numpy()) == 2
    compare(v, t, x_(*shape), train=False)  # eval: running stats


def test_batch_norm_2d_and_momentum_none():
    compare(nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), x_(4, 3, 5, 5))
    v, t = nn.BatchNorm2d(3, momentum=None), torch.nn.BatchNorm2d(3, momentum=None)
    for _ in range(3):
        compare(v, t, x_(2, 3, 4, 4))
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(vitc.zeros(2, 3))


class TorchTokenBN(torch.nn.Module):
    """The article's Batch_Norm: rearrange 'b n d -> b d n', BatchNorm1d, back."""

    def __init__(self, f):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(f)

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


def test_token_batch_norm():
    t = TorchTokenBN(8)
    v = nn.TokenBatchNorm(8)
    # same parameter names without the wrapper prefix
    t_sd = lambda: {k[3:]: p for k, p in t.state_dict().items()}  # noqa: E731

    class W(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = v

        def forward(self, x):
            return self.bn(x)

    w = W()
    compare(w, t, x_(3, 5, 8))
    compare(w, t, x_(3, 5, 8), train=False)
    assert set(t_sd()) == set(v.state_dict())
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        v(vitc.zeros(3, 8))


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu(approx):
    compare(nn.GELU(approx), torch.nn.GELU(approximate=approx), x_(4, 9))
    with pytest.raises(ValueError):
        nn.GELU("fast")


@pytest.mark.parametrize("v,t", [(nn.ReLU(), torch.nn.ReLU()), (nn.Tanh(), torch.nn.Tanh()),
                                 (nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
                                 (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)), (nn.Identity(), torch.nn.Identity()),
                                 (nn.Flatten(), torch.nn.Flatten())])
def test_parameter_free(v, t):
    compare(v, t, x_(3, 4, 5))


def test_dropout_and_drop_path():
    x = vitc.ones(200, 50)
    d = nn.Dropout(0.3)
    y = d(x).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02 and np.allclose(y[kept], 1 / 0.7)
    d.eval()
    assert d(x) is x
    dp = nn.DropPath(0.25)
    z = dp(vitc.ones(400, 3, 4)).numpy()
    per_sample = z.reshape(400, -1)
    assert np.all((per_sample == 0).all(1) | (per_sample == per_sample[:, :1]).all(1))  # one draw per sample
    assert abs((per_sample[:, 0] != 0).mean() - 0.75) < 0.07
    dp.eval()
    np.testing.assert_array_equal(dp(vitc.ones(2, 3)).numpy(), 1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), bias=False), dict(kernel_size=3, groups=2, padding=1)])
def test_conv2d(kw):
    compare(nn.Conv2d(4, 6, **kw), torch.nn.Conv2d(4, 6, **kw), x_(2, 4, 7, 8))


def test_pooling():
    x = x_(2, 3, 8, 8)
    compare(nn.MaxPool2d(2), torch.nn.MaxPool2d(2), x)
    compare(nn.AvgPool2d(3, stride=2, padding=1), torch.nn.AvgPool2d(3, stride=2, padding=1), x)
    compare(nn.AdaptiveAvgPool2d(1), torch.nn.AdaptiveAvgPool2d(1), x)


def test_cross_entropy_loss_module():
    z = x_(6, 5)
    y = RNG.integers(0, 5, 6)
    for ls in (0.0, 0.1):
        for red in ("mean", "sum"):
            v = nn.CrossEntropyLoss(label_smoothing=ls, reduction=red)(vitc.tensor(z), vitc.tensor(y))
            t = torch.nn.CrossEntropyLoss(label_smoothing=ls, reduction=red)(_t(z), _t(y))
            assert v.item() == pytest.approx(t.item(), rel=1e-5)
    soft = np.abs(x_(6, 5))
    soft /= soft.sum(1, keepdims=True)
    v = nn.CrossEntropyLoss()(vitc.tensor(z), vitc.tensor(soft))
    assert v.item() == pytest.approx(torch.nn.CrossEntropyLoss()(_t(z), _t(soft)).item(), rel=1e-5)
    w = np.abs(x_(5)) + 0.1
    for ls in (0.0, 0.1):
        v = nn.CrossEntropyLoss(weight=vitc.tensor(w), label_smoothing=ls)(vitc.tensor(z), vitc.tensor(y))
        t = torch.nn.CrossEntropyLoss(weight=_t(w), label_smoothing=ls)(_t(z), _t(y))
        assert v.item() == pytest.approx(t.item(), rel=1e-5)
    assert "weight" in nn.CrossEntropyLoss(weight=vitc.tensor(w)).state_dict()
    with pytest.raises(ValueError):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(TypeError, match="weight"):
        nn.CrossEntropyLoss(weight=[1.0, 2.0])
    with pytest.raises(ValueError):
        nn.CrossEntropyLoss(weight=vitc.tensor(np.ones(3, np.float32)))(vitc.tensor(z), vitc.tensor(y))


def test_attention_block_and_feedforward_vs_torch():
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "models"))
    from torch_vit import TorchAttention, TorchBlock, TorchFeedForward

    compare(nn.Attention(16, heads=4, dim_head=8), TorchAttention(16, 4, 8), x_(2, 5, 16))
    compare(nn.Attention(16, heads=1, dim_head=16, qkv_bias=True), TorchAttention(16, 1, 16, qkv_bias=True), x_(2, 5, 16))
    # 8 images: both projections run fused inside qkv_attention (csrc/ops/attention/ stages whole images)
    compare(nn.Attention(16, heads=4, dim_head=8), TorchAttention(16, 4, 8), x_(8, 5, 16))
    assert isinstance(nn.Attention(16, heads=1, dim_head=16).to_out, nn.Identity)
    compare(nn.FeedForward(16, 32), TorchFeedForward(16, 32), x_(2, 5, 16))
    compare(nn.TransformerBlock(16, 2, 8, 32), TorchBlock(16, 2, 8, 32, 0.0, False, 1e-5, "none"), x_(2, 5, 16))
    att = nn.Attention(16, heads=4, dim_head=8)
    out, maps = att(vitc.randn(2, 5, 16), return_attention=True)
    assert out.shape == (2, 5, 16) and maps.shape == (2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"\(B, T, 16\)"):
        att(vitc.zeros(2, 16))


def test_attention_hooks_take_the_module_path():
    """A hook on to_qkv or on to_out's Linear must run, so Attention then calls those modules instead
    of folding them into qkv_attention; the result is the same either way (bitwise at the seed
    ViT's sizes, where the separate Linears take vitc's own GEMM kernel, as the fused op does)."""
    att = nn.Attention(64, heads=8, dim_head=64)
    x = vitc.randn(8, 17, 64)
    with vitc.no_grad():
        plain = att(x).numpy()
        for mod in (att.to_qkv, att.to_out[0], att.to_out):
            seen = []
            h = mod.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
            np.testing.assert_array_equal(att(x).numpy(), plain)
            h.remove()
            assert len(seen) == 1, mod


def test_feedforward_fused_only_when_no_dropout_applies(monkeypatch):
    # p = 0 (train) and eval run vitc.linear_gelu_linear; p > 0 in training keeps the three layers
    calls = []
    fused = vitc.linear_gelu_linear
    monkeypatch.setattr(vitc, "linear_gelu_linear", lambda *a: calls.append(1) or fused(*a))
    x = vitc.randn(3, 4, 8)
    ff = nn.FeedForward(8, 16, dropout=0.5)
    ff.eval()
    y_fused = ff(x)
    assert calls == [1]
    ff.train()
    vitc.manual_seed(0)
    ff(x)
    assert calls == [1]  # dropout active: unfused
    expect = ff.net[3](ff.net[1](ff.net[0](x)))
    np.testing.assert_allclose(y_fused.detach().numpy(), expect.detach().numpy(), rtol=1e-6, atol=1e-6)
    nn.FeedForward(8, 16)(x)
    assert calls == [1, 1]
    nn.FeedForward(8, 16, mid_norm="batch")(x)
    assert calls == [1, 1]


# ---- every module learns ------------------------------------------------------------------------

class Head(nn.Module):
    """Wrap a module so any output shape feeds a scalar regression loss."""

    def __init__(self, body, out_features):
        super().__init__()
        self.body = body
        self.head = nn.Linear(out_features, 1)

    def forward(self, x):
        y = self.body(x)
        return self.head(y.reshape(y.shape[0], -1))


def _mods():
    seq = lambda *m: nn.Sequential(*m)  # noqa: E731
    return {
        "Linear": (lambda: seq(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)), (6,), 4),
        "LayerNorm": (lambda: seq(nn.Linear(6, 16), nn.LayerNorm(16), nn.Linear(16, 4)), (6,), 4),
        "BatchNorm1d": (lambda: seq(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)), (6,), 4),
        "BatchNorm2d": (lambda: seq(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                    nn.Linear(4 * 36, 4)), (2, 6, 6), 4),
        "TokenBatchNorm": (lambda: seq(nn.Linear(6, 16), nn.TokenBatchNorm(16), nn.GELU(), nn.Linear(16, 4)), (3, 6), 12),
        "GELU": (lambda: seq(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 4)), (6,), 4),
        "ReLU": (lambda: seq(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)), (6,), 4),
        "Tanh": (lambda: seq(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)), (6,), 4),
        "Sigmoid": (lambda: seq(nn.Linear(6, 16), nn.Sigmoid(), nn.Linear(16, 4)), (6,), 4),
        "Softmax": (lambda: seq(nn.Linear(6, 16), nn.Softmax(dim=-1), nn.Linear(16, 4)), (6,), 4),
        "Dropout": (lambda: seq(nn.Linear(6, 32), nn.Dropout(0.1), nn.GELU(), nn.Linear(32, 4)), (6,), 4),
        "DropPath": (lambda: nn.TransformerBlock(6, 2, 4, 12, drop_path=0.1), (3, 6), 18),
        "Identity+ModuleList": (lambda: _ListNet(), (6,), 4),
        "ModuleDict": (lambda: _DictNet(), (6,), 4),
        "Conv2d": (lambda: seq(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(27, 4)), (2, 6, 6), 4),
        "MaxPool2d": (lambda: seq(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4)),
                      (2, 6, 6), 4),
        "AvgPool2d": (lambda: seq(nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 4)),
                      (2, 6, 6), 4),
        "AdaptiveAvgPool2d": (lambda: seq(nn.Conv2d(2, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                              (2, 6, 6), 4),
        "Attention": (lambda: nn.Attention(6, heads=2, dim_head=4), (3, 6), 18),
        "FeedForward": (lambda: nn.FeedForward(6, 12), (3, 6), 18),
        "TransformerBlock": (lambda: nn.TransformerBlock(6, 2, 4, 12), (3, 6), 18),
        "Transformer": (lambda: nn.Transformer(6, 2, 2, 4, 12), (3, 6), 18),
        "Patchify": (lambda: seq(nn.Patchify(2), nn.Linear(8, 3)), (2, 4, 4), 12),
    }


class _ListNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(6, 16), nn.Identity(), nn.Linear(16, 4)])

    def forward(self, x):
        for m in self.layers:
            x = m(x)
            if isinstance(m, nn.Linear) and m.out_features == 16:
                x = vitc.tanh(x)
        return x


class _DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.parts = nn.ModuleDict({"a": nn.Linear(6, 16), "b": nn.Linear(16, 4)})

    def forward(self, x):
        return self.parts["b"](vitc.tanh(self.parts["a"](x)))


@pytest.mark.parametrize("name", list(_mods()))
def test_module_learns(name):
    build, in_shape, feat = _mods()[name]
    vitc.manual_seed(1)
    model = Head(build(), feat)
    rng = np.random.default_rng(2)
    x = vitc.tensor(rng.standard_normal((16,) + in_shape).astype(np.float32))
    y = vitc.tensor(rng.standard_normal((16, 1)).astype(np.float32))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        d = model(x) - y
        loss = (d * d).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (name, losses[0], losses[-1])


def test_cross_entropy_learns():
    vitc.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.GELU(), nn.Linear(16, 3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    opt = optim.Adam(model.parameters(), lr=2e-2)
    crit = nn.CrossEntropyLoss(label_smoothing=0.05)
    first = None
    for _ in range(80):
        opt.zero_grad()
        loss = crit(model(vitc.tensor(x)), vitc.tensor(y))
        loss.backward()
        opt.step()
        first = first or loss.item()
    assert loss.item() < 0.5 * first
