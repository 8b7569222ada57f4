"""course_lib.lm.ppo_rlhf: per-token rewards, masked whitening, token GAE and the masked losses by hand and
against Part I (``course_lib.estimators.gae``, ``course_lib.rl.ppo``), the critic's alignment, and the trainer."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from course_lib import estimators, training
from course_lib.lm import ppo_rlhf, tasks
from course_lib.lm.model import tiny_gpt2
from course_lib.lm.tokenizer import build_char_tokenizer
from course_lib.rl import ppo  # the test only: course_lib.lm never imports course_lib.rl

TASK = tasks.AdditionTask(num_digits=1, num_train=60, num_test=10)
KEYS = ("reward", "kl", "eval_accuracy", "clipfrac", "approx_kl", "completion_length", "loss/policy", "loss/value")


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(TASK.alphabet)


def _model(tokenizer, seed: int = 0):
    return tiny_gpt2(tokenizer, n_layer=1, n_head=2, n_embd=16, n_positions=16, seed=seed)


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])


# --- per-token rewards --------------------------------------------------------------------------------


def test_per_token_rewards_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-0.1, -0.2, -0.3, -0.4]])
    ref = torch.tensor([[-1.5, -1.0, -0.5, 7.0], [-0.1, -0.4, -0.1, -0.1]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    rewards, kl = ppo_rlhf.per_token_rewards(torch.tensor([1.0, -0.5]), logp, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0, 0.0], [0.0, 0.2, -0.2, -0.3]]))
    expected = torch.tensor([[-0.05, 0.1, 1.0, 0.0], [0.0, -0.02, 0.02, 0.03 - 0.5]])
    assert torch.allclose(rewards, expected, atol=1e-7)
    # the sum over tokens is score − β Σ kl_t, and nothing sits on padding
    assert torch.allclose(rewards.sum(1), torch.tensor([1.0, -0.5]) - 0.1 * kl.sum(1))
    assert rewards[0, 3] == 0 and kl[0, 3] == 0


def _score_on_last_column(scores, logp, ref, mask, kl_coef):
    """Bug: the score at the last column, whether it is a real token or padding."""
    kl = (logp - ref) * mask
    rewards = -kl_coef * kl
    rewards[:, -1] += scores
    return rewards, kl


def _no_kl(scores, logp, ref, mask, kl_coef):
    """Bug: the KL penalty forgotten, the score alone."""
    rewards = torch.zeros_like(logp)
    rewards[torch.arange(len(scores)), mask.sum(1) - 1] = scores
    return rewards, torch.zeros_like(logp)


@pytest.mark.parametrize("buggy", [_score_on_last_column, _no_kl])
def test_per_token_rewards_tell_the_known_bugs_apart(buggy):
    scores, logp, ref = torch.tensor([1.0, 0.0, 2.0]), _random(3, 5, seed=1), _random(3, 5, seed=2)
    right = ppo_rlhf.per_token_rewards(scores, logp, ref, MASK, 0.2)[0]
    wrong = buggy(scores, logp, ref, MASK, 0.2)[0]
    assert not torch.allclose(right, wrong)


def test_per_token_rewards_are_the_score_alone_when_the_policy_is_the_reference():
    logp = _random(3, 5)
    rewards, kl = ppo_rlhf.per_token_rewards(torch.tensor([1.0, 0.0, 2.0]), logp, logp.clone(), MASK, 0.5)
    assert torch.equal(kl, torch.zeros(3, 5))
    assert rewards[0].tolist() == [0, 0, 1, 0, 0] and rewards[2].tolist() == [2, 0, 0, 0, 0]


def test_per_token_rewards_refuse_bad_input():
    logp, scores = _random(3, 5), torch.tensor([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="kl_coef"):
        ppo_rlhf.per_token_rewards(scores, logp, logp, MASK, -0.1)
    with pytest.raises(ValueError, match=r"scores\[1\] is nan"):
        ppo_rlhf.per_token_rewards(torch.tensor([1.0, math.nan, 2.0]), logp, logp, MASK, 0.1)
    with pytest.raises(ValueError, match=r"scores\[2\] is inf"):
        ppo_rlhf.per_token_rewards(torch.tensor([1.0, 0.0, math.inf]), logp, logp, MASK, 0.1)
    with pytest.raises(ValueError, match="one per row"):
        ppo_rlhf.per_token_rewards(torch.tensor([1.0]), logp, logp, MASK, 0.1)
    with pytest.raises(ValueError, match="row 0 is not 1s followed by 0s"):
        ppo_rlhf.per_token_rewards(scores, logp, logp, torch.tensor([[1, 0, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="row 2 has no completion token"):
        ppo_rlhf.per_token_rewards(scores, logp, logp, torch.tensor([[1, 0, 0, 0, 0], [1] * 5, [0] * 5]), 0.1)


# --- masked mean and whitening --------------------------------------------------------------------------


def test_masked_whitening_uses_the_real_tokens_only():
    values = _random(3, 5, seed=3)
    real = values[MASK.bool()]
    whitened = ppo_rlhf.masked_whiten(values, MASK)
    expected = (real - real.mean()) / torch.sqrt(real.var() + 1e-8)  # torch's var is unbiased, as TRL's
    assert torch.allclose(whitened[MASK.bool()], expected, atol=1e-6)
    assert whitened[MASK.bool()].mean().abs() < 1e-6 and whitened[MASK.bool()].std().sub(1).abs() < 1e-4
    assert torch.equal(whitened[~MASK.bool()], torch.zeros(6))
    garbage = values.masked_fill(~MASK.bool(), 1e6)  # padding never enters the statistics
    assert torch.allclose(ppo_rlhf.masked_whiten(garbage, MASK), whitened)
    including_padding = (values - values.mean()) / torch.sqrt(values.var() + 1e-8)  # the bug: all entries
    assert not torch.allclose(including_padding[MASK.bool()], expected, atol=1e-3)
    scaled = ppo_rlhf.masked_whiten(values, MASK, shift_mean=False)
    assert torch.allclose(scaled[MASK.bool()], expected + real.mean(), atol=1e-6)


def test_masked_mean_and_var():
    values = torch.tensor([[1.0, 2.0, math.nan], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert ppo_rlhf.masked_mean(values, mask).item() == pytest.approx(2.0)
    assert ppo_rlhf.masked_mean(values, mask, dim=1).tolist() == [1.5, 3.0]
    assert ppo_rlhf.masked_var(values, mask).item() == pytest.approx(1.0)
    assert ppo_rlhf.masked_var(values, mask, unbiased=False).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no 1 entry"):
        ppo_rlhf.masked_mean(values, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        ppo_rlhf.masked_var(values, torch.tensor([[1, 0, 0], [0, 0, 0]]))


# --- token GAE ---------------------------------------------------------------------------------------------


def test_token_gae_is_part_one_gae_on_one_row_and_matches_the_spec_case():
    # algorithms.md §3 case B: r = [1, 1, 1], V = 0.5, γ = 0.9, λ = 0.8, terminated at t = 2
    advantages, returns = ppo_rlhf.token_gae(torch.ones(1, 3), torch.full((1, 3), 0.5), torch.ones(1, 3), 0.9, 0.8)
    assert torch.allclose(advantages, torch.tensor([[1.8932, 1.31, 0.5]]), atol=1e-6)
    assert torch.allclose(returns, torch.tensor([[2.3932, 1.81, 1.0]]), atol=1e-6)
    rewards, values = _random(1, 6, seed=4), _random(1, 6, seed=5)
    ours = ppo_rlhf.token_gae(rewards, values, torch.ones(1, 6), 1.0, 0.95)
    terminated = torch.tensor([False] * 5 + [True])
    next_values = torch.cat([values[0, 1:], torch.zeros(1)])
    part_one = estimators.gae(rewards[0], values[0], next_values, terminated, torch.zeros(6, dtype=torch.bool),
                              1.0, 0.95)
    for mine, theirs in zip(ours, part_one, strict=True):
        assert torch.allclose(mine[0], theirs, atol=1e-6)


def _trl_gae(rewards, values, mask, gamma, lam):
    """TRL PPOTrainer's loop: values and rewards zeroed on padding, no terminal flags."""
    rewards, values = rewards * mask, values * mask
    last, out = 0.0, []
    for t in reversed(range(rewards.shape[1])):
        next_values = values[:, t + 1] if t < rewards.shape[1] - 1 else 0.0
        last = rewards[:, t] + gamma * next_values - values[:, t] + gamma * lam * last
        out.append(last)
    advantages = torch.stack(out[::-1], dim=1)
    return advantages * mask, (advantages + values) * mask


