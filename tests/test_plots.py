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
    assert [ax.get_title() for ax in axes] == ["episode_return", "loss"]
    x, y = axes[1].get_lines()[0].get_data()
    assert list(x) == [0, 200, 300] and list(y) == [1, 0.5, 0.2]  # the NaN row is skipped

    logged = training.History()
    for i in range(40):
        logged.log(env_steps=10 * i, episode_return=i, **({"kl": 0.01 * i} if i % 2 else {}))
    axes = plots.plot_history(logged, ["episode_return", "kl"], smooth_window=5,
                              thresholds={"episode_return": 30})
    assert len(axes) == 2 and len(axes[0].get_lines()) == 3  # raw, smoothed, threshold
    assert len(plt.get_fignums()) == 2


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
        live.update(reward=i)
    fig = live.figure()
    assert isinstance(fig, Figure) and isinstance(empty, Figure)
    assert plt.get_fignums() == []
    assert [ax.get_title() for ax in fig.axes] == ["reward"]
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
