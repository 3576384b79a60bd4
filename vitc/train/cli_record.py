"""What ``python -m vitc.train`` keeps of each epoch: --metrics (CSV or JSON lines), --history (JSON) and MLflow.

Both files are rewritten atomically after every epoch from the whole history (a resumed run's included, read
from its checkpoint), so a crash leaves the finished epochs and never a half-written line. MLflow logging
reuses the experiments' Tracker (vitc.experiments.common): one run, the command's options as its
parameters, the epoch's numbers as metrics with step = epoch.
"""
import csv
import io
import json
import math
import os

from ..io import write_text_atomic
from .cli_data import OptionError

_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
# MLflow names beyond the four the Tracker logs (training_loss, validation_accuracy, training_time, validation_time)
_MLFLOW_EXTRA = {"train_loss_sum": "training_loss_sum", "test_loss": "validation_loss", "lr": "learning_rate",
                 "ema_test_accuracy": "ema_validation_accuracy", "ema_test_loss": "ema_validation_loss"}


def metrics_format(path):
    if path is None:
        return None
    fmt = _FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise OptionError(f"--metrics {path}: the file name must end in .csv or .jsonl (JSON lines)")
    return fmt


def _rows(history):
    keys = list(history)
    return keys, [{k: history[k][i] for k in keys} for i in range(len(history.get("epoch", [])))]


def metrics_text(history, fmt):
    """The metrics file's text: one row (CSV) or JSON object (JSON lines) per epoch."""
    keys, rows = _rows(history)
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class EpochRecorder:
    """fit() callback: appends the epoch to the history and rewrites --metrics and --history."""

    def __init__(self, metrics, history_path, document, history):
        self.metrics, self.fmt = metrics, metrics_format(metrics)
        self.history_path, self.document = history_path, document
        self.history = {k: list(v) for k, v in history.items()}

    def __call__(self, record):
        # epochs from this one on are dropped first: fit may resume from an older checkpoint than the
        # newest (a damaged one is skipped) and run them again
        keep = [i for i, e in enumerate(self.history.get("epoch", [])) if e < record["epoch"]]
        self.history = {k: [v[i] for i in keep] for k, v in self.history.items()}
        for k, v in record.items():
            self.history.setdefault(k, []).append(v)
        self.write()
        return False

    def write(self):
        if self.metrics:
            write_text_atomic(self.metrics, metrics_text(self.history, self.fmt))
        if self.history_path:
            write_text_atomic(self.history_path, json.dumps(dict(self.document, history=self.history), indent=1))


def tracked(args, params, train):
    """``train(callback)`` inside an MLflow run when --tracking-uri is given, else ``train(None)``."""
    if not args.tracking_uri:
        return train(None)
    try:  # the trainer has no --no-mlflow: it tracks only when --tracking-uri is given
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise OptionError("--tracking-uri needs MLflow (pip install mlflow); or drop --tracking-uri") from None

    from ..experiments.common import Tracker
    try:
        tracker = Tracker(True, ".", args.tracking_uri, args.experiment_name, off_hint="drop --tracking-uri")
    except MlflowException as e:
        raise OptionError(f"--tracking-uri {args.tracking_uri}: {str(e).splitlines()[0]}") from None

    def run(log_epoch):
        def on_epoch_end(record):
            log_epoch(record)
            extra = {name: float(record[k]) for k, name in _MLFLOW_EXTRA.items()
                     if record.get(k) is not None and math.isfinite(record[k])}
            tracker.mlflow.log_metrics(extra, step=record["epoch"])
            return False
        return train(on_epoch_end)

    history, run_id = tracker.run(f"{args.model} on {args.dataset}", params, run)
    print(f"MLflow run {run_id} at {tracker.uri} (experiment {args.experiment_name!r})", flush=True)
    return history