def test_token_gae_padding_does_not_leak_and_agrees_with_trl():
    rewards, values = _random(3, 5, seed=6), _random(3, 5, seed=7)
    advantages, returns = ppo_rlhf.token_gae(rewards, values, MASK, 1.0, 0.95)
    assert torch.equal(advantages[~MASK.bool()], torch.zeros(6)) and torch.equal(returns[~MASK.bool()], torch.zeros(6))
    garbage = ~MASK.bool()
    changed = ppo_rlhf.token_gae(rewards.masked_fill(garbage, 100.0), values.masked_fill(garbage, -50.0), MASK, 1.0, 0.95)
    assert torch.equal(changed[0], advantages) and torch.equal(changed[1], returns)
    alone = ppo_rlhf.token_gae(rewards[:1, :3], values[:1, :3], torch.ones(1, 3), 1.0, 0.95)[0]
    assert torch.allclose(advantages[0, :3], alone[0])  # the same row without its padding
    trl = _trl_gae(rewards, values, MASK, 1.0, 0.95)
    assert torch.allclose(advantages, trl[0], atol=1e-6) and torch.allclose(returns, trl[1], atol=1e-6)
    whitened = ppo_rlhf.token_gae(rewards, values, MASK, 1.0, 0.95, whiten=True)[0]
    assert torch.allclose(whitened, ppo_rlhf.masked_whiten(advantages, MASK))


