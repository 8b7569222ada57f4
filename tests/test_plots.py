"""course_lib.plots: smoothing, mean-over-seeds curves, small multiples and the live plot."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from course_lib import plots, training


@pytest.fixture(autouse=True)
def no_leaked_figures():
    plt.close("all")
    yield
    plt.close("all")


# --- smooth ---------------------------------------------------------------------------------------


def test_smooth_hand_computed():
    assert np.allclose(plots.smooth([1, 2, 3, 4], 2), [1.0, 1.5, 2.5, 3.5])
    assert np.allclose(plots.smooth([3, 1, 2], 1), [3, 1, 2])
    assert np.allclose(plots.smooth([2, 4, 6], 10), [2, 3, 4])  # shorter than the window
    assert plots.smooth([], 3).shape == (0,)


def test_smooth_matches_a_naive_trailing_mean_and_has_no_nan():
    y = np.random.default_rng(0).normal(size=57)
    out = plots.smooth(y, 7)
    naive = [y[max(0, i - 6): i + 1].mean() for i in range(len(y))]
    assert out.shape == y.shape and np.allclose(out, naive)
    assert np.isfinite(out).all()


def test_smooth_skips_nan_entries():
    out = plots.smooth([1.0, np.nan, 3.0, np.nan], 2)
    assert np.allclose(out, [1.0, 1.0, 3.0, 3.0])
    assert np.isnan(plots.smooth([np.nan, 1.0], 1)[0])  # a window with nothing finite stays NaN


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_smooth_rejects_bad_windows(bad):
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        plots.smooth([1, 2, 3], bad)


# --- plot_curves ----------------------------------------------------------------------------------


def _three_seeds(step: float = 10.0):
    """Seed k: y = x + k on x = 0, 10, ..., with 50, 60 and 70 points: the overlap is [0, 490]."""
    return [(np.arange(n) * step, np.arange(n) * step + k) for k, n in enumerate((50, 60, 70))]


def test_plot_curves_mean_and_minmax_band_over_seeds_of_different_lengths():
    before = plt.get_fignums()
    ax = plots.plot_curves({"PPO": _three_seeds()}, threshold=475, num_points=50)
    assert len(plt.get_fignums()) == len(before) + 1
    mean_line = ax.get_lines()[0]
    x, y = mean_line.get_data()
    assert x[0] == 0 and x[-1] == 490 and len(x) == 50  # the range every seed covers
    assert np.allclose(y, x + 1.0)  # mean of x + 0, x + 1, x + 2
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    vertices = bands[0].get_paths()[0].vertices
    top = vertices[(vertices[:, 0] == 490)][:, 1]
    assert np.isclose(top.max(), 492.0) and np.isclose(top.min(), 490.0)  # min-max over seeds
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["PPO (3 seeds, min-max)", "threshold 475"]
    assert ax.get_lines()[1].get_ydata()[0] == 475
    plt.close(ax.figure)
    assert plt.get_fignums() == before


def test_plot_curves_std_band_bare_y_runs_and_no_band():
    fig, ax = plt.subplots()
    out = plots.plot_curves({"A": _three_seeds(), "B": [[1.0, 2.0, 3.0]]}, ax=ax, band="std", smooth_window=3)
    assert out is ax
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["A (3 seeds, ±1 std)", "B (1 seed)"]
    assert len(ax.collections) == 1  # a single seed gets no band
    ax2 = plots.plot_curves({"A": _three_seeds()}, band="none")
    assert len(ax2.collections) == 0


def test_plot_curves_errors():
    with pytest.raises(ValueError, match="band must be"):
        plots.plot_curves({"A": _three_seeds()}, band="iqr")
    with pytest.raises(ValueError, match="share no common x range"):
        plots.plot_curves({"A": [([0, 1], [0, 1]), ([5, 6], [0, 1])]})
    with pytest.raises(ValueError, match="same length"):
        plots.plot_curves({"A": [([0, 1, 2], [0, 1])]})
    with pytest.raises(ValueError, match="no finite points"):
        plots.plot_curves({"A": [[np.nan, np.nan]]})


# --- plot_history ---------------------------------------------------------------------------------


def test_plot_history_small_multiples_from_a_dict_and_a_history():
    history = {"env_steps": [0, 100, 200, 300], "episode_return": [10, 20, 30, 40], "loss": [1, np.nan, 0.5, 0.2]}
    axes = plots.plot_history(history, x_key="env_steps")
    assert [ax.get_title() for ax in axes] == ["episode return, sampling policy: 40", "loss: 0.2"]
    x, y = axes[1].get_lines()[0].get_data()
    assert list(x) == [0, 200, 300] and list(y) == [1, 0.5, 0.2]  # the NaN row is skipped

    logged = training.History()
    for i in range(40):
        logged.log(env_steps=10 * i, episode_return=i, **({"kl": 0.01 * i} if i % 2 else {}))
    axes = plots.plot_history(logged, ["episode_return", "kl"], smooth_window=5,
                              thresholds={"episode_return": 30})
    assert len(axes) == 2 and len(axes[0].get_lines()) == 3  # raw, smoothed, threshold
    assert len(plt.get_fignums()) == 2
    few = plots.plot_history({"eval_return": [1.0, 5.0, 2.0]}, smooth_window=5)[0].get_lines()
    assert len(few) == 1 and list(few[0].get_ydata()) == [1, 5, 2] and few[0].get_marker() == "o"  # unsmoothed


def test_plot_history_unknown_key():
    with pytest.raises(ValueError, match="no metric"):
        plots.plot_history({"a": [1, 2]}, ["b"])
    with pytest.raises(ValueError, match="no metric"):
        plots.plot_history({"a": [1, 2]}, x_key="steps")


# --- LivePlot -------------------------------------------------------------------------------------


def test_liveplot_outside_a_notebook_draws_nothing_and_leaks_no_figure(tmp_path):
    before = plt.get_fignums()
    target = tmp_path / "final.png"
    with plots.LivePlot(["episode_return", "loss"], every_s=0, save_path=str(target)) as live:
        for i in range(500):
            live.update(i, episode_return=float(i), loss=1.0 / (i + 1), ignored=3.0)
    assert live.renders == 0 and live.closed
    assert plt.get_fignums() == before
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(live.data) == ["episode_return", "loss"] and len(live.data["loss"][1]) == 500
    live.close()  # a second close does nothing
    with pytest.raises(RuntimeError, match="closed"):
        live.update(episode_return=1.0)


def test_liveplot_figure_is_not_a_pyplot_figure():
    live = plots.LivePlot()
    empty = live.figure()
    for i in range(5):
        live.update(bonus=i)
    fig = live.figure()
    assert isinstance(fig, Figure) and isinstance(empty, Figure)
    assert plt.get_fignums() == []
    assert [ax.get_title() for ax in fig.axes] == ["bonus: 4"]  # an unknown key is its own title
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0, 1, 2, 3, 4]  # x = update count


def test_liveplot_closes_on_an_exception_inside_the_block():
    with pytest.raises(KeyError):
        with plots.LivePlot() as live:
            live.update(loss=1.0)
            raise KeyError("boom")
    assert live.closed


def test_liveplot_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every_s"):
        plots.LivePlot(every_s=-1)
    with pytest.raises(ValueError, match="window"):
        plots.LivePlot(smooth_window=0)


class _FakeDisplay:
    """Stands in for IPython's display: records every new image and every in-place update."""

    def __init__(self):
        self.shown, self.updated = 0, 0

    def __call__(self, png, handle=None):
        assert png[:4] == b"\x89PNG"
        if handle is None:
            self.shown += 1
            return "handle"
        assert handle == "handle"
        self.updated += 1
        return handle


