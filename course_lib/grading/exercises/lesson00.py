"""Exercises of lesson 00 (setup and tour): the three categorical-policy helpers every method uses.

Every function takes logits of shape ``(..., A)``, so the cases cover a batch of one state, a
language-model batch ``(B, T, V)`` and three leading dimensions, beside hand-computed values. The
gradient cases use :func:`course_lib.grading.observers.gradients` (a gradient must exist and be
finite, also where an action is impossible). The sampler is checked statistically, strictly enough
that a bias of one or two percent fails for every seed while any correct method passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from course_lib import distributions
from course_lib.grading import observers
from course_lib.grading.checker import Case, Exercise
from course_lib.grading.compare import Problem

_IMPOSSIBLE = float("-inf")


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# 00.1 log_prob_of_actions
# ---------------------------------------------------------------------------------------------


_LOG_PROB_GRADIENTS = observers.gradients(wrt=["logits"], name="log-probs")
"""The log-probs and d(Σ w·log-probs)/d(logits), which must exist and be finite."""


def _log_prob_cases() -> list[Case]:
    g = _seeded(0)
    logits = torch.randn(6, 3, generator=g)
    actions = torch.randint(0, 3, (6,), generator=g)
    lm_logits = torch.randn(2, 5, 7, generator=g)  # (B, T, V), a language-model batch
    lm_ids = torch.randint(0, 7, (2, 5), generator=g)
    deep_logits = torch.randn(2, 3, 2, 5, generator=g)  # (..., A) with three leading dimensions
    deep_ids = torch.randint(0, 5, (2, 3, 2), generator=g)
    ln3 = 1.0986123
    return [
        Case("hand-computed: logits [0, ln 3] and [ln 3, ln 3], actions 1 and 0 have probabilities 3/4 and 1/2",
             {"logits": torch.tensor([[0.0, ln3], [ln3, ln3]]), "actions": torch.tensor([1, 0])},
             expected=torch.tensor([-0.2876821, -0.6931472]),
             hint="log π(a|s) = logit_a - logsumexp(logits), one value per row."),
        Case("random batch of 6 states, 3 actions", {"logits": logits, "actions": actions},
             hint="use log_softmax over the last dimension, then gather the chosen action."),
        Case("a batch of one state: logits (1, 4), actions (1,) → log-probs of shape (1,)",
             {"logits": torch.tensor([[0.5, -1.0, 2.0, 0.0]]), "actions": torch.tensor([2])},
             hint="remove only the gathered dimension with .squeeze(-1): a bare .squeeze() also drops the "
                  "batch dimension of size 1 and returns shape ()."),
        Case("language-model batch (B, T, V) = (2, 5, 7)", {"logits": lm_logits, "actions": lm_ids},
             hint="work on the last dimension (dim=-1) so any leading shape works."),
        Case("three leading dimensions: logits (2, 3, 2, 5), actions (2, 3, 2)",
             {"logits": deep_logits, "actions": deep_ids},
             hint="the docstring allows any leading shape (..., A): do not unpack `B, T, V = logits.shape` or "
                  "index with torch.arange per dimension; gather along dim=-1 instead."),
        Case("extreme logits [1000, 0]: log(softmax) underflows to -inf",
             {"logits": torch.tensor([[1000.0, 0.0]]), "actions": torch.tensor([1])},
             expected=torch.tensor([-1000.0]),
             hint="torch.log(torch.softmax(x)) is -inf here; F.log_softmax stays finite."),
        Case("gradient flows back to the logits", {"logits": logits, "actions": actions},
             observe=_LOG_PROB_GRADIENTS,
             hint="do not .detach() or call .item(); the policy gradient needs this gradient."),
        Case("a masked action (logit -inf) that was not chosen: finite log-probs and a finite gradient",
             {"logits": torch.tensor([[0.0, 0.0, _IMPOSSIBLE], [1.0, _IMPOSSIBLE, 0.0]]),
              "actions": torch.tensor([0, 2])},
             observe=_LOG_PROB_GRADIENTS,
             hint="the gradient must not be NaN where a logit is -inf: torch.log(softmax) has gradient "
                  "0/0 = NaN at p = 0; F.log_softmax gives 0 there."),
    ]


# ---------------------------------------------------------------------------------------------
# 00.2 sample_actions
# ---------------------------------------------------------------------------------------------


_SAMPLE_LOGITS = torch.tensor([
    [0.0, 0.0, 0.0, 0.0],  # uniform
    [2.0, 0.0, -1.0, 1.0],  # skewed
    [6.0, 0.0, 0.0, 0.0],  # peaked: 99.3 %, and three rare actions of 0.25 % each
    [0.0, _IMPOSSIBLE, 1.0, _IMPOSSIBLE],  # two impossible (masked) actions
])
_DRAWS = 50_000
"""Draws per row: the 2 % uniform mixture moves the peaked row by about 39 standard errors."""
_STANDARD_ERRORS = 5.0
"""Largest allowed deviation of a frequency from softmax(logits), in binomial standard errors. Over the
14 possible (row, action) cells a correct sampler exceeds it with probability about 1e-5 per seed."""
_SEED = 123


def _sampled(fn: Callable[..., Any], logits: torch.Tensor, seed: int, global_seed: int) -> Any:
    """``fn(logits, generator seeded with seed)`` after ``torch.manual_seed(global_seed)``.

    Reseeding torch's global generator differently between calls makes a sampler that ignores the
    ``generator`` argument give different draws; the caller restores the learner's global state.
    """
    torch.manual_seed(global_seed)
    return fn(logits=logits, generator=_seeded(seed))


def _structure_problem(out: Any, shape: tuple[int, ...], num_actions: int) -> Problem | None:
    """A Problem unless ``out`` is an int64 tensor of ``shape`` holding actions in [0, A)."""
    if not isinstance(out, torch.Tensor):
        return Problem(f"expected a torch.Tensor of actions, got {type(out).__name__}")
    if tuple(out.shape) != shape or out.dtype != torch.int64:
        return Problem(f"expected an int64 tensor of shape {shape} (logits.shape[:-1]), got a {out.dtype} tensor "
                       f"of shape {tuple(out.shape)}")
    if out.numel() and not bool(((out >= 0) & (out < num_actions)).all()):
        return Problem(f"expected actions in [0, {num_actions}), got values from {int(out.min())} to {int(out.max())}")
    return None


def _counts(actions: torch.Tensor, rows: int, num_actions: int) -> torch.Tensor:
    """How often each (row, action) was drawn, (B, A), when draw i belongs to row i % B."""
    return torch.nn.functional.one_hot(actions.reshape(-1, rows), num_actions).sum(0).double()


def _frequency_check(counts: torch.Tensor, logits: torch.Tensor, draws: int) -> bool | Problem:
    """True if every possible action's count lies within the allowed standard errors, else which one not.

    Impossible actions are left out here: their count must be exactly 0, which is checked on its own.
    """
    probs = torch.softmax(logits.double(), dim=-1)  # (B, A)
    deviation = (counts - draws * probs).abs()
    spread = (draws * probs * (1 - probs)).sqrt()  # binomial standard error of each count
    certain = torch.where(deviation > 0.5, math.inf, 0.0)  # p = 1: every draw must be that action
    errors = torch.where(spread > 0, deviation / spread.clamp(min=1e-12), certain)
    errors = torch.where(probs > 0, errors, 0.0)
    row, action = divmod(int(errors.argmax()), logits.shape[1])
    worst = float(errors[row, action])
    if worst <= _STANDARD_ERRORS:
        return True
    row_logits = ", ".join(f"{x:g}" for x in logits[row].tolist())
    return Problem(f"in row {row} (logits [{row_logits}]) action {action} was drawn in "
                   f"{100 * float(counts[row, action]) / draws:.2f} % of {draws} draws, but softmax(logits) gives "
                   f"{100 * float(probs[row, action]):.2f} % ({worst:.1f} standard errors off, at most "
                   f"{_STANDARD_ERRORS:g} allowed)")


def _sampling_profile(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """Observe what matters about a sampler: structure, distribution, use of the generator, side effects.

    Any correct sampling method passes (multinomial, inverse CDF, Gumbel-max): only the distribution
    and the reproducibility are compared, never the individual draws. Torch's global random state is
    restored afterwards.
    """
    logits, draws, seed = inputs["logits"], inputs["draws"], inputs["seed"]  # (B, A)
    rows, num_actions = logits.shape
    batch = logits.repeat(draws, 1)  # (draws·B, A): row i of the batch is row i % B of the logits
    untouched = batch.clone()
    small = batch[: 1000 * rows].clone()  # enough to tell two generator seeds apart
    global_state = torch.get_rng_state()
    try:
        torch.manual_seed(1)
        fresh = torch.get_rng_state()
        first = fn(logits=batch, generator=_seeded(seed))
        global_untouched = bool(torch.equal(torch.get_rng_state(), fresh))
        problem = _structure_problem(first, (draws * rows,), num_actions)
        if problem is not None:
            return problem
        again, other = _sampled(fn, small, seed, global_seed=2), _sampled(fn, small, seed + 1, global_seed=2)
        repeat = _sampled(fn, small, seed, global_seed=3)
    finally:
        torch.set_rng_state(global_state)
    counts = _counts(first, rows, num_actions)  # (B, A)
    reproducible = all(isinstance(x, torch.Tensor) for x in (again, other, repeat)) and bool(torch.equal(again, repeat))
    impossible_draws = int(counts[torch.isneginf(logits)].sum())
    return {
        "draws of impossible actions (logit -inf)": impossible_draws if impossible_draws == 0 else Problem(
            f"an impossible action (logit -inf, probability 0) was drawn {impossible_draws} times in "
            f"{draws * rows} draws; it must never be"),
        f"frequencies within {_STANDARD_ERRORS:g} standard errors of softmax(logits)":
            _frequency_check(counts, logits, draws),
        "the same generator seed gives the same draws": reproducible,
        "another generator seed gives other draws": reproducible and not bool(torch.equal(other, again)),
        "torch's global random state is left alone when a generator is given": global_untouched,
        "the logits are left unchanged": bool(torch.equal(batch, untouched)),
    }


def _only_possible_action(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """The draws for logits with exactly one finite logit per row, whose action is therefore known."""
    global_state = torch.get_rng_state()
    try:
        return fn(logits=inputs["logits"], generator=_seeded(0))
    finally:
        torch.set_rng_state(global_state)


def _one_hot_logits(actions: torch.Tensor, num_actions: int, g: torch.Generator) -> torch.Tensor:
    """Logits (..., A) that are -inf except for a random finite value at each of ``actions`` (...)."""
    logits = torch.full((*actions.shape, num_actions), _IMPOSSIBLE)
    values = torch.randn((*actions.shape, 1), generator=g)
    return logits.scatter(-1, actions.unsqueeze(-1), values)


def _without_generator(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """Without a generator the sampler must use torch's global random state (restored afterwards)."""
    logits = inputs["logits"]
    global_state = torch.get_rng_state()
    try:
        torch.manual_seed(5)
        first = fn(logits=logits)
        problem = _structure_problem(first, tuple(logits.shape[:-1]), logits.shape[-1])
        if problem is not None:
            return problem
        torch.manual_seed(5)
        again = fn(logits=logits)
        torch.manual_seed(6)
        other = fn(logits=logits)
    finally:
        torch.set_rng_state(global_state)
    return {"the same torch.manual_seed gives the same draws": isinstance(again, torch.Tensor)
            and bool(torch.equal(first, again)),
            "another torch.manual_seed gives other draws": isinstance(other, torch.Tensor)
            and not bool(torch.equal(first, other))}


