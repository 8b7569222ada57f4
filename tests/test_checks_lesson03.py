"""The lesson-03 checks accept the references and reject the known-wrong versions (algorithms.md §3, §5).

Besides the bug catalogue, one wrong version per class of bug (CONTRIBUTING, "Writing a lesson"): a batch
of one, a detached loss, a gradient leaking into a constant, a NaN gradient, a diagnostic computed wrongly,
an input changed in place, a clip range off just inside or outside (or with a hard-coded ε).
"""

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


def _clip_loss(logp, logp_old, advantages, clip_coef, *, ratio=None, eps=None, keepdim=False):
    """The clipped surrogate with the constants *not* detached; the pieces the variants below change."""
    ratio = (logp - logp_old).exp() if ratio is None else ratio
    eps = clip_coef if eps is None else eps
    objective = torch.min(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages)
    return -objective.mean(0, keepdim=keepdim)


def _clip_stats(logp, logp_old, advantages, clip_coef, *, strict=True):
    logratio = (logp - logp_old).detach()
    ratio = logratio.exp()
    outside = (ratio - 1).abs() > clip_coef if strict else (ratio - 1).abs() >= clip_coef
    return {"approx_kl": ((ratio - 1) - logratio).mean().item(), "clipfrac": outside.float().mean().item()}


def clip_detached(logp, logp_old, advantages, clip_coef):
    """Returns the loss detached (as if computed under torch.no_grad())."""
    loss, stats = ppo.ppo_clip_loss(logp, logp_old, advantages, clip_coef)
    return loss.detach(), stats


def clip_loss_shape_1(logp, logp_old, advantages, clip_coef):
    """mean(0, keepdim=True): a loss of shape (1,), not a scalar (the old `.item()` observer hid it)."""
    loss = _clip_loss(logp, logp_old.detach(), advantages.detach(), clip_coef, keepdim=True)
    return loss, _clip_stats(logp, logp_old, advantages, clip_coef)


def clip_leaks_into_logp_old(logp, logp_old, advantages, clip_coef):
    """r = exp(logp − logp_old) without logp_old.detach(): a gradient reaches the old policy's log-probs."""
    return _clip_loss(logp, logp_old, advantages.detach(), clip_coef), _clip_stats(logp, logp_old, advantages, clip_coef)


def clip_leaks_into_advantages(logp, logp_old, advantages, clip_coef):
    """Â not detached: a gradient reaches the advantages (the critic, in a shared network)."""
    return _clip_loss(logp, logp_old.detach(), advantages, clip_coef), _clip_stats(logp, logp_old, advantages, clip_coef)


def clip_ratio_of_probs(logp, logp_old, advantages, clip_coef):
    """r = exp(logp) / exp(logp_old): right on paper, a NaN gradient once π_old(a) underflows to 0."""
    ratio = logp.exp() / logp_old.detach().exp()
    loss = _clip_loss(logp, logp_old.detach(), advantages.detach(), clip_coef, ratio=ratio)
    return loss, _clip_stats(logp, logp_old, advantages, clip_coef)


def clip_fraction_with_ge(logp, logp_old, advantages, clip_coef):
    """clipfrac counts |r − 1| >= ε: a ratio exactly on the boundary counts as clipped."""
    loss, _ = ppo.ppo_clip_loss(logp, logp_old, advantages, clip_coef)
    return loss, _clip_stats(logp, logp_old, advantages, clip_coef, strict=False)


def clip_fraction_where_the_clip_binds(logp, logp_old, advantages, clip_coef):
    """TRL's clip_ratio (r > 1 + ε with Â > 0, or r < 1 − ε with Â < 0) instead of CleanRL's |r − 1| > ε."""
    loss, stats = ppo.ppo_clip_loss(logp, logp_old, advantages, clip_coef)
    ratio = (logp - logp_old).detach().exp()
    binds = ((ratio > 1 + clip_coef) & (advantages > 0)) | ((ratio < 1 - clip_coef) & (advantages < 0))
    return loss, dict(stats, clipfrac=binds.float().mean().item())


def clip_fraction_with_eps_0_2(logp, logp_old, advantages, clip_coef):
    """A right loss, but clipfrac computed with a hard-coded ε = 0.2 (CleanRL's default)."""
    loss, _ = ppo.ppo_clip_loss(logp, logp_old, advantages, clip_coef)
    return loss, _clip_stats(logp, logp_old, advantages, 0.2)


def clip_with_eps_0_2(logp, logp_old, advantages, clip_coef):
    """The clamp and clipfrac with a hard-coded ε = 0.2 instead of clip_coef."""
    loss = _clip_loss(logp, logp_old.detach(), advantages.detach(), clip_coef, eps=0.2)
    return loss, _clip_stats(logp, logp_old, advantages, 0.2)


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


