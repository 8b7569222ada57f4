"""Estimators of returns and advantages: reward-to-go, GAE, normalisation, explained variance.

Shared by both halves of the course: lessons 01-03 use them on environment steps, the
language-model lessons on tokens.

Conventions (one per flag, never a merged ``done`` where the difference matters):

* ``terminated[t]``: the episode reached a true terminal state at step t. Nothing follows it, so
  its value is 0 and we never bootstrap.
* ``truncated[t]``: the episode was cut at step t (time limit) without reaching a terminal state.
  The future still exists: bootstrap with V of the **real final observation**, ``next_values[t]``,
  never with the value of the reset observation.
* ``next_values[t]``: V(s'_{t+1}) of the observation that followed step t (the final observation on
  a truncated step). A rollout collector computes it under ``no_grad``.

Every function works along dimension 0 (time) and accepts ``(T,)`` or ``(T, N)`` tensors, N being
parallel environments; environments never mix.
"""

from __future__ import annotations

import torch

__all__ = ["discounted_return", "reward_to_go", "normalize", "gae", "explained_variance"]


def _check_unit_interval(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_time_major(name: str, tensor: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape (T,) or (T, N), got {tuple(tensor.shape)}")
    if like is not None and tensor.shape != like.shape:
        raise ValueError(f"{name} must have the same shape as rewards {tuple(like.shape)}, got {tuple(tensor.shape)}")


def _check_rewards(rewards: torch.Tensor) -> None:
    _check_time_major("rewards", rewards)
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty: at least one step is needed")
    if not rewards.is_floating_point():
        raise ValueError(f"rewards must be floating point, got dtype {rewards.dtype}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contains NaN or inf")


def discounted_return(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_0 = Σ_k γ^k r_k of one episode. Shapes: rewards ``(T,)`` → scalar tensor."""
    _check_rewards(rewards)
    _check_unit_interval("gamma", gamma)
    discounts = gamma ** torch.arange(rewards.shape[0], dtype=rewards.dtype)  # (T,)
    return (discounts * rewards).sum()


def reward_to_go(rewards: torch.Tensor, dones: torch.Tensor, gamma: float,
                 last_value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """G_t = r_t + γ (1 - done_t) G_{t+1}, computed backwards; resets at every episode end.

    Shapes: rewards ``(T,)`` or ``(T, N)`` (time-major, N parallel envs), dones of the same shape,
    bool (True where an episode ended at step t) → same shape. ``last_value`` (a number, or a
    ``(N,)`` tensor) starts the recursion after the final step: 0 for a finished episode, V(s_T)
    for a segment cut in the middle of an episode (bootstrap).
    """
    _check_rewards(rewards)
    _check_time_major("dones", dones, rewards)
    _check_unit_interval("gamma", gamma)
    continues = 1.0 - dones.to(rewards.dtype)  # (T,)
    out = torch.empty_like(rewards)
    running = torch.as_tensor(last_value, dtype=rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * continues[t] * running
        out[t] = running
    return out


def normalize(values: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / (std + eps) over the whole tensor, with torch's unbiased std.

    Normalise over a whole batch of many episodes (or a PPO minibatch), never inside each episode:
    per-episode normalisation forces every episode's weights to sum to zero, which biases REINFORCE.
    """
    if not isinstance(values, torch.Tensor) or values.numel() < 2:
        raise ValueError(f"normalize needs a tensor with at least 2 elements, got {getattr(values, 'shape', values)}")
    return (values - values.mean()) / (values.std() + eps)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation; returns ``(advantages, returns)`` with returns = Â + V.

        δ_t = r_t + γ · next_values_t · (1 - terminated_t) - values_t
        Â_t = δ_t + γ λ · (1 - done_t) · Â_{t+1},  done_t = terminated_t or truncated_t

    Shapes: every input ``(T,)`` or ``(T, N)`` → two tensors of the same shape. A truncated step
    bootstraps from ``next_values`` (the real final observation) and stops the λ-chain, so no
    advantage leaks into the next episode. The last step of a segment has no Â_{T}: its advantage
    is δ_{T-1}, bootstrapped through ``next_values``.
    """
    _check_rewards(rewards)
    for name, tensor in (("values", values), ("next_values", next_values),
                         ("terminated", terminated), ("truncated", truncated)):
        _check_time_major(name, tensor, rewards)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    not_terminal = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - (terminated | truncated).to(rewards.dtype)
    deltas = rewards + gamma * next_values * not_terminal - values  # (T, ...)
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 − Var(G − V)/Var(G): how much of the returns' variance the critic explains (SB3, CleanRL).

    1 is a perfect critic, 0 no better than a constant, negative worse than a constant; NaN when the
    returns do not vary. Shapes: values and returns the same shape, any (``(B,)``, ``(T, N)``).
    """
    if values.shape != returns.shape:
        raise ValueError(f"values {tuple(values.shape)} and returns {tuple(returns.shape)} must have the same shape")
    var = float(returns.var())
    return float("nan") if var == 0 else 1.0 - float((returns - values).var()) / var
