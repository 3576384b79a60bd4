"""vitc.nn.Module / Parameter semantics against torch.nn.Module: registration, traversal order,
state_dict round trips and strict-mode errors, modes, zero_grad, apply, hooks, repr."""
import copy
import pickle

import numpy as np
import pytest
import torch

import vitc
from vitc import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
        self.head = nn.Sequential(nn.GELU(), nn.Linear(8, 3))
        self.scale = nn.Parameter(vitc.ones(3))
        self.register_buffer("steps", vitc.zeros(()))
        self.register_buffer("cache", vitc.zeros(2), persistent=False)

    def forward(self, x):
        x = self.norm(self.fc1(x))
        for b in self.blocks:
            x = b(x)
        return self.head(x) * self.scale


class TNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)])
        self.head = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Linear(8, 3))
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.register_buffer("steps", torch.zeros(()))
        self.register_buffer("cache", torch.zeros(2), persistent=False)


def test_parameter_is_tensor_and_shares_memory():
    data = vitc.zeros(3)
    p = nn.Parameter(data)
    assert isinstance(p, vitc.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf
    assert p.data_ptr() == data.data_ptr()
    assert not nn.Parameter(vitc.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:")
    with pytest.raises(TypeError, match="vitc.Tensor"):
        nn.Parameter(np.zeros(3))


def test_traversal_order_matches_torch():
    v, t = Net(), TNet()
    assert [n for n, _ in v.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in v.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in v.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in v.named_children()] == [n for n, _ in t.named_children()]
    assert list(v.state_dict()) == list(t.state_dict())
    assert len(list(v.parameters(recurse=False))) == 1
    assert v.get_submodule("blocks.1") is v.blocks[1]
    assert v.get_parameter("head.1.bias") is v.head[1].bias
    assert v.num_parameters() == sum(p.numel() for p in t.parameters())


def test_shared_module_listed_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.named_parameters(remove_duplicate=False))) == 4


