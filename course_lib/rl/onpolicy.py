"""What every on-policy trainer of the control half shares: its settings and the start of a run.

:class:`OnPolicyConfig` holds the settings REINFORCE, TRPO and PPO have in common (task, budget,
segment shape, discount, network sizes); :func:`start_run` seeds everything and builds the vector
env, the networks and the rollout collector in a fixed order. The library's ``train()`` functions
and the visible training loops of lessons 01-03 both start with it, so the same seed gives the
same networks and the same first segment in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from course_lib import runtime
from course_lib.rl import envs, networks, rollouts

__all__ = ["OnPolicyConfig", "RunParts", "start_run"]


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