@pytest.fixture
def fake_kernel(monkeypatch):
    fake = _FakeDisplay()
    monkeypatch.setattr(plots, "_kernel_attached", lambda: True)
    monkeypatch.setattr(plots, "_display", fake)
    monkeypatch.delenv("CI", raising=False)
    return fake


def test_liveplot_in_a_kernel_updates_one_output_and_is_throttled(fake_kernel):
    with plots.LivePlot(every_s=3600) as live:
        for i in range(200):
            live.update(i, loss=1.0 / (i + 1))
    # the first update draws, the throttle holds back the rest, close() draws the final plot
    assert (live.renders, fake_kernel.shown, fake_kernel.updated) == (2, 1, 1)
    assert plt.get_fignums() == []


def test_liveplot_live_off_shows_only_the_final_plot(fake_kernel, monkeypatch):
    with plots.LivePlot(live=False) as live:
        for i in range(50):
            live.update(loss=float(i))
    assert (live.renders, fake_kernel.shown, fake_kernel.updated) == (1, 1, 0)
    monkeypatch.setenv("CI", "true")  # CI defaults to no live updates
    with plots.LivePlot() as live:
        for i in range(50):
            live.update(loss=float(i))
    assert live.renders == 1
    with plots.LivePlot() as live:  # nothing logged: nothing shown
        pass
    assert live.renders == 0