def test_state_dict_round_trip_and_torch_interop():
    v = Net()
    t = TNet()
    t.load_state_dict({k: torch.from_numpy(a.numpy().copy()) for k, a in v.state_dict().items()})
    w = Net()
    res = w.load_state_dict({k: p.detach().numpy() for k, p in t.state_dict().items()})
    assert res.missing_keys == [] and res.unexpected_keys == []
    for (k, a), (_, b) in zip(v.state_dict().items(), w.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    # values are copied, not aliased
    assert w.fc1.weight.data_ptr() != v.fc1.weight.data_ptr()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(w(vitc.tensor(x)).detach().numpy(), v(vitc.tensor(x)).detach().numpy())


def test_state_dict_shares_memory_and_skips_non_persistent():
    v = Net()
    sd = v.state_dict()
    assert "cache" not in sd and "steps" in sd
    assert sd["fc1.weight"].data_ptr() == v.fc1.weight.data_ptr()
    assert not sd["fc1.weight"].requires_grad
    assert v.state_dict(keep_vars=True)["fc1.weight"] is v.fc1.weight


def test_strict_errors_like_torch():
    v = Net()
    sd = dict(v.state_dict())
    del sd["fc1.bias"]
    sd["bogus.weight"] = vitc.zeros(1)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "fc1.bias"') as e:
        v.load_state_dict(sd)
    assert 'Unexpected key(s) in state_dict: "bogus.weight"' in str(e.value)
    assert "Error(s) in loading state_dict for Net" in str(e.value)
    res = v.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc1.bias"] and res.unexpected_keys == ["bogus.weight"]
    bad = dict(v.state_dict())
    bad["fc1.weight"] = vitc.zeros(3, 3)
    before = v.fc1.bias.detach().numpy().copy()
    bad["fc1.bias"] = vitc.ones(8)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1.weight: copying a param with shape \(3, 3\)"):
        v.load_state_dict(bad, strict=False)
    np.testing.assert_array_equal(v.fc1.bias.detach().numpy(), before)  # nothing half-loaded
    with pytest.raises(TypeError):
        v.load_state_dict([1, 2])


def test_load_state_dict_assign():
    v = Net()
    new = vitc.ones(8, 4)
    v.load_state_dict({**v.state_dict(), "fc1.weight": new}, assign=True)
    assert isinstance(v.fc1.weight, nn.Parameter)
    np.testing.assert_array_equal(v.fc1.weight.detach().numpy(), np.ones((8, 4)))


def test_train_eval_and_zero_grad():
    v = Net()
    assert all(m.training for m in v.modules())
    assert v.eval() is v and not any(m.training for m in v.modules())
    v.train()
    assert v.blocks[0].training
    with pytest.raises(ValueError):
        v.train("yes")
    out = v(vitc.randn(2, 4)).sum()
    out.backward()
    assert v.fc1.weight.grad is not None
    v.zero_grad(set_to_none=False)
    assert np.all(v.fc1.weight.grad.numpy() == 0)
    v.zero_grad()
    assert v.fc1.weight.grad is None
    v.requires_grad_(False)
    assert not any(p.requires_grad for p in v.parameters())


def test_setattr_rules():
    m = nn.Module()
    m.w = nn.Parameter(vitc.zeros(2))
    with pytest.raises(TypeError, match="cannot assign"):
        m.w = vitc.zeros(2)
    m.w = None
    assert "w" in m._parameters and m.w is None
    m.sub = nn.Linear(1, 1)
    with pytest.raises(TypeError):
        m.sub = 3
    m.register_buffer("b", vitc.zeros(1))
    with pytest.raises(TypeError):
        m.b = [1]
    m.b = vitc.ones(1)
    assert m.b.numpy()[0] == 1
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("sub", vitc.zeros(1))
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", nn.Parameter(vitc.zeros(1)))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        m.nope
    del m.sub
    assert "sub" not in m._modules

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(vitc.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_apply_hooks_and_copy():
    v = Net()
    seen = []
    v.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 4
    calls = []
    h = v.fc1.register_forward_hook(lambda m, a, out: calls.append(out.shape))
    v(vitc.randn(3, 4))
    h.remove()
    v(vitc.randn(3, 4))
    assert calls == [(3, 8)]
    w = copy.deepcopy(v)
    assert w.fc1.weight.data_ptr() != v.fc1.weight.data_ptr()
    np.testing.assert_array_equal(w.fc1.weight.detach().numpy(), v.fc1.weight.detach().numpy())
    u = pickle.loads(pickle.dumps(v))
    assert isinstance(u.scale, nn.Parameter)
    np.testing.assert_array_equal(u.head[1].weight.detach().numpy(), v.head[1].weight.detach().numpy())


def test_repr_matches_torch():
    v, t = Net(), TNet()
    # torch prints LayerNorm's tuple the same way; GELU and Linear lines too
    assert repr(v.fc1) == repr(t.fc1)
    assert repr(v.norm) == repr(t.norm)
    assert repr(v.head) == repr(t.head)
    assert repr(nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])) == \
        repr(torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)]))
    assert repr(nn.Dropout(0.1)) == repr(torch.nn.Dropout(0.1))
    assert repr(nn.Conv2d(3, 8, 3, stride=2, padding=1)) == repr(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1))
    assert repr(nn.BatchNorm1d(4)) == repr(torch.nn.BatchNorm1d(4))


def test_containers():
    s = nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1))
    assert len(s) == 3 and isinstance(s[-1], nn.Linear) and len(s[:2]) == 2
    with pytest.raises(IndexError):
        s[3]
    ml = nn.ModuleList()
    ml.append(nn.Linear(1, 1))
    ml += [nn.Identity()]
    ml.insert(0, nn.GELU())
    assert [type(m).__name__ for m in ml] == ["GELU", "Linear", "Identity"]
    with pytest.raises(TypeError):
        ml.extend(nn.Linear(1, 1))
    md = nn.ModuleDict({"a": nn.Linear(1, 2)})
    md["b"] = nn.GELU()
    assert list(md.keys()) == ["a", "b"] and "a" in md and len(list(md.parameters())) == 2
    assert md.pop("b").__class__.__name__ == "GELU"
