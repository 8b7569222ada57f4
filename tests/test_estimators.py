"""Unit tests of course_lib.estimators: reward-to-go (algorithms.md §1), normalize, GAE cases A-G (§3)."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import estimators


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def flags(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


NO = flags(0, 0, 0)
V = t(0.5, 0.5, 0.5)
R = t(1, 1, 1)


# --- reward-to-go and discounted return (§1) ------------------------------------------------------


@pytest.mark.parametrize("rewards, gamma, expected", [
    (t(1, 1, 1), 0.5, [1.75, 1.5, 1.0]),
    (t(1, 2, 3), 0.9, [5.23, 4.7, 3.0]),
    (t(0, 0, 1), 0.9, [0.81, 0.9, 1.0]),
])
def test_reward_to_go_single_episode(rewards, gamma, expected):
    out = estimators.reward_to_go(rewards, NO, gamma)
    assert torch.allclose(out, t(*expected), atol=1e-6)
    assert math.isclose(float(estimators.discounted_return(rewards, gamma)), expected[0], rel_tol=1e-6)


def test_reward_to_go_resets_at_episode_boundary():
    out = estimators.reward_to_go(t(1, 1, 1), flags(0, 1, 0), 0.5)
    assert torch.allclose(out, t(1.5, 1.0, 1.0))  # a buggy, non-resetting sum gives [1.75, 1.5, 1.0]


def test_reward_to_go_bootstraps_a_cut_segment_but_not_a_finished_episode():
    cut = estimators.reward_to_go(t(1, 1, 1), NO, 0.5, last_value=4.0)
    assert torch.allclose(cut, t(2.25, 2.5, 3.0))
    finished = estimators.reward_to_go(t(1, 1, 1), flags(0, 0, 1), 0.5, last_value=4.0)
    assert torch.allclose(finished, t(1.75, 1.5, 1.0))


# --- normalize -------------------------------------------------------------------------------------


def test_normalize_uses_unbiased_std():
    out = estimators.normalize(t(1, 2, 3, 4))
    assert torch.allclose(out, t(-1.1619, -0.3873, 0.3873, 1.1619), atol=1e-4)


def test_normalize_over_the_whole_batch_is_not_per_episode():
    out = estimators.normalize(t(2, 1, 4, 3, 2, 1))  # rtg of two episodes [2, 1] and [4, 3, 2, 1] (§2 test b)
    assert torch.allclose(out, t(-0.143, -0.998, 1.568, 0.713, -0.143, -0.998), atol=1e-3)
    assert abs(float(out[:2].sum())) > 0.5  # the first episode's weights do not sum to zero


def test_normalize_constant_is_zero_not_nan():
    assert torch.equal(estimators.normalize(t(3, 3, 3)), t(0, 0, 0))


@pytest.mark.parametrize("bad", [t(1.0), torch.zeros(0), [1.0, 2.0]])
def test_normalize_rejects_fewer_than_two_elements(bad):
    with pytest.raises(ValueError, match="at least 2"):
        estimators.normalize(bad)


# --- GAE (§3) ---------------------------------------------------------------------------------------


GAE_CASES = {
    # name: (next_values, terminated, truncated, gamma, lam, values, expected Â)
    "A no end": (V, NO, NO, 0.9, 0.8, V, [2.12648, 1.634, 0.95]),
    "B terminated at 2": (t(0.5, 0.5, 2.0), flags(0, 0, 1), NO, 0.9, 0.8, V, [1.8932, 1.31, 0.5]),
    "C truncated at 2": (t(0.5, 0.5, 2.0), NO, flags(0, 0, 1), 0.9, 0.8, V, [2.82632, 2.606, 2.3]),
    "C2 truncated at 1": (t(0.5, 2.0, 0.5), NO, flags(0, 1, 0), 0.9, 0.8, V, [2.606, 2.3, 0.95]),
    "D terminated at 1": (V, flags(0, 1, 0), NO, 0.9, 0.8, V, [1.31, 0.5, 0.95]),
    "E lambda 1": (V, flags(0, 0, 1), NO, 0.9, 1.0, V, [2.21, 1.4, 0.5]),
    "F lambda 0": (V, NO, NO, 0.9, 0.0, V, [0.95, 0.95, 0.95]),
    "G values 0": (t(0, 0, 0), NO, NO, 0.99, 0.95, t(0, 0, 0), [2.82504, 1.9405, 1.0]),
}


@pytest.mark.parametrize("name", GAE_CASES)
def test_gae_cases(name):
    next_values, terminated, truncated, gamma, lam, values, expected = GAE_CASES[name]
    adv, ret = estimators.gae(R, values, next_values, terminated, truncated, gamma, lam)
    assert torch.allclose(adv, t(*expected), atol=1e-5), name
    assert torch.allclose(ret, adv + values), "returns must be Â + V"
    assert adv.dtype == torch.float32 and adv.shape == (3,)


def test_gae_truncation_is_not_termination():
    trunc, _ = estimators.gae(R, V, t(0.5, 0.5, 2.0), NO, flags(0, 0, 1), 0.9, 0.8)
    term, _ = estimators.gae(R, V, t(0.5, 0.5, 2.0), flags(0, 0, 1), NO, 0.9, 0.8)
    assert not torch.allclose(trunc, term)


def test_gae_limits_equal_rtg_minus_v_and_td_error():
    adv1, _ = estimators.gae(R, V, V, flags(0, 0, 1), NO, 0.9, 1.0)
    assert torch.allclose(adv1, estimators.reward_to_go(R, flags(0, 0, 1), 0.9) - V)
    adv0, _ = estimators.gae(R, V, V, NO, NO, 0.9, 0.0)
    assert torch.allclose(adv0, R + 0.9 * V - V)


def test_gae_depends_on_values():
    # the published "values = 0 PPO" bug: Â must change when V changes (case A vs G-like input)
    with_v, _ = estimators.gae(R, V, V, NO, NO, 0.99, 0.95)
    without, _ = estimators.gae(R, t(0, 0, 0), t(0, 0, 0), NO, NO, 0.99, 0.95)
    assert not torch.allclose(with_v, without)


def test_gae_does_not_leak_across_an_episode_end():
    base = t(1, 1, 1, 1)
    later = t(1, 1, 5, -3)  # rewards of the next episode only
    args = (t(0, 0, 0, 0), t(0, 2, 0, 0), flags(0, 0, 0, 0), flags(0, 1, 0, 0), 0.9, 0.8)
    a, _ = estimators.gae(base, *args)
    b, _ = estimators.gae(later, *args)
    assert torch.allclose(a[:2], b[:2])


def test_gae_keeps_environments_apart():
    g = torch.Generator().manual_seed(0)
    rewards, values, next_values = (torch.randn(7, 3, generator=g) for _ in range(3))
    terminated = torch.rand(7, 3, generator=g) < 0.2
    truncated = (torch.rand(7, 3, generator=g) < 0.2) & ~terminated
    adv, ret = estimators.gae(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    for env in range(3):  # the (T, N) result equals N separate single-env computations
        one, one_ret = estimators.gae(rewards[:, env], values[:, env], next_values[:, env],
                                   terminated[:, env], truncated[:, env], 0.97, 0.9)
        assert torch.allclose(adv[:, env], one) and torch.allclose(ret[:, env], one_ret)
    changed = rewards.clone()
    changed[:, 1] += 10
    adv2, _ = estimators.gae(changed, values, next_values, terminated, truncated, 0.97, 0.9)
    assert torch.equal(adv2[:, 0], adv[:, 0]) and torch.equal(adv2[:, 2], adv[:, 2])


# --- bad inputs ---------------------------------------------------------------------------------------


def _gae_args(**over):
    args = dict(rewards=R, values=V, next_values=V, terminated=NO, truncated=NO, gamma=0.9, lam=0.8)
    args.update(over)
    return args


@pytest.mark.parametrize("over, match", [
    (dict(gamma=1.5), "gamma"),
    (dict(gamma=-0.1), "gamma"),
    (dict(lam=2.0), "lam"),
    (dict(values=t(0.5, 0.5)), "values"),
    (dict(next_values=torch.zeros(3, 2)), "next_values"),
    (dict(truncated=flags(0, 0)), "truncated"),
    (dict(rewards=torch.zeros(0), values=torch.zeros(0), next_values=torch.zeros(0),
          terminated=flags(), truncated=flags()), "empty"),
    (dict(rewards=t(1, float("nan"), 1)), "NaN"),
    (dict(rewards=torch.tensor([1, 1, 1])), "floating"),
    (dict(rewards=torch.zeros(3, 1, 1)), "shape"),
])
def test_gae_rejects_bad_inputs(over, match):
    with pytest.raises(ValueError, match=match):
        estimators.gae(**_gae_args(**over))


@pytest.mark.parametrize("call, match", [
    (lambda: estimators.reward_to_go(R, NO, 1.01), "gamma"),
    (lambda: estimators.reward_to_go(R, flags(0, 1), 0.9), "dones"),
    (lambda: estimators.reward_to_go(t(1, float("inf")), flags(0, 0), 0.9), "NaN or inf"),
    (lambda: estimators.reward_to_go(torch.zeros(0), flags(), 0.9), "empty"),
    (lambda: estimators.discounted_return(R, True), "gamma"),
])
def test_reward_to_go_rejects_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_explained_variance_of_perfect_constant_and_worse_critics():
    rets = t(1, 2, 3, 4)
    assert estimators.explained_variance(rets, rets) == 1.0
    assert math.isclose(estimators.explained_variance(torch.full((4,), 2.5), rets), 0.0, abs_tol=1e-6)
    # a critic that predicts the returns backwards is worse than a constant: 1 - Var(G - V)/Var(G) < 0
    assert math.isclose(estimators.explained_variance(t(4, 3, 2, 1), rets), -3.0, rel_tol=1e-6)
    assert math.isnan(estimators.explained_variance(t(1, 2), t(5, 5)))  # constant returns


def test_explained_variance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        estimators.explained_variance(t(1, 2, 3), t(1, 2))
