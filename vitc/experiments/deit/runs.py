"""Training and testing for the DeiT experiment: the recipe's loop through vitc.train and the test
accuracy of every head of a distilled model."""
import numpy as np

import vitc
from vitc import optim
from vitc.losses import LabelSmoothingCrossEntropy
from vitc.models import DeiT
from vitc.models.deit import fuse_heads
from vitc.optim import param_groups_weight_decay
from vitc.train import train_one_epoch

__all__ = ["evaluate_heads", "train_model"]


def evaluate_heads(model, loader):
    """Test accuracy of each head: {'cls'} for a plain model; cls, dist, avg, sum_softmax for a DeiT."""
    was_training = model.training
    model.eval()
    correct, n = {}, 0
    with vitc.no_grad():
        for x, y in loader:
            y = y.numpy() if isinstance(y, vitc.Tensor) else np.asarray(y)
            if isinstance(model, DeiT):
                f = model.forward_features(x)
                zc, zd = model.mlp_head(f[:, 0]), model.dist_head(f[:, 1])
                preds = {h: fuse_heads(zc, zd, h) for h in ("cls", "dist", "avg", "sum_softmax")}
            else:
                preds = {"cls": model(x)}
            for h, z in preds.items():
                correct[h] = correct.get(h, 0) + int((z.numpy().argmax(1) == y).sum())
            n += len(y)
    model.train(was_training)
    return {h: c / n for h, c in correct.items()}


class _WithInputs:
    """The loader's batches as (x, (x, y)): DistillationLoss needs the inputs (the teacher's) beside
    the student's outputs, and vitc.train passes the loss only (outputs, targets)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x, (x, y)


def train_model(model, loader, test_loader, criterion, epochs, lr, weight_decay, warmup_epochs, min_lr, log, name,
                progress):
    """AdamW + warmup/cosine stepped per update, through vitc.train.train_one_epoch; ``criterion(x, out, y)``.
    Returns the per-epoch history."""
    opt = optim.AdamW(param_groups_weight_decay(model, weight_decay), lr=lr, weight_decay=weight_decay)
    steps = len(loader)
    sched = optim.lr_scheduler.CosineLRScheduler(opt, t_initial=max(1, epochs * steps), lr_min=min_lr,
                                                 warmup_t=warmup_epochs * steps,
                                                 warmup_lr_init=1e-6 if warmup_epochs else 0.0, t_in_epochs=False)

    def loss_fn(out, inputs_and_targets):
        x, y = inputs_and_targets
        return criterion(x, out, y)
    hist = {"epoch": [], "train_loss": [], "train_time": [], "test_accuracy": [], "lr_end": []}
    updates = 0
    for epoch in range(epochs):
        st, updates = train_one_epoch(model, _WithInputs(loader), opt, loss_fn, epoch=epoch, scheduler=sched,
                                      num_updates=updates, progress=progress, desc=f"{name} {epoch + 1}/{epochs}")
        loss = st["loss_sum"] / max(1, st["batches"])
        acc = evaluate_heads(model, test_loader)
        for k, v in (("epoch", epoch + 1), ("train_loss", loss), ("train_time", st["time"]),
                     ("test_accuracy", acc), ("lr_end", opt.param_groups[0]["lr"])):
            hist[k].append(v)
        accs = ", ".join(f"{h} {100 * a:.2f}%" for h, a in acc.items())
        log(f"[{name}] epoch {epoch + 1}/{epochs}: train loss {loss:.4f}, test {accs}, train {st['time']:.1f} s")
    return hist


def _teacher_criterion(smoothing):
    base = LabelSmoothingCrossEntropy(smoothing)
    return lambda x, out, y: base(out, y)
