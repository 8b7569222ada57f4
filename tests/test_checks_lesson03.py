"""The lesson-03 checks accept the references and reject the known-wrong versions (algorithms.md §3, §5)."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch

from course_lib import estimators
from course_lib.grading import exercises
from course_lib.grading.checker import run_exercise
from course_lib.rl import ppo


def _gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam, *,
              bootstrap_mask="terminated", chain_mask="done", next_v="next_values", shift=0):
    """A configurable GAE used to build the buggy versions below."""
    term = terminated.float()
    done = (terminated | truncated).float()
    masks = {"terminated": term, "done": done, "none": torch.zeros_like(term), "terminated_only": term}
    nv = next_values
    if next_v == "values_shifted":  # V(s_{t+1}) from the next stored obs: the *reset* obs after an end
        nv = torch.cat([values[1:], next_values[-1:]])
    delta = rewards + gamma * nv * (1 - masks[bootstrap_mask]) - values
    chain = masks[chain_mask]
    if shift:  # off by one: use the flag of step t-1 to decide whether Â_{t+1} is added
        chain = torch.cat([torch.zeros_like(chain[:1]), chain[:-1]])
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for step in range(rewards.shape[0] - 1, -1, -1):
        running = delta[step] + gamma * lam * (1 - chain[step]) * running
        adv[step] = running
    return adv, adv + values


gae_truncation_as_termination = partial(_gae_loop, bootstrap_mask="done")


gae_off_by_one = partial(_gae_loop, shift=1)


gae_bootstrap_from_reset_obs = partial(_gae_loop, next_v="values_shifted")


gae_chain_not_stopped_at_truncation = partial(_gae_loop, chain_mask="terminated_only")


def gae_mixes_envs(rewards, values, next_values, terminated, truncated, gamma, lam):
    if rewards.dim() == 1:
        return estimators.gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    flat = [x.T.reshape(-1) for x in (rewards, values, next_values, terminated, truncated)]
    flat[3][-1] = False  # one long sequence env after env, so env 1 leaks into env 0
    adv, ret = estimators.gae(*flat, gamma, lam)
    shape = rewards.T.shape
    return adv.reshape(shape).T, ret.reshape(shape).T


def gae_lambda_only(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Chains with λ instead of γλ between steps (δ_t itself is right)."""
    return _gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam / gamma)


def _clip_variant(kind):
    def loss_fn(logp, logp_old, advantages, clip_coef):
        logratio = logp_old - logp if kind == "inverted" else logp - logp_old
        ratio = logratio.exp()
        unclipped = ratio * advantages
        if kind == "clip_advantage":
            clipped = ratio * advantages.clamp(1 - clip_coef, 1 + clip_coef)
        else:
            clipped = ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages
        if kind == "max":
            objective = torch.max(unclipped, clipped)
        elif kind == "no_clip":
            objective = unclipped
        else:
            objective = torch.min(unclipped, clipped)
        real = (logp - logp_old).detach()
        kl = (-real).mean() if kind == "k1" else ((real.exp() - 1) - real).mean()
        clipfrac = ((real.exp() - 1).abs() > clip_coef).float().mean()
        return -objective.mean(), {"approx_kl": kl.item(), "clipfrac": clipfrac.item()}

    return loss_fn


def _value_variant(kind):
    def loss_fn(values, values_old, returns, clip_coef=None):
        unclipped = (values - returns) ** 2
        half = 1.0 if kind == "no_half" else 0.5
        if clip_coef is None and kind != "always_clip":
            return half * unclipped.mean()
        eps = 0.2 if clip_coef is None else clip_coef
        center = returns if kind == "clip_around_returns" else values_old
        clipped = (center + (values - center).clamp(-eps, eps) - returns) ** 2
        pick = torch.min if kind == "min" else torch.max
        return half * pick(unclipped, clipped).mean()

    return loss_fn


