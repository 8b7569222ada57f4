"""Training curves: smoothing, mean-over-seeds plots with a band, small multiples and a live plot.

``plot_curves`` and ``plot_history`` draw with pyplot, so in a notebook the figure shows under the
cell (and the inline backend closes it). :class:`LivePlot` never touches pyplot: it renders a
private :class:`~matplotlib.figure.Figure` to PNG and shows it through one IPython display handle
that is updated in place, so a training loop produces exactly one image and leaks no figures.

Every panel is meant to be read without the prose: :data:`METRICS` gives each metric the course
logs a human title and a y label with its unit, threshold lines carry a text label, series with
few points (greedy evaluations) get markers, and legends sit outside the data.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter, MaxNLocator

from course_lib.runtime import in_jupyter_kernel as _kernel_attached

__all__ = ["smooth", "plot_curves", "plot_history", "LivePlot", "Metric", "METRICS", "metric_info"]

Run = tuple[Sequence[float], Sequence[float]] | Sequence[float]
"""One seed's curve: an ``(x, y)`` pair of equal-length 1-D arrays, or just ``y`` (x = 0, 1, ...)."""

FEW_POINTS = 25
"""A seed (or a dashboard series) with at most this many points is drawn with markers."""


class Metric(NamedTuple):
    """How a logged metric is labelled on a plot."""

    title: str
    """Human title of the panel (the latest value is appended on dashboards)."""
    ylabel: str
    """Y-axis label, with the unit (or the scale's meaning when there is no unit)."""
    threshold: str = "threshold"
    """Word put before a threshold line's value on this metric, e.g. ``"target 475"``."""


METRICS: dict[str, Metric] = {
    # episodes (course_lib.rl.rollouts.RolloutBatch.episode_stats, onpolicy.GreedyEvaluation)
    "episode_return": Metric("episode return, sampling policy", "return per episode", "target"),
    "episode_length": Metric("episode length", "steps per episode", "target"),
    "eval_return": Metric("greedy evaluation return", "mean return, 10 episodes", "target"),
    # losses and diagnostics (reinforce.py, ppo.py, trpo.py)
    "policy_loss": Metric("policy loss (not a progress signal)", "surrogate loss"),
    "value_loss": Metric("value loss", "squared error, (return)²", "alarm"),
    "entropy": Metric("policy entropy", "nats", "floor"),
    "approx_kl": Metric("approx. KL(old ‖ new)", "nats", "alarm"),
    "kl": Metric("KL(old ‖ new) after the step", "nats", "limit"),
    "clipfrac": Metric("clip fraction", "fraction of samples", "alarm"),
    "explained_variance": Metric("explained variance of V", "1 = perfect, ≤ 0 useless"),
    "first_ratio_error": Metric("ratio error, first minibatch", "max |r − 1| (must be ≈ 0)", "alarm"),
    "learning_rate": Metric("learning rate", "Adam step size"),
    "grad_norm": Metric("gradient norm", "global L2 norm"),
    # TRPO's line search (trpo.py)
    "backtracks": Metric("line-search backtracks", "step shrinks (count)", "alarm"),
    "line_search_accepted": Metric("line search accepted", "1 = kept, 0 = rolled back"),
    "surrogate_improvement": Metric("surrogate improvement", "ΔL (normalised advantage)"),
    "step_norm": Metric("natural-gradient step norm", "‖Δθ‖ (parameter space)"),
    # language models (course_lib.lm.sft, course_lib.lm.policy_gradient)
    "eval_accuracy": Metric("greedy held-out accuracy", "fraction of test problems right", "target"),
    "reward": Metric("mean reward of the batch, sampling policy", "reward (1 = right)", "target"),
    "completion_length": Metric("completion length", "tokens, EOS included"),
    # bookkeeping, and lesson 00's bandit
    "env_steps": Metric("environment steps", "steps"),
    "wall_seconds": Metric("wall-clock time", "s"),
    "expected_reward": Metric("expected reward", "reward per pull", "target"),
    "p_best": Metric("p(best arm)", "probability", "target"),
}
"""Title and y label (with unit) of every metric the course logs; an unknown key is its own label."""


