"""Training-loop plumbing shared by every method: a metric history, NaN guards, safe interrupts.

Typical use inside a notebook training cell::

    history = training.History()
    with training.interruptible(history):
        for iteration in range(num_iterations):
            ...
            training.ensure_finite(loss, "policy loss", f"iteration {iteration}")
            history.log(env_steps=steps, episode_return=mean_return)

Because ``history`` is created *before* the loop, whatever was logged survives both a NaN (which
raises :class:`NonFiniteError` saying where) and the learner pressing "interrupt" in JupyterLab.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = ["History", "NonFiniteError", "ensure_finite", "interruptible", "TrainResult", "Callback"]

Callback = Callable[[int, nn.Module], bool | None]
"""The callback protocol of every training loop, the library's ``train()`` and the lessons' visible
loops alike: called as ``callback(steps, policy)`` after each iteration's row is logged (``steps``
counts environment steps in the control half, optimizer steps in the language-model half);
returning True stops training. :class:`course_lib.rl.onpolicy.GreedyEvaluation` is the usual one."""


class TrainResult(NamedTuple):
    """What every reference ``train()`` returns: the trained networks and the logged history."""

    policy: nn.Module
    value: nn.Module | None
    history: History


class NonFiniteError(FloatingPointError):
    """A loss or statistic became NaN or inf; the message says which and where."""


class History:
    """Metrics logged during training, as named columns of numbers.

    ``log(env_steps=512, episode_return=21.0)`` appends one row; a column missing in a row is
    NaN there. ``history["episode_return"]`` returns a float NumPy array. Keys are any strings, so the
    metric names TRL uses work as they are: ``history.log(**{"rewards/chosen": 0.1})``, then
    ``history["rewards/chosen"]``. Values are numbers or one-element tensors; anything else raises
    ``ValueError`` naming the key.
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, float]] = []
        self.interrupted = False

    @staticmethod
    def _row(metrics: dict[str, Any]) -> dict[str, float]:
        row: dict[str, float] = {}
        for key, value in metrics.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"metric names must be non-empty strings, got {key!r}")
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(f"metric {key!r} must be one number, got a tensor of shape {tuple(value.shape)}")
                value = value.detach().item()
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"metric {key!r} must be a number, got {type(value).__name__} {value!r}") from None
        return row

    def log(self, **metrics: Any) -> None:
        """Append one row of metrics."""
        self._rows.append(self._row(metrics))

    def extend_last(self, **metrics: Any) -> None:
        """Add metrics to the most recent row, e.g. a greedy evaluation run after that iteration."""
        if not self._rows:
            raise ValueError("extend_last needs a logged row first; call log(...) before")
        self._rows[-1].update(self._row(metrics))

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self._rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.keys():
            raise KeyError(f"no metric {key!r} was logged; logged metrics: {self.keys()}")
        return np.array([row.get(key, math.nan) for row in self._rows], dtype=float)

    def __len__(self) -> int:
        return len(self._rows)

    def last_row(self) -> dict[str, float]:
        """A copy of the most recent row (empty before anything is logged)."""
        return dict(self._rows[-1]) if self._rows else {}

    def last(self, key: str, default: float = math.nan) -> float:
        """The most recent logged value of ``key``."""
        for row in reversed(self._rows):
            if key in row:
                return row[key]
        return default

    def as_dict(self) -> dict[str, np.ndarray]:
        return {key: self[key] for key in self.keys()}

    def __repr__(self) -> str:
        return f"History({len(self)} rows, metrics={self.keys()})"


def ensure_finite(value: torch.Tensor | float, name: str, where: str) -> None:
    """Raise :class:`NonFiniteError` if ``value`` has a NaN or inf, naming ``name`` and ``where``."""
    tensor = torch.as_tensor(value)
    if not torch.isfinite(tensor).all():
        kind = "NaN" if torch.isnan(tensor).any() else "inf"
        raise NonFiniteError(
            f"{name} became {kind} at {where}; training stopped so it does not continue on garbage. "
            f"The history logged so far is kept. Common causes: log of a probability that underflowed "
            f"to 0, a std of a single element, a learning rate that is too large.")


@contextlib.contextmanager
def interruptible(history: History | None = None) -> Iterator[None]:
    """Turn a KeyboardInterrupt (JupyterLab's stop button) into a clean stop that keeps results."""
    try:
        yield
    except KeyboardInterrupt:
        if history is not None:
            history.interrupted = True
        rows = f" after {len(history)} logged rows" if history is not None else ""
        print(f"Training interrupted{rows}; the history and the model trained so far are kept.")