def _sample_cases() -> list[Case]:
    g = _seeded(2)
    expected = {"draws of impossible actions (logit -inf)": 0,
                f"frequencies within {_STANDARD_ERRORS:g} standard errors of softmax(logits)": True,
                "the same generator seed gives the same draws": True,
                "another generator seed gives other draws": True,
                "torch's global random state is left alone when a generator is given": True,
                "the logits are left unchanged": True}
    lm_actions = torch.randint(0, 5, (2, 3), generator=g)
    return [
        Case(f"{_DRAWS} draws from each of 4 rows of logits (uniform, skewed, peaked with rare actions, "
             f"two impossible actions)", {"logits": _SAMPLE_LOGITS, "draws": _DRAWS, "seed": _SEED},
             expected=expected, observe=_sampling_profile,
             hint="sample from softmax(logits) itself (torch.multinomial(probs, 1, generator=generator), inverse "
                  "CDF or Gumbel-max), all rows at once: no argmax, no clamping or mixing of probabilities (an "
                  "impossible action must never be drawn), pass `generator` to every random call and never "
                  "reseed or use torch's global generator then, change no input in place, and return int64 "
                  "actions of shape logits.shape[:-1]."),
        Case("a batch of one state: logits (1, 3) with one possible action → actions of shape (1,)",
             {"logits": torch.tensor([[_IMPOSSIBLE, 0.3, _IMPOSSIBLE]])}, expected=torch.tensor([1]),
             observe=_only_possible_action,
             hint="remove only the sample dimension with .squeeze(-1) or reshape(logits.shape[:-1]): a bare "
                  ".squeeze() also drops the batch dimension of size 1."),
        Case("a language-model batch (B, T, V) = (2, 3, 5), one possible token per position",
             {"logits": _one_hot_logits(lm_actions, 5, g)}, expected=lm_actions, observe=_only_possible_action,
             hint="torch.multinomial takes only 1-D or 2-D probabilities: reshape them to (-1, A), sample, then "
                  "reshape the draws to logits.shape[:-1]."),
        Case("without a generator: draws follow torch's global random state (torch.manual_seed)",
             {"logits": torch.zeros(1000, 4)}, expected={"the same torch.manual_seed gives the same draws": True,
                                                         "another torch.manual_seed gives other draws": True},
             observe=_without_generator,
             hint="pass generator=None straight on (torch.multinomial(..., generator=None) uses the global "
                  "generator); a fresh torch.Generator() made inside the function repeats the same draws at "
                  "every call."),
    ]