# --- losses against Part I -----------------------------------------------------------------------------------


def test_masked_clip_loss_is_part_one_clip_loss_on_the_real_tokens():
    mask = MASK.bool()
    logp_old = _random(3, 5, seed=8) - 2
    logp = (logp_old + 0.4 * _random(3, 5, seed=9)).requires_grad_()
    advantages = _random(3, 5, seed=10)
    loss, stats = ppo_rlhf.masked_clip_loss(logp, logp_old, advantages, MASK, 0.2)
    flat = logp.detach()[mask].requires_grad_()
    ref_loss, ref_stats = ppo.ppo_clip_loss(flat, logp_old[mask], advantages[mask], 0.2)
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-6)
    assert stats == pytest.approx(ref_stats, abs=1e-6) and 0 < stats["clipfrac"] < 1
    loss.backward()
    ref_loss.backward()
    assert torch.allclose(logp.grad[mask], flat.grad, atol=1e-7)
    assert torch.equal(logp.grad[~mask], torch.zeros(6))  # padding gets no gradient
    poisoned = logp.detach().masked_fill(~mask, math.inf).requires_grad_()
    poisoned_loss = ppo_rlhf.masked_clip_loss(poisoned, logp_old, advantages, MASK, 0.2)[0]
    poisoned_loss.backward()
    assert poisoned_loss.item() == pytest.approx(loss.item()) and torch.isfinite(poisoned.grad).all()


@pytest.mark.parametrize("clip_coef", [None, 0.2])
def test_masked_value_loss_is_part_one_value_loss_on_the_real_tokens(clip_coef):
    mask = MASK.bool()
    values_old, returns = _random(3, 5, seed=11), _random(3, 5, seed=12)
    values = (values_old + 0.5 * _random(3, 5, seed=13)).requires_grad_()
    loss = ppo_rlhf.masked_value_loss(values, values_old, returns, MASK, clip_coef)
    expected = ppo.ppo_value_loss(values[mask], values_old[mask], returns[mask], clip_coef)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert torch.equal(values.grad[~mask], torch.zeros(6))
    with pytest.raises(ValueError, match="clip_coef"):
        ppo_rlhf.masked_value_loss(values, values_old, returns, MASK, -1.0)


def test_losses_refuse_mismatched_shapes_and_bad_clips():
    x = _random(3, 5)
    with pytest.raises(ValueError, match="advantages must have the shape"):
        ppo_rlhf.masked_clip_loss(x, x, x[:, :4], MASK, 0.2)
    with pytest.raises(ValueError, match="clip_coef"):
        ppo_rlhf.masked_clip_loss(x, x, x, MASK, 1.5)
    with pytest.raises(ValueError, match="mask must be a tensor of shape"):
        ppo_rlhf.masked_value_loss(x, x, x, MASK[:2])


# --- the critic ---------------------------------------------------------------------------------------------


def test_the_critic_reads_the_state_before_each_token_with_positions_from_the_mask(tokenizer):
    policy = _model(tokenizer)
    critic = ppo_rlhf.make_value_model(policy)
    assert torch.equal(critic(torch.tensor([[1, 5, 6]]), torch.ones(1, 3)), torch.zeros(1, 3))  # zero-init head
    assert all(torch.equal(a, b) for a, b in zip(critic.body.parameters(), policy.base_model.parameters(), strict=True))
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(critic.body.parameters(), policy.base_model.parameters(),
                                                            strict=True))
    torch.nn.init.normal_(critic.head.weight, generator=torch.Generator().manual_seed(0))
    # two rows, the second left-padded by two: completion of 3 tokens
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 2], [0, 0, 1, 6, 9, 8, 2]])
    attention = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    values = ppo_rlhf.completion_values(critic, ids, attention, 3)  # (2, 3)
    for row, start in ((0, 0), (1, 2)):
        for i in range(3):
            prefix = ids[row:row + 1, start:7 - 3 + i]  # the unpadded state before completion token i
            alone = critic(prefix, torch.ones_like(prefix))[0, -1]
            assert values[row, i].item() == pytest.approx(alone.item(), abs=1e-5)
    with pytest.raises(ValueError, match="logits_to_keep"):
        ppo_rlhf.completion_values(critic, ids, attention, 7)


# --- the trainer ----------------------------------------------------------------------------------------------


def _length_reward(prompts, completions):
    return [float(len(text)) for text in completions]


