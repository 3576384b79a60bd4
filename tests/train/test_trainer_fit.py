"""fit()'s additions: gradient accumulation equals the big batch, an EMA updated per step, tested and resumed,
schedulers stepped with the test loss, and the CLI's optimizer and schedule options."""
import argparse

import numpy as np
import pytest

import vitc
from vitc import nn, optim
from vitc import train as vtrain
from vitc.data import DataLoader
from vitc.models import create_model
from vitc.train import cli_build
from vitc.train.__main__ import build_parser
from vitc.train.cli_data import OptionError

NO_DROPOUT = dict(depth=1, dim=16, heads=2, dim_head=8, mlp_dim=32, dropout=0.0, emb_dropout=0.0)


class Images:
    """n random 1×28×28 images with labels that depend on them (learnable), as .images/.labels."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.random((n, 1, 28, 28), dtype=np.float32)
        self.labels = (self.images[:, 0, :14].mean((1, 2)) * 40).astype(np.int64) % 10

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def _loader(ds, batch):
    return DataLoader(ds, batch_size=batch, shuffle=True, seed=5, to_tensor=vitc.from_numpy)


def _model(seed=0):
    vitc.manual_seed(seed)
    return create_model("vit_seed_mnist", **NO_DROPOUT)


@pytest.mark.parametrize("n", [300, 350])  # 350: the epoch's last group is one batch of 50 (and 100's last is 50)
def test_accumulating_two_batches_of_50_equals_one_batch_of_100(n):
    ds, test = Images(n), Images(60, seed=1)
    states = []
    for batch, accum in ((100, 1), (50, 2)):
        model = _model()
        opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        h = vtrain.fit(model, _loader(ds, batch), _loader(test, 60), opt, nn.CrossEntropyLoss(), 2, progress=False,
                       log=None, accum_steps=accum)
        states.append({k: v.numpy().copy() for k, v in model.state_dict().items()})
        assert opt.state_dict()["state"][0]["step"] == 2 * -(-n // 100)  # one update per 100 images
    for k in states[0]:
        np.testing.assert_allclose(states[1][k], states[0][k], rtol=1e-4, atol=2e-6, err_msg=k)
    with pytest.raises(ValueError, match="accum_steps must be an int >= 1"):
        vtrain.fit(model, [], [], opt, nn.CrossEntropyLoss(), 1, accum_steps=0)


class ReferenceEma:
    """e ← d·e + (1 − d)·p after every update (timm's ModelEma without warmup), recording the steps it was given."""

    def __init__(self, model, decay):
        self.module = create_model("vit_seed_mnist", **NO_DROPOUT)
        self.module.load_state_dict(model.state_dict())
        self.decay, self.steps = decay, []

    def update(self, model, step):
        self.steps.append(step)
        with vitc.no_grad():
            for e, p in zip(self.module.parameters(), model.parameters()):
                e.copy_(e * self.decay + p.detach() * (1 - self.decay))


def test_the_ema_is_updated_after_every_update_tested_and_resumed(tmp_path):
    ds, test = Images(200), Images(60, seed=1)

    def run(epochs, ck, resume=False, seed=0):
        model = _model(seed)
        ema = ReferenceEma(model, 0.9)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        h = vtrain.fit(model, _loader(ds, 50), _loader(test, 60), opt, nn.CrossEntropyLoss(), epochs, progress=False,
                       log=None, ema=ema, accum_steps=2, checkpoint_dir=str(ck), resume=resume)
        return model, ema, h

    model, ema, h = run(2, tmp_path / "a")
    assert ema.steps == [1, 2, 3, 4]  # 4 batches per epoch, 2 per update
    ev = vtrain.evaluate(ema.module, _loader(test, 60), nn.CrossEntropyLoss())
    assert h["ema_test_accuracy"][-1] == ev["accuracy"] and h["ema_test_loss"][-1] == pytest.approx(ev["loss"])
    raw = vtrain.evaluate(model, _loader(test, 60), nn.CrossEntropyLoss())
    assert h["test_loss"][-1] == pytest.approx(raw["loss"]) and h["ema_test_loss"][-1] != h["test_loss"][-1]
    run(1, tmp_path / "b")
    _, ema_resumed, h_resumed = run(2, tmp_path / "b", resume=True, seed=9)
    assert ema_resumed.steps == [3, 4] and h_resumed["ema_test_loss"] == h["ema_test_loss"]
    for k, v in ema.module.state_dict().items():
        np.testing.assert_array_equal(ema_resumed.module.state_dict()[k].numpy(), v.numpy(), err_msg=k)
    model = _model()
    vtrain.save_checkpoint(str(tmp_path / "c"), 1, model)
    with pytest.raises(ValueError, match="holds no EMA weights"):
        vtrain.load_checkpoint(vtrain.latest_checkpoint(str(tmp_path / "c")), model, ema=ReferenceEma(model, 0.9))


class PlateauLike:
    """A scheduler whose step requires the metric, as torch's ReduceLROnPlateau.step(metrics)."""

    def __init__(self):
        self.seen = []

    def step(self, metrics, epoch=None):
        self.seen.append(metrics)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, sd):
        self.seen = list(sd["seen"])


