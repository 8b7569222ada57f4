"""Gymnasium helpers: vector environments with same-step autoreset, and greedy evaluation.

Autoreset in Gymnasium 1.x vector envs defaults to NEXT_STEP: the ``step`` call *after* an
episode ends ignores its action, resets that sub-environment and returns a dummy transition
(reward 0, not done). Training on those dummy steps is a silent bug. We use
``AutoresetMode.SAME_STEP`` (Gymnasium ≥ 1.1) instead: the step that ends an episode returns the
reset observation of the next episode, and the real final observation is in
``info["final_obs"]`` (masked by ``info["_final_obs"]``). Every transition is then a real one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

__all__ = ["make_vector_env", "env_dims", "evaluate_policy"]


def make_vector_env(env_id: str, num_envs: int, seed: int | None = None) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of ``env_id`` stepped together, with SAME_STEP autoreset.

    If ``seed`` is given the vector env is reset with it (sub-env i gets seed + i), so the same seed
    gives the same episodes. Returns the env; call ``envs.reset`` yourself if ``seed`` is None.
    """
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    if seed is not None:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
    return envs


def env_dims(envs: gym.vector.VectorEnv) -> tuple[int, int]:
    """(observation size D, number of discrete actions A) of a vector env with a Box/Discrete pair."""
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(f"the course's policies need a Discrete action space, got {act_space}")
    if obs_space.shape is None or len(obs_space.shape) != 1:
        raise ValueError(f"expected a flat observation vector, got space {obs_space}")
    return int(obs_space.shape[0]), int(act_space.n)


@torch.no_grad()
def evaluate_policy(policy: nn.Module, env_id: str, episodes: int = 10, seed: int = 10_000,
                    greedy: bool = True) -> np.ndarray:
    """Return of ``episodes`` evaluation episodes, run in parallel, one per sub-environment.

    ``greedy=True`` takes argmax actions (the usual way to report a trained policy). Seeds
    ``seed .. seed+episodes-1`` are separate from training seeds. Shapes: → ``(episodes,)``.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    generator = torch.Generator().manual_seed(seed)
    try:
        obs, _ = envs.reset(seed=seed)
        totals = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            logits = policy(torch.as_tensor(obs, dtype=torch.float32))  # (E, A)
            if greedy:
                actions = logits.argmax(-1)
            else:
                actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            obs, rewards, terminated, truncated, _ = envs.step(actions.numpy())
            totals += rewards * running
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return totals