def metric_info(key: str, overrides: Mapping[str, Metric | tuple[str, str]] | None = None) -> Metric:
    """The :class:`Metric` of ``key``: from ``overrides``, else :data:`METRICS`, else ``key`` itself."""
    if overrides and key in overrides:
        return Metric(*overrides[key])
    return METRICS.get(key, Metric(key, key))


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average: ``out[i]`` is the mean of the last ``window`` values up to ``i``.

    The first points average what exists so far (no NaN padding, same length as the input), so a
    series shorter than ``window`` still gives a curve. NaN entries are skipped; a point whose whole
    window is NaN stays NaN. ``window=1`` returns the values unchanged (as floats).
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    y = np.asarray(values, dtype=float).reshape(-1)
    finite = np.isfinite(y)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(y) + 1)
    start = np.maximum(end - int(window), 0)
    n = counts[end] - counts[start]
    return np.where(n > 0, (sums[end] - sums[start]) / np.maximum(n, 1), np.nan)


def _as_xy(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Split a run into finite ``(x, y)`` arrays sorted by x."""
    if isinstance(run, tuple) and len(run) == 2 and all(np.ndim(part) == 1 for part in run):
        x, y = (np.asarray(part, dtype=float) for part in run)
    else:
        y = np.asarray(run, dtype=float).reshape(-1)
        x = np.arange(len(y), dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y of a run must have the same length, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind="stable")
    return x[keep][order], y[keep][order]


def _short_number(value: float, _pos: object = None) -> str:
    """Tick text for step counts: 25000 -> "25k", 1500000 -> "1.5M"."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _latest(value: float) -> str:
    """The latest value of a metric, for a title: 487.3, 0.0123, 20,480."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"


Band = tuple[np.ndarray, np.ndarray, np.ndarray]
"""What a plot covers, for placing labels clear of it: x and the low and high y at each x."""


def _clear_of(drawn: Sequence[Band], x0: float, x1: float, y0: float, y1: float) -> bool:
    """Whether the box [x0, x1] × [y0, y1] misses every piecewise-linear band in ``drawn``."""
    for x, low, high in drawn:
        order = np.argsort(x, kind="stable")
        x, low, high = x[order], low[order], high[order]
        xs = np.concatenate([[x0], x[(x > x0) & (x < x1)], [x1]])
        xs = xs[(xs >= x[0]) & (xs <= x[-1])] if len(x) else xs[:0]
        above, below = np.interp(xs, x, low) > y1, np.interp(xs, x, high) < y0
        if (~above & ~below).any() or (above[:-1] & below[1:]).any() or (below[:-1] & above[1:]).any():
            return False
    return True


def _label_threshold(ax: Axes, value: float, text: str, fontsize: str, drawn: Sequence[Band]) -> None:
    """A dashed gray line at y = ``value`` and ``text`` next to it, where it covers none of ``drawn``.

    Tries above then below the line, at its left end then its right end, and takes the first spot
    that is inside the axes and clear of the data (text size estimated from the font size); if none
    is clear, the text keeps a light background so it stays readable over the data.
    """
    ax.axhline(value, color="gray", linestyle="--", linewidth=1, label=text)
    (xa, xb), (ya, yb) = ax.get_xlim(), ax.get_ylim()
    box, dpi = ax.get_window_extent(), ax.figure.dpi  # the axes in pixels, from its current position
    size = FontProperties(size=fontsize).get_size_in_points()
    width = (0.6 * size * len(text) + 6) / 72 / (box.width / dpi) * (xb - xa)  # in data units, generous
    height = 1.5 * (1.2 * size + 4) / 72 / (box.height / dpi) * (yb - ya)
    spots = [(side, va) for side in ("left", "right") for va in ("bottom", "top")]
    inside = [(side, va) for side, va in spots if (value + height <= yb if va == "bottom" else value - height >= ya)]
    clear = [(side, va) for side, va in inside if _clear_of(
        drawn, *((xa, xa + width) if side == "left" else (xb - width, xb)),
        *((value, value + height) if va == "bottom" else (value - height, value)))]
    side, va = (clear or inside or spots)[0]
    ax.text(0.01 if side == "left" else 0.99, value, text, ha=side, va=va, fontsize=fontsize, color="dimgray",
            transform=transforms.blended_transform_factory(ax.transAxes, ax.transData),
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1})


def _legend_outside(ax: Axes, where: Literal["below", "right"]) -> None:
    """Put the legend outside the axes, so it covers no data: below the x label, or to the right.

    Below, the offset is the measured depth of the tick labels and x label (in inches, so it holds
    when a layout engine later resizes the axes), and the columns are as many as fit the axes width.
    """
    fig = ax.figure
    if where == "right":
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        return
    depth = (ax.get_window_extent().y0 - ax.xaxis.get_tightbbox().y0) / fig.dpi + 0.08  # inches
    anchor = ax.transAxes + transforms.ScaledTranslation(0, -depth, fig.dpi_scale_trans)
    entries = len(ax.get_legend_handles_labels()[1])
    for ncols in range(min(entries, 3), 0, -1):
        legend = ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, 0.0),
                           bbox_transform=anchor, borderaxespad=0, ncols=ncols)
        if ncols == 1 or legend.get_window_extent().width <= ax.get_window_extent().width:
            return


def plot_curves(curves: Mapping[str, Sequence[Run]], *, ax: Axes | None = None, smooth_window: int = 1,
                band: Literal["minmax", "std", "none"] = "minmax", threshold: float | None = None,
                threshold_label: str = "threshold", num_points: int = 200, xlabel: str = "env steps",
                ylabel: str = "return per episode", title: str | None = None, markers: bool | None = None,
                legend: Literal["below", "right"] = "below") -> Axes:
    """One line per label: the mean over seeds, with a shaded band, on a common x grid.

    Each seed is smoothed (trailing ``smooth_window``), then linearly interpolated onto a grid
    spanning the x range **all** seeds cover (the overlap), so the mean is always over every seed.
    The grid is ``num_points`` even steps; but when every seed has at most :data:`FEW_POINTS` points
    in the overlap (greedy evaluations every few thousand steps), it is the seeds' own x values
    (their union), drawn with markers (``markers=None``: automatic; True/False force them on or
    off). A marker is then at a real evaluation: the exact mean over seeds when the seeds share
    their x values (the usual case), else some seeds' values there are interpolated.
    ``band="minmax"`` shades min to max over seeds (honest with 3-5 seeds), ``"std"`` shades
    mean ± one standard deviation; the legend says which and how many seeds. ``threshold`` draws a
    dashed line, in the legend and labelled on the plot (``f"{threshold_label} {threshold:g}"``).
    The legend sits outside the axes, ``"below"`` the x label or to the ``"right"``, so it covers no
    data (``bbox_inches="tight"``, which the notebook backend uses, and ``tight_layout`` keep it).
    Returns the Axes; when ``ax`` is None a new 8 x 4.5 inch pyplot figure is created with
    constrained layout (the caller owns it).
    """
    if band not in ("minmax", "std", "none"):
        raise ValueError(f"band must be 'minmax', 'std' or 'none', got {band!r}")
    if legend not in ("below", "right"):
        raise ValueError(f"legend must be 'below' or 'right', got {legend!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    drawn: list[Band] = []
    for label, runs in curves.items():
        xy = [(x, smooth(y, smooth_window)) for x, y in map(_as_xy, runs) if len(x) > 0]
        if not xy:
            raise ValueError(f"curve {label!r} has no finite points")
        lo, hi = max(x[0] for x, _ in xy), min(x[-1] for x, _ in xy)
        if lo > hi:
            raise ValueError(f"the seeds of {label!r} share no common x range ({lo:g} > {hi:g})")
        inside = [x[(x >= lo) & (x <= hi)] for x, _ in xy]
        few = max(len(np.unique(x)) for x in inside) <= FEW_POINTS
        if few:
            grid = np.unique(np.concatenate(inside))  # every seed's evaluation x in the overlap
        else:
            grid = np.linspace(lo, hi, num_points) if hi > lo else np.array([lo])
        ys = np.stack([np.interp(grid, x, y) for x, y in xy])  # (seeds, len(grid))
        mean = ys.mean(axis=0)
        seeds = f"{len(xy)} seed{'s' if len(xy) != 1 else ''}"
        kind = {"minmax": ", min-max", "std": ", ±1 std", "none": ""}[band] if len(xy) > 1 else ""
        marker = "o" if (few if markers is None else markers) else None
        (line,) = ax.plot(grid, mean, label=f"{label} ({seeds}{kind})", marker=marker, markersize=4)
        drawn.append((grid, mean, mean))
        if band != "none" and len(xy) > 1:
            if band == "minmax":
                low, high = ys.min(axis=0), ys.max(axis=0)
            else:
                low, high = mean - ys.std(axis=0), mean + ys.std(axis=0)
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            drawn.append((grid, low, high))
    if threshold is not None:
        _label_threshold(ax, threshold, f"{threshold_label} {threshold:g}", "small", drawn)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(ax, legend)
    return ax


PANEL_SIZE = (4.2, 3.0)
"""Inches per dashboard panel (width, height): readable on a laptop screen, three across."""

# fixed dashboard margins, in inches: the live path cannot afford tight_layout (it triples the time)
_LEFT, _RIGHT, _BOTTOM, _TOP, _GAP_W, _GAP_H = 0.85, 0.15, 0.5, 0.35, 0.9, 0.85


def _draw_panels(fig: Figure, series: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str,
                 smooth_window: int, thresholds: Mapping[str, float], ncols: int, tight: bool = True,
                 metrics: Mapping[str, Metric | tuple[str, str]] | None = None) -> list[Axes]:
    """Draw one panel per metric onto ``fig``: raw points faint, the smoothed line on top.

    Each panel: the metric's title and its latest finite value, its y label with the unit
    (:func:`metric_info`), the x label, a grid, and labelled threshold lines. A series of at most
    :data:`FEW_POINTS` points (greedy evaluations) is drawn as it is, with markers and unsmoothed
    (a trailing mean over a handful of evaluations would lag by thousands of steps). NaN entries are skipped. ``tight=False`` uses
    fixed margins (in inches, sized for :data:`PANEL_SIZE`) instead of ``tight_layout``, which
    triples the drawing time.
    """
    nrows = math.ceil(len(series) / ncols)
    if not tight:  # before the panels exist, so that threshold labels are placed for the final size
        width, height = fig.get_size_inches()
        panel_w = (width - _LEFT - _RIGHT - (ncols - 1) * _GAP_W) / ncols
        panel_h = (height - _BOTTOM - _TOP - (nrows - 1) * _GAP_H) / nrows
        fig.subplots_adjust(left=_LEFT / width, right=1 - _RIGHT / width, bottom=_BOTTOM / height,
                            top=1 - _TOP / height, wspace=_GAP_W / panel_w, hspace=_GAP_H / panel_h)
    axes = []
    for i, (key, (x, y)) in enumerate(series.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        info = metric_info(key, metrics)
        marker = "o" if len(x) <= FEW_POINTS else None
        drawn: list[Band] = [(x, y, y)]
        if smooth_window > 1 and not marker:  # a few points (evaluations) are shown as they are
            smoothed = smooth(y, smooth_window)
            ax.plot(x, y, color="C0", alpha=0.3, linewidth=1)
            ax.plot(x, smoothed, color="C0", linewidth=1.5)
            drawn.append((x, smoothed, smoothed))
        else:
            ax.plot(x, y, color="C0", linewidth=1.5, marker=marker, markersize=3.5)
        if key in thresholds:
            _label_threshold(ax, thresholds[key], f"{info.threshold} {thresholds[key]:g}", "small", drawn)
        latest = _latest(y[-1]) if len(y) else "no data yet"
        ax.set_title(f"{info.title}: {latest}", fontsize="medium", y=1.0, pad=5)  # fixed y: skips a slow search
        ax.set_ylabel(info.ylabel, fontsize="small")
        ax.set_xlabel(xlabel, fontsize="small")
        ax.tick_params(labelsize="small")
        whole = bool(len(y)) and bool(np.all(y == np.round(y)))  # counts (backtracks): integer ticks
        for axis, integer in ((ax.xaxis, False), (ax.yaxis, whole)):  # few ticks: each costs drawing time
            axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], integer=integer))
        ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
        ax.grid(alpha=0.3)
        axes.append(ax)
    if tight:
        fig.tight_layout()
    return axes


def plot_history(history: Any, keys: Sequence[str] | None = None, *, x_key: str | None = None,
                 smooth_window: int = 1, thresholds: Mapping[str, float] | None = None,
                 ncols: int = 3, metrics: Mapping[str, Metric | tuple[str, str]] | None = None,
                 xlabel: str | None = None, panel_size: tuple[float, float] = PANEL_SIZE) -> list[Axes]:
    """Small multiples: one panel per metric of a history (dict of lists or a ``training.History``).

    ``x_key`` names the column used as x (e.g. ``"env_steps"``); without it x is the row number.
    ``xlabel`` defaults to ``x_key`` with spaces (``"env steps"``), or ``"row"``. NaN entries (a
    metric not logged in that row) are skipped. Panels are labelled from :data:`METRICS`, which
    ``metrics`` (key -> ``Metric`` or ``(title, ylabel)``) extends or overrides; ``panel_size`` is
    in inches. Returns the panels' Axes, on a new pyplot figure.
    """
    known = list(history.keys())
    keys = list(keys) if keys is not None else [k for k in known if k != x_key]
    missing = [k for k in keys + ([x_key] if x_key else []) if k not in known]
    if missing or not keys:
        raise ValueError(f"history has no metric(s) {missing or keys}; it has {known}")
    x = np.asarray(history[x_key], dtype=float) if x_key else None
    series = {}
    for key in keys:
        y = np.asarray(history[key], dtype=float)
        series[key] = (x if x is not None else np.arange(len(y), dtype=float), y)
    ncols = max(1, min(ncols, len(keys)))
    fig = plt.figure(figsize=(panel_size[0] * ncols, panel_size[1] * math.ceil(len(keys) / ncols)))
    xlabel = xlabel or (x_key.replace("_", " ") if x_key else "row")
    return _draw_panels(fig, series, xlabel, smooth_window, thresholds or {}, ncols, metrics=metrics)


def _display(png: bytes, handle: Any = None) -> Any:
    """Show a PNG in the notebook, or replace the image behind ``handle``; return the handle."""
    from IPython.display import Image, display

    if handle is None:
        return display(Image(data=png), display_id=True)
    handle.update(Image(data=png))
    return handle


class LivePlot:
    """A training curve that redraws in place while a loop runs, at most once every ``every_s``.

    Use it as a context manager (or call :meth:`close`), so a final plot with every point is shown::

        with plots.LivePlot(["episode_return"], thresholds={"episode_return": 475}) as live:
            for it in range(100):
                ...
                live.update(it, episode_return=mean_return, loss=loss.item())

    Inside a Jupyter kernel the plot is one output, updated in place. With ``live=False`` (the
    default when ``CI=true``) nothing is drawn until :meth:`close`, which shows one final plot. In
    plain Python (no kernel) nothing is shown; ``save_path`` writes the final plot to a file.
    No pyplot figure is ever created, so none is left open. Drawing costs 0.1-0.3 s on a small CPU,
    so redraws are also spaced by five times the last drawing time (at most a sixth of the loop).

    Each panel is a dashboard: the metric's title and latest value, a y label with its unit (from
    :data:`METRICS`; ``metrics`` extends or overrides it), labelled ``thresholds`` (``{key: y}``),
    markers while a series has few points. ``panel_size`` is in inches, ``dpi`` of the PNG.
    """

    def __init__(self, keys: Sequence[str] | None = None, *, every_s: float = 2.0, smooth_window: int = 1,
                 thresholds: Mapping[str, float] | None = None, xlabel: str = "iteration", ncols: int = 3,
                 live: bool | None = None, save_path: str | None = None,
                 metrics: Mapping[str, Metric | tuple[str, str]] | None = None,
                 panel_size: tuple[float, float] = PANEL_SIZE, dpi: float = 100) -> None:
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        smooth([], smooth_window)  # validates the window
        self.keys = list(keys) if keys is not None else None
        self.every_s, self.smooth_window, self.ncols = every_s, smooth_window, ncols
        self.thresholds, self.xlabel, self.save_path = dict(thresholds or {}), xlabel, save_path
        self.metrics, self.panel_size, self.dpi = dict(metrics or {}), panel_size, dpi
        self.data: dict[str, tuple[list[float], list[float]]] = {}
        self.renders = 0
        self.closed = False
        self._shows = _kernel_attached()
        self._live = self._shows and (live if live is not None else os.environ.get("CI") != "true")
        self._handle: Any = None
        self._next_render = -math.inf
        self._count = 0

    def update(self, step: float | None = None, **metrics: float) -> None:
        """Record one point per metric (x = ``step``, or the update count) and maybe redraw."""
        if self.closed:
            raise RuntimeError("this LivePlot is closed; create a new one")
        x = float(self._count if step is None else step)
        self._count += 1
        for key, value in metrics.items():
            if self.keys is None or key in self.keys:
                xs, ys = self.data.setdefault(key, ([], []))
                xs.append(x)
                ys.append(float(value.item() if hasattr(value, "item") else value))
        if self._live and time.monotonic() >= self._next_render:
            self._render()

    def figure(self) -> Figure:
        """A new, pyplot-free Figure with the current curves (for saving; nothing to close)."""
        order = self.keys if self.keys is not None else list(self.data)
        series = {k: (np.array(self.data[k][0]), np.array(self.data[k][1])) for k in order if k in self.data}
        ncols = max(1, min(self.ncols, len(series)))
        nrows = math.ceil(max(len(series), 1) / ncols)
        fig = Figure(figsize=(self.panel_size[0] * ncols, self.panel_size[1] * nrows), dpi=self.dpi)
        if series:
            _draw_panels(fig, series, self.xlabel, self.smooth_window, self.thresholds, ncols, tight=False,
                         metrics=self.metrics)
        return fig

    def _render(self) -> None:
        start = time.monotonic()
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png")
        self._handle = _display(buffer.getvalue(), self._handle)
        now = time.monotonic()
        self._next_render = now + max(self.every_s, 5 * (now - start))
        self.renders += 1

    def close(self) -> None:
        """Draw the final plot once (in a kernel), save it if asked; later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if self.save_path:
            self.figure().savefig(self.save_path)
        if self._shows and self.data:
            self._render()

    def __enter__(self) -> LivePlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
