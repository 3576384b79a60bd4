"""The seed-004 experiments' results: results.json (rewritten atomically after every run, resumable),
the speed ratios r_t, r_v, g_t, g_v against ViT (the article's section 4, eqs. for the gain
g = 1 − 1/r), the markdown tables and the article's figures."""
import json
import os
import time

import numpy as np

from vitc.io import write_text_atomic

from ..common import integer_ticks, legend_beside, pyplot, save_figure

__all__ = ["run_note", "ratio_rows", "ratio_table", "four_panel_figure", "train_time_vs_lr_figure", "convergence_figure",
           "Results", "write_report", "report"]


# ---- analysis: ratios, table, figures ------------------------------------------------------------

def ratio_rows(runs):
    """Rows of r_t, r_v, g_t, g_v (the article's ratios) of every model against ViT of the same backend and
    configuration label; plus, for an ``-article`` model, the factor its bug adds over the correct model."""
    by = {(r["backend"], r["label"], r["model"]): r for r in runs}
    rows = []
    for (backend, label, model), r in by.items():
        vit = by.get((backend, label, "ViT"))
        if model == "ViT" or vit is None:
            continue
        # medians over epochs: a transient load on the machine (another job for a minute) moves one
        # epoch's time, not the ratio; results.json keeps every epoch for the article's means
        t = {k: float(np.median(r[k])) for k in ("train_time", "test_time")}
        tv = {k: float(np.median(vit[k])) for k in ("train_time", "test_time")}
        rt, rv = tv["train_time"] / t["train_time"], tv["test_time"] / t["test_time"]
        row = {"backend": backend, "label": label, "model": model, "r_t": rt, "r_v": rv, "g_t": 1 - 1 / rt,
               "g_v": 1 - 1 / rv, "acc_vit": vit["test_accuracy"][-1], "acc": r["test_accuracy"][-1],
               "t_train": t["train_time"], "t_train_vit": tv["train_time"],
               "t_test": t["test_time"], "t_test_vit": tv["test_time"]}
        # the fastest epochs: what each model costs when the machine left it alone (see load_note)
        row["r_t_min"] = float(np.min(vit["train_time"])) / float(np.min(r["train_time"]))
        base = by.get((backend, label, model.replace("-article", ""))) if model.endswith("-article") else None
        if base is not None:
            row["bug_t"] = float(np.median(base["train_time"])) / t["train_time"]
            row["bug_v"] = float(np.median(base["test_time"])) / t["test_time"]
        rows.append(row)
    return rows