def norm_population_std(advantages, eps=1e-8):
    return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + eps)


def norm_no_eps(advantages, eps=1e-8):
    return (advantages - advantages.mean()) / advantages.std()


def norm_no_centering(advantages, eps=1e-8):
    return advantages / (advantages.std() + eps)


EX = {e.name: e for e in exercises.for_lesson("03")}


def test_lesson03_registers_four_exercises():
    assert [(e.id, e.name) for e in exercises.for_lesson("03")] == [
        ("03.1", "gae"), ("03.2", "ppo_clip_loss"), ("03.3", "ppo_value_loss"), ("03.4", "normalize_advantages")]


@pytest.mark.parametrize("name, ref", [("gae", estimators.gae), ("ppo_clip_loss", ppo.ppo_clip_loss),
                                       ("ppo_value_loss", ppo.ppo_value_loss),
                                       ("normalize_advantages", ppo.normalize_advantages)])
def test_checks_accept_the_reference(name, ref):
    result = run_exercise(EX[name], ref)
    assert result.passed, result.message
    assert result.seconds < 1.0


@pytest.mark.parametrize("name, wrong, failing_case", [
    ("gae", gae_truncation_as_termination, "C: truncated"),
    ("gae", gae_off_by_one, "D: terminated"),
    ("gae", gae_bootstrap_from_reset_obs, "C2"),
    ("gae", gae_chain_not_stopped_at_truncation, "C2"),
    ("gae", gae_mixes_envs, "two envs"),
    ("gae", gae_lambda_only, "A: no episode end"),
    ("ppo_clip_loss", _clip_variant("max"), "r = 1.5, Â = +1"),
    ("ppo_clip_loss", _clip_variant("inverted"), "r = 1.5, Â = +1"),
    ("ppo_clip_loss", _clip_variant("no_clip"), "r = 1.5, Â = +1"),
    ("ppo_clip_loss", _clip_variant("clip_advantage"), "r = 1.5, Â = +1"),
    ("ppo_clip_loss", _clip_variant("k1"), "stats at log r = ln 1.5"),
    ("ppo_value_loss", _value_variant("min"), "V_old = 1, R = 3, ε = 0.2, V = 2.0"),
    ("ppo_value_loss", _value_variant("no_half"), "V_old = 1, R = 3, ε = 0.2, V = 2.0"),
    ("ppo_value_loss", _value_variant("clip_around_returns"), "V_old = 1, R = 3, ε = 0.2, V = 2.0"),
    ("ppo_value_loss", _value_variant("always_clip"), "no clipping"),
    ("normalize_advantages", norm_population_std, "[1, 2, 3, 4]"),
    ("normalize_advantages", norm_no_eps, "all advantages equal"),
    ("normalize_advantages", norm_no_centering, "[1, 2, 3, 4]"),
])
def test_checks_reject_known_bugs(name, wrong, failing_case):
    assert not run_exercise(EX[name], wrong).passed
    # the case named in algorithms.md catches the bug on its own, whatever the case order
    only = dataclasses.replace(EX[name], make_cases=lambda: [
        c for c in EX[name].make_cases() if c.label.startswith(failing_case)])
    assert len(only.make_cases()) == 1, failing_case
    result = run_exercise(only, wrong)
    assert not result.passed and failing_case in result.message, result.message


def test_env_mixing_case_alone_catches_mixing():
    """The observer case on its own: a version that leaks env 1 into env 0 moves env 0's Â."""
    case = next(c for c in EX["gae"].make_cases() if c.label.startswith("changing env 1"))
    moved = case.observe(gae_mixes_envs, dict(case.inputs))
    assert moved.abs().max() > 1e-3
    assert torch.equal(case.observe(estimators.gae, dict(case.inputs)), torch.zeros(6))


def test_unattempted_stub_is_reported_not_failed():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for exercise in EX.values():
        assert run_exercise(exercise, stub).status == "not attempted"
