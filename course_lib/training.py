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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from course_lib import envs, networks, rollouts, runtime

__all__ = ["History", "NonFiniteError", "ensure_finite", "interruptible", "TrainResult", "Callback",
           "OnPolicyConfig", "RunParts", "start_run"]

Callback = Callable[[int, nn.Module], bool | None]
"""Called as ``callback(env_steps, policy)`` after every training iteration of a reference
``train()``; returning True stops training early. Benchmarks use it to evaluate every 5k steps."""


@dataclass(frozen=True)
class OnPolicyConfig:
    """Settings every on-policy trainer shares: the task, the budget and the shape of a segment.

    Each method's config (``ReinforceConfig``, ``TRPOConfig``, ``PPOConfig``) extends this one with
    its own fields and defaults, and its ``validate`` calls this one first.
    """

    env_id: str = "CartPole-v1"
    """Gymnasium id of an environment with flat observations and discrete actions."""
    total_steps: int = 100_000
    """Environment steps in total, over all parallel envs."""
    num_envs: int = 8
    """Parallel environments N."""
    num_steps: int = 128
    """Segment length T per env: one update per T·N env steps."""
    gamma: float = 0.99
    """Discount factor γ."""
    hidden: Sequence[int] = (64, 64)
    """Hidden layer sizes of the policy and value networks."""

    @property
    def steps_per_iteration(self) -> int:
        """T·N: the env steps collected (and learned from) per update."""
        return self.num_steps * self.num_envs

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_steps // self.steps_per_iteration)

    def require_positive_ints(self, *names: str) -> None:
        """``ValueError`` naming the first field that is not an int ≥ 1."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def require_in_unit_interval(self, *names: str) -> None:
        """``ValueError`` naming the first field outside [0, 1]."""
        for name in names:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")

    def require_positive(self, *names: str) -> None:
        """``ValueError`` naming the first field that is not > 0."""
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        self.require_positive_ints("total_steps", "num_envs", "num_steps")
        self.require_in_unit_interval("gamma")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {self.hidden!r}")


class RunParts(NamedTuple):
    """What :func:`start_run` builds for an on-policy trainer."""

    vec_env: Any
    """The ``gymnasium.vector.VectorEnv`` of ``config.num_envs`` copies (same-step autoreset)."""
    policy: networks.PolicyNet
    value: networks.ValueNet
    collector: rollouts.RolloutCollector
    generator: torch.Generator
    """Seeded with the run's seed, for minibatch shuffling."""


def start_run(config: OnPolicyConfig, seed: int) -> RunParts:
    """The common start of every reference ``train()``: validate the config, seed everything, and
    build the vector env, the policy and value networks and the rollout collector, in this order
    (the order fixes which random numbers each gets, so the same seed gives the same run)."""
    config.validate()
    generator = runtime.seed_everything(seed)
    vec_env = envs.make_vector_env(config.env_id, config.num_envs)
    obs_dim, n_actions = envs.env_dims(vec_env)
    policy = networks.PolicyNet(obs_dim, n_actions, config.hidden)
    value = networks.ValueNet(obs_dim, config.hidden)
    return RunParts(vec_env, policy, value, rollouts.RolloutCollector(vec_env, seed=seed), generator)


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
    NaN there. ``history["episode_return"]`` returns a float NumPy array.
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, float]] = []
        self.interrupted = False

    def log(self, **metrics: Any) -> None:
        row: dict[str, float] = {}
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().item()
            row[key] = float(value)
        self._rows.append(row)

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