def test_liveplot_in_a_real_kernel_leaves_exactly_one_image(monkeypatch):
    """Run a tiny notebook in a fresh kernel: in-place updates must end as a single image output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("CI", raising=False)
    source = (
        "import matplotlib.pyplot as plt\n"
        "from course_lib import plots\n"
        "with plots.LivePlot(every_s=0) as live:\n"
        "    for i in range(30):\n"
        "        live.update(i, loss=1 / (i + 1))\n"
        "print('renders', live.renders, 'figures', len(plt.get_fignums()))\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    errors = [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert not errors and len(images) == 1, outputs
    renders = int(text.split()[1])
    assert renders >= 2 and text.strip().endswith("figures 0")


# --- readable without the prose: markers, labelled thresholds, outside legends, units ---------------


def _evaluations(n: int = 10, seeds: int = 3, every: float = 5000.0):
    """Greedy evaluations every ``every`` steps, shared by all seeds: y = x / 100 + 10 k for seed k."""
    x = np.arange(1, n + 1) * every
    return [(x, x / 100 + 10 * k) for k in range(seeds)]


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _texts_clear_of_data(ax, text) -> bool:
    """No drawn data point (lines densely resampled, band polygons' vertices) falls inside ``text``."""
    box = text.get_window_extent().expanded(1.0, 1.0)
    points = []
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if line.get_linestyle() == "--":  # the threshold line itself
            continue
        t = np.linspace(0, len(x) - 1, 20 * len(x))
        points.append(np.column_stack([np.interp(t, np.arange(len(x)), x), np.interp(t, np.arange(len(y)), y)]))
    for band in ax.collections:
        points.extend(path.vertices for path in band.get_paths())
    pixels = ax.transData.transform(np.concatenate(points))
    inside = (pixels[:, 0] > box.x0) & (pixels[:, 0] < box.x1) & (pixels[:, 1] > box.y0) & (pixels[:, 1] < box.y1)
    return not inside.any()


def test_plot_curves_few_evaluations_get_markers_at_the_evaluation_steps():
    runs = _evaluations()
    ax = plots.plot_curves({"PPO": runs})
    line = ax.get_lines()[0]
    x, y = line.get_data()
    assert line.get_marker() == "o"
    assert np.array_equal(x, runs[0][0])  # the real evaluation steps, not a 200-point grid
    assert np.allclose(y, runs[0][0] / 100 + 10)  # the exact mean over the three seeds there
    assert ax.figure.get_size_inches().tolist() == [8.0, 4.5]
    assert ax.get_ylabel() == "return per episode" and ax.get_xlabel() == "env steps"
    assert plots.plot_curves({"PPO": runs}, markers=False).get_lines()[0].get_marker() in ("None", "", None)
    many = plots.plot_curves({"PPO": _three_seeds()}).get_lines()[0]  # 50+ points per seed: a plain line
    assert many.get_marker() in ("None", "", None) and len(many.get_xdata()) == 200


def test_plot_curves_seeds_evaluated_at_different_steps_mark_each_evaluation():
    a = (np.array([0.0, 10, 20, 30]), np.array([0.0, 10, 20, 30]))
    b = (np.array([5.0, 15, 25]), np.array([5.0, 15, 25]))
    line = plots.plot_curves({"A": [a, b]}).get_lines()[0]
    x, y = line.get_data()
    assert line.get_marker() == "o"
    assert list(x) == [5, 10, 15, 20, 25]  # every seed's evaluation inside the common range
    assert np.allclose(y, x)  # the other seed is interpolated there


def test_plot_curves_threshold_is_labelled_on_the_plot_and_in_the_legend():
    ax = plots.plot_curves({"PPO": _evaluations()}, threshold=475, threshold_label="solved",
                           ylabel="greedy return (10 episodes)")
    assert ax.get_ylabel() == "greedy return (10 episodes)"
    assert "solved 475" in [t.get_text() for t in ax.get_legend().get_texts()]
    (label,) = [t for t in ax.texts if t.get_text() == "solved 475"]
    assert label.get_position()[1] == 475  # next to the line, in data y
    ax.figure.canvas.draw()
    assert _boxes_overlap(label.get_window_extent(), ax.get_window_extent())  # drawn inside the axes
    assert _texts_clear_of_data(ax, label)


@pytest.mark.parametrize("own_figure", [True, False])
def test_plot_curves_legend_is_outside_the_axes_below_the_x_label(own_figure):
    curves = {"batch-normalised G − V (this lesson)": _evaluations(seeds=5),
              "per-episode normalised G (tutorial)": _evaluations(seeds=5)}
    if own_figure:
        ax = plots.plot_curves(curves, threshold=475, threshold_label="solved", title="CartPole-v1")
        fig = ax.figure
    else:  # lesson 01: the caller's subplot, then tight_layout
        fig, (ax, right) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(2, 1))
        assert plots.plot_curves(curves, ax=ax, threshold=475, threshold_label="solved") is ax
        fig.tight_layout()
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 <= ax.get_window_extent().y0  # wholly below the data area
    assert legend.y1 <= ax.xaxis.get_tightbbox().y0  # and below the tick labels and the x label
    assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)
    if not own_figure:
        assert not _boxes_overlap(legend, right.get_tightbbox())


