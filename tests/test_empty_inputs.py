"""Zero-size inputs through every op family, forward and backward, against PyTorch 2.x: where
PyTorch computes (an empty output, an empty or zero gradient, NaN for a mean over nothing) vitc
gives the same shapes and values; where PyTorch raises, vitc raises one of the promised clear
exceptions (ValueError, RuntimeError, IndexError, TypeError), never a crash or a foreign error."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitc
from opcheck import assert_close

PROMISED = (ValueError, RuntimeError, IndexError, TypeError)
RNG = np.random.default_rng(0)


def _arr(spec):
    """spec: a shape (float32 in [-1, 1]) or an ('i', shape, high) int64 or ('b', shape) bool array."""
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        if spec[0] == "i":
            return RNG.integers(0, spec[2], size=spec[1]).astype(np.int64)
        return RNG.random(spec[1]) > 0.5
    return RNG.uniform(-1, 1, size=spec).astype(np.float32)


def _outputs(out):
    out = out if isinstance(out, (tuple, list)) else (out,)
    return list(out)


def compare(vfn, tfn, specs):
    arrays = [_arr(s) for s in specs]
    tin = [torch.from_numpy(a.copy()).requires_grad_(a.dtype == np.float32) for a in arrays]
    vin = []
    for a in arrays:
        v = vitc.from_numpy(a.copy())
        if a.dtype == np.float32:
            v.requires_grad = True
        vin.append(v)
    try:
        touts = _outputs(tfn(*tin))
        ups = [RNG.uniform(-1, 1, size=tuple(t.shape)).astype(np.float32) for t in touts]
        tloss = sum((t * torch.from_numpy(u)).sum() for t, u in zip(touts, ups) if t.requires_grad)
        if isinstance(tloss, torch.Tensor):
            tloss.backward()
    except (RuntimeError, IndexError, ValueError) as e:
        with pytest.raises(PROMISED):
            vouts = _outputs(vfn(*vin))
            vloss = sum((v * vitc.from_numpy(u)).sum() for v, u in zip(vouts, ups) if v.requires_grad)
            if isinstance(vloss, vitc.Tensor):
                vloss.backward()
        return f"both raise (torch: {str(e)[:60]})"
    vouts = _outputs(vfn(*vin))
    assert len(vouts) == len(touts)
    for k, (v, t) in enumerate(zip(vouts, touts)):
        assert_close(v.detach().numpy(), t.detach().numpy(), 1e-5, 1e-6, f"forward output {k}")
    vloss = sum((v * vitc.from_numpy(u)).sum() for v, u in zip(vouts, ups) if v.requires_grad)
    if isinstance(vloss, vitc.Tensor):
        vloss.backward()
    for i, (v, t) in enumerate(zip(vin, tin)):
        if t.grad is None:
            assert v.grad is None or not v.grad.numpy().any(), f"input {i}: vitc has a nonzero gradient"
            continue
        assert v.grad is not None, f"input {i}: no vitc gradient"
        assert_close(v.grad.numpy(), t.grad.numpy(), 1e-4, 1e-5, f"gradient of input {i}")
    return "computed"


def _ln(m):
    return lambda x, w, b: (vitc.layer_norm if m is vitc else F.layer_norm)(x, (x.shape[-1],), w, b)


def _bn(train):
    def v(x, w, b):
        return vitc.batch_norm(x, vitc.zeros(w.shape[0]), vitc.ones(w.shape[0]), w, b, training=train)

    def t(x, w, b):
        return F.batch_norm(x, torch.zeros(w.shape[0]), torch.ones(w.shape[0]), w, b, training=train)
    return v, t


def _tbn(train):
    def v(x, w, b):
        return vitc.token_batch_norm(x, vitc.zeros(w.shape[0]), vitc.ones(w.shape[0]), w, b, training=train)

    def t(x, w, b):  # BatchNorm over the features of (B, T, F) = batch_norm of (B, F, T)
        y = F.batch_norm(x.transpose(1, 2), torch.zeros(w.shape[0]), torch.ones(w.shape[0]), w, b, training=train)
        return y.transpose(1, 2)
    return v, t


def _same(name, tname=None, **kw):
    tf = getattr(F, tname or name, None) or getattr(torch, tname or name)
    return (lambda *a: getattr(vitc, name)(*a, **kw)), (lambda *a: tf(*a, **kw))


# (id, (vitc fn, torch fn), [input specs per case]); each case has at least one zero-size dim
UNARY = ["abs", "exp", "neg", "relu", "sigmoid", "silu", "gelu", "tanh", "square", "softmax", "log_softmax"]
ZERO_SHAPES = [(0,), (0, 3), (3, 0), (2, 0, 4)]
CASES = []
for name in UNARY:
    kw = {"dim": -1} if "softmax" in name else {}
    CASES += [(f"{name}-{s}", _same(name, **kw), [s]) for s in ZERO_SHAPES]
for name in ["add", "sub", "mul", "div", "maximum"]:
    if hasattr(vitc, name):
        CASES += [(f"{name}-{a}-{b}", _same(name), [a, b]) for a, b in [((0, 3), (0, 3)), ((0, 3), (3,)), ((2, 0), (1, 0))]]
CASES += [
    ("pow", _same("pow", exponent=2.0), [(0, 3)]),
    ("clamp", _same("clamp", min=-0.5, max=0.5), [(3, 0)]),
    ("leaky_relu", _same("leaky_relu", negative_slope=0.1), [(0, 2)]),
    ("where", ((lambda c, x, y: vitc.where(c, x, y)), (lambda c, x, y: torch.where(c, x, y))),
     [("b", (0, 3)), (0, 3), (0, 3)]),
    ("masked_fill", ((lambda x, m: vitc.masked_fill(x, m, 0.5)), (lambda x, m: x.masked_fill(m, 0.5))),
     [(2, 0), ("b", (2, 0))]),
]
for dim in (0, 1, None):
    kw = {} if dim is None else {"dim": dim}
    for name in ["sum", "mean", "amax", "amin", "logsumexp", "std", "var"]:
        if name in ("amax", "amin", "logsumexp") and dim is None:
            continue
        CASES += [(f"{name}-dim{dim}-{s}", _same(name, **kw), [s]) for s in [(0, 3), (3, 0)]]
for name in ["argmax", "argmin"]:
    CASES += [(f"{name}-dim{d}-{s}", _same(name, dim=d), [s]) for d in (0, 1) for s in [(0, 3), (3, 0)]]
CASES += [
    ("max-dim", ((lambda x: tuple(vitc.max(x, 1))), (lambda x: tuple(torch.max(x, 1)))), [(0, 3)]),
    ("max-dim-empty", ((lambda x: tuple(vitc.max(x, 1))), (lambda x: tuple(torch.max(x, 1)))), [(3, 0)]),
    ("reshape", ((lambda x: x.reshape(3, 0, 2)), (lambda x: x.reshape(3, 0, 2))), [(0, 6)]),
    ("permute", ((lambda x: x.permute(2, 0, 1)), (lambda x: x.permute(2, 0, 1))), [(2, 0, 4)]),
    ("transpose", ((lambda x: x.transpose(0, 1)), (lambda x: x.transpose(0, 1))), [(0, 5)]),
    ("flatten", ((lambda x: vitc.flatten(x, 1)), (lambda x: torch.flatten(x, 1))), [(2, 0, 4)]),
    ("unsqueeze", ((lambda x: x.unsqueeze(1)), (lambda x: x.unsqueeze(1))), [(0, 3)]),
    ("squeeze", ((lambda x: x.squeeze(1)), (lambda x: x.squeeze(1))), [(0, 1, 3)]),
    ("cat", ((lambda a, b: vitc.cat([a, b], 0)), (lambda a, b: torch.cat([a, b], 0))), [(0, 3), (2, 3)]),
    ("cat-empty", ((lambda a, b: vitc.cat([a, b], 1)), (lambda a, b: torch.cat([a, b], 1))), [(2, 0), (2, 0)]),
    ("stack", ((lambda a, b: vitc.stack([a, b], 1)), (lambda a, b: torch.stack([a, b], 1))), [(0, 3), (0, 3)]),
    ("split", ((lambda x: tuple(vitc.split(x, 2, 1))), (lambda x: tuple(torch.split(x, 2, 1)))), [(0, 5)]),
    ("chunk", ((lambda x: tuple(vitc.chunk(x, 2, 0))), (lambda x: tuple(torch.chunk(x, 2, 0)))), [(4, 0)]),
    ("narrow", ((lambda x: vitc.narrow(x, 1, 1, 0)), (lambda x: torch.narrow(x, 1, 1, 0))), [(2, 3)]),
    ("select", ((lambda x: vitc.select(x, 1, 1)), (lambda x: torch.select(x, 1, 1))), [(0, 3)]),
    ("flip", ((lambda x: vitc.flip(x, [0, 1])), (lambda x: torch.flip(x, [0, 1]))), [(0, 3)]),
    ("movedim", ((lambda x: vitc.movedim(x, 0, 2)), (lambda x: torch.movedim(x, 0, 2))), [(0, 2, 3)]),
    ("broadcast_to", ((lambda x: vitc.broadcast_to(x, (0, 3))), (lambda x: torch.broadcast_to(x, (0, 3)))), [(1, 3)]),
    ("unbind", ((lambda x: tuple(vitc.unbind(x, 1))), (lambda x: tuple(torch.unbind(x, 1)))), [(0, 2)]),
    ("index_select", ((lambda x, i: vitc.index_select(x, 0, i)), (lambda x, i: torch.index_select(x, 0, i))),
     [(3, 2), ("i", (0,), 3)]),
    ("index_select-empty-src", ((lambda x, i: vitc.index_select(x, 1, i)),
                                (lambda x, i: torch.index_select(x, 1, i))), [(0, 3), ("i", (2,), 3)]),
    ("gather", ((lambda x, i: vitc.gather(x, 1, i)), (lambda x, i: torch.gather(x, 1, i))),
     [(0, 3), ("i", (0, 2), 3)]),
    ("take_along_dim", ((lambda x, i: vitc.take_along_dim(x, i, 1)), (lambda x, i: torch.take_along_dim(x, i, 1))),
     [(2, 3), ("i", (2, 0), 3)]),
    ("masked_select", ((lambda x, m: vitc.masked_select(x, m)), (lambda x, m: torch.masked_select(x, m))),
     [(0, 3), ("b", (0, 3))]),
    ("nonzero", ((lambda m: vitc.nonzero(m)), (lambda m: torch.nonzero(m))), [("b", (0, 3))]),
    ("matmul", _same("matmul"), [(0, 4), (4, 3)]),
    ("matmul-k0", _same("matmul"), [(2, 0), (0, 3)]),
    ("matmul-batched-k0", _same("matmul"), [(2, 3, 0), (0, 2)]),
    ("matmul-batched-n0", _same("matmul"), [(2, 3, 4), (4, 0)]),
    ("matmul-vec", _same("matmul"), [(2, 3, 0), (0,)]),
    ("mm", _same("mm"), [(3, 0), (0, 2)]),
    ("bmm", _same("bmm"), [(0, 2, 3), (0, 3, 4)]),
    ("bmm-k0", _same("bmm"), [(2, 2, 0), (2, 0, 4)]),
    ("linear", _same("linear"), [(0, 4), (3, 4), (3,)]),
    ("linear-in0", _same("linear"), [(2, 0), (3, 0), (3,)]),
    ("linear-out0", _same("linear"), [(2, 4), (0, 4), (0,)]),
    ("linear_gelu_linear-rows0", ((lambda x, w1, b1, w2, b2: vitc.linear_gelu_linear(x, w1, b1, w2, b2)),
                                  (lambda x, w1, b1, w2, b2: F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2))),
     [(0, 4), (5, 4), (5,), (2, 5), (2,)]),
    ("linear_gelu_linear-hidden0", ((lambda x, w1, b1, w2, b2: vitc.linear_gelu_linear(x, w1, b1, w2, b2)),
                                    (lambda x, w1, b1, w2, b2: F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2))),
     [(3, 4), (0, 4), (0,), (2, 0), (2,)]),
    ("layer_norm-rows0", (_ln(vitc), _ln(torch)), [(0, 4), (4,), (4,)]),
    ("layer_norm-2-0-4", (_ln(vitc), _ln(torch)), [(2, 0, 4), (4,), (4,)]),
    ("batch_norm-train-N0", _bn(True), [(0, 3), (3,), (3,)]),
    ("batch_norm-train-N0-S", _bn(True), [(0, 3, 4), (3,), (3,)]),
    ("batch_norm-train-S0", _bn(True), [(2, 3, 0), (3,), (3,)]),
    ("batch_norm-eval-N0", _bn(False), [(0, 3), (3,), (3,)]),
    ("token_batch_norm-train-B0", _tbn(True), [(0, 4, 3), (3,), (3,)]),
    ("token_batch_norm-train-T0", _tbn(True), [(2, 0, 3), (3,), (3,)]),
    ("token_batch_norm-eval-B0", _tbn(False), [(0, 4, 3), (3,), (3,)]),
    ("conv2d-N0", _same("conv2d"), [(0, 2, 5, 5), (3, 2, 3, 3), (3,)]),
    ("conv2d-H0", _same("conv2d"), [(1, 2, 0, 5), (3, 2, 1, 1), (3,)]),
    ("max_pool2d-N0", _same("max_pool2d", kernel_size=2), [(0, 2, 4, 4)]),
    ("avg_pool2d-N0", _same("avg_pool2d", kernel_size=2), [(0, 2, 4, 4)]),
    ("adaptive_avg_pool2d-N0", _same("adaptive_avg_pool2d", output_size=1), [(0, 2, 4, 4)]),
    ("max_pool2d-H0", _same("max_pool2d", kernel_size=1), [(1, 2, 0, 4)]),
    ("cross_entropy-B0", ((lambda z, y: vitc.cross_entropy(z, y)), (lambda z, y: F.cross_entropy(z, y))),
     [(0, 5), ("i", (0,), 5)]),
    ("cross_entropy-B0-sum", ((lambda z, y: vitc.cross_entropy(z, y, reduction="sum")),
                              (lambda z, y: F.cross_entropy(z, y, reduction="sum"))), [(0, 5), ("i", (0,), 5)]),
    ("cross_entropy-soft-B0", ((lambda z, y: vitc.cross_entropy(z, y)), (lambda z, y: F.cross_entropy(z, y))),
     [(0, 5), (0, 5)]),
    ("cross_entropy-smooth-B0", ((lambda z, y: vitc.cross_entropy(z, y, label_smoothing=0.1)),
                                 (lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1))), [(0, 5), ("i", (0,), 5)]),
    ("nll_loss-B0", ((lambda z, y: vitc.nll_loss(z, y)), (lambda z, y: F.nll_loss(z, y))), [(0, 5), ("i", (0,), 5)]),
    ("mse_loss", _same("mse_loss"), [(0, 3), (0, 3)]),
    ("kl_div-batchmean", _same("kl_div", reduction="batchmean"), [(0, 3), (0, 3)]),
    ("kl_div-sum", _same("kl_div", reduction="sum"), [(0, 3), (0, 3)]),
    ("bce_logits", _same("binary_cross_entropy_with_logits"), [(0, 3), (0, 3)]),
    ("sdpa-B0", _same("scaled_dot_product_attention"), [(0, 2, 3, 4), (0, 2, 3, 4), (0, 2, 3, 4)]),
    ("sdpa-Lq0", _same("scaled_dot_product_attention"), [(1, 2, 0, 4), (1, 2, 3, 4), (1, 2, 3, 4)]),
    ("dropout-eval", ((lambda x: vitc.dropout(x, 0.5, training=False)), (lambda x: F.dropout(x, 0.5, training=False))),
     [(0, 3)]),
    ("dropout-train", ((lambda x: vitc.dropout(x, 0.5, training=True)), (lambda x: F.dropout(x, 0.5, training=True))),
     [(0, 3)]),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's "degrees of freedom is <= 0"
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_zero_size_inputs_match_pytorch(case):
    _, (vfn, tfn), specs = case
    compare(vfn, tfn, specs)


def test_soft_distillation_and_distillation_loss_on_an_empty_batch_are_nan_not_an_error():
    from vitc.losses import DistillationLoss, LabelSmoothingCrossEntropy, soft_distillation
    z = vitc.zeros((0, 5), requires_grad=True)
    for red in ("element_mean", "batchmean"):
        loss = soft_distillation(z, vitc.zeros((0, 5)), 3.0, red)
        assert np.isnan(loss.item())  # DeiT's torch code divides by numel() = 0: NaN as well
        loss.backward()
        assert z.grad.shape == (0, 5)
    teacher = vitc.nn.Linear(4, 5)
    for kind in ("soft", "hard"):
        crit = DistillationLoss(LabelSmoothingCrossEntropy(0.1), teacher, kind)
        out = crit(vitc.zeros((0, 4)), (vitc.zeros((0, 5)), vitc.zeros((0, 5))), vitc.from_numpy(np.zeros(0, np.int64)))
        assert np.isnan(out.item())


def test_batch_norm_module_on_an_empty_batch_leaves_running_stats_and_gives_zero_grads():
    bn_v, bn_t = vitc.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with vitc.no_grad():
        bn_v.running_mean.fill_(0.5)
    bn_t.running_mean.fill_(0.5)
    yv, yt = bn_v(vitc.zeros((0, 3), requires_grad=True)), bn_t(torch.zeros(0, 3, requires_grad=True))
    yv.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(bn_v.running_mean.numpy(), bn_t.running_mean.numpy())
    np.testing.assert_array_equal(bn_v.running_var.numpy(), bn_t.running_var.detach().numpy())
    np.testing.assert_array_equal(bn_v.weight.grad.numpy(), bn_t.weight.grad.numpy())
    np.testing.assert_array_equal(bn_v.bias.grad.numpy(), bn_t.bias.grad.numpy())


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4), (0, 1, 5)])
@pytest.mark.parametrize("view", ["base", "t", "permute", "narrow", "expand", "contiguous"])
def test_zero_size_tensors_are_contiguous_as_in_pytorch(shape, view):
    """A tensor with no elements is contiguous whatever its strides (torch's rule); before, vitc said
    False for zeros(3, 0) and any transposed empty view."""
    def make(x):
        if view == "t":
            return x.transpose(0, -1)
        if view == "permute":
            return x.permute(*reversed(range(x.ndim)))
        if view == "narrow":
            return x.narrow(0, 0, 0)
        if view == "expand":
            return x.unsqueeze(0).expand(2, *x.shape)
        return x.contiguous() if view == "contiguous" else x
    v, t = make(vitc.zeros(*shape)), make(torch.zeros(*shape))
    assert tuple(v.shape) == tuple(t.shape)
    assert v.is_contiguous() == t.is_contiguous() is True
    # ops that take the contiguous path still give torch's (empty) results
    assert tuple(v.sum(-1).shape) == tuple(t.sum(-1).shape)
    assert tuple(v.reshape(-1).shape) == tuple(t.reshape(-1).shape)
    assert tuple(vitc.matmul(v, vitc.ones(v.shape[-1], 2)).shape) == tuple(torch.matmul(t, torch.ones(t.shape[-1], 2)).shape)
    assert tuple(v.clone().shape) == tuple(t.clone().shape) and v.clone().is_contiguous()
