"""What the figures promise a reader: each states its run (data size, epochs, seeds), heat maps have
a colorbar, epoch/block axes have whole-number ticks, legends sit beside the axes, and measured
values (batch sizes, depths) are the ticks. Figures are captured before they are written."""
import numpy as np
import pytest

import vitc
import vitc.experiments.common as common
from vitc import diagnostics as D
from vitc.models import create_model


REPORTS = ["deepvit", "over_smoothing", "token_labeling", "vit_batchnorm"]


@pytest.fixture
def figures(monkeypatch):
    """Every figure save_figure is given (in common and in each report module), kept open; nothing is
    written."""
    import importlib
    kept = []
    keep = lambda fig, path, dpi=100: kept.append((str(path), fig))  # noqa: E731
    monkeypatch.setattr(common, "save_figure", keep)
    for name in REPORTS:
        monkeypatch.setattr(importlib.import_module(f"vitc.experiments.{name}.report"), "save_figure", keep)
    yield kept
    plt = common.pyplot()
    for _, fig in kept:
        plt.close(fig)


def _texts(fig):
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    return " ".join(out + [ax.get_title() for ax in fig.axes])


def _integer_ticks(axis):
    lo, hi = axis.get_view_interval()
    ticks = [t for t in axis.get_ticklocs() if lo - 1e-9 <= t <= hi + 1e-9]
    return len(ticks) >= 1 and all(float(t).is_integer() for t in ticks)


def _legend_outside(ax):
    leg = ax.get_legend()
    assert leg is not None
    fig = ax.figure
    fig.canvas.draw()
    box, axes_box = leg.get_window_extent(), ax.get_window_extent()
    return box.x0 >= axes_box.x1 - 1 or box.y1 <= axes_box.y0 + 1


@pytest.fixture(scope="module")
def report():
    vitc.manual_seed(0)
    m = create_model("vit_seed_mnist", depth=3, dim=32, heads=4, dim_head=8, mlp_dim=64)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    return D.collapse_report(m, x), D.over_smoothing_report(m, x)


def test_plot_report_states_the_run_and_has_colorbars(report, figures, tmp_path):
    rep, _ = report
    D.plot_report(rep, tmp_path, run="vit_seed_mnist, 300 images, 1 epoch, seed 0")
    figs = {p.rsplit("/", 1)[-1]: f for p, f in figures}
    assert set(figs) == {"similarity.png", "curves.png", "head_similarity.png"}
    for name, fig in figs.items():
        assert "300 images, 1 epoch, seed 0" in _texts(fig) and "maps of 4 image(s)" in _texts(fig), name
    sim = figs["similarity.png"]
    assert len(sim.axes) == 2 and sim.axes[1].get_ylabel() == "cosine similarity"  # the colorbar
    heads = figs["head_similarity.png"]
    assert len(heads.axes) == 3 + 1 and heads.axes[-1].get_ylabel() == "cosine similarity"
    curves = figs["curves.png"].axes[0]
    assert _integer_ticks(curves.xaxis) and _legend_outside(curves)


def test_a_figure_without_a_run_says_so(report, figures, tmp_path):
    rep, os_rep = report
    D.plot_report(rep, tmp_path)
    assert len(figures) == 3 and all("run not stated" in _texts(f) for _, f in figures)
    D.plot_over_smoothing({"plain": os_rep}, str(tmp_path / "os.png"))
    assert "run not stated" in _texts(figures[-1][1])
    with pytest.raises(TypeError, match="run must be a str"):
        D.plot_report(rep, tmp_path, run=300)


def test_plot_over_smoothing_states_the_run(report, figures, tmp_path):
    _, os_rep = report
    D.plot_over_smoothing({"plain": os_rep, "again": os_rep.summary()}, str(tmp_path / "os.png"), title="t",
                          run="60 images, 1 epoch, seeds 0")
    assert len(figures) == 1
    fig = figures[0][1]
    assert "60 images, 1 epoch, seeds 0" in fig._suptitle.get_text()
    assert all(_integer_ticks(ax.xaxis) for ax in fig.axes)
    assert _legend_outside(fig.axes[1])


