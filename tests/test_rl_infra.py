"""Unit tests of the shared RL plumbing: networks, vector envs, the rollout collector, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import course_lib
from course_lib import training
from course_lib.rl import envs, networks, onpolicy, rollouts

# --- networks ---------------------------------------------------------------------------------


def test_policy_and_value_shapes_and_init():
    torch.manual_seed(0)
    policy, value = networks.PolicyNet(4, 2), networks.ValueNet(4)
    obs = torch.randn(7, 4)
    assert policy(obs).shape == (7, 2)
    assert value(obs).shape == (7,)
    # gain 0.01 on the policy head: the initial policy is close to uniform
    probs = torch.softmax(policy(obs), -1)
    assert torch.allclose(probs, torch.full_like(probs, 0.5), atol=0.02)
    # orthogonal hidden weights: W Wᵀ = gain² I for a square layer
    w = policy.net[2].weight
    assert torch.allclose(w @ w.T, 2.0 * torch.eye(64), atol=1e-4)
    assert all(float(layer.bias.detach().abs().max()) == 0.0 for layer in policy.net if isinstance(layer, torch.nn.Linear))
    assert networks.count_parameters(policy) == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_mlp_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="must be a positive int"):
        networks.mlp(4, (bad,), 2)


# --- envs ---------------------------------------------------------------------------------------


def test_vector_env_dims_and_bad_num_envs():
    vec = envs.make_vector_env("CartPole-v1", 2, seed=0)
    assert envs.env_dims(vec) == (4, 2)
    vec.close()
    with pytest.raises(ValueError, match="num_envs"):
        envs.make_vector_env("CartPole-v1", 0)


def test_evaluate_policy_constant_action_scores_about_9():
    class AlwaysLeft(torch.nn.Module):
        def forward(self, obs):
            return torch.tensor([1.0, 0.0]).expand(obs.shape[0], 2)

    returns = envs.evaluate_policy(AlwaysLeft(), "CartPole-v1", episodes=20, seed=0)
    assert returns.shape == (20,)
    assert 8 <= returns.min() and returns.max() <= 11  # algorithms.md §2: 8-11, mean about 9.35
    assert 8.5 < returns.mean() < 10.5


# --- rollouts -------------------------------------------------------------------------------------


def _collect(seed: int, steps: int = 300, num_envs: int = 3):
    course_lib.seed_everything(seed)
    policy, value = networks.PolicyNet(4, 2), networks.ValueNet(4)
    collector = rollouts.RolloutCollector(envs.make_vector_env("CartPole-v1", num_envs), seed=seed)
    return collector, policy, value, collector.collect(policy, steps, value)


def test_rollout_shapes_and_no_dummy_transitions():
    collector, _, _, batch = _collect(0)
    assert batch.obs.shape == (300, 3, 4)
    for name in ("actions", "logp_old", "rewards", "terminated", "truncated", "values", "next_values"):
        assert getattr(batch, name).shape == (300, 3), name
    assert batch.logits_old.shape == (300, 3, 2)
    # Every real CartPole transition has reward 1: a NEXT_STEP dummy transition would have reward 0.
    assert torch.all(batch.rewards == 1.0)
    assert batch.terminated.any(), "a random policy should end some episodes in 300 steps"
    assert len(batch.episode_returns) == int((batch.terminated | batch.truncated).sum())
    assert collector.total_steps == 900 and batch.num_steps == 900
    assert not batch.logp_old.requires_grad and not batch.values.requires_grad


def test_rollout_logp_matches_logits_and_values_chain():
    _, policy, value, batch = _collect(1)
    expected_logp = torch.log_softmax(batch.logits_old, -1).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(batch.logp_old, expected_logp)
    with torch.no_grad():
        assert torch.allclose(batch.values, value(batch.obs), atol=1e-6)
    done = batch.terminated | batch.truncated
    # next_values[t] is V(s_{t+1}) where no episode ended ...
    same = ~done[:-1]
    assert torch.allclose(batch.next_values[:-1][same], batch.values[1:][same])
    # ... and V(real final obs), not V(reset obs), where one did
    t, env = map(int, done.nonzero()[0])
    if t + 1 < batch.values.shape[0]:
        assert not torch.isclose(batch.next_values[t, env], batch.values[t + 1, env])


def test_rollout_final_obs_bootstrap_on_truncation():
    """A 5-step time limit truncates every episode: next_values must be V of the final obs."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    vec = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync", max_episode_steps=5,
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    course_lib.seed_everything(0)
    policy = networks.PolicyNet(4, 2)
    observed: list[torch.Tensor] = []

    def value_fn(obs):  # records what it is asked about; V(s) = first coordinate
        observed.append(obs.clone())
        return obs[:, 0] * 10

    batch = rollouts.RolloutCollector(vec, seed=3).collect(policy, 5, value_fn)
    assert bool(batch.truncated[4, 0]) and not bool(batch.terminated[4, 0])
    final_obs = observed[-1]  # the last value_fn call is on the final observations
    assert torch.allclose(batch.next_values[4, 0], final_obs[0, 0] * 10)
    assert not torch.isclose(batch.next_values[4, 0], batch.obs[0, 0, 0] * 10)  # not the reset obs


