"""The seed-004 experiments' runs: one model and configuration trained and tested on either backend
(the authors' train_model), experiment 1 (fixed learning rates) and experiment 2 (an Optuna search
per model, then the optimised models).

The training loop is its own, not vitc.train's: the same loop drives the vitc and the PyTorch
backends so both are timed alike, it waits while --pause-file exists before every batch and leaves
that wait out of the epoch's time, and it times the test pass on its own (the article's four metrics).
"""
import json
import os
import shutil
import time

import vitc
from vitc._checks import expect_int
from vitc.data import DataLoader
from vitc.io import write_text_atomic
from vitc.models import create_model
from vitc.train import latest_checkpoint, load_checkpoint, save_checkpoint

from ..common import Tracker, machine_info, save_figure, set_threads
from .config import (BATCH_RANGE, CORRECT_MODELS, DEFAULT_LRS, LR_RANGE, MODELS, SEED_CFG, _backends, _check_batch,
                     _lrs, _model_names, _overrides, load_data)
from .report import (Results, convergence_figure, ratio_table, run_note, search_lr_figure, write_report,
                     _four_panel_figures)

__all__ = ["train_and_test", "run_fixed_lr", "run_bayes_search"]


# ---- one model, one configuration: seed 004's train_model, on either backend ---------------------

def _build(name, backend, seed, overrides):
    """The vitc model (seeded init); for torch its PyTorch twin loaded with the same initial weights."""
    reg, _, topts = MODELS[name]
    vitc.manual_seed(seed)
    vm = create_model(reg, **overrides)
    if backend == "vitc":
        return vm
    import torch

    from .._torch_vit_bn import TorchViTFamily
    cfg = dict(SEED_CFG, **overrides)
    tm = TorchViTFamily(**cfg, **topts)
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in vm.state_dict().items()}, strict=True)
    return tm


def _warmup(backend, train_set, overrides):
    """Two untimed training steps, so the first timed run does not pay for thread-pool start-up and
    the allocator's first requests."""
    model = _build("ViT", backend, 0, overrides)
    n = min(len(train_set), 8)
    x, y = train_set.images[:n].copy(), train_set.labels[:n].copy()
    if backend == "torch":
        import torch
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
    else:
        opt = vitc.optim.Adam(model.parameters(), lr=1e-4)
        for _ in range(2):
            opt.zero_grad()
            vitc.cross_entropy(model(vitc.from_numpy(x)), vitc.from_numpy(y)).backward()
            opt.step()


def _drop_last(n, batch_size, bn):
    # a final batch of one image would give BatchNorm the statistics of a single image: drop it
    return bool(bn and n % batch_size == 1)


def _wait_while_paused(pause_file, log):
    """Block while ``pause_file`` exists; returns the seconds waited. Checked before every batch, so
    a long run yields the machine to a benchmark within one batch and the pause is left out of
    the epoch's time."""
    if not pause_file or not os.path.exists(pause_file):
        return 0.0
    t0 = time.perf_counter()
    while os.path.exists(pause_file):
        time.sleep(0.25)
    waited = time.perf_counter() - t0
    if log:
        log(f"  paused {waited:.1f} s while {pause_file} existed (not counted in the epoch's time)")
    return waited


def _resume_point(checkpoint_dir, key, model, opt, log):
    """(history, epochs done) of the newest checkpoint in checkpoint_dir written with these settings
    (key), loaded into model and opt; (None, 0) when there is none. A checkpoint of other settings
    is an error: the directory belongs to one retraining."""
    path = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if path is None:
        return None, 0
    state = load_checkpoint(path, model, opt)  # checks the files; on a mismatch below the run stops anyway
    written = state.get("extra", {}).get("key")
    if written != json.loads(json.dumps(key)):
        raise ValueError(f"train_and_test: {checkpoint_dir} holds a checkpoint of other settings ({written}); "
                         f"expected {key}: remove it or use another output folder")
    if log:
        log(f"  resuming from {path} (epoch {state['epoch']} done)")
    return state["history"], state["epoch"]


