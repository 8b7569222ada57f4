"""The lesson-00 checkers accept the reference and reject known-wrong versions (a checker must fail).

Each wrong version is a bug learners really write; the test also says which case must catch it, so a
change to the cases that lets a bug slip through (or catches it only by accident) is noticed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import distributions
from course_lib.grading import exercises
from course_lib.grading.checker import run_exercise


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


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (log_of_softmax, "extreme logits"),
    (gather_without_squeeze, "hand-computed"),
    (detached, "gradient flows"),
    (softmax_over_wrong_dim, "hand-computed"),
    (only_2d, "language-model batch"),
    (probability_not_log, "hand-computed"),
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


@pytest.mark.parametrize("wrong", [argmax_sampler, ignores_generator, float_actions, keeps_sample_dim,
                                   uniform_sampler, samples_from_logits_not_probs])
def test_sample_checker_rejects(wrong):
    result = run_exercise(exercises.by_name("sample_actions"), wrong)
    assert result.status == "failed", wrong.__name__
    assert "4000 draws" in result.message


def test_sample_checker_accepts_another_correct_method():
    # Gumbel-max draws different individual samples from multinomial, with the same distribution
    assert run_exercise(exercises.by_name("sample_actions"), gumbel_max).passed


def test_sample_checker_restores_the_global_random_state():
    state = torch.get_rng_state()
    run_exercise(exercises.by_name("sample_actions"), ignores_generator)
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


@pytest.mark.parametrize(("wrong", "caught_by"), [
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
