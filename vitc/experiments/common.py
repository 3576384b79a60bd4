"""What the experiments share: machine information, thread settings, figures written atomically,
and MLflow tracking (one run per configuration, a no-op when tracking is off)."""
import argparse
import io
import os
import platform
import sys

import vitc
from vitc._checks import expect_int
from vitc.io import atomic_write

__all__ = ["machine_info", "set_threads", "show_defaults", "fashion_mnist_splits", "pyplot", "save_figure", "integer_ticks",
           "value_ticks", "legend_beside", "Tracker"]


def machine_info(backends=("vitc",)):
    """Platform, CPU model, thread counts (and PyTorch's version and threads when it is a backend)."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "vitc_threads": vitc.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    if "torch" in backends:
        import torch
        info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    return info


def show_defaults(parser):
    """Make ``--help`` of parser (and of its sub-commands) show every option's default: "(default: X)"
    is appended to each option whose default is not None/False and whose help does not already
    state one (argparse's ArgumentDefaultsHelpFormatter skips options without a help text). The
    description keeps its line breaks. Returns parser."""
    parsers = [parser]
    for p in parsers:
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
                continue
            if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                    or "default" in (action.help or "")):
                continue
            action.help = ((action.help + " ") if action.help else "") + "(default: %(default)s)"
    return parser


def set_threads(threads, backends=("vitc",)):
    """Compute threads of vitc (and of PyTorch when it is a backend); None keeps the defaults."""
    if threads is None:
        return
    threads = expect_int(threads, "experiment", "threads", minimum=1)
    vitc.set_num_threads(threads)
    if "torch" in backends:
        import torch
        torch.set_num_threads(threads)


def fashion_mnist_splits(data_root, subset, test_subset):
    """(train, test) Fashion-MNIST datasets for a CLI: data_root None reads Debian's folder; a missing
    or damaged file ends the command with one error line (SystemExit) instead of a traceback."""
    from vitc.data import FashionMNIST
    kw = {"root": data_root} if data_root else {}
    try:
        return FashionMNIST(train=True, subset=subset, **kw), FashionMNIST(train=False, subset=test_subset, **kw)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (unless a notebook already chose one)."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def integer_ticks(axis):
    """Whole-number ticks only on ``axis`` (ax.xaxis / ax.yaxis): epochs, blocks, trials (one tick
    when only one whole number is in view, as for a one-epoch run)."""
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def value_ticks(axis, values):
    """Ticks exactly at the measured values, labelled as they are (a log axis would otherwise label
    powers of ten or two that were never measured)."""
    from matplotlib.ticker import FixedLocator, NullLocator
    values = sorted(set(values))
    axis.set_major_locator(FixedLocator(values))
    axis.set_major_formatter(lambda v, _pos: f"{v:g}")
    axis.set_minor_locator(NullLocator())


def legend_beside(ax, **kw):
    """The legend to the right of the axes, off the data."""
    return ax.legend(**dict(dict(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0), **kw))


def save_figure(fig, path, dpi=100):
    """Write ``fig`` as a PNG atomically and close it."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, write)


class Tracker:
    """One MLflow run per configuration; every call is a no-op when ``enabled`` is false. ``off_hint``: how
    the calling command runs without MLflow (the experiments' --no-mlflow; the trainer's: no --tracking-uri)."""

    def __init__(self, enabled, out, tracking_uri, experiment, off_hint="pass --no-mlflow"):
        self.mlflow = None
        if not enabled:
            return
        try:
            import mlflow
        except ImportError:
            raise ValueError(f"MLflow is not installed (pip install 'vitc[experiments]'); or {off_hint}") from None
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            "sqlite:///" + os.path.join(os.path.abspath(out), "mlflow.db")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        self.mlflow, self.uri = mlflow, uri

    def run(self, run_name, params, fn):
        """fn(log_epoch) -> result; log_epoch(rec) logs the article's four metrics with step=epoch.
        Returns (result, MLflow run id or None)."""
        if self.mlflow is None:
            return fn(None), None
        with self.mlflow.start_run(run_name=run_name) as r:
            self.mlflow.log_params(params)

            def log_epoch(rec):
                self.mlflow.log_metrics({"training_loss": rec["train_loss"], "validation_accuracy": rec["test_accuracy"],
                                         "training_time": rec["train_time"], "validation_time": rec["test_time"]},
                                        step=rec["epoch"])
            return fn(log_epoch), r.info.run_id