def value_detached(values, values_old, returns, clip_coef=None):
    return ppo.ppo_value_loss(values, values_old, returns, clip_coef).detach()


def _value_loss(values, values_old, returns, clip_coef, *, eps=None, lower=True):
    """The value loss with the constants *not* detached; the pieces the variants below change."""
    unclipped = (values - returns) ** 2
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    eps = clip_coef if eps is None else eps
    step = (values - values_old).clamp(-eps if lower else None, eps)
    return 0.5 * torch.max(unclipped, (values_old + step - returns) ** 2).mean()


def value_leaks_into_returns(values, values_old, returns, clip_coef=None):
    """The returns are not detached: a gradient reaches the targets."""
    return _value_loss(values, values_old.detach(), returns, clip_coef)


def value_leaks_into_values_old(values, values_old, returns, clip_coef=None):
    """V_clip = V_old + clip(V − V_old) without values_old.detach(): a gradient reaches the rollout values."""
    return _value_loss(values, values_old, returns.detach(), clip_coef)


def value_clips_only_upward(values, values_old, returns, clip_coef=None):
    """clamp(max=ε) only: a step of more than ε below V_old is never clipped."""
    return _value_loss(values, values_old.detach(), returns.detach(), clip_coef, lower=False)


def value_with_eps_0_2(values, values_old, returns, clip_coef=None):
    """The clip with a hard-coded ε = 0.2 instead of clip_coef."""
    return _value_loss(values, values_old.detach(), returns.detach(), clip_coef, eps=0.2)


def value_clips_into_values_old(values, values_old, returns, clip_coef=None):
    """Builds V_clip in the storage of values_old (`v_clip = values_old.detach(); v_clip += ...`)."""
    if clip_coef is None:
        return ppo.ppo_value_loss(values, values_old, returns)
    v_clipped = values_old.detach()
    v_clipped += (values - v_clipped).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max((values - returns.detach()) ** 2, (v_clipped - returns.detach()) ** 2).mean()


def norm_population_std(advantages, eps=1e-8):
    return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + eps)


def norm_no_eps(advantages, eps=1e-8):
    return (advantages - advantages.mean()) / advantages.std()


def norm_no_centering(advantages, eps=1e-8):
    return advantages / (advantages.std() + eps)


def norm_in_place(advantages, eps=1e-8):
    """`advantages -= mean`: centres the caller's buffer in place."""
    advantages -= advantages.mean()
    return advantages / (advantages.std() + eps)


def norm_ignores_eps(advantages, eps=1e-8):
    """Adds a hard-coded 1e-8 whatever eps is passed."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def gae_squeezes(rewards, values, next_values, terminated, truncated, gamma, lam):
    """.squeeze()s its inputs (meant for (T, 1) value-head outputs): (T, 1) comes back as (T,), T = 1 breaks."""
    flat = [x.squeeze() for x in (rewards, values, next_values, terminated, truncated)]
    return _gae_loop(*flat, gamma, lam)


def gae_or_in_place(rewards, values, next_values, terminated, truncated, gamma, lam):
    """`done = terminated; done |= truncated`: right values, but the caller's terminated flags change."""
    not_terminal = 1.0 - terminated.float()
    done = terminated
    done |= truncated
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    deltas = rewards + gamma * next_values * not_terminal - values
    for step in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[step] + gamma * lam * (1 - done[step].float()) * running
        adv[step] = running
    return adv, adv + values


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
    # (a) a batch of one: one step, one env, (T, 1) inputs, a scalar loss
    ("gae", gae_squeezes, "(T, N) = (1, 1)"),
    ("gae", gae_squeezes, "T = 1, shape (1,)"),
    ("gae", gae_squeezes, "(T, N) = (3, 1)"),
    ("ppo_clip_loss", clip_loss_shape_1, "r = 1.5, Â = +1"),
    # (b) gradients: detached, leaking into a constant, NaN behind a finite loss
    ("ppo_clip_loss", clip_detached, "r = 0.5, Â = +1"),
    ("ppo_clip_loss", clip_leaks_into_logp_old, "random batch of 16"),
    ("ppo_clip_loss", clip_leaks_into_advantages, "random batch of 16"),
    ("ppo_clip_loss", clip_ratio_of_probs, "π_old(a) underflows"),
    ("ppo_value_loss", value_detached, "V_old = 1, R = 3, ε = 0.2, V = 0.5"),
    ("ppo_value_loss", value_leaks_into_returns, "random batch of 12, unclipped"),
    ("ppo_value_loss", value_leaks_into_values_old, "random batch of 12, clipped"),
    # (c) every diagnostic is compared, in the table's rows too
    ("ppo_clip_loss", clip_fraction_where_the_clip_binds, "r = 0.5, Â = +1"),
    ("ppo_clip_loss", clip_fraction_with_eps_0_2, "ε = 0.1"),
    # (d) an input changed in place (also where the gradient observer works on copies)
    ("gae", gae_or_in_place, "C: truncated"),
    ("ppo_value_loss", value_clips_into_values_old, "V_old = 1, R = 3, ε = 0.2, V = 2.0"),
    ("normalize_advantages", norm_in_place, "[1, 2, 3, 4]"),
    # (e) just inside, just outside and exactly on the clip range; an ε other than 0.2
    ("ppo_clip_loss", clip_fraction_with_ge, "r exactly on the clip boundary"),
    ("ppo_clip_loss", clip_fraction_where_the_clip_binds, "just inside/outside the clip range, Â = +1"),
    ("ppo_clip_loss", clip_fraction_where_the_clip_binds, "just inside/outside the clip range, Â = −1"),
    ("ppo_clip_loss", clip_with_eps_0_2, "ε = 0.1"),
    ("ppo_value_loss", value_clips_only_upward, "just inside/outside the clip range"),
    ("ppo_value_loss", value_with_eps_0_2, "ε = 0.5"),
    # an argument that is ignored
    ("normalize_advantages", norm_ignores_eps, "eps = 0.5 is used"),
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


