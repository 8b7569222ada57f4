"""course_lib.rl.reinforce: analytic cases (algorithms.md §1-§3), the per-episode normalisation bug, bad input,
and the reference train() (logging, callback, NaN guard, determinism, a short learning smoke test)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_lib import estimators, training
from course_lib.rl import reinforce


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The course's thread policy (course_lib.runtime): tiny models run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ONES, HALF, NO = torch.ones(3), torch.full((3,), 0.5), torch.zeros(3, dtype=torch.bool)


def flags(*values):
    return torch.tensor(values, dtype=torch.bool)


# --- bootstrapped_returns --------------------------------------------------------------------------


@pytest.mark.parametrize(("terminated", "truncated", "next_values", "expected"), [
    (NO, NO, HALF, [3.0745, 2.305, 1.45]),  # segment cut: bootstrap from V(s_T)
    (flags(0, 0, 1), NO, HALF, [2.71, 1.9, 1.0]),  # terminated: never bootstrap (§3 case E)
    (NO, flags(0, 0, 1), torch.tensor([0.5, 0.5, 2.0]), [4.168, 3.52, 2.8]),  # truncated: V(final obs)
    (flags(0, 1, 0), NO, HALF, [1.9, 1.0, 1.45]),  # new episode at t=2 (§3 case D, λ=1)
])
def test_bootstrapped_returns_hand_computed(terminated, truncated, next_values, expected):
    got = reinforce.bootstrapped_returns(ONES, terminated, truncated, next_values, 0.9)
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=0)


def test_truncation_is_not_termination():
    truncated = reinforce.bootstrapped_returns(ONES, NO, flags(0, 0, 1), torch.tensor([0.5, 0.5, 2.0]), 0.9)
    terminated = reinforce.bootstrapped_returns(ONES, flags(0, 0, 1), NO, torch.tensor([0.5, 0.5, 2.0]), 0.9)
    assert not torch.allclose(truncated, terminated)


def test_bootstrapped_returns_equal_gae_lambda_one_returns():
    g = torch.Generator().manual_seed(0)
    rewards, values, next_values = (torch.randn(30, 4, generator=g) for _ in range(3))
    draw = torch.rand(30, 4, generator=g)
    terminated, truncated = draw < 0.1, (draw >= 0.1) & (draw < 0.2)
    # consistent data: inside an episode, V(s'_{t+1}) is the value of the next stored state
    values[1:] = torch.where(terminated[:-1] | truncated[:-1], values[1:], next_values[:-1])
    ours = reinforce.bootstrapped_returns(rewards, terminated, truncated, next_values, 0.97)
    _, gae_returns = estimators.gae(rewards, values, next_values, terminated, truncated, 0.97, 1.0)
    torch.testing.assert_close(ours, gae_returns, atol=1e-5, rtol=1e-5)


def test_envs_do_not_mix():
    g = torch.Generator().manual_seed(1)
    rewards, next_values = torch.rand(10, 2, generator=g), torch.rand(10, 2, generator=g)
    no = torch.zeros(10, 2, dtype=torch.bool)
    before = reinforce.bootstrapped_returns(rewards, no, no, next_values, 0.9)
    rewards[:, 1] += 100.0
    after = reinforce.bootstrapped_returns(rewards, no, no, next_values, 0.9)
    torch.testing.assert_close(before[:, 0], after[:, 0])


# --- batch normalisation vs per-episode normalisation (§2) ---------------------------------------


def per_episode_normalise(rtgs):
    return [(g - g.mean()) / (g.std() + 1e-8) for g in rtgs]


def test_sum_to_zero_numbers():
    episodes = [torch.tensor([2.0, 1.0]), torch.tensor([4.0, 3.0, 2.0, 1.0])]
    per_episode = per_episode_normalise(episodes)
    torch.testing.assert_close(per_episode[0], torch.tensor([0.7071, -0.7071]), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_episode[1], torch.tensor([1.1619, 0.3873, -0.3873, -1.1619]), atol=1e-4, rtol=0)
    assert all(abs(float(w.sum())) < 1e-6 for w in per_episode)

    batch = reinforce.batch_advantages(torch.cat(episodes), torch.zeros(6))
    torch.testing.assert_close(batch, torch.tensor([-0.1426, -0.9980, 1.5682, 0.7128, -0.1426, -0.9980]),
                               atol=1e-4, rtol=0)
    assert float(batch[:2].sum()) < -1.0 and float(batch[2:].sum()) > 1.0  # the long episode counts as better


def bandit_logit_grad(weights_fn):
    """d(policy loss)/d(logit of the paying arm) on 8 one-step bandit episodes (arm 0 pays 1)."""
    logits = torch.zeros(2, requires_grad=True)
    actions = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    rewards = (actions == 0).float()
    weights = weights_fn(rewards)
    loss = reinforce.policy_gradient_loss(torch.log_softmax(logits, -1)[actions], weights)
    (grad,) = torch.autograd.grad(loss, logits)
    return grad[0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns: std of one element
def test_bandit_correct_estimator_learns_and_per_episode_does_not():
    assert bandit_logit_grad(lambda r: r) < 0  # plain REINFORCE
    assert bandit_logit_grad(lambda r: reinforce.batch_advantages(r, torch.zeros_like(r))) < 0
    unbiased = bandit_logit_grad(lambda r: torch.cat(per_episode_normalise(list(r.split(1)))))
    assert torch.isnan(unbiased)  # torch.std of one element is NaN
    population = bandit_logit_grad(lambda r: torch.cat([(g - g.mean()) / (g.std(unbiased=False) + 1e-8)
                                                        for g in r.split(1)]))
    assert population == 0.0


# --- losses ---------------------------------------------------------------------------------------


def test_policy_gradient_loss_value_and_gradient():
    logp = torch.tensor([-0.6931472, -1.3862944], requires_grad=True)
    advantages = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = reinforce.policy_gradient_loss(logp, advantages)
    assert loss.shape == () and abs(loss.item() - 1.7328680) < 1e-6
    grad_logp, grad_adv = torch.autograd.grad(loss, [logp, advantages], allow_unused=True)
    torch.testing.assert_close(grad_logp, torch.tensor([-0.5, -1.0]))
    assert grad_adv is None


def test_policy_loss_sends_no_gradient_into_the_critic():
    critic = torch.nn.Linear(3, 1)
    obs, rets = torch.randn(5, 3), torch.randn(5)
    logits = torch.zeros(5, 2, requires_grad=True)
    logp = torch.log_softmax(logits, -1)[:, 0]
    reinforce.policy_gradient_loss(logp, rets - critic(obs).squeeze(-1)).backward()
    assert critic.weight.grad is None and critic.bias.grad is None
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_one_step_on_the_bandit_raises_the_paying_arm():
    logits = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    actions = torch.tensor([0, 1, 0, 1])
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = reinforce.policy_gradient_loss(torch.log_softmax(logits, -1)[actions], rewards - rewards.mean())
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.softmax(logits, -1)[0] > 0.5


def test_value_loss_value_and_gradient():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    targets = torch.tensor([2.0, 2.0, 5.0], requires_grad=True)
    loss = reinforce.value_loss(values, targets)
    assert abs(loss.item() - 5 / 3) < 1e-6
    grad_v, grad_t = torch.autograd.grad(loss, [values, targets], allow_unused=True)
    torch.testing.assert_close(grad_v, torch.tensor([-2 / 3, 0.0, -4 / 3]))
    assert grad_t is None



# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "name"), [
    (lambda: reinforce.policy_gradient_loss(torch.zeros(3), torch.zeros(4)), "advantages"),
    (lambda: reinforce.policy_gradient_loss(torch.zeros(0), torch.zeros(0)), "logp"),
    (lambda: reinforce.policy_gradient_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3)), "logp"),
    (lambda: reinforce.value_loss(torch.zeros(3, 2), torch.zeros(3)), "returns"),
    (lambda: reinforce.value_loss(torch.zeros(0), torch.zeros(0)), "values"),
    (lambda: reinforce.batch_advantages(torch.zeros(5), torch.zeros(4)), "values"),
    (lambda: reinforce.batch_advantages(torch.zeros(1), torch.zeros(1)), "returns"),
    (lambda: reinforce.batch_advantages([1.0, 2.0], torch.zeros(2)), "returns"),
    (lambda: reinforce.bootstrapped_returns(ONES, NO, torch.zeros(2, dtype=torch.bool), HALF, 0.9), "truncated"),
    (lambda: reinforce.bootstrapped_returns(ONES, torch.zeros(3), NO, HALF, 0.9), "terminated"),
    (lambda: reinforce.bootstrapped_returns(ONES, NO, NO, torch.zeros(4), 0.9), "next_values"),
    (lambda: reinforce.bootstrapped_returns(ONES, NO, NO, torch.tensor([0.0, float("nan"), 0.0]), 0.9),
     "next_values"),
    (lambda: reinforce.bootstrapped_returns(ONES, NO, NO, HALF, 1.5), "gamma"),
    (lambda: reinforce.bootstrapped_returns(torch.ones(0), NO[:0], NO[:0], HALF[:0], 0.9), "rewards"),
    (lambda: reinforce.train(reinforce.ReinforceConfig(num_envs=0)), "num_envs"),
    (lambda: reinforce.train(reinforce.ReinforceConfig(gamma=-0.1)), "gamma"),
    (lambda: reinforce.train(reinforce.ReinforceConfig(policy_lr=0.0)), "policy_lr"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --- the reference train() ------------------------------------------------------------------------

TINY = reinforce.ReinforceConfig(total_steps=4 * 64 * 3, num_envs=4, num_steps=64, value_steps=2)


def test_train_logs_and_is_deterministic():
    first = reinforce.train(TINY, seed=3)
    second = reinforce.train(TINY, seed=3)
    history = first.history
    assert len(history) == 3
    for key in ("env_steps", "episode_return", "episode_length", "policy_loss", "value_loss", "entropy",
                "explained_variance", "wall_seconds"):
        assert key in history.keys()
    assert list(history["env_steps"]) == [256, 512, 768]
    for key in ("policy_loss", "value_loss", "episode_return"):
        torch.testing.assert_close(torch.tensor(history[key]), torch.tensor(second.history[key]), equal_nan=True)
    for p, q in zip(first.policy.parameters(), second.policy.parameters(), strict=True):
        assert torch.equal(p, q)


def test_callback_stops_training():
    seen = []

    def callback(env_steps, policy):
        seen.append(env_steps)
        return env_steps >= 512

    result = reinforce.train(TINY, seed=0, callback=callback)
    assert seen == [256, 512] and len(result.history) == 2


def test_nan_loss_raises_non_finite_error_and_keeps_history(monkeypatch):
    original, calls = reinforce.policy_gradient_loss, []

    def nan_on_third_call(logp, advantages):
        calls.append(1)
        loss = original(logp, advantages)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(reinforce, "policy_gradient_loss", nan_on_third_call)
    history = training.History()
    with pytest.raises(training.NonFiniteError, match=r"policy loss became NaN at iteration 2"):
        reinforce.train(TINY, seed=0, history=history)
    assert len(history) == 2


def test_learns_on_cartpole_quickly():
    """Smoke test (~3 s): 8 updates of 1024 steps lift the mean training return well above random (~22)."""
    config = dataclasses.replace(reinforce.ReinforceConfig(), total_steps=8 * 1024, num_envs=4, num_steps=256,
                                 value_steps=5)
    history = reinforce.train(config, seed=0).history
    first, last = history["episode_return"][:2].mean(), history["episode_return"][-2:].mean()
    assert first < 30 and last > 2 * first, (first, last)