def train_and_test(name, backend, lr, batch_size, epochs, train_set, test_set, test_batch_size=5000, seed=0,
                   overrides=None, on_epoch=None, log=print, pause_file=None, checkpoint_dir=None, checkpoint_key=None):
    """Train ``epochs`` epochs with Adam(lr), testing after each; returns the per-epoch history.
    checkpoint_dir (vitc backend): the model, Adam's state and the history are saved there after every
    epoch (vitc.train.save_checkpoint, with checkpoint_key, a JSON-able dict of the settings), and a
    later call with the same directory and key continues after the last saved epoch, with the same
    batches (the loader's order is a function of seed and epoch) and bit-identical weights."""
    overrides = _overrides(overrides)
    if checkpoint_dir is not None and backend != "vitc":
        raise ValueError(f"train_and_test: per-epoch checkpoints are written for the vitc backend only, got {backend!r}")
    bn = MODELS[name][1]
    model = _build(name, backend, seed, overrides)
    if backend == "torch":
        import torch
        import torch.nn.functional as F
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        to_tensor, no_grad = torch.from_numpy, torch.no_grad
        loss_fn, labels = F.cross_entropy, lambda y: y.numpy()
    else:
        opt = vitc.optim.Adam(model.parameters(), lr=lr)
        to_tensor, no_grad = vitc.from_numpy, vitc.no_grad
        loss_fn, labels = vitc.cross_entropy, lambda y: y.numpy()
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, seed=seed, to_tensor=to_tensor,
                              drop_last=_drop_last(len(train_set), batch_size, bn))
    test_loader = DataLoader(test_set, batch_size=test_batch_size, shuffle=False, to_tensor=to_tensor)
    hist = {"epoch": [], "train_time": [], "test_time": [], "train_loss": [], "test_accuracy": [], "paused": []}
    saved_hist, start = _resume_point(checkpoint_dir, checkpoint_key, model, opt, log)
    if saved_hist is not None:
        hist = {k: list(saved_hist[k][:start]) for k in hist}
        train_loader.set_epoch(start)
    for epoch in range(start, epochs):
        model.train()
        paused = 0.0
        t0 = time.perf_counter()
        cost = 0.0
        for x, y in train_loader:
            paused += _wait_while_paused(pause_file, log)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            cost += float(loss.item())
        t_train = time.perf_counter() - t0 - paused
        model.eval()
        correct, n, paused_test = 0, 0, 0.0
        t1 = time.perf_counter()
        with no_grad():
            for x, y in test_loader:
                paused_test += _wait_while_paused(pause_file, log)
                pred = model(x).numpy().argmax(axis=1)
                correct += int((pred == labels(y)).sum())
                n += len(pred)
        t_test = time.perf_counter() - t1 - paused_test
        rec = {"epoch": epoch + 1, "train_time": t_train, "test_time": t_test, "train_loss": cost,
               "test_accuracy": correct / n, "paused": paused + paused_test}
        for k, v in rec.items():
            hist[k].append(v)
        if log:
            log(f"  [{backend} {name} lr={lr:g} bs={batch_size}] epoch {epoch + 1}/{epochs}: train loss {cost:.3f} "
                f"(sum of batch means), test acc {100 * correct / n:.2f}%, train {t_train:.1f} s, "
                f"test {t_test:.1f} s (no_grad)")
        if on_epoch:
            on_epoch(rec)
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, epoch + 1, model, opt, history=hist, extra={"key": checkpoint_key}, keep=1)
    return hist


def _prepare(out, backends, threads, dataset, data_root, subset, test_subset, download, log):
    os.makedirs(out, exist_ok=True)
    set_threads(threads, backends)
    name, tr, te, note = load_data(dataset, data_root, subset, test_subset, download)
    if log:
        log(f"{note}: {len(tr)} train / {len(te)} test images")
    return name, tr, te, note


