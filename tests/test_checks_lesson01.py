"""The lesson-01 checkers accept the references and reject the known-wrong versions (bug catalogue §11).

Beside the catalogue's bugs, each class of bug the checks must catch has a wrong version here that an
earlier version of the checks accepted, with the case that must catch it: a single env (N = 1) where a
``.squeeze()`` broadcasts, an input that must be a constant but leaks a gradient, and a gradient that
is NaN where the value is fine.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_lib import estimators
from course_lib.grading import checker, exercises
from course_lib.rl import reinforce

EXERCISES = {e.name: e for e in exercises.for_lesson("01")}


def run(name, fn):
    return checker.run_exercise(EXERCISES[name], fn)


def assert_caught(name, wrong, caught_by, problem=""):
    """``wrong`` fails exercise ``name`` first at the case whose label starts with ``caught_by``."""
    result = run(name, wrong)
    assert result.status == "failed", wrong.__name__
    assert f"case '{caught_by}" in result.message and problem in result.message, result.message


def test_lesson01_has_five_exercises_with_unique_names():
    assert [e.id for e in exercises.for_lesson("01")] == ["01.1", "01.2", "01.3", "01.4", "01.5"]
    assert set(EXERCISES) == {"reward_to_go", "bootstrapped_returns", "policy_gradient_loss",
                              "value_loss", "batch_advantages"}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_passes(name):
    result = run(name, EXERCISES[name].reference)
    assert result.passed, result.message
    assert result.seconds < 1.0


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_stub_is_not_attempted(name):
    def stub(**kwargs):
        raise NotImplementedError

    assert run(name, stub).status == "not attempted"


# --- 01.1 reward_to_go: wrong versions ---------------------------------------------------------


def rtg_no_reset(rewards, dones, gamma, last_value=0.0):  # bug 1: no reset at episode boundaries
    out, running = torch.empty_like(rewards), torch.as_tensor(last_value, dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def rtg_forward(rewards, dones, gamma, last_value=0.0):  # accumulates forward (a discounted prefix sum)
    out, running = torch.empty_like(rewards), torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0]):
        running = rewards[t] + gamma * running * (1.0 - dones[t].float())
        out[t] = running
    return out


def rtg_off_by_one(rewards, dones, gamma, last_value=0.0):  # G_t computed from r_{t+1}
    full = estimators.reward_to_go(rewards, dones, gamma, last_value)
    shifted = torch.zeros_like(full)
    shifted[:-1] = full[1:] * (1.0 - dones[:-1].float())
    return shifted


def rtg_ignores_last_value(rewards, dones, gamma, last_value=0.0):
    return estimators.reward_to_go(rewards, dones, gamma, 0.0)


def rtg_bootstraps_after_done(rewards, dones, gamma, last_value=0.0):  # last_value added even after a done
    out = estimators.reward_to_go(rewards, dones, gamma, 0.0)
    return out + torch.as_tensor(last_value) * (gamma ** torch.arange(rewards.shape[0], 0, -1)).reshape(
        -1, *([1] * (rewards.dim() - 1)))


@pytest.mark.parametrize("wrong", [rtg_no_reset, rtg_forward, rtg_off_by_one, rtg_ignores_last_value,
                                   rtg_bootstraps_after_done])
def test_reward_to_go_rejects(wrong):
    assert not run("reward_to_go", wrong).passed


def test_reward_to_go_no_reset_fails_on_the_boundary_case():
    message = run("reward_to_go", rtg_no_reset).message
    assert "[1,1 | 1]" in message and "resets" in message


# --- 01.2 bootstrapped_returns: wrong versions ------------------------------------------------


def boot_truncation_is_termination(rewards, terminated, truncated, next_values, gamma):  # bug 4
    dones = terminated | truncated
    return estimators.reward_to_go(rewards, dones, gamma, next_values[-1])


def boot_also_after_termination(rewards, terminated, truncated, next_values, gamma):
    dones = terminated | truncated
    return estimators.reward_to_go(torch.where(dones, rewards + gamma * next_values, rewards), dones, gamma,
                                next_values[-1])


def boot_no_segment_bootstrap(rewards, terminated, truncated, next_values, gamma):
    dones = terminated | truncated
    return estimators.reward_to_go(torch.where(truncated, rewards + gamma * next_values, rewards), dones, gamma, 0.0)


def boot_chain_not_stopped_at_truncation(rewards, terminated, truncated, next_values, gamma):
    # bootstraps, but lets the next episode's rewards leak in (only `terminated` resets the sum)
    return estimators.reward_to_go(torch.where(truncated, rewards + gamma * next_values, rewards), terminated,
                                gamma, next_values[-1])


@pytest.mark.parametrize("wrong", [boot_truncation_is_termination, boot_also_after_termination,
                                   boot_no_segment_bootstrap, boot_chain_not_stopped_at_truncation])
def test_bootstrapped_returns_rejects(wrong):
    assert not run("bootstrapped_returns", wrong).passed


# --- 01.3 policy_gradient_loss: wrong versions --------------------------------------------------


def pg_no_minus(logp, advantages):  # gradient ascent on the loss
    return (logp * advantages.detach()).mean()


def pg_not_detached(logp, advantages):  # bug 3
    return -(logp * advantages).mean()


def pg_sum(logp, advantages):
    return -(logp * advantages.detach()).sum()


def pg_prob_instead_of_logp(logp, advantages):
    return -(logp.exp() * advantages.detach()).mean()


def pg_logp_detached(logp, advantages):
    return -(logp.detach() * advantages.detach()).mean()


@pytest.mark.parametrize("wrong", [pg_no_minus, pg_not_detached, pg_sum, pg_prob_instead_of_logp,
                                   pg_logp_detached])
def test_policy_gradient_loss_rejects(wrong):
    assert not run("policy_gradient_loss", wrong).passed


def pg_squeezes(logp, advantages):  # class (a): logp.squeeze() of a (T, 1) batch broadcasts to (T, T)
    return -(logp.squeeze() * advantages.detach()).mean()


@pytest.mark.parametrize(("wrong", "caught_by", "problem"), [
    (pg_not_detached, "∂L/∂logp = -Â / B, and no gradient into the advantages", "`advantages` is a constant"),
    (pg_logp_detached, "∂L/∂logp = -Â / B, and no gradient into the advantages", "no gradient reaches `logp`"),
    (pg_squeezes, "one env: (T, N) = (5, 1)", "expected"),
])
def test_policy_gradient_loss_bug_is_caught_by_its_case(wrong, caught_by, problem):
    assert_caught("policy_gradient_loss", wrong, caught_by, problem)


def test_the_critic_case_alone_catches_an_advantage_that_is_not_detached():
    # Same value everywhere, so only a gradient observer can catch it; this one in a real critic.
    exercise = EXERCISES["policy_gradient_loss"]
    critic = [c for c in exercise.make_cases() if "no gradient into the critic" in c.label]
    alone = dataclasses.replace(exercise, make_cases=lambda: critic)
    assert checker.run_exercise(alone, exercise.reference).passed
    message = checker.run_exercise(alone, pg_not_detached).message
    assert "no gradient into the critic" in message


def test_policy_gradient_loss_sign_is_caught_by_the_bandit_case():
    def wrong_only_on_bandit(logp, advantages):  # right value, wrong direction only when it matters
        return pg_no_minus(logp, advantages) if logp.shape == (4,) else reinforce.policy_gradient_loss(logp, advantages)

    assert "bandit" in run("policy_gradient_loss", wrong_only_on_bandit).message


# --- 01.4 value_loss: wrong versions -------------------------------------------------------------


def vl_half(values, returns):
    return 0.5 * ((values - returns.detach()) ** 2).mean()


def vl_sum(values, returns):
    return ((values - returns.detach()) ** 2).sum()


def vl_abs(values, returns):
    return (values - returns.detach()).abs().mean()


def vl_targets_not_detached(values, returns):
    return ((values - returns) ** 2).mean()


def vl_squeezes(values, returns):  # class (a): values.squeeze() "for the critic's (B, 1) output"
    return ((values.squeeze() - returns.detach()) ** 2).mean()


def vl_squared_distance(values, returns):  # class (b): the distance √Σ(V − G)², squared: NaN gradient at V = G
    return torch.sqrt(((values - returns.detach()) ** 2).sum()) ** 2 / values.numel()


def vl_detached(values, returns):  # class (b): a loss that cannot train the critic
    return ((values.detach() - returns.detach()) ** 2).mean()


@pytest.mark.parametrize("wrong", [vl_half, vl_sum, vl_abs, vl_targets_not_detached])
def test_value_loss_rejects(wrong):
    assert not run("value_loss", wrong).passed


@pytest.mark.parametrize(("wrong", "caught_by", "problem"), [
    (vl_targets_not_detached, "gradients: 2(V − G)/B", "`returns` is a constant"),
    (vl_detached, "gradients: 2(V − G)/B", "no gradient reaches `values`"),
    (vl_squeezes, "one env: (T, N) = (5, 1)", "expected"),
    (vl_squared_distance, "a perfect fit V = G", "NaN"),
])
def test_value_loss_bug_is_caught_by_its_case(wrong, caught_by, problem):
    assert_caught("value_loss", wrong, caught_by, problem)


# --- 01.5 batch_advantages: wrong versions -------------------------------------------------------


def adv_per_env_column(returns, values):  # bug 2: per-episode normalisation (each env column one episode)
    adv = returns - values
    return (adv - adv.mean(0)) / (adv.std(0) + 1e-8)


def adv_per_env_population_std(returns, values):  # the same bug with population std: 0/eps = 0 on bandits
    adv = returns - values
    return (adv - adv.mean(0)) / (adv.std(0, unbiased=False) + 1e-8)


def adv_no_baseline(returns, values):
    return (returns - returns.mean()) / (returns.std() + 1e-8)


def adv_not_normalised(returns, values):
    return returns - values


def adv_no_eps(returns, values):
    adv = returns - values
    return (adv - adv.mean()) / adv.std()


@pytest.mark.parametrize("wrong", [adv_per_env_column, adv_per_env_population_std, adv_no_baseline,
                                   adv_not_normalised, adv_no_eps])
def test_batch_advantages_rejects(wrong):
    assert not run("batch_advantages", wrong).passed


def adv_not_detached(returns, values):  # class (b): V from the critic keeps its graph
    adv = returns - values
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def adv_squeezes(returns, values):  # class (a): values.squeeze(-1) "for the critic's (B, 1) output"
    adv = (returns - values.squeeze(-1)).detach()
    return (adv - adv.mean()) / (adv.std() + 1e-8)


@pytest.mark.parametrize(("wrong", "caught_by", "problem"), [
    (adv_not_detached, "the advantages are constants", "`values` is a constant"),
    (adv_squeezes, "one env: (T, N) = (5, 1)", "expected shape (5, 1), got shape (5, 5)"),
])
def test_batch_advantages_bug_is_caught_by_its_case(wrong, caught_by, problem):
    assert_caught("batch_advantages", wrong, caught_by, problem)


def test_batch_advantages_rejects_per_episode_normalisation_on_the_sum_to_zero_numbers():
    """§2 test (b): a version that normalises the episodes [2,1] and [4,3,2,1] separately fails."""

    def per_episode(returns, values):
        if returns.shape == (6,):  # the two episodes of the §2 case
            adv = returns - values
            pieces = [adv[:2], adv[2:]]
            return torch.cat([(p - p.mean()) / (p.std() + 1e-8) for p in pieces])
        return reinforce.batch_advantages(returns, values)

    result = run("batch_advantages", per_episode)
    assert not result.passed
    assert "[2, 1] and [4, 3, 2, 1]" in result.message