def _config(**changes):
    settings = dict(steps=3, prompts_per_step=4, num_generations=2, ppo_epochs=2, num_minibatches=2,
                    learning_rate=1e-3, eval_every=3, eval_examples=4)
    settings.update(changes)
    return ppo_rlhf.PPORLHFConfig(**settings)


def test_a_three_step_run_logs_the_trl_keys_and_moves_the_policy_and_the_critic(tokenizer):
    policy = _model(tokenizer)
    ref = copy.deepcopy(policy)
    critic = ppo_rlhf.make_value_model(policy)
    before = [p.detach().clone() for p in (*policy.parameters(), *critic.parameters())]
    seen = []
    history = ppo_rlhf.train_ppo_rlhf(policy, ref, _length_reward, critic, tokenizer, TASK,
                                      _config(), seed=0, callback=lambda step, h: seen.append(step))
    assert seen == [0, 1, 2, 3] and history["step"].tolist() == [0, 1, 2, 3]
    assert set(KEYS) <= set(history.keys())
    assert all(math.isfinite(history.last(key)) for key in KEYS)
    assert (history["first_ratio_error"][1:] < 1e-5).all()  # r = 1 on the first minibatch of each step
    assert history["kl"][1] == pytest.approx(0.0, abs=1e-5)  # the policy still is the reference at step 1
    after = [*policy.parameters(), *critic.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before[:len(list(policy.parameters()))], after, strict=False))
    assert not torch.equal(before[-1], after[-1])  # the critic's head bias learned
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), _model(tokenizer).parameters(), strict=True))
    again = ppo_rlhf.train_ppo_rlhf(_model(tokenizer), None, _length_reward, None, tokenizer,
                                    TASK, _config(), seed=0)
    assert again["loss/policy"][1:].tolist() == history["loss/policy"][1:].tolist()  # seeded: the same numbers


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_a_nan_loss_mid_step_stops_naming_the_step_and_keeps_the_last_good_parameters(tokenizer):
    policy = _model(tokenizer)
    critic = ppo_rlhf.make_value_model(policy)
    good: dict[int, list[torch.Tensor]] = {}
    calls = {"n": 0}

    def loss_with_a_nan(logp, logp_old, advantages, mask, clip_coef):
        calls["n"] += 1
        loss, stats = ppo_rlhf.masked_clip_loss(logp, logp_old, advantages, mask, clip_coef)
        return (loss * math.nan if calls["n"] == 6 else loss), stats  # step 2, its second minibatch

    def remember(step, history):
        good[step] = _params(policy) + _params(critic)

    with pytest.raises(training.NonFiniteError, match=r"at step 2, epoch 0, minibatch 1.*restored to the end of step 1"):
        ppo_rlhf.train_ppo_rlhf(policy, None, _length_reward, critic, tokenizer, TASK, _config(), callback=remember,
                                policy_loss_fn=loss_with_a_nan)
    assert sorted(good) == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(good[1], _params(policy) + _params(critic), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(good[0], good[1], strict=True))


def test_a_nan_score_stops_naming_the_step_and_keeps_the_last_good_parameters(tokenizer):
    policy = _model(tokenizer)
    good: dict[int, list[torch.Tensor]] = {}
    calls = {"n": 0}

    def reward_fn(prompts, completions):
        calls["n"] += 1
        return [math.nan if calls["n"] == 2 else 1.0] * len(completions)

    history = training.History()
    with pytest.raises(ValueError, match=r"reward_fn at step 2: scores\[0\] must be a finite number"):
        ppo_rlhf.train_ppo_rlhf(policy, None, reward_fn, None, tokenizer, TASK, _config(), history=history,
                                callback=lambda step, h: good.__setitem__(step, _params(policy)))
    assert history.last("step") == 1
    assert all(torch.equal(a, b) for a, b in zip(good[1], _params(policy), strict=True))


def test_the_trainer_refuses_bad_settings(tokenizer):
    policy = _model(tokenizer)
    with pytest.raises(ValueError, match="ref_policy is the policy itself"):
        ppo_rlhf.train_ppo_rlhf(policy, policy, None, None, tokenizer, TASK, _config())
    with pytest.raises(ValueError, match="num_minibatches=3 must divide the 8 rows"):
        _config(num_minibatches=3).validate()
    with pytest.raises(ValueError, match="PPORLHFConfig.kl_coef"):
        _config(kl_coef=-0.1).validate()
    with pytest.raises(ValueError, match="PPORLHFConfig.clip_coef"):
        _config(clip_coef=0.0).validate()
    with pytest.raises(ValueError, match="PPORLHFConfig.gae_lambda"):
        _config(gae_lambda=1.5).validate()
    with pytest.raises(ValueError, match="PPORLHFConfig.ppo_epochs"):
        _config(ppo_epochs=0).validate()
