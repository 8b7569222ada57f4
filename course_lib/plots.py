"""Training curves: smoothing, mean-over-seeds plots with a band, small multiples and a live plot.

``plot_curves`` and ``plot_history`` draw with pyplot, so in a notebook the figure shows under the
cell (and the inline backend closes it). :class:`LivePlot` never touches pyplot: it renders a
private :class:`~matplotlib.figure.Figure` to PNG and shows it through one IPython display handle
that is updated in place, so a training loop produces exactly one image and leaks no figures.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_lib.runtime import in_jupyter_kernel as _kernel_attached

__all__ = ["smooth", "plot_curves", "plot_history", "LivePlot"]

Run = tuple[Sequence[float], Sequence[float]] | Sequence[float]
"""One seed's curve: an ``(x, y)`` pair of equal-length 1-D arrays, or just ``y`` (x = 0, 1, ...)."""


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


def plot_curves(curves: Mapping[str, Sequence[Run]], *, ax: Axes | None = None, smooth_window: int = 1,
                band: Literal["minmax", "std", "none"] = "minmax", threshold: float | None = None,
                threshold_label: str = "threshold", num_points: int = 200, xlabel: str = "env steps",
                ylabel: str = "episode return", title: str | None = None) -> Axes:
    """One line per label: the mean over seeds, with a shaded band, on a common x grid.

    Each seed is smoothed (trailing ``smooth_window``), then linearly interpolated onto
    ``num_points`` x values spanning the range **all** seeds cover (the overlap), so the mean is
    always over every seed. ``band="minmax"`` shades min to max over seeds (honest with 3-5 seeds),
    ``"std"`` shades mean ± one standard deviation; the legend says which and how many seeds.
    Returns the Axes; when ``ax`` is None a new pyplot figure is created (the caller owns it).
    """
    if band not in ("minmax", "std", "none"):
        raise ValueError(f"band must be 'minmax', 'std' or 'none', got {band!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, runs in curves.items():
        xy = [(x, smooth(y, smooth_window)) for x, y in map(_as_xy, runs) if len(x) > 0]
        if not xy:
            raise ValueError(f"curve {label!r} has no finite points")
        lo, hi = max(x[0] for x, _ in xy), min(x[-1] for x, _ in xy)
        if lo > hi:
            raise ValueError(f"the seeds of {label!r} share no common x range ({lo:g} > {hi:g})")
        grid = np.linspace(lo, hi, num_points) if hi > lo else np.array([lo])
        ys = np.stack([np.interp(grid, x, y) for x, y in xy])  # (seeds, num_points)
        mean = ys.mean(axis=0)
        seeds = f"{len(xy)} seed{'s' if len(xy) != 1 else ''}"
        kind = {"minmax": ", min-max", "std": ", ±1 std", "none": ""}[band] if len(xy) > 1 else ""
        (line,) = ax.plot(grid, mean, label=f"{label} ({seeds}{kind})")
        if band != "none" and len(xy) > 1:
            if band == "minmax":
                low, high = ys.min(axis=0), ys.max(axis=0)
            else:
                low, high = mean - ys.std(axis=0), mean + ys.std(axis=0)
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"{threshold_label} {threshold:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def _draw_panels(fig: Figure, series: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str,
                 smooth_window: int, thresholds: Mapping[str, float], ncols: int, tight: bool = True) -> list[Axes]:
    """Draw one small panel per metric onto ``fig``: raw points faint, the smoothed line on top.

    ``tight=False`` uses fixed margins instead of ``tight_layout``, which triples the drawing time.
    """
    nrows = math.ceil(len(series) / ncols)
    axes = []
    for i, (key, (x, y)) in enumerate(series.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if smooth_window > 1:
            ax.plot(x, y, color="C0", alpha=0.3, linewidth=1)
            ax.plot(x, smooth(y, smooth_window), color="C0", linewidth=1.5)
        else:
            ax.plot(x, y, color="C0", linewidth=1.5, marker="." if len(x) < 30 else None)
        if key in thresholds:
            ax.axhline(thresholds[key], color="gray", linestyle="--", linewidth=1)
        ax.set_title(key, fontsize="medium")
        ax.set_xlabel(xlabel, fontsize="small")
        ax.grid(alpha=0.3)
        axes.append(ax)
    if tight:
        fig.tight_layout()
    else:
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.17, top=0.9, wspace=0.35, hspace=0.6)
    return axes


def plot_history(history: Any, keys: Sequence[str] | None = None, *, x_key: str | None = None,
                 smooth_window: int = 1, thresholds: Mapping[str, float] | None = None,
                 ncols: int = 3) -> list[Axes]:
    """Small multiples: one panel per metric of a history (dict of lists or a ``training.History``).

    ``x_key`` names the column used as x (e.g. ``"env_steps"``); without it x is the row number.
    NaN entries (a metric not logged in that row) are skipped. Returns the panels' Axes, on a new
    pyplot figure.
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
    fig = plt.figure(figsize=(3.4 * ncols, 2.6 * math.ceil(len(keys) / ncols)))
    return _draw_panels(fig, series, x_key or "row", smooth_window, thresholds or {}, ncols)


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
    """

    def __init__(self, keys: Sequence[str] | None = None, *, every_s: float = 2.0, smooth_window: int = 1,
                 thresholds: Mapping[str, float] | None = None, xlabel: str = "iteration", ncols: int = 3,
                 live: bool | None = None, save_path: str | None = None) -> None:
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        smooth([], smooth_window)  # validates the window
        self.keys = list(keys) if keys is not None else None
        self.every_s, self.smooth_window, self.ncols = every_s, smooth_window, ncols
        self.thresholds, self.xlabel, self.save_path = dict(thresholds or {}), xlabel, save_path
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
        fig = Figure(figsize=(3.4 * ncols, 2.6 * math.ceil(max(len(series), 1) / ncols)), dpi=80)
        if series:
            _draw_panels(fig, series, self.xlabel, self.smooth_window, self.thresholds, ncols, tight=False)
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