@pytest.mark.parametrize("name, wrong, failing_case, says", [
    ("ppo_clip_loss", clip_detached, "r = 0.5, Â = +1", "no gradient reaches `logp`"),
    ("ppo_clip_loss", clip_leaks_into_logp_old, "random batch of 16", "must be 0: `logp_old` is a constant"),
    ("ppo_clip_loss", clip_leaks_into_advantages, "random batch of 16", "must be 0: `advantages` is a constant"),
    ("ppo_clip_loss", clip_ratio_of_probs, "π_old(a) underflows", "got NaN"),
    ("ppo_clip_loss", clip_loss_shape_1, "r = 1.5, Â = +1", "expected shape (), got shape (1,)"),
    ("ppo_clip_loss", clip_fraction_with_ge, "r exactly on the clip boundary", "['clipfrac']: expected 0, got 1"),
    ("ppo_value_loss", value_detached, "V_old = 1, R = 3, ε = 0.2, V = 0.5", "no gradient reaches `values`"),
    ("ppo_value_loss", value_leaks_into_returns, "random batch of 12, unclipped", "`returns` is a constant"),
    ("ppo_value_loss", value_leaks_into_values_old, "random batch of 12, clipped", "`values_old` is a constant"),
    ("ppo_value_loss", value_clips_into_values_old, "V_old = 1, R = 3, ε = 0.2, V = 2.0",
     "changed its input `values_old` in place"),
    ("gae", gae_or_in_place, "C: truncated", "changed its input `terminated` in place"),
    ("gae", gae_squeezes, "(T, N) = (3, 1)", "expected shape (3, 1), got shape (3,)"),
])
def test_the_catching_case_says_what_is_wrong(name, wrong, failing_case, says):
    """The feedback names the kind of bug: a detached loss, a leak, a NaN, a shape, an in-place change."""
    only = dataclasses.replace(EX[name], make_cases=lambda: [
        c for c in EX[name].make_cases() if c.label.startswith(failing_case)])
    result = run_exercise(only, wrong)
    assert not result.passed and says in result.message, result.message


def test_every_diagnostic_is_compared_in_the_tables_rows():
    """The rows of the PPO table check approx_kl and clipfrac besides the loss and its gradient."""
    rows = [c for c in EX["ppo_clip_loss"].make_cases() if c.label.startswith("r = ")]
    assert len(rows) == 5
    keys = set(ppo.ppo_clip_loss(**rows[0].inputs)[1])
    for case in rows:
        assert keys <= set(case.expected), case.label
        assert {"loss", "d loss / d logp"} <= set(case.expected), case.label


def test_the_boundary_case_puts_r_exactly_on_the_boundary():
    """r − 1 = ±ε holds exactly in float32 (ε = 0.25, logp_old = 0), so `>=` and `>` must differ there."""
    case = next(c for c in EX["ppo_clip_loss"].make_cases() if c.label.startswith("r exactly on"))
    ratio = (case.inputs["logp"] - case.inputs["logp_old"]).exp()
    assert torch.equal((ratio - 1).abs(), torch.full_like(ratio, case.inputs["clip_coef"]))