def test_rollouts_are_deterministic_for_a_seed():
    _, _, _, a = _collect(5, steps=100)
    _, _, _, b = _collect(5, steps=100)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.obs, b.obs)
    _, _, _, c = _collect(6, steps=100)
    assert not torch.equal(a.obs, c.obs)


def test_collect_rejects_bad_num_steps():
    collector, policy, value, _ = _collect(0, steps=1)
    with pytest.raises(ValueError, match="num_steps"):
        collector.collect(policy, 0, value)


def test_flatten_time():
    x = torch.arange(24).reshape(3, 2, 4)
    assert rollouts.flatten_time(x).shape == (6, 4)
    assert torch.equal(rollouts.flatten_time(x)[1], x[0, 1])


# --- training -----------------------------------------------------------------------------------


def test_history_columns_and_missing_values():
    history = training.History()
    history.log(env_steps=10, episode_return=torch.tensor(5.0))
    history.log(env_steps=20)
    assert history.keys() == ["env_steps", "episode_return"]
    assert np.array_equal(history["env_steps"], [10.0, 20.0])
    assert math.isnan(history["episode_return"][1])
    assert history.last("episode_return") == 5.0 and len(history) == 2
    with pytest.raises(KeyError, match="no metric 'loss'"):
        history["loss"]


def test_ensure_finite_names_the_place():
    training.ensure_finite(torch.tensor([1.0, 2.0]), "loss", "iteration 3")
    with pytest.raises(training.NonFiniteError, match="policy loss became NaN at iteration 7"):
        training.ensure_finite(torch.tensor(float("nan")), "policy loss", "iteration 7")
    with pytest.raises(training.NonFiniteError, match="became inf"):
        training.ensure_finite(float("inf"), "value loss", "epoch 1")


def test_interruptible_keeps_history():
    history = training.History()
    with training.interruptible(history):
        for step in range(10):
            history.log(step=step)
            if step == 4:
                raise KeyboardInterrupt
    assert len(history) == 5 and history.interrupted


def test_nan_during_a_loop_keeps_history():
    history = training.History()
    with pytest.raises(training.NonFiniteError):
        with training.interruptible(history):
            for step in range(5):
                loss = torch.tensor(float("nan")) if step == 3 else torch.tensor(1.0)
                training.ensure_finite(loss, "loss", f"step {step}")
                history.log(step=step)
    assert np.array_equal(history["step"], [0.0, 1.0, 2.0])


def test_start_run_validates_and_builds_seeded_parts():
    config = onpolicy.OnPolicyConfig(env_id="CartPole-v1", num_envs=2, num_steps=4, hidden=(8,))
    first, second = onpolicy.start_run(config, seed=5), onpolicy.start_run(config, seed=5)
    try:
        assert first.vec_env.num_envs == 2
        assert first.policy(torch.zeros(1, 4)).shape == (1, 2)
        assert first.value(torch.zeros(1, 4)).shape == (1,)
        for a, b in zip(first.policy.parameters(), second.policy.parameters(), strict=True):
            assert torch.equal(a, b)  # same seed, same initial weights
        assert torch.equal(torch.randperm(10, generator=first.generator),
                           torch.randperm(10, generator=second.generator))
    finally:
        first.vec_env.close()
        second.vec_env.close()
    with pytest.raises(ValueError, match="gamma"):
        onpolicy.start_run(onpolicy.OnPolicyConfig(gamma=1.5), seed=0)
    with pytest.raises(ValueError, match="hidden"):
        onpolicy.start_run(onpolicy.OnPolicyConfig(hidden=()), seed=0)
