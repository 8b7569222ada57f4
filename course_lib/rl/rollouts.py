"""Collect fixed-length rollout segments from vector environments (lessons 01-03).

A :class:`RolloutCollector` owns the environments' current observations between calls, so a
training loop asks it for one segment of ``num_steps`` steps per iteration (the "vectorized
environments with fixed-length segments" of PPO implementations). Episode returns are tracked
across segments and reported when episodes finish.

Every transition in a :class:`RolloutBatch` is real: the envs use same-step autoreset (see
:mod:`course_lib.rl.envs`), and ``next_values[t]`` holds V of the real next observation (the final
observation on steps that end an episode), which is what GAE needs to bootstrap truncations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

__all__ = ["RolloutBatch", "RolloutCollector", "flatten_time"]

PolicyFn = Callable[[torch.Tensor], torch.Tensor]  # obs (B, D) -> logits (B, A)
ValueFn = Callable[[torch.Tensor], torch.Tensor]  # obs (B, D) -> values (B,)


class RolloutBatch(NamedTuple):
    """One segment of T steps from N environments (time-major, as GAE expects).

    Attributes (T steps, N envs, D observation size, A actions):
        obs: ``(T, N, D)`` observation s_t the action was taken in.
        actions: ``(T, N)`` int64 actions a_t.
        logp_old: ``(T, N)`` log π_old(a_t|s_t) of the collecting policy, detached (the glossary's
            ``logp_old``: during the update, ``logp`` is the current policy's).
        logits_old: ``(T, N, A)`` the collecting policy's logits, detached (TRPO's KL needs them).
        rewards: ``(T, N)`` r_t returned by ``step(a_t)``.
        terminated: ``(T, N)`` bool, a true terminal state was reached at step t.
        truncated: ``(T, N)`` bool, the episode was cut at step t (time limit).
        values: ``(T, N)`` V(s_t) under ``no_grad`` (zeros when no value function is given).
        next_values: ``(T, N)`` V(s'_{t+1}) of the real next observation, under ``no_grad``.
        episode_returns: returns of the episodes that finished during this segment.
        episode_lengths: their lengths.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    logits_old: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    episode_returns: list[float]
    episode_lengths: list[int]

    def episode_stats(self) -> dict[str, float]:
        """``episode_return`` and ``episode_length``, the means over the episodes that finished in
        this segment, ready for ``History.log``; empty when none finished."""
        if not self.episode_returns:
            return {}
        return {"episode_return": float(np.mean(self.episode_returns)),
                "episode_length": float(np.mean(self.episode_lengths))}

    @property
    def num_steps(self) -> int:
        """Environment steps in this segment, T·N."""
        return int(self.rewards.numel())


class RolloutCollector:
    """Steps a vector env with a policy and hands back :class:`RolloutBatch` segments.

    ``seed`` resets the envs (sub-env i gets seed + i); actions are sampled with a torch generator
    seeded from it, so the same seed and the same policy give the same segments.
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        obs, _ = envs.reset(seed=seed)
        self.obs = torch.as_tensor(obs, dtype=torch.float32)  # (N, D)
        self.generator = torch.Generator().manual_seed(seed)
        self.total_steps = 0
        self._running_return = np.zeros(self.num_envs)
        self._running_length = np.zeros(self.num_envs, dtype=int)

    @torch.no_grad()
    def collect(self, policy: PolicyFn, num_steps: int, value_fn: ValueFn | None = None) -> RolloutBatch:
        """Run ``num_steps`` steps in every env; returns a segment of ``num_steps * num_envs`` transitions."""
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        n = self.num_envs
        obs_buf, act_buf, logp_buf, logit_buf, val_buf = [], [], [], [], []
        rew_buf = np.zeros((num_steps, n), dtype=np.float32)
        term_buf = np.zeros((num_steps, n), dtype=bool)
        trunc_buf = np.zeros((num_steps, n), dtype=bool)
        final_obs: list[tuple[int, int, np.ndarray]] = []  # (t, env, real final observation)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        for t in range(num_steps):
            logits = policy(self.obs)  # (N, A)
            log_probs = torch.log_softmax(logits, dim=-1)
            actions = torch.multinomial(log_probs.exp(), 1, generator=self.generator).squeeze(-1)  # (N,)
            obs_buf.append(self.obs)
            act_buf.append(actions)
            logit_buf.append(logits)
            logp_buf.append(log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1))
            val_buf.append(value_fn(self.obs) if value_fn is not None else torch.zeros(n))
            next_obs, rewards, terminated, truncated, info = self.envs.step(actions.numpy())
            rew_buf[t], term_buf[t], trunc_buf[t] = rewards, terminated, truncated
            self._running_return += rewards
            self._running_length += 1
            for env in np.flatnonzero(terminated | truncated):
                final_obs.append((t, int(env), info["final_obs"][env]))
                episode_returns.append(float(self._running_return[env]))
                episode_lengths.append(int(self._running_length[env]))
                self._running_return[env] = 0.0
                self._running_length[env] = 0
            self.obs = torch.as_tensor(next_obs, dtype=torch.float32)
        self.total_steps += num_steps * n

        values = torch.stack(val_buf)  # (T, N)
        next_values = torch.zeros_like(values)
        if value_fn is not None:
            next_values[:-1] = values[1:]
            next_values[-1] = value_fn(self.obs)
            if final_obs:
                finals = torch.as_tensor(np.stack([o for _, _, o in final_obs]), dtype=torch.float32)
                v_final = value_fn(finals)  # (K,)
                for k, (t, env, _) in enumerate(final_obs):
                    next_values[t, env] = v_final[k]
        return RolloutBatch(
            obs=torch.stack(obs_buf), actions=torch.stack(act_buf), logp_old=torch.stack(logp_buf),
            logits_old=torch.stack(logit_buf), rewards=torch.from_numpy(rew_buf),
            terminated=torch.from_numpy(term_buf), truncated=torch.from_numpy(trunc_buf),
            values=values, next_values=next_values,
            episode_returns=episode_returns, episode_lengths=episode_lengths)


def flatten_time(tensor: torch.Tensor) -> torch.Tensor:
    """Merge the time and env dimensions after GAE: ``(T, N, ...)`` → ``(T·N, ...)``."""
    return tensor.reshape(-1, *tensor.shape[2:])