def test_plot_curves_legend_to_the_right():
    ax = plots.plot_curves({"PPO": _evaluations()}, threshold=475, legend="right")
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    with pytest.raises(ValueError, match="legend must be"):
        plots.plot_curves({"PPO": _evaluations()}, legend="best")


def test_threshold_labels_move_off_the_data():
    # the data sits on the left end just above the line, so the label must go elsewhere
    x = np.arange(100.0)
    y = np.where(x < 30, 0.011, 0.005)
    fig = Figure(figsize=(4.2, 3.0))
    axes = plots._draw_panels(fig, {"approx_kl": (x, y)}, "env steps", 1, {"approx_kl": 0.01}, 1, tight=False)
    fig.canvas.draw()
    (label,) = axes[0].texts
    assert label.get_text() == "alarm 0.01" and _texts_clear_of_data(axes[0], label)
    # a threshold at the top of the data: the label goes below the line, inside the axes
    fig = Figure(figsize=(4.2, 3.0))
    axes = plots._draw_panels(fig, {"episode_return": (x, 4.4 * x)}, "env steps", 1, {"episode_return": 475}, 1,
                              tight=False)
    fig.canvas.draw()
    box = axes[0].texts[0].get_window_extent()
    assert axes[0].get_window_extent().contains(box.x0, box.y1) and _texts_clear_of_data(axes[0], axes[0].texts[0])


# --- the metric registry and the dashboards ----------------------------------------------------------

LOGGED = {  # what course_lib.rl trainers, GreedyEvaluation and the rollouts log (their docstrings)
    "episode_return", "episode_length", "eval_return", "wall_seconds", "policy_loss", "value_loss", "entropy",
    "approx_kl", "clipfrac", "first_ratio_error", "explained_variance", "learning_rate", "kl", "backtracks",
    "line_search_accepted", "surrogate_improvement", "step_norm",
}