# ---------------------------------------------------------------------------------------------
# 00.3 categorical_entropy
# ---------------------------------------------------------------------------------------------


def _entropy_bonus_gradients(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """The mean entropy and its gradient wrt the logits, as an entropy bonus in a loss uses them.

    The gradient must exist (no detach) and be finite, also where an action is impossible. It is taken
    of the mean (each row's weight 1/B, as in ``loss - c·entropy.mean()``): replacing log 0 by 0 before
    multiplying (the reference) is finite for any weights; clamping log 0 to the most negative float, which
    torch.distributions uses, is finite only for weights below 1, and those are what a mean gives.
    """

    def mean_entropy(**kwargs: Any) -> Any:
        out = fn(**kwargs)
        return out.mean() if isinstance(out, torch.Tensor) and out.is_floating_point() else out

    return observers.gradients(wrt=["logits"], name="mean entropy")(mean_entropy, inputs)


def _entropy_cases() -> list[Case]:
    g = _seeded(1)
    random_logits = torch.randn(5, 3, generator=g)
    return [
        Case("uniform over 4 actions: H = ln 4", {"logits": torch.zeros(1, 4)},
             expected=torch.tensor([1.3862944]), hint="H = -Σ p log p, with a minus sign."),
        Case("random batch (5, 3)", {"logits": random_logits},
             hint="sum over the action dimension only (dim=-1), one entropy per row."),
        Case("language-model batch (2, 4, 6)", {"logits": torch.randn(2, 4, 6, generator=g)},
             hint="reduce over dim=-1 so any leading shape works."),
        Case("three leading dimensions: logits (2, 3, 2, 4) → entropies (2, 3, 2)",
             {"logits": torch.randn(2, 3, 2, 4, generator=g)},
             hint="the docstring allows any leading shape (..., A): reduce over dim=-1, never a fixed dim=1 or 2."),
        Case("an impossible action (logit -inf) contributes 0, not NaN",
             {"logits": torch.tensor([[0.0, 0.0, _IMPOSSIBLE]])}, expected=torch.tensor([0.6931472]),
             hint="0 * log 0 is NaN in floating point; use log_softmax and treat p = 0 terms as 0."),
        Case("a near-deterministic policy [100, 0, 0] has entropy about 0",
             {"logits": torch.tensor([[100.0, 0.0, 0.0]])}, expected=torch.tensor([0.0]),
             hint="softmax underflows to exactly 0 here; log(0) = -inf and 0 * -inf = NaN."),
        Case("the gradient of the mean entropy reaches the logits (an entropy bonus trains the policy)",
             {"logits": random_logits}, observe=_entropy_bonus_gradients,
             hint="keep the entropy in the graph (no torch.no_grad(), .detach(), .item() or NumPy), and do not "
                  "detach p in -Σ p log p: with p detached the gradient is 0."),
        Case("an impossible action (logit -inf): the gradient is finite too, not NaN",
             {"logits": torch.tensor([[0.0, 0.0, _IMPOSSIBLE], [1.0, _IMPOSSIBLE, 0.5]])},
             observe=_entropy_bonus_gradients,
             hint="masking the NaN of 0 * log 0 afterwards (torch.where, nansum, nan_to_num) fixes the value but "
                  "not the backward pass (0 * -inf = NaN again): replace log p = -inf before multiplying, e.g. "
                  "torch.where(torch.isinf(log_p), 0.0, log_p)."),
    ]


EXERCISES = [
    Exercise("00.1", "log_prob_of_actions", "log-probabilities of chosen actions from logits",
             distributions.log_prob_of_actions, _log_prob_cases),
    Exercise("00.2", "sample_actions", "sampling from a categorical policy with a seeded generator",
             distributions.sample_actions, _sample_cases),
    Exercise("00.3", "categorical_entropy", "entropy of a categorical distribution",
             distributions.categorical_entropy, _entropy_cases),
]
