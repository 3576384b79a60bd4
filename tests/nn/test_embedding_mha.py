"""nn.Embedding, nn.MultiheadAttention, nn.ParameterList / ParameterDict against torch.nn with the same
weights: outputs, parameter and input gradients, state_dict names."""
import numpy as np
import pytest
import torch

import vitc
from vitc import nn

RNG = np.random.default_rng(7)


def _load_from_torch(vmod, tmod):
    vmod.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})


def _grads(mod):
    return {k: p.grad.numpy() for k, p in mod.named_parameters() if p.grad is not None}


def _compare_grads(vmod, tmod, rtol=1e-4, atol=1e-5):
    got, want = _grads(vmod), {k: p.grad.numpy() for k, p in tmod.named_parameters() if p.grad is not None}
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


# ---- Embedding --------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx):
    t = torch.nn.Embedding(6, 4, padding_idx=padding_idx)
    with torch.no_grad():
        t.weight.normal_()  # a nonzero padding row: its gradient must still be zero
    v = nn.Embedding(6, 4, padding_idx=padding_idx)
    _load_from_torch(v, t)
    idx = RNG.integers(0, 6, size=(3, 5))
    idx[0, :3] = 2  # repeated indices: their gradients add
    idx[1, 0] = 5
    up = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    vo, to = v(vitc.tensor(idx)), t(torch.tensor(idx))
    np.testing.assert_array_equal(vo.detach().numpy(), to.detach().numpy())
    (vo * vitc.tensor(up)).sum().backward()
    (to * torch.tensor(up)).sum().backward()
    _compare_grads(v, t, rtol=1e-6, atol=1e-6)
    if padding_idx is not None:
        assert not v.weight.grad.numpy()[padding_idx].any()
    fo = nn.functional.embedding(vitc.tensor(idx), v.weight.detach())
    np.testing.assert_array_equal(fo.numpy(), vo.detach().numpy())


