"""One (arm, seed) of the token-labeling experiment: the student, its batches, its loss, its training
and its test accuracy."""
import time

import numpy as np

import vitc
from vitc import optim
from vitc.data import Mixup, RandAugment
from vitc.data.relabel import TokenLabelBatches
from vitc.losses import TokenLabelingLoss
from vitc.models import create_model
from vitc.optim import param_groups_weight_decay

__all__ = ["ARMS", "build_student", "train_arm", "evaluate"]

# arm: (model options, labels 'image' | 'relabel' | 'dense', aux head loss on, MixToken, CutMix)
ARMS = {
    "plain": (dict(), "image", False, False, False),
    "cutmix": (dict(), "image", False, False, True),
    "relabel": (dict(), "relabel", False, False, False),
    "tl": (dict(aux_head=True), "dense", True, False, False),
    "tl_mixtoken": (dict(aux_head=True, mix_token=True), "dense", True, True, False),
    "control": (dict(aux_head=True, mix_token=True), "image", True, True, False),
    "linear": (dict(patch_embed="linear", patch_norm=False), "image", False, False, False),
    "skip": (dict(skip_lam=2.0), "image", False, False, False),
}


def build_student(arm, model, num_classes, drop_path):
    opts = dict(aux_head=False, mix_token=False)
    opts.update(ARMS[arm][0])
    return create_model(model, num_classes=num_classes, drop_path=drop_path, **opts)


def evaluate(model, x, y, batch=1000):
    """Test accuracy with the model's inference rule, and (aux-head models) with the class head alone."""
    model.eval()
    acc = {}
    has_aux = getattr(model, "aux_head", None) is not None
    rules = ("aux", "cls") if has_aux else ("cls",)
    with vitc.no_grad():
        for rule in rules:
            if has_aux:
                model.infer = rule
            right = 0
            for s in range(0, len(x), batch):
                z = model(vitc.from_numpy(np.ascontiguousarray(x[s:s + batch]))).numpy()
                right += int((z.argmax(1) == y[s:s + batch]).sum())
            acc[rule] = right / len(x)
    if has_aux:
        model.infer = "aux"
    model.train()
    return acc


def train_arm(arm, seed, data, label_map, args, log, log_epoch=None):
    """Train one arm from seed; returns the record (accuracies, history, times)."""
    x_tr, y_tr, x_te, y_te, k = data
    vitc.manual_seed(seed)
    model = build_student(arm, args.model, k, args.drop_path)
    _, labels, aux, _, cutmix = ARMS[arm]
    grid = model.grid_size
    aug = {}
    if getattr(args, "randaug", "none") != "none":  # RandAugment works on [0, 1] pixels: undo the normalisation
        mean, std = args.mean_std
        x_tr = np.clip(x_tr * np.float32(std) + np.float32(mean), 0.0, 1.0)
        aug = dict(randaug=RandAugment(args.randaug, fill=int(round(255 * mean)), seed=seed), normalize=(mean, std),
                   legacy_warp=getattr(args, "legacy_warp", False))
    batches = TokenLabelBatches(x_tr, y_tr, label_map if labels != "image" else None, args.batch_size, grid,
                                num_classes=k, seed=seed, scale=(args.crop_scale, 1.0), smoothing=args.smoothing,
                                legacy_box_order=args.legacy_box_order, **aug)
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=args.smoothing, num_classes=k, seed=seed) \
        if cutmix else None
    loss_fn = TokenLabelingLoss(beta=args.beta)
    opt = optim.AdamW(param_groups_weight_decay(model, args.weight_decay), lr=args.lr, weight_decay=args.weight_decay)
    steps = len(batches) * args.epochs
    sched = optim.lr_scheduler.CosineLRScheduler(opt, t_initial=steps, lr_min=args.min_lr, warmup_t=len(batches),
                                                 warmup_lr_init=1e-6, t_in_epochs=False)
    hist = {"epoch": [], "train_loss": [], "test_accuracy": [], "train_time": []}
    updates = 0
    for epoch in range(args.epochs):
        t0, total, n = time.perf_counter(), 0.0, 0
        for xb, yc, yt in batches:
            if mix is not None:
                xb, yc = mix(xb, vitc.from_numpy(yc.numpy().argmax(1).astype(np.int64)))
            out = model(xb)
            loss = loss_fn(out, yc, yt) if aux else vitc.cross_entropy(out, yc)
            opt.zero_grad()
            loss.backward()
            opt.step()
            updates += 1
            sched.step_update(updates)
            total, n = total + loss.item(), n + 1
        t_train = time.perf_counter() - t0
        acc = evaluate(model, x_te, y_te)
        hist["epoch"].append(epoch + 1)
        hist["train_loss"].append(total / max(1, n))
        hist["test_accuracy"].append(acc)
        hist["train_time"].append(t_train)
        log(f"[{arm} seed {seed}] epoch {epoch + 1}/{args.epochs}: loss {total / max(1, n):.4f}, test "
            + ", ".join(f"{r} {100 * a:.2f}%" for r, a in acc.items()) + f", {t_train:.0f} s")
        if log_epoch:
            log_epoch({"epoch": epoch + 1, "train_loss": total / max(1, n), "test_accuracy": acc[next(iter(acc))],
                       "train_time": t_train, "test_time": 0.0})
    final = hist["test_accuracy"][-1]
    return {"arm": arm, "seed": seed, "accuracy": final[next(iter(final))], "accuracy_cls": final["cls"],
            "params": model.num_parameters(), "train_time": sum(hist["train_time"]), "history": hist}