def test_deepvit_figures_tick_the_measured_depths(figures, tmp_path):
    from vitc.experiments.deepvit.report import plots, run_note
    depths = [3, 5, 12]
    runs = [{"variant": v, "depth": d, "test_accuracy": 0.5, "mean_adjacent_similarity": 0.8, "similar_ratio": 0.1,
             "mean_adjacent_softmax_similarity": 0.7, "n_similar_softmax": 1} for v in ("mhsa", "reattention")
            for d in depths]
    note = run_note({"epochs": 2, "seed": 0}, 5000, 2000)
    plots(runs, ["mhsa", "reattention"], depths, str(tmp_path), note)
    assert note == "5000 training images, 2 epoch(s), seed 0, accuracy on 2000 test images"
    assert [p.rsplit("/", 1)[-1] for p, _ in figures] == ["accuracy_vs_depth.png", "collapse_vs_depth.png"]
    for _, fig in figures:
        assert note in _texts(fig)
        for ax in fig.axes:
            assert list(ax.get_xticks()) == depths
    assert _legend_outside(figures[0][1].axes[0])


def test_short_runs_get_whole_epoch_ticks_and_their_size_in_the_title(figures, tmp_path):
    from vitc.experiments.vit_batchnorm.report import four_panel_figure, run_note
    runs = [{"model": m, "epoch": [1, 2], "train_time": [3.0, 2.5], "test_time": [1.0, 1.1], "train_loss": [5.0, 4.0],
             "test_accuracy": [0.5, 0.6]} for m in ("ViT", "ViTBN-article")]
    meta = {"dataset": "Fashion-MNIST", "train_samples": 20, "test_samples": 10, "epochs": 2, "seed": 0}
    title = f"t\n{run_note(meta, runs)}"
    assert title.endswith("Fashion-MNIST: 20 train / 10 test images, 2 epoch(s), seed 0")
    fig = four_panel_figure(runs, title)
    try:
        assert all(_integer_ticks(ax.xaxis) for ax in fig.axes)
        assert _legend_outside(fig.axes[1])
    finally:
        common.pyplot().close(fig)


def test_token_labeling_curves_have_whole_epoch_ticks(figures, tmp_path):
    from vitc.experiments.token_labeling.report import plot_curves
    recs = [{"arm": "plain", "history": {"epoch": [1, 2], "test_accuracy": [{"cls": 0.3}, {"cls": 0.4}]}}]
    plot_curves(recs, ["plain"], "128 train / 64 test images, 2 epochs, up to 1 seeds", str(tmp_path / "c.png"))
    assert len(figures) == 1
    ax = figures[0][1].axes[0]
    assert _integer_ticks(ax.xaxis) and "128 train" in ax.get_title() and _legend_outside(ax)


def test_value_ticks_label_the_measured_batch_sizes():
    plt = common.pyplot()
    fig, ax = plt.subplots()
    try:
        sizes = [25, 50, 100, 200, 400, 800]
        ax.plot(sizes, [1, 2, 3, 4, 5, 6])
        ax.set_xscale("log", base=2)
        common.value_ticks(ax.xaxis, sizes)
        fig.canvas.draw()
        assert list(ax.get_xticks()) == sizes
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in sizes]
        assert len(ax.xaxis.get_minorticklocs()) == 0
    finally:
        plt.close(fig)


def test_over_smoothing_figures_state_the_run(figures, tmp_path):
    from vitc.experiments.over_smoothing.report import plots
    runs = [{"arm": arm, "depth": 3, "drop_path": 0.1, "seed": s, "token_similarity": [0.1, 0.2, 0.3],
             "attention_spread": [0.01, 0.02, 0.03], "test_accuracy": 0.5, "mean_adjacent_softmax_similarity": 0.8,
             "mean_token_similarity": 0.2} for arm in ("base", "cos") for s in (0, 1)]
    res = {"config": {"subset": 60, "epochs": 1, "dim": 32, "probe": 20}, "seeds": [0, 1], "test_images": 30,
           "depths": [3], "drop_paths": [0.1], "runs": runs}
    plots(res, str(tmp_path))
    assert len(figures) == 4
    for path, fig in figures:
        assert "60 training images, 1 epoch(s), width 32, seeds 0, 1" in _texts(fig), path
    layer = dict((p.rsplit("/", 1)[-1], f) for p, f in figures)["similarity_vs_layer.png"]
    assert _integer_ticks(layer.axes[0].xaxis) and _legend_outside(layer.axes[0])


def test_a_one_epoch_run_gets_one_whole_epoch_tick(figures, tmp_path):
    from vitc.experiments.vit_batchnorm.report import four_panel_figure
    runs = [{"model": "ViT", "epoch": [1], "train_time": [3.0], "test_time": [1.0], "train_loss": [5.0],
             "test_accuracy": [0.5]}]
    fig = four_panel_figure(runs, "one epoch")
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0]
    finally:
        common.pyplot().close(fig)