def test_embedding_init_from_pretrained_and_errors():
    e = nn.Embedding(5, 3, padding_idx=1)
    assert not e.weight.detach().numpy()[1].any() and e.weight.detach().numpy().std() > 0
    w = vitc.randn(4, 2)
    f = nn.Embedding.from_pretrained(w)
    assert not f.weight.requires_grad
    np.testing.assert_array_equal(f(vitc.tensor([3, 0])).numpy(), w.numpy()[[3, 0]])
    with pytest.raises(IndexError, match="out of range"):
        e(vitc.tensor([5]))
    with pytest.raises(IndexError, match="out of range"):
        e(vitc.tensor([-1]))
    with pytest.raises(TypeError, match="int64"):
        e(vitc.tensor([1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 3, padding_idx=5)
    with pytest.raises(NotImplementedError, match="max_norm"):
        nn.Embedding(5, 3, max_norm=1.0)


# ---- MultiheadAttention -----------------------------------------------------------------------

def _mha_pair(E=8, H=2, **kw):
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(E, H, **kw)
    with torch.no_grad():
        for p in t.parameters():
            p.normal_(0, 0.3)  # nonzero biases too
    v = nn.MultiheadAttention(E, H, **{k: x for k, x in kw.items()})
    assert [k for k, _ in v.named_parameters()] == [k for k, _ in t.named_parameters()]
    _load_from_torch(v, t)
    return v, t


def _leaf(arr):
    v = vitc.tensor(arr, requires_grad=True)
    return v, torch.tensor(arr, requires_grad=True)


MHA_CASES = [
    dict(name="self", self_attn=True),
    dict(name="self-weights-per-head", self_attn=True, average=False),
    dict(name="self-batch-first", self_attn=True, batch_first=True),
    dict(name="cross", S=5),
    dict(name="cross-no-weights", S=5, need_weights=False),
    dict(name="key-padding-bool", self_attn=True, kpm="bool"),
    dict(name="attn-mask-float+kpm", S=5, kpm="bool", attn="float", need_weights=False),
    dict(name="attn-mask-bool-3d", S=5, attn="bool3"),
    dict(name="kdim-vdim", S=5, kdim=6, vdim=3),
    dict(name="no-bias", self_attn=True, bias=False, need_weights=False),
    dict(name="unbatched", self_attn=True, unbatched=True),
]


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("case", MHA_CASES, ids=[c["name"] for c in MHA_CASES])
def test_multihead_attention_matches_torch(case):
    E, H, N, L = 8, 2, 3, 4
    S = case.get("S", L)
    kw = dict(batch_first=case.get("batch_first", False), bias=case.get("bias", True))
    if "kdim" in case:
        kw.update(kdim=case["kdim"], vdim=case["vdim"])
    v, t = _mha_pair(E, H, **kw)
    shape = (lambda n: (n, E)) if case.get("unbatched") else \
        (lambda n: (N, n, E)) if kw["batch_first"] else (lambda n: (n, N, E))
    q = RNG.standard_normal(shape(L)).astype(np.float32)
    vq, tq = _leaf(q)
    if case.get("self_attn"):
        args_v, args_t = (vq, vq, vq), (tq, tq, tq)
    else:
        k = RNG.standard_normal(shape(S)[:-1] + (case.get("kdim", E),)).astype(np.float32)
        val = RNG.standard_normal(shape(S)[:-1] + (case.get("vdim", E),)).astype(np.float32)
        (vk, tk), (vv, tv) = _leaf(k), _leaf(val)
        args_v, args_t = (vq, vk, vv), (tq, tk, tv)
    extra_v, extra_t = {}, {}
    if case.get("kpm") == "bool":
        m = np.zeros((N, S), bool)
        m[0, -1] = m[2, :2] = True
        extra_v["key_padding_mask"], extra_t["key_padding_mask"] = vitc.tensor(m), torch.tensor(m)
    if case.get("attn") == "float":
        m = RNG.standard_normal((L, S)).astype(np.float32)
        extra_v["attn_mask"], extra_t["attn_mask"] = vitc.tensor(m), torch.tensor(m)
    if case.get("attn") == "bool3":
        m = RNG.random((N * H, L, S)) < 0.3
        m[:, :, 0] = False  # every query keeps a key
        extra_v["attn_mask"], extra_t["attn_mask"] = vitc.tensor(m), torch.tensor(m)
    nw, avg = case.get("need_weights", True), case.get("average", True)
    vo, vw = v(*args_v, need_weights=nw, average_attn_weights=avg, **extra_v)
    to, tw = t(*args_t, need_weights=nw, average_attn_weights=avg, **extra_t)
    np.testing.assert_allclose(vo.detach().numpy(), to.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert (vw is None) == (tw is None)
    if tw is not None:
        np.testing.assert_allclose(vw.detach().numpy(), tw.detach().numpy(), rtol=1e-4, atol=1e-5)
    up = RNG.standard_normal(to.shape).astype(np.float32)
    loss_v = (vo * vitc.tensor(up)).sum()
    loss_t = (to * torch.tensor(up)).sum()
    if tw is not None:
        upw = RNG.standard_normal(tw.shape).astype(np.float32)
        loss_v = loss_v + (vw * vitc.tensor(upw)).sum()
        loss_t = loss_t + (tw * torch.tensor(upw)).sum()
    loss_v.backward()
    loss_t.backward()
    _compare_grads(v, t)
    for a, b in zip(args_v, args_t):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_multihead_attention_state_dict_and_errors():
    t = torch.nn.MultiheadAttention(8, 4)
    v = nn.MultiheadAttention(8, 4)
    assert list(v.state_dict()) == list(t.state_dict())
    assert v.load_state_dict({k: x.numpy() for k, x in t.state_dict().items()}) is not None
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)
    x = vitc.randn(3, 2, 8)
    with pytest.raises(ValueError, match="attn_mask"):
        v(x, x, x, attn_mask=vitc.zeros(2, 2))
    with pytest.raises(ValueError, match="key_padding_mask"):
        v(x, x, x, key_padding_mask=vitc.zeros(3, 3, dtype=vitc.bool))
    with pytest.raises(ValueError, match="features"):
        v(vitc.randn(3, 2, 4), x, x)


def test_multihead_attention_dropout_only_in_training():
    v, _ = _mha_pair(8, 2, dropout=0.5)
    x = vitc.randn(4, 2, 8)
    v.eval()
    a, _ = v(x, x, x)
    b, _ = v(x, x, x)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    v.train()
    c, _ = v(x, x, x, need_weights=False)
    assert not np.allclose(c.detach().numpy(), a.detach().numpy())


# ---- ParameterList / ParameterDict --------------------------------------------------------------

def test_parameter_list_and_dict_register_like_torch():
    vm, tm = nn.Module(), torch.nn.Module()
    vm.pl = nn.ParameterList([vitc.ones(2), nn.Parameter(vitc.zeros(3))])
    tm.pl = torch.nn.ParameterList([torch.ones(2), torch.nn.Parameter(torch.zeros(3))])
    vm.pd = nn.ParameterDict({"b": vitc.ones(1), "a": vitc.zeros(2)})
    tm.pd = torch.nn.ParameterDict({"b": torch.ones(1), "a": torch.zeros(2)})
    vm.pl.append(vitc.full((4,), 2.0))
    tm.pl.append(torch.full((4,), 2.0))
    vm.pd["c"] = vitc.ones(5)
    tm.pd["c"] = torch.ones(5)
    assert list(vm.state_dict()) == list(tm.state_dict())
    assert [n for n, _ in vm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in vm.parameters())
    assert len(vm.pl) == 3 and vm.pl[-1].shape == (4,) and len(vm.pl[1:]) == 2
    assert "a" in vm.pd and vm.pd.pop("a").shape == (2,) and list(vm.pd.keys()) == ["b", "c"]
    vm.load_state_dict({k: v.detach().numpy() * 0 + 3 for k, v in vm.state_dict().items()})
    assert vm.pl[0].detach().numpy().tolist() == [3.0, 3.0]
    with pytest.raises(TypeError, match="ParameterList"):
        vm.pl.append("not a tensor")
    with pytest.raises(IndexError):
        vm.pl[5]
    with pytest.raises(KeyError):
        vm.pd["missing"]