def test_every_logged_metric_has_a_title_and_a_y_label_with_its_meaning():
    assert LOGGED <= set(plots.METRICS)
    for key, info in plots.METRICS.items():
        assert info.title and info.ylabel and info.ylabel != key, key
    assert plots.METRICS["entropy"].ylabel == "nats" and plots.METRICS["wall_seconds"].ylabel == "s"
    assert plots.metric_info("mystery") == plots.Metric("mystery", "mystery")  # unknown: the key itself
    assert plots.metric_info("mystery", {"mystery": ("a title", "units")}).ylabel == "units"


def _dashboard() -> plots.LivePlot:
    live = plots.LivePlot(["episode_return", "eval_return", "approx_kl", "mystery"], xlabel="env steps",
                          thresholds={"episode_return": 475, "approx_kl": 0.02})
    for i in range(200):
        row = {"episode_return": 2.0 * i + 89.3, "approx_kl": 0.01 + 0.001 * (i % 3), "mystery": float(i)}
        if i % 20 == 19:
            row["eval_return"] = float(i)
        live.update(512 * (i + 1), **row)
    return live


def test_liveplot_panels_are_labelled_dashboards():
    fig = _dashboard().figure()
    ret, ev, kl, mystery = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == ["return per episode", plots.METRICS["eval_return"].ylabel,
                                                    "nats", "mystery"]
    assert ret.get_title() == "episode return, sampling policy: 487.3"  # the latest value
    assert ev.get_title() == "greedy evaluation return: 199.0"  # NaN rows skipped: the latest evaluation
    assert mystery.get_title() == "mystery: 199.0"
    assert all(ax.get_xlabel() == "env steps" for ax in fig.axes)
    assert [t.get_text() for t in ret.texts] == ["target 475"] and [t.get_text() for t in kl.texts] == ["alarm 0.02"]
    assert len(mystery.texts) == 0  # no threshold given: no label
    assert ev.get_lines()[0].get_marker() == "o" and len(ev.get_lines()[0].get_xdata()) == 10  # few points
    assert ret.get_lines()[0].get_marker() in ("None", "", None)
    assert all(ax.xaxis.get_gridlines()[0].get_visible() for ax in fig.axes)
    assert fig.dpi == 100 and fig.get_size_inches().tolist() == [3 * 4.2, 2 * 3.0]


def test_plot_history_panels_use_the_registry_and_label_thresholds():
    history = {"env_steps": [0, 100, 200, 300], "eval_return": [np.nan, 20, np.nan, 40],
               "clipfrac": [0.1, 0.2, 0.3, np.nan]}
    axes = plots.plot_history(history, x_key="env_steps", thresholds={"clipfrac": 0.25})
    assert [ax.get_title() for ax in axes] == ["greedy evaluation return: 40", "clip fraction: 0.3"]
    assert [ax.get_ylabel() for ax in axes] == [plots.METRICS["eval_return"].ylabel, "fraction of samples"]
    assert axes[0].get_xlabel() == "env steps"
    assert [t.get_text() for t in axes[1].texts] == ["alarm 0.25"]
    empty = plots.plot_history({"kl": [np.nan, np.nan]})
    assert empty[0].get_title() == "KL(old ‖ new) after the step: no data yet"


def test_liveplot_fixed_margins_fit_every_registry_label():
    """At the live path's fixed margins, no panel's title, labels or ticks run into another's or off the figure."""
    live = plots.LivePlot(every_s=0)
    for i in range(50):
        live.update(1000 * i, **{key: 1e-3 * (i % 7) - 0.002 for key in plots.METRICS})
    fig = live.figure()
    fig.canvas.draw()
    boxes = [ax.get_tightbbox() for ax in fig.axes]
    for ax, box in zip(fig.axes, boxes, strict=True):
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), ax.get_title()
        assert ax.yaxis.label.get_window_extent().height <= ax.get_window_extent().height, ax.get_ylabel()
        assert ax.title.get_window_extent().width <= ax.get_window_extent().width * 1.15, ax.get_title()
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not _boxes_overlap(a, b)