def run_fixed_lr(models=tuple(MODELS), lrs=DEFAULT_LRS, epochs=30, backend="vitc", batch_size=100,
                 test_batch_size=5000, subset=None, test_subset=None, dataset="auto", data_root=None, download=True,
                 out="results/vit_batchnorm", threads=None, seed=0, mlflow=True, tracking_uri=None,
                 experiment="vit_batchnorm", overrides=None, log=print, command=None, resume=False, pause_file=None):
    """Experiment 1. Every input is checked before any training; returns the results document.
    ``resume``: keep OUT/results.json's finished (backend, model, lr) runs and run only the others.
    ``pause_file``: while it exists the run waits before its next batch, and the wait is left out of
    the epoch's times (each epoch's total pause is kept as ``paused``)."""
    models, backends, lrs = _model_names(models), _backends(backend), _lrs(lrs)
    epochs = expect_int(epochs, "run_fixed_lr", "epochs", minimum=1)
    _check_batch(batch_size, models, "run_fixed_lr")
    expect_int(test_batch_size, "run_fixed_lr", "test batch size", minimum=1)
    overrides = _overrides(overrides)
    data_name, tr, te, note = _prepare(out, backends, threads, dataset, data_root, subset, test_subset, download, log)
    tracker = Tracker(mlflow, out, tracking_uri, experiment)
    meta = {"experiment": "fixed-lr", "command": command, "dataset": data_name, "data_note": note,
            "train_samples": len(tr), "test_samples": len(te), "epochs": epochs, "batch_size": batch_size,
            "test_batch_size": test_batch_size, "lrs": lrs, "models": models, "backends": backends, "seed": seed,
            "overrides": overrides, "machine": machine_info(backends), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "mlflow_tracking_uri": getattr(tracker, "uri", None),
            "note": "test pass under no_grad (the article's script keeps autograd on)"}
    res = Results(out, meta)
    done = res.resume() if resume else set()
    if done and log:
        log(f"resuming: {len(done)} finished runs kept from {res.path}")
    for backend_ in backends:
        if all((backend_, m, lr) in done for lr in lrs for m in models):
            continue
        _warmup(backend_, tr, overrides)
        for lr in lrs:
            for m in models:
                if (backend_, m, lr) in done:
                    continue
                params = {"backend": backend_, "model": m, "learning_rate": lr, "epochs": epochs,
                          "batch_size": batch_size, "test_batch_size": test_batch_size, "dataset": data_name,
                          "train_samples": len(tr), "seed": seed, "bn_first_block_only": m.endswith("-article")}
                hist, run_id = tracker.run(f"{backend_}-{m}-lr{lr:g}", params, lambda cb: train_and_test(
                    m, backend_, lr, batch_size, epochs, tr, te, test_batch_size, seed, overrides, cb, log,
                    pause_file))
                res.add(dict(backend=backend_, model=m, lr=lr, label=f"lr{lr:g}", batch_size=batch_size,
                             mlflow_run_id=run_id, **hist))
    write_report(res, log)
    return res.doc


# ---- experiment 2 --------------------------------------------------------------------------------

def _sampler(kind, seed):
    import optuna
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise ValueError(f"--sampler gp needs scipy and torch ({e}); use --sampler tpe") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)
    raise ValueError(f"sampler must be 'tpe' or 'gp', got {kind!r}")


