"""Unit tests of course_lib.rl.trpo with the computed values of algorithms.md §4 (TRPO)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from course_lib.grading.exercises.lesson02 import BiasOnlyPolicy, _analytic_linear_fisher, _linear_policy
from course_lib.rl import envs, trpo


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The course's thread policy (course_lib.set_torch_threads): on a busy 2-core machine two threads
    made these small trainings up to 20 times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(seed: int = 0, n: int = 64, obs_dim: int = 4, n_actions: int = 3):
    """A linear-softmax policy and a batch (obs, actions, advantages, old logits, old log-probs)."""
    g = torch.Generator().manual_seed(seed)
    policy = _linear_policy(obs_dim, n_actions, seed)
    obs = torch.randn(n, obs_dim, generator=g)
    actions = torch.randint(0, n_actions, (n,), generator=g)
    adv = torch.randn(n, generator=g)
    with torch.no_grad():
        old_logits = policy(obs)
    logp_old = torch.log_softmax(old_logits, -1).gather(-1, actions[:, None]).squeeze(-1)
    return policy, obs, actions, adv, old_logits, logp_old


def _logp(policy, obs, actions):
    return torch.log_softmax(policy(obs), -1).gather(-1, actions[:, None]).squeeze(-1)


# --- surrogate and KL ------------------------------------------------------------------------------


def test_surrogate_is_policy_gradient_at_old_params_and_ratio_is_one():
    policy, obs, actions, adv, _, logp_old = _batch()
    params = list(policy.parameters())
    logp = _logp(policy, obs, actions)
    assert torch.equal(torch.exp(logp - logp_old), torch.ones_like(logp))  # ratio == 1 before the step
    g = trpo.flat_grad(trpo.surrogate_objective(logp, logp_old, adv), params)
    pg = trpo.flat_grad((_logp(policy, obs, actions) * adv).mean(), params)
    torch.testing.assert_close(g, pg, rtol=1e-5, atol=1e-7)


def test_categorical_kl_hand_values_and_direction():
    old, new = torch.zeros(1, 2), torch.log(torch.tensor([[0.9, 0.1]]))
    assert trpo.categorical_kl(old, new).item() == pytest.approx(0.5108256, abs=1e-6)
    assert trpo.categorical_kl(new, old).item() == pytest.approx(0.3680642, abs=1e-6)  # the other direction
    p07 = torch.log(torch.tensor([[0.7, 0.3]], dtype=torch.float64))
    kl = trpo.categorical_kl(p07, p07 + torch.tensor([[0.13868, -0.13868]], dtype=torch.float64))
    assert kl.item() == pytest.approx(0.00777, abs=5e-6)  # §4: the scaled step's true KL ≤ δ = 0.01
    assert trpo.categorical_kl(torch.tensor([[0.0, -1000.0]]), torch.zeros(1, 2)).item() == pytest.approx(math.log(2))


def test_categorical_kl_old_side_gets_no_gradient():
    old = torch.randn(5, 3, requires_grad=True)
    new = torch.randn(5, 3, requires_grad=True)
    trpo.categorical_kl(old, new).sum().backward()
    assert old.grad is None
    assert new.grad is not None and new.grad.abs().max() > 0


# --- Fisher-vector products --------------------------------------------------------------------------


def test_fvp_matches_analytic_linear_fisher():
    policy, obs, *_ = _batch(1)
    v = torch.randn(sum(p.numel() for p in policy.parameters()), generator=torch.Generator().manual_seed(2))
    out = trpo.fisher_vector_product(policy, obs, v, damping=0.1)
    expected = _analytic_linear_fisher(policy, obs, v)
    torch.testing.assert_close(out - 0.1 * v, expected, rtol=1e-5, atol=1e-6)
    assert (out - 0.1 * v).abs().max() > 1e-3  # the Fisher part is really there


def test_fvp_bias_only_example_and_eigenvalues():
    policy = BiasOnlyPolicy(torch.log(torch.tensor([0.7, 0.3], dtype=torch.float64)))
    obs = torch.zeros(3, 1, dtype=torch.float64)
    fisher = torch.stack([trpo.fisher_vector_product(policy, obs, e, 0.0) for e in torch.eye(2, dtype=torch.float64)])
    torch.testing.assert_close(fisher, torch.tensor([[0.21, -0.21], [-0.21, 0.21]], dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.eigvalsh(fisher), torch.tensor([0.0, 0.42], dtype=torch.float64))


def test_fvp_symmetric_psd_and_no_grad_accumulation():
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    obs = torch.randn(20, 4)
    p = sum(q.numel() for q in policy.parameters())
    u, v = torch.randn(p), torch.randn(p)
    fu, fv = (trpo.fisher_vector_product(policy, obs, x, 0.0) for x in (u, v))
    assert float(u @ fv) == pytest.approx(float(v @ fu), rel=1e-4)
    assert float(v @ fv) >= 0 and float(u @ fu) >= 0
    torch.testing.assert_close(trpo.fisher_vector_product(policy, obs, v, 0.0), fv)
    assert all(q.grad is None for q in policy.parameters())


def test_naive_kl_with_neither_side_detached_gives_only_damping():
    """algorithms.md §4, 'why a naive TRPO stalls': KL(π‖π) with both sides live is identically 0."""
    policy, obs, *_ = _batch(3)
    params = list(policy.parameters())
    v = torch.randn(parameters_to_vector(params).numel())
    logits = policy(obs)
    logp = torch.log_softmax(logits, -1)
    naive_kl = (logp.exp() * (logp - logp)).sum(-1).mean()
    grad = trpo.flat_grad(naive_kl, params, create_graph=True)
    hv = trpo.flat_grad((grad * v).sum(), params) if grad.requires_grad else torch.zeros_like(v)
    torch.testing.assert_close(hv + 0.1 * v, 0.1 * v)  # F·v = λv: no curvature at all


# --- conjugate gradient and the step ---------------------------------------------------------------


def test_conjugate_gradient_examples():
    a = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: a @ v, b, iterations=2)
    torch.testing.assert_close(x, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64))
    torch.testing.assert_close(trpo.conjugate_gradient(lambda v: a @ v, b, iterations=50), x)  # early stop, no NaN
    m = torch.randn(7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spd = m @ m.T + 0.1 * torch.eye(7, dtype=torch.float64)
    rhs = torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(trpo.conjugate_gradient(lambda v: spd @ v, rhs, 30), torch.linalg.solve(spd, rhs))
    assert torch.equal(trpo.conjugate_gradient(lambda v: a @ v, torch.zeros(2), 10), torch.zeros(2))


def test_natural_gradient_step_example_and_scaling():
    damped = torch.tensor([[0.31, -0.21], [-0.21, 0.31]])
    g = torch.tensor([0.21, -0.21])
    x = trpo.conjugate_gradient(lambda v: damped @ v, g, 10)
    torch.testing.assert_close(x, torch.tensor([0.40385, -0.40385]), atol=1e-5, rtol=0)
    s = trpo.natural_gradient_step(g, lambda v: damped @ v, max_kl=0.01)
    torch.testing.assert_close(s, torch.tensor([0.13868, -0.13868]), atol=1e-5, rtol=0)
    assert float(0.5 * s @ damped @ s) == pytest.approx(0.01, rel=1e-5)
    assert float(g @ s) > 0


def test_broken_fvp_gives_fixed_length_normalized_gradient_step():
    """With F·v = λv the step is sqrt(2δ/λ)·g/‖g‖: about 0.447 for δ = 0.01, λ = 0.1."""
    g = torch.randn(10, generator=torch.Generator().manual_seed(4))
    s = trpo.natural_gradient_step(g, lambda v: 0.1 * v, 0.01)
    assert float(s.norm()) == pytest.approx(math.sqrt(0.2), rel=1e-5)
    torch.testing.assert_close(s / s.norm(), g / g.norm())


# --- one full TRPO update on a batch ----------------------------------------------------------------


def _evaluate_fn(policy, obs, actions, adv, old_logits, logp_old):
    @torch.no_grad()
    def evaluate():
        logits = policy(obs)
        logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
        return (trpo.surrogate_objective(logp, logp_old, adv).item(),
                trpo.categorical_kl(old_logits, logits).mean().item())
    return evaluate


def test_full_update_respects_trust_region_and_improves():
    policy, obs, actions, adv, old_logits, logp_old = _batch(5)
    evaluate = _evaluate_fn(policy, obs, actions, adv, old_logits, logp_old)
    surrogate_before, kl_before = evaluate()
    assert kl_before == 0.0
    params = list(policy.parameters())
    g = trpo.flat_grad(trpo.surrogate_objective(_logp(policy, obs, actions), logp_old, adv), params)
    step = trpo.natural_gradient_step(g, lambda v: trpo.fisher_vector_product(policy, obs, v, 0.1), 0.01)
    assert float(g @ step) > 0
    result = trpo.line_search(policy, step, evaluate, max_kl=0.01)
    surrogate_after, kl_after = evaluate()
    assert result["accepted"] and 0.0 < kl_after <= 0.01
    assert surrogate_after > surrogate_before
    assert result["kl"] == pytest.approx(kl_after)


def test_line_search_rolls_back_bit_for_bit():
    policy, obs, actions, adv, old_logits, logp_old = _batch(6)
    before = parameters_to_vector(policy.parameters()).detach().clone()
    params = list(policy.parameters())
    g = trpo.flat_grad(trpo.surrogate_objective(_logp(policy, obs, actions), logp_old, adv), params)
    step = trpo.natural_gradient_step(g, lambda v: trpo.fisher_vector_product(policy, obs, v, 0.1), 0.01)
    evaluate = _evaluate_fn(policy, obs, actions, adv, old_logits, logp_old)
    result = trpo.line_search(policy, step, evaluate, max_kl=1e-12)
    assert not result["accepted"] and result["backtracks"] == 10
    assert torch.equal(parameters_to_vector(policy.parameters()), before)
    result = trpo.line_search(policy, -step, evaluate, max_kl=1.0)  # downhill: no improvement anywhere
    assert not result["accepted"]
    assert torch.equal(parameters_to_vector(policy.parameters()), before)


# --- bad inputs ---------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="logp"):
        trpo.surrogate_objective(torch.zeros(3), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="old_logits"):
        trpo.categorical_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="iterations"):
        trpo.conjugate_gradient(lambda v: v, torch.ones(2), iterations=0)
    with pytest.raises(ValueError, match="max_kl"):
        trpo.natural_gradient_step(torch.ones(2), lambda v: v, max_kl=0.0)
    policy, obs, *_ = _batch()
    with pytest.raises(ValueError, match="vector"):
        trpo.fisher_vector_product(policy, obs, torch.ones(3), 0.1)
    for field, bad in [("max_kl", -0.01), ("gamma", 1.5), ("gae_lambda", -0.1), ("num_envs", 0),
                       ("shrink", 1.0), ("cg_iters", 0), ("damping", -1.0)]:
        with pytest.raises(ValueError, match=field):
            trpo.TRPOConfig(**{field: bad}).validate()


# --- the reference train() -----------------------------------------------------------------------------


def test_train_logs_metrics_is_deterministic_and_stops_on_callback():
    config = trpo.TRPOConfig(total_steps=4096, num_envs=4, num_steps=128)
    calls = []
    first = trpo.train(config, seed=3, callback=lambda steps, policy: calls.append(steps) or steps >= 2048)
    assert calls == [512, 1024, 1536, 2048]
    h = first.history
    for key in ("env_steps", "episode_return", "wall_seconds", "kl", "backtracks", "line_search_accepted",
                "surrogate_improvement", "value_loss", "explained_variance"):
        assert key in h.keys()
    assert (h["kl"] <= config.max_kl).all() and (h["kl"][h["line_search_accepted"] == 1] > 0).all()
    second = trpo.train(config, seed=3, callback=lambda steps, policy: steps >= 2048)
    assert torch.equal(parameters_to_vector(first.policy.parameters()), parameters_to_vector(second.policy.parameters()))


def test_trpo_learns_cartpole_quickly():
    """Does it learn: 10 updates of the default config lift the greedy return far above random (22)."""
    result = trpo.train(trpo.TRPOConfig(total_steps=10_240), seed=1)
    h = result.history
    assert (h["line_search_accepted"] == 1).all() and (h["kl"] <= 0.03).all()
    assert np.nanmax(h["explained_variance"][:5]) > 0.0  # the critic learns within a few updates
    returns = envs.evaluate_policy(result.policy, "CartPole-v1", episodes=10, seed=10_000)
    assert returns.mean() > 150, returns