def ratio_table(runs, title="Speed ratios against ViT"):
    """Markdown: per backend and configuration, each model's r_t, r_v, g_t, g_v and final accuracies."""
    rows = ratio_rows(runs)
    lines = [f"### {title}", "",
             "r_t = T_train(ViT)/T_train(model), r_v = T_test(ViT)/T_test(model), T the median over epochs "
             "(robust to a transient load; the article uses means, every epoch is in results.json); "
             "g = 1 − 1/r (the article's gain; r = 2.5 ⇒ 60 %). 'bug ×' = the further speed-up of the article's "
             "first-block-only model over the correct model (train / test). Accuracy after the last epoch.", "",
             "| backend | lr / config | model | T_train s (ViT) | T_test s (ViT) | r_t | r_v | g_t | g_v | bug × (t / v) "
             "| acc ViT | acc model |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bug = f"{r['bug_t']:.2f} / {r['bug_v']:.2f}" if "bug_t" in r else "—"
        lines.append(f"| {r['backend']} | {r['label']} | {r['model']} | {r['t_train']:.2f} ({r['t_train_vit']:.2f}) | "
                     f"{r['t_test']:.2f} ({r['t_test_vit']:.2f}) | {r['r_t']:.2f} | {r['r_v']:.2f} | "
                     f"{100 * r['g_t']:.0f} % | {100 * r['g_v']:.0f} % | {bug} | {100 * r['acc_vit']:.2f} % | "
                     f"{100 * r['acc']:.2f} % |")
    note = load_note(runs, rows)
    return "\n".join(lines + ([""] + note if note else [])) + "\n"


# an epoch-time spread beyond this within one run means the machine's load changed during it
LOAD_SPREAD = 1.5


def load_note(runs, rows):
    """Lines warning that medians compare different loads, when a run's epoch times spread more than
    LOAD_SPREAD× (max / min): the seed-004 retrainings on a shared machine read ViTBN r_t 2.32 from medians
    (ViT's run beside other jobs, ViTBN's alone) where an interleaved measurement gave 0.90. Gives the
    ratios of each run's fastest epoch instead, and the way to settle it."""
    loaded = [r for r in runs if len(r["train_time"]) > 1 and max(r["train_time"]) > LOAD_SPREAD * min(r["train_time"])]
    if not loaded:
        return []
    spans = ", ".join(f"{r['model']} ({r['backend']}, {r['label']}) "
                      f"{min(r['train_time']):.0f}–{max(r['train_time']):.0f} s" for r in loaded)
    mins = ", ".join(f"{r['model']} ({r['backend']}, {r['label']}) {r['r_t_min']:.2f}" for r in rows)
    return [f"**Load warning**: epoch training times varied more than {LOAD_SPREAD:g}× within a run ({spans}): "
            "the machine's load changed during the runs, so the medians above may compare different loads. "
            f"r_t from each run's fastest epoch: {mins}. An interleaved measurement settles it "
            "(bench/vit_bn_step.py, --batches for tuned batch sizes)."]


def run_note(meta, runs=None, what="epoch(s)", epochs=None):
    """The run a figure shows: data set and size, epochs (given, else the longest of ``runs``, else meta's), seed."""
    if epochs is None:
        epochs = max((len(r["epoch"]) for r in runs), default=meta.get("epochs")) if runs else meta.get("epochs")
    return (f"{meta.get('dataset', '?')}: {meta.get('train_samples', '?')} train / {meta.get('test_samples', '?')} "
            f"test images, {epochs} {what}, seed {meta.get('seed', '?')}")


_PANELS = (("train_time", "training time per epoch (s)"), ("test_time", "test time per epoch (s, no_grad)"),
           ("train_loss", "training loss (sum of batch means)"), ("test_accuracy", "test accuracy"))


def four_panel_figure(runs, title):
    """The article's figures 3–5 / 8: train time, test time, train loss, test accuracy per epoch."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (key, label) in zip(axes.flat, _PANELS):
        for r in runs:
            ax.plot(r["epoch"], r[key], marker="o", ms=3, label=r["model"],
                    ls="--" if r["model"].endswith("-article") else "-")
        ax.set_xlabel("epoch")
        integer_ticks(ax.xaxis)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    legend_beside(axes[0, 1], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def train_time_vs_lr_figure(runs, title):
    """The article's figure 6: each model's per-epoch train time, one line per learning rate."""
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in runs))
    fig, axes = plt.subplots(len(models), 1, figsize=(7, 2.4 * len(models)), sharex=True, squeeze=False)
    for ax, m in zip(axes[:, 0], models):
        for i, r in enumerate(x for x in runs if x["model"] == m):
            ax.plot(r["epoch"], r["train_time"], marker="o", ms=3, label=f"{m}_{i + 1} (lr {r['lr']:g})")
        ax.set_ylabel("train time (s)")
        legend_beside(ax)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("epoch")
    integer_ticks(axes[-1, 0].xaxis)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def convergence_figure(trials, title):
    """The article's figure 7: each trial's accuracy and the best so far."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    n = np.arange(1, len(trials) + 1)
    acc = np.array([t["value"] for t in trials], dtype=float)
    ax.plot(n, acc, "o", ms=4, label="trial")
    ax.plot(n, np.maximum.accumulate(acc), "-", label="best so far")
    ax.set_xlabel("trial")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", framealpha=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def search_lr_figure(studies, lr_range, title):
    """Every trial's accuracy against its learning rate, one series per model (``studies``: {model:
    trials with params lr}); each model's best ringed, dotted lines at the tops of the search ranges: where
    the claim "BatchNorm tolerates larger learning rates" shows or does not."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (m, trials) in enumerate(studies.items()):
        lr = np.array([t["params"]["lr"] for t in trials], dtype=float)
        acc = np.array([t["value"] for t in trials], dtype=float)
        line, = ax.plot(lr, acc, "osD^v"[i % 5], ms=5, alpha=0.75, label=m)
        b = int(np.argmax(acc))
        ax.plot(lr[b], acc[b], "o", ms=12, mfc="none", mec=line.get_color(), mew=1.5)
    for hi in sorted({r[1] for r in lr_range.values()}):
        ax.axvline(hi, ls=":", color="0.4", lw=1)
        ax.text(hi, ax.get_ylim()[0], f" range top {hi:g}", rotation=90, va="bottom", ha="right", fontsize=7, color="0.3")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("test accuracy after the trial")
    ax.grid(alpha=0.3, which="both")
    legend_beside(ax)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# meta keys two invocations must share for --resume to put their runs in one table
_RESUME_KEYS = ("experiment", "dataset", "train_samples", "test_samples", "epochs", "batch_size", "test_batch_size",
                "seed", "overrides")


class Results:
    """results.json, rewritten atomically after every finished run."""

    def __init__(self, out, meta):
        self.path = os.path.join(out, "results.json")
        self.doc = {"meta": meta, "runs": []}

    def resume(self):
        """Keep the finished runs of an earlier invocation with the same settings (a long run can span
        several sessions, one backend each); returns the set of (backend, model, lr) already done."""
        if not os.path.exists(self.path):
            return set()
        try:
            with open(self.path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"--resume: cannot read {self.path}: {e}") from None
        meta, prev = self.doc["meta"], old.get("meta", {})
        # (setting, there, now); times are only comparable at one thread count (--threads sets both backends')
        pairs = [(k, prev.get(k), meta.get(k)) for k in _RESUME_KEYS]
        pairs.append(("threads", *(m.get("machine", {}).get("vitc_threads") for m in (prev, meta))))
        diff = [(k, a, b) for k, a, b in pairs if json.dumps(a) != json.dumps(b)]
        if diff:
            raise ValueError(f"--resume: {self.path} was made with other settings ("
                             + ", ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff) + ")")
        for k in ("models", "lrs", "backends"):
            meta[k] = list(dict.fromkeys(list(prev.get(k, [])) + list(meta[k])))
        # each invocation keeps its own command, machine and start time
        meta["invocations"] = prev.get("invocations", [{k: prev.get(k) for k in ("command", "machine", "started")}])
        meta["invocations"].append({k: meta.get(k) for k in ("command", "machine", "started")})
        self.doc["runs"] = list(old.get("runs", []))
        return {(r["backend"], r["model"], r["lr"]) for r in self.doc["runs"]}

    def add(self, run):
        self.doc["runs"].append(run)
        self.save()

    def save(self):
        write_text_atomic(self.path, json.dumps(self.doc, indent=1, default=float))


def _four_panel_figures(runs, out, backends, labels, title, meta):
    """fig_<backend>_<label>.png for every backend and configuration label, each titled with its run
    (run_note of meta); returns the paths."""
    files = []
    for backend in backends:
        for label in labels:
            sel = [r for r in runs if r["backend"] == backend and r["label"] == label]
            if not sel:
                continue
            path = os.path.join(out, f"fig_{backend}_{label}.png")
            save_figure(four_panel_figure(sel, f"{title} — {backend}, {label}\n{run_note(meta, sel)}"), path)
            files.append(path)
    return files


def write_report(res, log=print):
    """Figures and table.md of experiment 1 from its results (also `report`, e.g. after an interrupted run)."""
    runs, meta, out = res.doc["runs"], res.doc["meta"], os.path.dirname(res.path)
    backends = list(dict.fromkeys(r["backend"] for r in runs))
    labels = list(dict.fromkeys(r["label"] for r in runs))
    files = _four_panel_figures(runs, out, backends, labels, "ViT vs BatchNorm ViTs", meta)
    for backend_ in backends:
        path = os.path.join(out, f"fig_{backend_}_train_time_vs_lr.png")
        sel = [r for r in runs if r["backend"] == backend_]
        save_figure(train_time_vs_lr_figure(sel, f"train time per epoch vs learning rate — {backend_}\n"
                                                 f"{run_note(meta, sel)}"), path)
        files.append(path)
    table = ratio_table(runs, f"Experiment 1 ({meta['dataset']}, {meta['train_samples']} train / "
                              f"{meta['test_samples']} test, {meta['epochs']} epochs)")
    write_text_atomic(os.path.join(out, "table.md"), table)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta["files"] = [os.path.basename(f) for f in files] + ["table.md"]
    res.save()
    if log:
        log(table)
        log(f"wrote {len(files)} figures, table.md and results.json to {out}")


def report(out, log=print):
    """Rebuild experiment 1's figures and table from OUT/results.json."""
    path = os.path.join(out, "results.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if doc.get("meta", {}).get("experiment") != "fixed-lr" or not doc.get("runs"):
        raise ValueError(f"{path} holds no fixed-lr runs")
    res = Results(out, doc["meta"])
    res.doc = doc
    write_report(res, log)
    return doc


def studies_table(storage, prefix, out=None):
    """Experiment 2's shared studies (vitc.search.study_record) as a markdown table; with ``out``, every
    trial also goes to OUT/studies.json. The table is the check that sharing worked: COMPLETE equals the
    distinct trial numbers and the distinct parameter pairs, and surplus trials were PRUNED, not run."""
    from vitc.search import redact, study_record
    rec = study_record(storage, prefix)
    lines = [f"Studies {prefix}* in {redact(storage)}", "",
             "| study | COMPLETE | distinct trial numbers | distinct parameter pairs | PRUNED | FAIL | RUNNING | best "
             "value | best params |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in rec.items():
        c, b = s["counts"], s["best"]
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items()) if b else "—"
        lines.append(f"| {name} | {c.get('COMPLETE', 0)} | {s['distinct_numbers']} | {s['distinct_params']} | "
                     f"{c.get('PRUNED', 0)} | {c.get('FAIL', 0)} | {c.get('RUNNING', 0)} | "
                     f"{'—' if not b else format(b['value'], '.4f')} | {params} |")
    if out:
        os.makedirs(out, exist_ok=True)
        write_text_atomic(os.path.join(out, "studies.json"), json.dumps(rec, indent=1) + "\n")
        lines += ["", f"every trial: {os.path.join(out, 'studies.json')}"]
    return "\n".join(lines)
