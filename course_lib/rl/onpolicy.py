"""What every on-policy trainer of the control half shares: settings, the start of a run, evaluation.

- :class:`OnPolicyConfig`: the settings REINFORCE, TRPO and PPO have in common (task, budget,
  segment shape, discount, network sizes);
- :func:`start_run`: seeds everything and builds the vector env, the networks and the rollout
  collector in a fixed order;
- :class:`GreedyEvaluation`: the evaluation schedule, counted in env steps, as a
  :data:`course_lib.training.Callback`.

The library's ``train()`` functions and the visible training loops of lessons 01-03 use the same
three, plus each method's ``make_optimizer(s)``, so the same seed gives the same run in both
(``tests/test_loop_agreement.py`` runs each lesson's loop beside its library twin and compares).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from course_lib import runtime, training
from course_lib.rl import envs, networks, rollouts

__all__ = ["OnPolicyConfig", "RunParts", "start_run", "EvalPoint", "GreedyEvaluation"]


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


class EvalPoint(NamedTuple):
    """One greedy evaluation: when (env steps, training seconds so far) and the mean return."""

    env_steps: int
    train_seconds: float
    """Wall seconds of training up to this evaluation, the time spent in evaluations excluded."""
    eval_return: float


class GreedyEvaluation:
    """A training callback: greedy evaluations every ``every`` env steps, and when to stop.

    Called as ``evaluation(env_steps, policy)`` after each iteration (the :data:`training.Callback`
    protocol). It evaluates at the first iteration whose env-step count reaches each multiple of
    ``every`` (0: never during training), on ``episodes`` episodes with env seeds
    ``seed .. seed + episodes − 1``, adds ``eval_return`` to the last row of ``history`` (if given),
    and returns True (stop) once an evaluation reaches ``target`` or the env steps reach ``stop_at``.
    It keeps a training clock that excludes its own evaluation time (``train_seconds``), so runs of
    different methods compare fairly. Call :meth:`finish` after training to evaluate the final
    policy (unless that iteration was just evaluated) and stop the clock.
    """

    def __init__(self, env_id: str, every: int = 5_000, episodes: int = 10, seed: int = 10_000,
                 history: training.History | None = None, target: float | None = None,
                 stop_at: int | None = None) -> None:
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"every must be an int >= 0 (env steps; 0 = no evaluation), got {every!r}")
        self.env_id, self.every, self.episodes, self.seed = env_id, every, episodes, seed
        self.history, self.target, self.stop_at = history, target, stop_at
        self.points: list[EvalPoint] = []
        self.next_mark = every
        self.eval_seconds = 0.0
        self.total_train_seconds: float | None = None
        self._start = time.perf_counter()

    def train_seconds(self) -> float:
        """Wall seconds since this object was made, minus the time spent evaluating."""
        return time.perf_counter() - self._start - self.eval_seconds

    def evaluate(self, env_steps: int, policy: nn.Module) -> float:
        """Evaluate now; record and return the mean greedy return."""
        train_seconds, start = self.train_seconds(), time.perf_counter()
        mean_return = float(envs.evaluate_policy(policy, self.env_id, self.episodes, self.seed).mean())
        self.eval_seconds += time.perf_counter() - start
        self.points.append(EvalPoint(int(env_steps), train_seconds, mean_return))
        if self.history is not None and len(self.history):
            self.history.extend_last(eval_return=mean_return)
        return mean_return

    def __call__(self, env_steps: int, policy: nn.Module) -> bool:
        if self.every and env_steps >= self.next_mark:
            mean_return = self.evaluate(env_steps, policy)
            self.next_mark = (env_steps // self.every + 1) * self.every
            if self.target is not None and mean_return >= self.target:
                return True
        return self.stop_at is not None and env_steps >= self.stop_at

    def finish(self, env_steps: int, policy: nn.Module) -> None:
        """After training: stop the clock, and evaluate the final policy unless just evaluated."""
        self.total_train_seconds = self.train_seconds()
        if not self.points or self.points[-1].env_steps != env_steps:
            self.evaluate(env_steps, policy)

    @property
    def env_steps(self) -> np.ndarray:
        """Env steps of every evaluation so far, ``(E,)``."""
        return np.array([p.env_steps for p in self.points], dtype=float)

    @property
    def returns(self) -> np.ndarray:
        """Mean greedy return of every evaluation so far, ``(E,)``."""
        return np.array([p.eval_return for p in self.points], dtype=float)

    def first_reaching(self, threshold: float) -> EvalPoint | None:
        """The first evaluation with a mean return ≥ ``threshold``, or None."""
        return next((p for p in self.points if p.eval_return >= threshold), None)