def test_a_scheduler_that_needs_a_metric_gets_the_test_loss():
    model = _model()
    sched = PlateauLike()
    h = vtrain.fit(model, _loader(Images(100), 50), _loader(Images(60, 1), 60), optim.Adam(model.parameters()),
                   nn.CrossEntropyLoss(label_smoothing=0.3), 2, scheduler=sched, progress=False, log=None,
                   eval_loss_fn=nn.CrossEntropyLoss())
    assert sched.seen == h["test_loss"]
    ev = vtrain.evaluate(model, _loader(Images(60, 1), 60), nn.CrossEntropyLoss())  # the eval loss, unsmoothed
    assert h["test_loss"][-1] == pytest.approx(ev["loss"])


def _args(*argv):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adafactor"])
def test_clip_grad_is_the_optimizers_max_grad_norm(name):
    model = _model()
    opt = cli_build.build_optimizer(_args("--optimizer", name, "--clip-grad", "0.5"), model.parameters())
    assert opt.max_grad_norm == 0.5
    x = vitc.from_numpy(Images(8).images)
    (model(x) * 100.0).sum().backward()
    opt.step()
    assert opt.last_grad_norm > 0.5  # measured before clipping, so the clipping really applied
    assert cli_build.build_optimizer(_args("--optimizer", name), model.parameters()).max_grad_norm is None


def _lrs(args, epochs, updates=1):
    model = _model()
    opt = cli_build.build_optimizer(args, model.parameters())
    sched = cli_build.build_scheduler(args, opt, updates)
    lrs = []
    for e in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        if sched is None:
            continue
        if hasattr(sched, "step_update"):
            for u in range(updates):
                sched.step_update(e * updates + u + 1)
            sched.step(e + 1)
        else:
            sched.step()
    return lrs, sched


def test_schedules_and_warmup():
    lrs, sched = _lrs(_args("--lr", "1e-3"), 3)
    assert sched is None and lrs == [1e-3] * 3
    lrs, _ = _lrs(_args("--lr", "1e-3", "--warmup-epochs", "2", "--warmup-lr", "1e-4"), 4)
    np.testing.assert_allclose(lrs, [1e-4, 5.5e-4, 1e-3, 1e-3])
    lrs, _ = _lrs(_args("--lr", "1e-3", "--scheduler", "step", "--decay-epochs", "2", "--decay-rate", "0.5"), 5)
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    lrs, _ = _lrs(_args("--lr", "1e-3", "--scheduler", "step", "--decay-epochs", "2", "--decay-rate", "0.5",
                        "--warmup-epochs", "1", "--warmup-lr", "1e-4"), 4)
    np.testing.assert_allclose(lrs, [1e-4, 1e-3, 1e-3, 5e-4])
    lrs, _ = _lrs(_args("--lr", "1e-3", "--scheduler", "cosine", "--epochs", "4", "--warmup-epochs", "1",
                        "--warmup-lr", "1e-4"), 4)
    # timm: the warmup epochs count in t_initial (warmup_prefix=False), so epoch 1 is a quarter into the cosine
    np.testing.assert_allclose(lrs, [1e-4] + [5e-4 * (1 + np.cos(np.pi * t / 4)) for t in (1, 2, 3)])
    with pytest.raises(OptionError, match="--warmup-lr 0 must be > 0"):
        _lrs(_args("--warmup-epochs", "1", "--warmup-lr", "0"), 1)


def test_onecycle_steps_per_update():
    from trainer_helpers import needs_optim
    needs_optim("OneCycleLR")
    lrs, sched = _lrs(_args("--lr", "1e-3", "--scheduler", "onecycle", "--epochs", "4", "--warmup-epochs", "1",
                            "--warmup-lr", "1e-4"), 4, updates=5)
    assert isinstance(sched, cli_build.PerUpdate) and lrs[0] == pytest.approx(1e-4)
    assert 0.9e-3 < lrs[1] <= 1e-3 * (1 + 1e-9) and lrs[1] > lrs[2] > lrs[3]


def test_plateau_scheduler():
    from trainer_helpers import needs_optim
    needs_optim("ReduceLROnPlateau")
    model = _model()
    args = _args("--lr", "1e-3", "--scheduler", "plateau", "--patience-epochs", "0", "--decay-rate", "0.5")
    opt = cli_build.build_optimizer(args, model.parameters())
    sched = cli_build.build_scheduler(args, opt, 1)
    assert vtrain._wants_metric(sched)
    for loss in (1.0, 1.0, 1.0):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] < 1e-3
    with pytest.raises(OptionError, match="plateau has no warmup"):
        cli_build.build_scheduler(_args("--scheduler", "plateau", "--warmup-epochs", "1"), opt, 1)


def test_rmsprop():
    from trainer_helpers import needs_optim
    needs_optim("RMSprop")
    model = _model()
    opt = cli_build.build_optimizer(_args("--optimizer", "rmsprop", "--lr", "1e-3"), model.parameters())
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["momentum"] == 0.9


def test_missing_pieces_are_named():
    args = argparse.Namespace(ema=True, ema_decay=0.9, ema_warmup=False)
    try:
        import vitc.utils  # noqa: F401
        have_ema = hasattr(vitc.utils, "ModelEma")
    except ImportError:
        have_ema = False
    if have_ema:
        assert cli_build.build_ema(args, _model()).module is not None
    else:
        with pytest.raises(OptionError, match="--ema needs vitc.utils.ModelEma"):
            cli_build.build_ema(args, _model())
