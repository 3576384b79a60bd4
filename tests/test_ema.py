"""vitc.utils.ModelEma against timm.utils.ModelEmaV3 on the same sequence of weights."""
import numpy as np
import pytest

import vitc
from vitc import nn
from vitc.utils import ModelEma

torch = pytest.importorskip("torch")
timm_utils = pytest.importorskip("timm.utils")


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.fc(x))



def _pair(seed):
    rng = np.random.default_rng(seed)
    tnet = torch.nn.Module()
    tnet.fc = torch.nn.Linear(4, 3)
    tnet.bn = torch.nn.BatchNorm1d(3)
    net = _Net()
    sd = {k: rng.standard_normal(v.shape).astype(np.float32) if v.is_floating_point() else v.numpy()
          for k, v in tnet.state_dict().items()}
    tnet.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
    net.load_state_dict(sd)
    return net, tnet, rng


def _perturb(net, tnet, rng, step):
    sd = {}
    for k, v in tnet.state_dict().items():
        if v.is_floating_point():
            sd[k] = (v.numpy() + rng.standard_normal(v.shape).astype(np.float32)).astype(np.float32)
        else:
            sd[k] = np.full(v.shape, step, dtype=np.int64)
    tnet.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
    net.load_state_dict(sd)


@pytest.mark.parametrize("kw", [dict(decay=0.9), dict(decay=0.99, use_warmup=True, warmup_power=0.75),
                                dict(decay=0.95, update_after_step=2, use_warmup=True, min_decay=0.3),
                                dict(decay=0.8, exclude_buffers=True)])
@pytest.mark.parametrize("with_step", [True, False])
def test_matches_timm_model_ema_v3(kw, with_step):
    net, tnet, rng = _pair(0)
    ema = ModelEma(net, **kw)
    tema = timm_utils.ModelEmaV3(tnet, **kw)
    for step in range(8):
        _perturb(net, tnet, rng, step)
        ema.update(net, step=step if with_step else None)
        tema.update(tnet, step=step if with_step else None)
        assert ema.get_decay(step) == pytest.approx(tema.get_decay(step), abs=1e-15)
        got, want = ema.module.state_dict(), tema.module.state_dict()
        assert list(got) == list(want)
        for k in want:
            np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=1e-6, atol=1e-6, err_msg=k)
    assert not ema.module.training


def test_trainer_api_and_no_tape():
    net, _, _ = _pair(1)
    ema = ModelEma(net, decay=0.9998, warmup=False)
    before = {k: v.numpy().copy() for k, v in ema.module.state_dict().items()}
    with vitc.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net, step=5)
    for k, p in ema.module.named_parameters():
        assert p.grad_fn is None and p.is_leaf
        np.testing.assert_allclose(p.detach().numpy(), before[k] + 0.0002, rtol=1e-5, atol=1e-6)
    ema.update(net, step=0)  # step <= update_after_step + 1: a copy
    for (k, p), q in zip(ema.module.named_parameters(), net.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    out = ema(vitc.randn(2, 4))
    assert out.shape == (2, 3)
    ema.set(net)
    assert list(ema.state_dict())[0].startswith("module.")


def test_bad_inputs():
    net, _, _ = _pair(2)
    with pytest.raises(TypeError, match="model"):
        ModelEma(object())
    with pytest.raises(ValueError, match="decay"):
        ModelEma(net, decay=1.5)
    ema = ModelEma(net)
    with pytest.raises(ValueError, match="keys differ"):
        ema.update(nn.Linear(4, 3))
    with pytest.raises(TypeError, match="step"):
        ema.update(net, step=1.5)