def _finished_retraining(path, key):
    """The record of a retraining stored at path with the same settings, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    same = isinstance(stored, dict) and json.dumps(stored.get("key"), sort_keys=True) == json.dumps(key, sort_keys=True)
    return stored.get("record") if same else None


def _sampler_seed(seed, model, worker_id, trials_so_far):
    """One sampler seed per model (equal search spaces must not get equal draws), per worker (workers
    sharing a study) and per start (the trials the study already holds): a worker restarted on a study
    still in TPE's random start-up trials otherwise draws its first run's points again; the full
    seed-004 ViT study ran three points twice that way before this."""
    return seed + list(MODELS).index(model) + 1000 * worker_id + 100_003 * trials_so_far


def run_bayes_search(models=CORRECT_MODELS, trials=20, trial_epochs=3, epochs=30, sampler="tpe", storage=None,
                     study_prefix="vit_batchnorm", backend="vitc", test_batch_size=5000, subset=None,
                     test_subset=None, dataset="auto", data_root=None, download=True, out="results/vit_batchnorm_bayes",
                     threads=None, seed=0, mlflow=True, tracking_uri=None, experiment="vit_batchnorm_bayes",
                     overrides=None, log=print, command=None, worker_id=0):
    """Experiment 2: one Optuna study per (backend, model), then the best configurations retrained.
    ``worker_id``: give each worker sharing one ``storage`` its own number; it offsets the sampler's
    seed, or workers with equal seeds would draw the same parameters (TPE's random start-up trials);
    the seed also moves with the trials already in the study, so a restarted worker draws new points."""
    try:
        import optuna
    except ImportError:
        raise ValueError("Optuna is not installed (pip install 'vitc[experiments]')") from None
    models, backends = _model_names(models), _backends(backend)
    trials = expect_int(trials, "run_bayes_search", "trials", minimum=1)
    worker_id = expect_int(worker_id, "run_bayes_search", "worker id", minimum=0)
    trial_epochs = expect_int(trial_epochs, "run_bayes_search", "trial epochs", minimum=1)
    epochs = expect_int(epochs, "run_bayes_search", "epochs", minimum=0)
    expect_int(test_batch_size, "run_bayes_search", "test batch size", minimum=1)
    overrides = _overrides(overrides)
    _sampler(sampler, seed)
    os.makedirs(out, exist_ok=True)
    storage = storage or "sqlite:///" + os.path.join(os.path.abspath(out), "optuna.db")
    from vitc.search import open_storage, optimize_shared, redact
    try:
        rdb = open_storage(storage)  # heartbeats: a killed worker's trial is failed and retried by another
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    data_name, tr, te, note = _prepare(out, backends, threads, dataset, data_root, subset, test_subset, download, log)
    tracker = Tracker(mlflow, out, tracking_uri, experiment)
    meta = {"experiment": "bayes-search", "command": command, "dataset": data_name, "data_note": note,
            "train_samples": len(tr), "test_samples": len(te), "trials": trials, "trial_epochs": trial_epochs,
            "epochs": epochs, "sampler": sampler, "storage": redact(storage), "worker_id": worker_id, "models": models, "backends": backends,
            "seed": seed, "overrides": overrides, "machine": machine_info(backends),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mlflow_tracking_uri": getattr(tracker, "uri", None),
            "lr_range": {m: LR_RANGE[MODELS[m][1]] for m in models}, "batch_range": BATCH_RANGE}
    res = Results(out, meta)
    res.doc["studies"] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    files = []
    trial_note = run_note(meta, what="epoch(s) per trial", epochs=trial_epochs)  # under every search figure
    for backend_ in backends:
        _warmup(backend_, tr, overrides)
        for m in models:
            lo, hi = LR_RANGE[MODELS[m][1]]
            study = optuna.create_study(study_name=f"{study_prefix}-{backend_}-{m}", storage=rdb,
                                        direction="maximize", load_if_exists=True)
            study.sampler = _sampler(sampler, _sampler_seed(seed, m, worker_id, len(study.trials)))

            def objective(trial, m=m, lo=lo, hi=hi, backend_=backend_):
                lr = trial.suggest_float("lr", lo, hi, log=True)
                bs = trial.suggest_int("batch_size", *BATCH_RANGE)
                params = {"backend": backend_, "model": m, "learning_rate": lr, "batch_size": bs,
                          "epochs": trial_epochs, "trial": trial.number, "dataset": data_name}
                hist, _ = tracker.run(f"trial-{backend_}-{m}-{trial.number}", params, lambda cb: train_and_test(
                    m, backend_, lr, bs, trial_epochs, tr, te, test_batch_size, seed, overrides, cb, log))
                return hist["test_accuracy"][-1]

            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            if done < trials:
                if log:
                    log(f"{backend_} {m}: {trials - done} trials ({done} already in the study, shared with any "
                        f"other worker on {redact(storage)}), sampler {sampler}")
                optimize_shared(study, objective, trials)
            complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            rec = [{"number": t.number, "value": t.value, "params": t.params} for t in complete]
            best = max(complete, key=lambda t: t.value)
            res.doc["studies"][f"{backend_}/{m}"] = {"trials": rec, "best": {"value": best.value, "params": best.params}}
            res.save()
            path = os.path.join(out, f"fig_{backend_}_{m}_convergence.png")
            save_figure(convergence_figure(rec, f"{m} ({backend_}): Bayesian search, {sampler}\n{trial_note}"), path)
            files.append(path)
    for backend_ in backends:  # every trial's accuracy against its learning rate, the models side by side
        path = os.path.join(out, f"fig_{backend_}_search_lr.png")
        save_figure(search_lr_figure({m: res.doc["studies"][f"{backend_}/{m}"]["trials"] for m in models},
                                     meta["lr_range"], f"Bayesian search ({backend_}, {sampler}): accuracy against "
                                     f"learning rate\n{trial_note}"), path)
        files.append(path)
    lines = ["### Optimised hyper-parameters (the article's table 2)", "",
             "| backend | model | lr | batch size | search accuracy |", "|---|---|---|---|---|"]
    for key, s in res.doc["studies"].items():
        b, m = key.split("/")
        lines.append(f"| {b} | {m} | {s['best']['params']['lr']:.3g} | {s['best']['params']['batch_size']} | "
                     f"{100 * s['best']['value']:.2f} % |")
    table = "\n".join(lines) + "\n\n"
    if epochs:
        for backend_ in backends:
            for m in models:
                p = res.doc["studies"][f"{backend_}/{m}"]["best"]["params"]
                lr, bs = p["lr"], p["batch_size"]
                params = {"backend": backend_, "model": m, "learning_rate": lr, "batch_size": bs, "epochs": epochs,
                          "dataset": data_name, "optimised": True}
                # each finished retraining is kept in its own file: a later invocation (another session, the
                # same study) reuses it when the settings match instead of training it again
                key = dict(params, train_samples=len(tr), test_samples=len(te), seed=seed, overrides=overrides,
                           test_batch_size=test_batch_size)
                done_path = os.path.join(out, "optimised", f"{backend_}-{m}.json")
                record = _finished_retraining(done_path, key)
                if record is not None:
                    if log:
                        log(f"{backend_} {m}: reusing the finished retraining in {done_path}")
                else:
                    # a retraining is hours long: vitc's keeps a checkpoint per epoch and a killed one
                    # continues where it stopped (the metrics of its resumed part go to a new MLflow run)
                    ckpt = os.path.join(out, "optimised", f"{backend_}-{m}.ckpt") if backend_ == "vitc" else None
                    hist, run_id = tracker.run(f"optimised-{backend_}-{m}", params, lambda cb: train_and_test(
                        m, backend_, lr, bs, epochs, tr, te, test_batch_size, seed, overrides, cb, log,
                        checkpoint_dir=ckpt, checkpoint_key=key))
                    record = dict(backend=backend_, model=m, lr=lr, label="optimised", batch_size=bs,
                                  mlflow_run_id=run_id, **hist)
                    os.makedirs(os.path.dirname(done_path), exist_ok=True)
                    write_text_atomic(done_path, json.dumps({"key": key, "record": record}, indent=1))
                    if ckpt:
                        shutil.rmtree(ckpt, ignore_errors=True)  # the finished record replaces it
                res.add(record)
        files += _four_panel_figures(res.doc["runs"], out, backends, ["optimised"], "optimised models", res.doc["meta"])
        table += ratio_table(res.doc["runs"], f"Optimised models, {epochs} epochs (the article's table 3)")
    write_text_atomic(os.path.join(out, "table.md"), table)
    res.doc["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    res.doc["meta"]["files"] = [os.path.basename(f) for f in files] + ["table.md"]
    res.save()
    if log:
        log(table)
        log(f"wrote {len(files)} figures, table.md and results.json to {out}")
    return res.doc

