"""REINFORCE (vanilla policy gradient) with a learned value baseline (lesson 01).

The pieces a learner writes in lesson 01, and a reference :func:`train` that uses them:

* :func:`bootstrapped_returns`: Monte-Carlo reward-to-go on a rollout segment, with the three
  episode-end cases of Gymnasium done right (terminated → 0, truncated → bootstrap from V of the
  real final observation, segment cut → bootstrap from V(s_T)).
* :func:`batch_advantages`: G_t − V(s_t), normalised over the *whole batch* (never per episode).
* :func:`policy_gradient_loss`: the surrogate −mean(log π(a|s) · sg(Â)) whose gradient is the
  REINFORCE estimator.
* :func:`value_loss`: mean squared error of V against the returns.

Sources: Spinning Up VPG (``spinup/algos/pytorch/vpg/vpg.py``; docs ``rl_intro3``), SB3's
timeout bootstrap (``common/on_policy_algorithm.py``), CleanRL's segment layout (``ppo.py``).
The reward-to-go recursion itself is :func:`course_lib.estimators.reward_to_go`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from course_lib import distributions, estimators, training
from course_lib.rl import onpolicy

__all__ = ["bootstrapped_returns", "batch_advantages", "policy_gradient_loss", "value_loss",
           "ReinforceConfig", "make_optimizers", "train"]


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Both must be non-empty floating tensors of the same shape."""
    for name, tensor in ((name_a, a), (name_b, b)):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be floating point, got dtype {tensor.dtype}")
        if tensor.numel() == 0:
            raise ValueError(f"{name} is empty: the batch needs at least one step")
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the same shape as {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")


def bootstrapped_returns(rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                         next_values: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go G_t of a rollout segment, bootstrapping wherever the future was cut off.

    Shapes: every input ``(T,)`` or ``(T, N)`` → ``(T,)`` or ``(T, N)``.

    * terminated at t: the episode really ended; nothing is added (V(terminal) = 0).
    * truncated at t (time limit): the episode would have gone on. Add γ·V(s'_{t+1}) of the *real
      final observation* to r_t, then restart the sum as at any episode end. This is SB3's trick
      (``on_policy_algorithm.py``: ``rewards[idx] += gamma * terminal_value``).
    * the segment ends at T−1 in the middle of an episode: start the recursion from V(s_T).

    The result equals the λ = 1 TD(λ) return of :func:`course_lib.estimators.gae`.
    """
    for name, tensor in (("terminated", terminated), ("truncated", truncated)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool torch.Tensor, got {getattr(tensor, 'dtype', type(tensor))}")
        if tensor.shape != getattr(rewards, "shape", None):
            raise ValueError(f"{name} must have the same shape as rewards, got {tuple(tensor.shape)}")
    _check_pair("rewards", rewards, "next_values", next_values)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    if not torch.isfinite(next_values).all():
        raise ValueError("next_values contains NaN or inf (did the value network diverge?)")
    rewards = torch.where(truncated, rewards + gamma * next_values, rewards)  # (T, ...)
    dones = terminated | truncated
    return estimators.reward_to_go(rewards, dones, gamma, last_value=next_values[-1])


def batch_advantages(returns: torch.Tensor, values: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Advantages Â = G − V(s), normalised to mean 0 and std 1 over the whole batch.

    Shapes: returns ``(B,)`` or ``(T, N)``, values the same → the same shape, detached.
    V(s) depends on the state only, so subtracting it leaves the gradient unbiased while it lowers
    the variance. Normalising with statistics of the *whole batch* (many episodes) rescales the
    gradient by one constant (Spinning Up VPG, SB3). Normalising *inside each episode* is a
    published bug: the weights of every episode are then forced to sum to zero.
    """
    _check_pair("returns", returns, "values", values)
    if returns.numel() < 2:
        raise ValueError("returns needs at least 2 elements to normalise over the batch")
    return estimators.normalize((returns - values).detach(), eps)


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Surrogate loss L(θ) = −mean(log π_θ(a|s) · sg(Â)); its gradient is the REINFORCE estimator.

    Shapes: logp ``(B,)`` or ``(T, N)`` (with grad), advantages the same → scalar.
    The advantage is a constant weight: it is detached, so this loss sends no gradient into the
    critic that produced it. Minus sign: optimisers minimise, we want to *raise* the return.
    """
    _check_pair("logp", logp, "advantages", advantages)
    return -(logp * advantages.detach()).mean()


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Mean squared error mean((V(s) − G)²) of the value network against its (constant) targets.

    Shapes: values ``(B,)`` or ``(T, N)`` (with grad), returns the same → scalar (Spinning Up VPG).
    """
    _check_pair("values", values, "returns", returns)
    return ((values - returns.detach()) ** 2).mean()


@dataclass(frozen=True)
class ReinforceConfig(onpolicy.OnPolicyConfig):
    """Settings of :func:`train` (and the shared ones of :class:`~course_lib.rl.onpolicy.OnPolicyConfig`).
    Defaults solve CartPole-v1 within 100k env steps."""

    num_envs: int = 8
    """Parallel environments N."""
    num_steps: int = 256
    """Segment length T per env: one policy update per T·N steps."""
    policy_lr: float = 5e-3
    """Adam learning rate of the policy (one gradient step per segment)."""
    value_lr: float = 3e-3
    """Adam learning rate of the value network."""
    value_steps: int = 20
    """Full-batch gradient steps on the value loss per segment (Spinning Up uses 80)."""
    normalize_advantages: bool = True
    """Normalise Â over the whole batch (see :func:`batch_advantages`)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        super().validate()
        self.require_positive_ints("value_steps")
        self.require_positive("policy_lr", "value_lr")


def make_optimizers(policy: nn.Module, value: nn.Module,
                    config: ReinforceConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(policy optimizer, value optimizer): two Adams, as REINFORCE takes one step on each loss."""
    return (torch.optim.Adam(policy.parameters(), lr=config.policy_lr),
            torch.optim.Adam(value.parameters(), lr=config.value_lr))


def train(config: ReinforceConfig = ReinforceConfig(), seed: int = 0,
          callback: training.Callback | None = None,
          history: training.History | None = None) -> training.TrainResult:
    """Train a categorical policy with REINFORCE and a learned baseline; return the networks and history.

    Loop (Spinning Up "code format"): collect a segment → bootstrapped reward-to-go → batch-normalised
    advantages → one policy-gradient step → ``value_steps`` steps on the value loss → log → callback.
    Logged per iteration: env_steps, episode_return, episode_length (when episodes finished),
    policy_loss, value_loss, entropy, explained_variance, wall_seconds.
    """
    vec_env, policy, value, collector, _ = onpolicy.start_run(config, seed)
    history = training.History() if history is None else history
    policy_opt, value_opt = make_optimizers(policy, value, config)
    start = time.perf_counter()
    with training.interruptible(history):
        for iteration in range(config.num_iterations):
            # --- collect a segment of T steps from N envs (time-major) ---
            batch = collector.collect(policy, config.num_steps, value)
            # --- returns and advantages (constants for the updates) ---
            rets = bootstrapped_returns(batch.rewards, batch.terminated, batch.truncated,
                                        batch.next_values, config.gamma)  # (T, N)
            if config.normalize_advantages:
                advantages = batch_advantages(rets, batch.values)  # (T, N)
            else:
                advantages = rets - batch.values
            # --- one policy-gradient step ---
            logits = policy(batch.obs)  # (T, N, A)
            logp = distributions.log_prob_of_actions(logits, batch.actions)  # (T, N)
            loss_pi = policy_gradient_loss(logp, advantages)
            training.ensure_finite(loss_pi, "policy loss", f"iteration {iteration}")
            policy_opt.zero_grad()
            loss_pi.backward()
            policy_opt.step()
            # --- fit the baseline V(s) to the returns ---
            for _ in range(config.value_steps):
                loss_v = value_loss(value(batch.obs), rets)
                training.ensure_finite(loss_v, "value loss", f"iteration {iteration}")
                value_opt.zero_grad()
                loss_v.backward()
                value_opt.step()
            # --- log ---
            row = dict(env_steps=collector.total_steps, policy_loss=loss_pi, value_loss=loss_v,
                       entropy=distributions.categorical_entropy(logits.detach()).mean(),
                       explained_variance=estimators.explained_variance(batch.values, rets),
                       wall_seconds=time.perf_counter() - start)
            history.log(**row, **batch.episode_stats())
            if callback is not None and callback(collector.total_steps, policy):
                break
    vec_env.close()
    return training.TrainResult(policy, value, history)
