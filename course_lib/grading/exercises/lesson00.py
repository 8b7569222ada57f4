"""Exercises of lesson 00 (setup and tour): the three categorical-policy helpers every method uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from course_lib import distributions
from course_lib.grading.checker import Case, Exercise


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# 00.1 log_prob_of_actions
# ---------------------------------------------------------------------------------------------


def _grad_of_log_probs(fn: Callable[..., Any], inputs: dict[str, Any]) -> torch.Tensor:
    """Observe d(sum of log-probs)/d(logits): it must exist (no detach) and be finite."""
    logits = inputs["logits"].clone().requires_grad_(True)
    out = fn(logits=logits, actions=inputs["actions"])
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return torch.full_like(logits, float("nan"))
    (grad,) = torch.autograd.grad(out.sum(), logits, allow_unused=True)
    return torch.zeros_like(logits) if grad is None else grad


def _log_prob_cases() -> list[Case]:
    g = _seeded(0)
    logits = torch.randn(6, 3, generator=g)
    actions = torch.randint(0, 3, (6,), generator=g)
    lm_logits = torch.randn(2, 5, 7, generator=g)  # (B, T, V), a language-model batch
    lm_ids = torch.randint(0, 7, (2, 5), generator=g)
    return [
        Case("hand-computed: logits [0, ln 3], action 1 has probability 3/4",
             {"logits": torch.tensor([[0.0, 1.0986123]]), "actions": torch.tensor([1])},
             expected=torch.tensor([-0.2876821]), hint="log π(a|s) = logit_a - logsumexp(logits)."),
        Case("random batch of 6 states, 3 actions", {"logits": logits, "actions": actions},
             hint="use log_softmax over the last dimension, then gather the chosen action."),
        Case("language-model batch (B, T, V) = (2, 5, 7)", {"logits": lm_logits, "actions": lm_ids},
             hint="work on the last dimension (dim=-1) so any leading shape works."),
        Case("extreme logits [1000, 0]: log(softmax) underflows to -inf",
             {"logits": torch.tensor([[1000.0, 0.0]]), "actions": torch.tensor([1])},
             expected=torch.tensor([-1000.0]),
             hint="torch.log(torch.softmax(x)) is -inf here; F.log_softmax stays finite."),
        Case("gradient flows back to the logits", {"logits": logits, "actions": actions},
             observe=_grad_of_log_probs,
             hint="do not .detach() or call .item(); the policy gradient needs this gradient."),
    ]


# ---------------------------------------------------------------------------------------------
# 00.2 sample_actions
# ---------------------------------------------------------------------------------------------


def _sampling_profile(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Observe what matters about a sampler: shape, dtype, frequencies and use of the generator.

    Any correct sampling method passes (multinomial, inverse CDF, Gumbel-max), because only the
    distribution and the reproducibility are compared, not the individual draws.
    """
    logits = inputs["logits"]  # (B, A)
    rows, n = logits.shape[0], inputs["draws"]
    batch = logits.repeat(n, 1)  # (n*B, A)
    # Reseed torch's global generator differently before the two calls, so a sampler that ignores
    # the `generator` argument gives different draws; restore the learner's global state after.
    global_state = torch.get_rng_state()
    try:
        torch.manual_seed(1)
        first = fn(logits=batch, generator=torch.Generator().manual_seed(123))
        if not isinstance(first, torch.Tensor):
            return {"type": type(first).__name__}
        torch.manual_seed(2)
        again = fn(logits=batch, generator=torch.Generator().manual_seed(123))
    finally:
        torch.set_rng_state(global_state)
    valid = bool(((first >= 0) & (first < logits.shape[1])).all()) if first.numel() else True
    profile: dict[str, Any] = {"type": "Tensor", "shape": tuple(first.shape), "dtype": str(first.dtype),
                               "values in [0, A)": valid}
    if valid and tuple(first.shape) == (n * rows,):
        counts = torch.zeros(rows, logits.shape[1])
        counts.index_put_((torch.arange(n * rows) % rows, first.long()), torch.ones(n * rows), accumulate=True)
        profile["frequencies"] = counts / n  # (B, A)
        profile["same generator seed gives the same draws"] = isinstance(again, torch.Tensor) and bool(torch.equal(first, again))
    return profile


def _sample_cases() -> list[Case]:
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, -1.0], [0.0, float("-inf"), 1.0]])
    probs = torch.softmax(logits, dim=-1)
    expected = {"type": "Tensor", "shape": (3 * 4000,), "dtype": "torch.int64", "values in [0, A)": True,
                "frequencies": probs, "same generator seed gives the same draws": True}
    return [
        Case("4000 draws from 3 rows of logits (uniform, skewed, one action impossible)",
             {"logits": logits, "draws": 4000}, expected=expected, observe=_sampling_profile, atol=0.03,
             hint="sample from softmax(logits) (e.g. torch.multinomial(probs, 1, generator=generator)), "
                  "not argmax, pass the generator, and return int64 actions of shape logits.shape[:-1]."),
    ]


# ---------------------------------------------------------------------------------------------
# 00.3 categorical_entropy
# ---------------------------------------------------------------------------------------------


def _entropy_cases() -> list[Case]:
    g = _seeded(1)
    return [
        Case("uniform over 4 actions: H = ln 4", {"logits": torch.zeros(1, 4)},
             expected=torch.tensor([1.3862944]), hint="H = -Σ p log p, with a minus sign."),
        Case("random batch (5, 3)", {"logits": torch.randn(5, 3, generator=g)},
             hint="sum over the action dimension only (dim=-1), one entropy per row."),
        Case("language-model batch (2, 4, 6)", {"logits": torch.randn(2, 4, 6, generator=g)},
             hint="reduce over dim=-1 so any leading shape works."),
        Case("an impossible action (logit -inf) contributes 0, not NaN",
             {"logits": torch.tensor([[0.0, 0.0, float("-inf")]])}, expected=torch.tensor([0.6931472]),
             hint="0 * log 0 is NaN in floating point; use log_softmax and treat p = 0 terms as 0."),
        Case("a near-deterministic policy [100, 0, 0] has entropy about 0",
             {"logits": torch.tensor([[100.0, 0.0, 0.0]])}, expected=torch.tensor([0.0]),
             hint="softmax underflows to exactly 0 here; log(0) = -inf and 0 * -inf = NaN."),
    ]


EXERCISES = [
    Exercise("00.1", "log_prob_of_actions", "log-probabilities of chosen actions from logits",
             distributions.log_prob_of_actions, _log_prob_cases),
    Exercise("00.2", "sample_actions", "sampling from a categorical policy with a seeded generator",
             distributions.sample_actions, _sample_cases),
    Exercise("00.3", "categorical_entropy", "entropy of a categorical distribution",
             distributions.categorical_entropy, _entropy_cases),
]
