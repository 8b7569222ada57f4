"""The lesson-00 checkers accept the reference and reject known-wrong versions (a checker must fail).

Each wrong version is a bug learners really write; the test also says which case must catch it, so a
change to the cases that lets a bug slip through (or catches it only by accident) is noticed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from course_lib import distributions
from course_lib.grading import exercises
from course_lib.grading.checker import CheckResult, Exercise, run_exercise
from course_lib.grading.exercises import lesson00


@pytest.mark.parametrize("name", ["log_prob_of_actions", "sample_actions", "categorical_entropy"])
def test_reference_passes_quickly(name):
    exercise = exercises.by_name(name)
    result = run_exercise(exercise, getattr(distributions, name))
    assert result.passed, result.message
    assert result.cases_passed == result.cases_total >= 1
    assert result.seconds < 1.0


# --- 00.1 log_prob_of_actions ---------------------------------------------------------------------


def log_of_softmax(logits, actions):
    return torch.log(torch.softmax(logits, -1)).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def gather_without_squeeze(logits, actions):
    return F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1))  # (..., 1)


def detached(logits, actions):
    return F.log_softmax(logits.detach(), -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def softmax_over_wrong_dim(logits, actions):
    return F.log_softmax(logits, 0).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def only_2d(logits, actions):
    return F.log_softmax(logits, -1)[torch.arange(len(actions)), actions]


def probability_not_log(logits, actions):
    return F.softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def squeezes_every_size_one_dim(logits, actions):  # class (a): shape () for a batch of one state
    return F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze()


def only_the_two_example_shapes(logits, actions):  # class (a): (B, A) and (B, T, V), nothing deeper
    log_probs = F.log_softmax(logits, -1)
    if logits.dim() == 3:
        batch, steps, _ = logits.shape
        return log_probs[torch.arange(batch)[:, None], torch.arange(steps)[None, :], actions]
    return log_probs[torch.arange(len(actions)), actions]


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (log_of_softmax, "extreme logits"),
    (gather_without_squeeze, "hand-computed"),
    (detached, "gradient flows"),
    (softmax_over_wrong_dim, "hand-computed"),
    (only_2d, "language-model batch"),
    (probability_not_log, "hand-computed"),
    (squeezes_every_size_one_dim, "a batch of one state"),
    (only_the_two_example_shapes, "three leading dimensions"),
])
def test_log_prob_checker_rejects(wrong, caught_by):
    result = run_exercise(exercises.by_name("log_prob_of_actions"), wrong)
    assert result.status == "failed"
    assert f"case '{caught_by}" in result.message, result.message


# --- 00.2 sample_actions --------------------------------------------------------------------------


def argmax_sampler(logits, generator=None):
    return logits.argmax(-1)


def ignores_generator(logits, generator=None):
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1).reshape(logits.shape[:-1])


def float_actions(logits, generator=None):
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1]).float()


def keeps_sample_dim(logits, generator=None):
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)  # (B, 1)


def uniform_sampler(logits, generator=None):
    return torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=generator)


def samples_from_logits_not_probs(logits, generator=None):
    weights = logits.clamp(min=0) + 1e-3  # treats logits as unnormalised probabilities
    return torch.multinomial(weights, 1, generator=generator).squeeze(-1)


def gumbel_max(logits, generator=None):
    noise = torch.rand(logits.shape, generator=generator).clamp(min=1e-20)
    return (logits - torch.log(-torch.log(noise))).argmax(-1)


def clamps_probabilities(logits, generator=None):  # class (f): an impossible action gets 1 %
    probs = torch.softmax(logits, -1).clamp(min=0.01).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def mixes_uniform_noise(logits, generator=None):  # class (f): 2 % of uniform exploration mixed in
    probs = 0.98 * torch.softmax(logits, -1) + 0.02 / logits.shape[-1]
    return torch.multinomial(probs.reshape(-1, logits.shape[-1]), 1, generator=generator).reshape(logits.shape[:-1])


def mixes_noise_among_possible_actions(logits, generator=None):  # class (f): 2 % bias, never an impossible action
    probs = torch.softmax(logits, -1)
    possible = (probs > 0).float()
    probs = 0.98 * probs + 0.02 * possible / possible.sum(-1, keepdim=True)
    return torch.multinomial(probs.reshape(-1, logits.shape[-1]), 1, generator=generator).reshape(logits.shape[:-1])


def drops_rare_actions(logits, generator=None):  # class (f): actions under 1 % are never drawn
    probs = torch.softmax(logits, -1)
    probs = probs * (probs >= 0.01)
    return torch.multinomial(probs.reshape(-1, logits.shape[-1]), 1, generator=generator).reshape(logits.shape[:-1])


def reseeds_inside(logits, generator=None):  # class (f): "reproducible" by seeding the global generator
    torch.manual_seed(0)
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1).reshape(logits.shape[:-1])


def fresh_generator_when_none(logits, generator=None):  # class (f): the same draws at every call without one
    generator = generator if generator is not None else torch.Generator()
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def shifts_logits_in_place(logits, generator=None):  # class (d): "stabilises" the caller's logits in place
    logits -= logits.max(-1, keepdim=True).values
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def squeezes_every_size_one_dim_sampler(logits, generator=None):  # class (a): shape () for one state
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).squeeze()


def only_2d_sampler(logits, generator=None):  # class (a): torch.multinomial refuses (B, T, V)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


def inverse_cdf(logits, generator=None):
    cdf = torch.softmax(logits, -1).cumsum(-1)
    u = torch.rand((*logits.shape[:-1], 1), generator=generator)
    return (u > cdf).sum(-1).clamp(max=logits.shape[-1] - 1)


_DRAWS_CASE = "50000 draws"
_CORRECT_SAMPLERS = [distributions.sample_actions, inverse_cdf, gumbel_max]
_BIASED_SAMPLERS = [clamps_probabilities, mixes_uniform_noise, mixes_noise_among_possible_actions,
                    drops_rare_actions]


@pytest.mark.parametrize(("wrong", "caught_by", "problem"), [
    (argmax_sampler, _DRAWS_CASE, "standard errors"),
    (ignores_generator, _DRAWS_CASE, "the same generator seed gives the same draws"),
    (float_actions, _DRAWS_CASE, "expected an int64 tensor"),
    (keeps_sample_dim, _DRAWS_CASE, "expected an int64 tensor of shape (200000,)"),
    (uniform_sampler, _DRAWS_CASE, "an impossible action (logit -inf, probability 0) was drawn"),
    (samples_from_logits_not_probs, _DRAWS_CASE, "an impossible action (logit -inf, probability 0) was drawn"),
    (clamps_probabilities, _DRAWS_CASE, "an impossible action (logit -inf, probability 0) was drawn"),
    (mixes_uniform_noise, _DRAWS_CASE, "an impossible action (logit -inf, probability 0) was drawn"),
    (mixes_noise_among_possible_actions, _DRAWS_CASE, "standard errors off"),
    (drops_rare_actions, _DRAWS_CASE, "standard errors off"),
    (reseeds_inside, _DRAWS_CASE, "another generator seed gives other draws"),
    (shifts_logits_in_place, _DRAWS_CASE, "the logits are left unchanged"),
    (squeezes_every_size_one_dim_sampler, "a batch of one state", "expected shape (1,), got shape ()"),
    (only_2d_sampler, "a language-model batch", "raised RuntimeError"),
    (fresh_generator_when_none, "without a generator", "another torch.manual_seed gives other draws"),
])
def test_sample_checker_rejects(wrong, caught_by, problem):
    result = run_exercise(exercises.by_name("sample_actions"), wrong)
    assert result.status == "failed", wrong.__name__
    assert f"case '{caught_by}" in result.message and problem in result.message, result.message


def _draws_case_with_seed(sampler: Callable, seed: int) -> CheckResult:
    """The statistical case alone, with its generator seeded with ``seed`` instead of the fixed one."""
    (case,) = [c for c in lesson00._sample_cases() if c.label.startswith(_DRAWS_CASE)]
    case = dataclasses.replace(case, inputs={**case.inputs, "seed": seed})
    return run_exercise(Exercise("00.2", "sample_actions", "one case", sampler, lambda: [case]), sampler)


@pytest.mark.parametrize("sampler", _CORRECT_SAMPLERS, ids=lambda f: f.__name__)
def test_every_correct_sampling_method_passes_for_every_seed(sampler):
    # multinomial, inverse CDF and Gumbel-max draw different samples with the same distribution
    whole = run_exercise(exercises.by_name("sample_actions"), sampler)
    assert whole.passed and whole.seconds < 1.0, whole.message
    for seed in range(6):
        result = _draws_case_with_seed(sampler, seed)
        assert result.passed, (seed, result.message)


@pytest.mark.parametrize("sampler", _BIASED_SAMPLERS, ids=lambda f: f.__name__)
def test_a_bias_of_one_or_two_percent_fails_for_every_seed(sampler):
    for seed in range(6):
        assert not _draws_case_with_seed(sampler, seed).passed, seed


def test_sample_checker_restores_the_global_random_state():
    state = torch.get_rng_state()
    for sampler in (ignores_generator, reseeds_inside, fresh_generator_when_none):
        run_exercise(exercises.by_name("sample_actions"), sampler)
    assert torch.equal(torch.get_rng_state(), state)


# --- 00.3 categorical_entropy ---------------------------------------------------------------------


def missing_minus(logits):
    log_p = F.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
    return (log_p.exp() * log_p).sum(-1)


def naive_p_log_p(logits):
    p = torch.softmax(logits, -1)
    return -(p * torch.log(p)).sum(-1)


def sums_over_all_dims(logits):
    log_p = F.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
    return -(log_p.exp() * log_p).sum()


def mean_instead_of_sum(logits):
    log_p = F.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
    return -(log_p.exp() * log_p).mean(-1)


def nan_to_num_after_the_fact_on_wrong_dim(logits):
    p = torch.softmax(logits, 0)
    return -(p * torch.log(p)).nan_to_num().sum(-1)


def entropy_nansum(logits):  # class (b): the value is fine at p = 0, the gradient is NaN
    p = torch.softmax(logits, -1)
    return -(p * torch.log(p)).nansum(-1)


def entropy_masked_with_where(logits):  # class (b): the same NaN gradient behind torch.where
    p = torch.softmax(logits, -1)
    terms = p * torch.log(p)
    return -torch.where(p > 0, terms, torch.zeros_like(terms)).sum(-1)


def entropy_without_gradient(logits):  # class (b): treated as a diagnostic, but it is a loss term
    with torch.no_grad():
        log_p = F.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
        return -(log_p.exp() * log_p).sum(-1)


def entropy_with_detached_probs(logits):  # class (b): right value, gradient E_p[∇ log p] = 0
    log_p = F.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
    return -(log_p.exp().detach() * log_p).sum(-1)


def entropy_only_the_two_example_shapes(logits):  # class (a): reduces a fixed dimension
    log_p = F.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
    return -(log_p.exp() * log_p).sum(dim=1 if logits.dim() == 2 else 2)


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (entropy_nansum, "an impossible action (logit -inf): the gradient"),
    (entropy_masked_with_where, "an impossible action (logit -inf): the gradient"),
    (entropy_without_gradient, "the gradient of the mean entropy"),
    (entropy_with_detached_probs, "the gradient of the mean entropy"),
    (entropy_only_the_two_example_shapes, "three leading dimensions"),
    (missing_minus, "uniform over 4 actions"),
    (naive_p_log_p, "an impossible action"),
    (sums_over_all_dims, "uniform over 4 actions"),
    (mean_instead_of_sum, "uniform over 4 actions"),
    (nan_to_num_after_the_fact_on_wrong_dim, "uniform over 4 actions"),
])
def test_entropy_checker_rejects(wrong, caught_by):
    result = run_exercise(exercises.by_name("categorical_entropy"), wrong)
    assert result.status == "failed"
    assert f"case '{caught_by}" in result.message, result.message


def test_entropy_checker_accepts_torch_distributions():
    def via_torch(logits):
        return torch.distributions.Categorical(logits=logits).entropy()

    assert run_exercise(exercises.by_name("categorical_entropy"), via_torch).passed
