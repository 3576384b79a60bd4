"""vitc.optim.RMSprop against torch.optim.RMSprop, step for step (the loop of test_optim.run_pair)."""
import numpy as np
import pytest
import torch

import vitc
from vitc import nn, optim

from test_optim import run_pair  # noqa: E402  (tests/optim is on sys.path under pytest)

CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, alpha=0.9, eps=1e-6, weight_decay=0.1),
    dict(lr=1e-3, momentum=0.9),
    dict(lr=1e-3, centered=True),
    dict(lr=1e-3, alpha=0.3, centered=True, momentum=0.5, weight_decay=0.01),  # lerp weight 0.7: torch's 2nd branch
    dict(lr=1e-3, momentum=0.8, maximize=True),
]


@pytest.mark.parametrize("kw", CASES)
def test_matches_torch_step_for_step(kw):
    errs, vo, to, vp, tp = run_pair(lambda p: optim.RMSprop(p, **kw), lambda p: torch.optim.RMSprop(p, **kw),
                                    lr_changes={7: kw["lr"] * 0.5})
    assert max(errs) < 1e-5, errs  # float32 rounding (1e-7 .. 3e-6 seen), not drift
    for p, q in zip(vp, tp):
        vs, ts = vo.state[p], to.state[q]
        assert sorted(vs) == sorted(ts)
        for name in ts:
            np.testing.assert_allclose(np.asarray(vs[name].numpy() if name != "step" else vs[name].item()),
                                       np.asarray(ts[name].numpy()), rtol=1e-4, atol=1e-6, err_msg=name)


def test_state_dict_round_trip_and_bad_arguments():
    p = nn.Parameter(vitc.ones(3))
    o = optim.RMSprop([p], lr=0.1, momentum=0.5, centered=True)
    p.grad = vitc.tensor([1.0, -2.0, 3.0])
    o.step()
    q = nn.Parameter(vitc.ones(3))
    o2 = optim.RMSprop([q], lr=0.1, momentum=0.5, centered=True)
    o2.load_state_dict(o.state_dict())
    for name in ("square_avg", "momentum_buffer", "grad_avg"):
        np.testing.assert_array_equal(o2.state[q][name].numpy(), o.state[p][name].numpy())
    for kw, word in ((dict(lr=-1.0), "learning rate"), (dict(alpha=-0.1), "alpha"), (dict(eps=-1.0), "epsilon"),
                     (dict(momentum=-0.5), "momentum"), (dict(weight_decay=-1.0), "weight_decay")):
        with pytest.raises(ValueError, match=word):
            optim.RMSprop([nn.Parameter(vitc.ones(2))], **kw)
