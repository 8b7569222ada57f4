"""Exercises of lesson 04 (a language model as a policy): log-probs, masks, positions, sampling, SFT, REINFORCE.

The cases follow the shared LM plumbing of the course's algorithm notes (§10: the shift, fp32 log_softmax,
the temperature, the completion mask up to and including the first EOS, position ids from the attention
mask) and the bug catalogue (#18 pad or prompt tokens in a log-prob, #19 the EOS masked when pad == eos,
#26 position ids with left padding). Inputs are tiny (V of 3 to 7, B of 1 to 4, L of 2 to 6; the
sampler's 3 rows are repeated 30 000 times to count frequencies) and hand-computed where a value can be
checked by hand. Besides the catalogue, each exercise covers the classes of bug that apply to it: a
batch of one, a detached output, a gradient leaking into a constant (the rewards) or behind the mask,
−inf behind a mask, logits of spread 200 (log of softmax), bf16 logits, and for the sampler the
temperature (statistically), the generator (reproducibility, global random state), greedy decoding and
the logits left unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from course_lib.grading import observers
from course_lib.grading.checker import Case, Exercise
from course_lib.grading.compare import Problem
from course_lib.lm import logprobs, policy_gradient, sampling, sft

LN2, LN3 = math.log(2.0), math.log(3.0)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _ids(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


@contextmanager
def _global_rng_restored() -> Iterator[None]:
    """Leave torch's global random state as it was, whatever the function under test draws."""
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


# ---------------------------------------------------------------------------------------------
# 04.1 next_token_logps
# ---------------------------------------------------------------------------------------------


def _bf16_logits() -> torch.Tensor:
    """(2, 4, 6) bf16 logits up to ±12.5: a log_softmax in bf16 is off by up to 0.04 (spacing 0.125 at 20)."""
    return (torch.randn(2, 4, 6, generator=_seeded(44)) * 6).to(torch.bfloat16)


def _next_token_cases() -> list[Case]:
    g = _seeded(41)
    logits, ids = torch.randn(3, 5, 6, generator=g), torch.randint(0, 6, (3, 5), generator=g)
    hand = torch.tensor([[[0, LN3, 0], [0, 0, 0], [LN2, 0, 0]],
                         [[LN3, LN3, 0], [0, 0, LN2], [0, 0, 0]]])  # (B, L, V) = (2, 3, 3)
    spread = torch.zeros(1, 3, 5)
    spread[0, 0, 0] = spread[0, 1, 2] = 200.0  # p(other tokens) = e^-200: 0 in fp32 softmax
    shift = ("the logits at position t score the token at t+1: pair logits[:, :-1] with input_ids[:, 1:], "
             "which gives B × (L−1) log-probs")
    return [
        Case("hand-computed (B, L, V) = (2, 3, 3): log-probs [[ln 3/5, ln 1/3], [ln 3/7, ln 1/2]]",
             {"logits": hand, "input_ids": _ids([2, 1, 0], [1, 0, 2])},
             expected=torch.log(_t(0.6, 1 / 3, 3 / 7, 0.5)).reshape(2, 2), hint=shift + "."),
        Case("random (B, L, V) = (3, 5, 6)", {"logits": logits, "input_ids": ids},
             hint=shift + ", log_softmax over the last dimension, then gather the token ids."),
        Case("temperature 2: logits [0, 2 ln 3, 0] / 2 give p = 3/5, [2 ln 2, 0, 0] / 2 give p = 1/2",
             {"logits": torch.tensor([[[0, 2 * LN3, 0], [2 * LN2, 0, 0], [0, 0, 0]]]),
              "input_ids": _ids([0, 1, 0]), "temperature": 2.0},
             expected=torch.log(_t(0.6, 0.5)).reshape(1, 2),
             hint="divide the logits by the temperature (the one used when sampling) before the log_softmax."),
        Case("temperature 0.7 on random (B, L, V) = (3, 5, 6)",
             {"logits": logits, "input_ids": ids, "temperature": 0.7},
             hint="use logits / temperature, never logits * temperature, and do it without changing the "
                  "caller's logits in place."),
        Case("logits of spread 200: the next token has log-prob −200, not −inf",
             {"logits": spread, "input_ids": _ids([4, 1, 3])}, expected=_t(-200.0, -200.0).reshape(1, 2),
             hint="torch.log(torch.softmax(x)) underflows to log 0 = −inf here; use torch.log_softmax."),
        Case("bf16 logits (2, 4, 6): float32 log-probs that match the fp32 computation to 1e-5",
             {"logits": _bf16_logits(), "input_ids": torch.randint(0, 6, (2, 4), generator=g)}, atol=1e-5, rtol=0.0,
             hint="upcast with .float() before the log_softmax: a bf16 log_softmax is off by up to 0.04 here."),
        Case("gradient wrt the logits (temperature 0.7)", {"logits": logits[:2, :4], "input_ids": ids[:2, :4],
                                                           "temperature": 0.7},
             observe=observers.gradients(wrt=["logits"], name="log-probs"),
             hint="keep the log-probs in the graph: no .detach(), .item(), torch.no_grad() or NumPy."),
        Case("a batch of one, L = 2: logits (1, 2, 4) → log-probs of shape (1, 1)",
             {"logits": logits[:1, :2, :4], "input_ids": _ids([3, 2])},
             hint="keep the batch and time dimensions: remove only the gathered one with .squeeze(-1)."),
    ]


# ---------------------------------------------------------------------------------------------
# 04.2 completion_mask_from_ids
# ---------------------------------------------------------------------------------------------


def _mask_cases() -> list[Case]:
    g = _seeded(42)
    random_ids = torch.randint(0, 7, (4, 6), generator=g)
    first_eos = "1 up to and including the first EOS, 0 after it"
    return [
        Case("one EOS at position 2 (eos 2, pad 0): [5, 3, 2, 0, 0] → [1, 1, 1, 0, 0]",
             {"completion_ids": _ids([5, 3, 2, 0, 0]), "eos_token_id": 2}, expected=_ids([1, 1, 1, 0, 0]),
             hint=f"{first_eos}: the EOS itself is a completion token (the model must learn to stop)."),
        Case("pad == eos == 0: [[4, 3, 0, 0, 0], [3, 0, 0, 0, 0], [5, 6, 4, 3, 2]] keep their first 0",
             {"completion_ids": _ids([4, 3, 0, 0, 0], [3, 0, 0, 0, 0], [5, 6, 4, 3, 2]), "eos_token_id": 0},
             expected=_ids([1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]),
             hint="find the first EOS by position, never by `completion_ids != pad_id`: when pad == eos that "
                  "drops the EOS itself."),
        Case("EOS twice (eos 2): [3, 2, 4, 2, 0] → [1, 1, 0, 0, 0]",
             {"completion_ids": _ids([3, 2, 4, 2, 0]), "eos_token_id": 2}, expected=_ids([1, 1, 0, 0, 0]),
             hint=f"{first_eos}: only the first EOS counts, everything after it (a second EOS too) is 0."),
        Case("a row without EOS is all 1: [[4, 3, 5, 1], [4, 2, 1, 1]] with eos 2",
             {"completion_ids": _ids([4, 3, 5, 1], [4, 2, 1, 1]), "eos_token_id": 2},
             expected=_ids([1, 1, 1, 1], [1, 1, 0, 0]),
             hint="argmax of a row with no EOS is 0: treat 'no EOS' as a first EOS at position C (all 1)."),
        Case("EOS at position 0: [[2, 3, 3, 0], [3, 3, 2, 0]] with eos 2",
             {"completion_ids": _ids([2, 3, 3, 0], [3, 3, 2, 0]), "eos_token_id": 2},
             expected=_ids([1, 0, 0, 0], [1, 1, 1, 0]),
             hint="a first EOS at position 0 is an empty answer that stops at once: mask [1, 0, 0, 0], not "
                  "'no EOS' (test .any() for that, not argmax == 0)."),
        Case("random (B, C) = (4, 6) with eos 1", {"completion_ids": random_ids, "eos_token_id": 1},
             hint=f"{first_eos}, row by row; return int64 (B, C) like the ids (.long())."),
        Case("a batch of one: (1, 4) → mask of shape (1, 4), int64",
             {"completion_ids": _ids([6, 1, 5, 5]), "eos_token_id": 1}, expected=_ids([1, 1, 0, 0]),
             hint="keep the batch dimension (no .squeeze()) and return int64 with .long(), not bool."),
    ]


# ---------------------------------------------------------------------------------------------
# 04.3 sequence_logps
# ---------------------------------------------------------------------------------------------


def _sequence_cases() -> list[Case]:
    g = _seeded(43)
    logps = -torch.rand(3, 5, generator=g) * 3
    mask = _ids([1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0])
    return [
        Case("hand-computed: [−1, −2, −0.5 | −3] and [−0.25 | −4, −4, −4] sum to −3.5 and −0.25",
             {"per_token_logps": _t(-1, -2, -0.5, -3, -0.25, -4, -4, -4).reshape(2, 4),
              "completion_mask": _ids([1, 1, 1, 0], [1, 0, 0, 0])}, expected=_t(-3.5, -0.25),
             hint="log π(y | x) is the sum of the log-probs where completion_mask is 1 (not a mean); padding "
                  "and tokens after the EOS count for nothing."),
        Case("random (B, C) = (3, 5) with completions of 3, 5 and 1 tokens",
             {"per_token_logps": logps, "completion_mask": mask},
             hint="sum over dim=-1 of the masked log-probs, one number per row."),
        Case("−inf behind the mask: [−1, −1 | −inf] sums to −2, not NaN",
             {"per_token_logps": _t(-1, -1, -math.inf).reshape(1, 3), "completion_mask": _ids([1, 1, 0])},
             expected=_t(-2.0),
             hint="0 · (−inf) is NaN: select with torch.where(mask.bool(), logps, 0) instead of multiplying."),
        Case("gradient: 1 on every completion token, exactly 0 behind the mask",
             {"per_token_logps": logps, "completion_mask": mask}, atol=1e-6, rtol=1e-6,
             observe=observers.gradients(wrt=["per_token_logps"], name="sequence log-probs"),
             hint="keep the log-probs in the graph (no .detach()); masked-out tokens must get no gradient."),
        Case("a batch of one: (1, 4) → (1,)",
             {"per_token_logps": _t(-0.5, -1.5, -2, -7).reshape(1, 4), "completion_mask": _ids([1, 1, 1, 0])},
             expected=_t(-4.0), hint="sum over dim=-1 only and keep the batch dimension (no .squeeze())."),
    ]


# ---------------------------------------------------------------------------------------------
# 04.4 position_ids_from_mask
# ---------------------------------------------------------------------------------------------


def _random_left_padded(g: torch.Generator, rows: int, length: int) -> torch.Tensor:
    pads = torch.randint(0, length, (rows, 1), generator=g)
    return (torch.arange(length).unsqueeze(0) >= pads).long()  # (B, T)


def _position_cases() -> list[Case]:
    convention = ("cumsum(mask) − 1 on real tokens, and 0 on padding (as transformers' generate builds "
                  "them in this course's version)")
    return [
        Case("left padding: [[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]] → [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3]]",
             {"attention_mask": _ids([0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1])},
             expected=_ids([0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3]),
             hint=f"positions start at 0 on each row's first real token, not at column 0: {convention}."),
        Case("right padding: [[1, 1, 0, 0], [1, 1, 1, 0]] → [[0, 1, 0, 0], [0, 1, 2, 0]]",
             {"attention_mask": _ids([1, 1, 0, 0], [1, 1, 1, 0])}, expected=_ids([0, 1, 0, 0], [0, 1, 2, 0]),
             hint=f"do not assume left padding (t − number of pads): {convention}."),
        Case("no padding: [[1, 1, 1, 1, 1]] → [[0, 1, 2, 3, 4]]", {"attention_mask": _ids([1, 1, 1, 1, 1])},
             expected=_ids([0, 1, 2, 3, 4]), hint="the first token has position 0: cumsum(mask) − 1."),
        Case("random left-padded (B, T) = (4, 6)", {"attention_mask": _random_left_padded(_seeded(44), 4, 6)},
             hint=f"{convention}; return int64 (B, T)."),
        Case("a batch of one: [[0, 0, 1, 1, 1]] → [[0, 0, 0, 1, 2]]", {"attention_mask": _ids([0, 0, 1, 1, 1])},
             expected=_ids([0, 0, 0, 1, 2]), hint="keep the batch dimension (no .squeeze()); " + convention + "."),
    ]


# ---------------------------------------------------------------------------------------------
# 04.5 sample_next_token
# ---------------------------------------------------------------------------------------------

_SAMPLE_LOGITS = torch.tensor([[1.0, 0.0, -0.5, 0.5, -1.0],
                               [0.0, 0.0, 0.0, 0.0, 0.0],
                               [2.0, -1.0, 0.0, 1.0, -2.0]])  # (B, V) = (3, 5)
_DRAWS = 30_000
"""Draws per row: at T = 0.5, ignoring the temperature moves a count by 75 standard errors or more."""
_STANDARD_ERRORS = 5.0
"""Largest allowed deviation of a count from draws · softmax(logits / T), in binomial standard errors."""


def _tokens_problem(out: Any, shape: tuple[int, ...], vocab: int) -> Problem | None:
    """A Problem unless ``out`` is an int64 tensor of ``shape`` holding token ids in [0, V)."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or out.dtype != torch.int64:
        got = f"a {out.dtype} tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        return Problem(f"expected an int64 tensor of token ids of shape {shape} (one per row), got {got}")
    if out.numel() and not bool(((out >= 0) & (out < vocab)).all()):
        return Problem(f"expected token ids in [0, {vocab}), got values from {int(out.min())} to {int(out.max())}")
    return None


def _frequencies(tokens: torch.Tensor, logits: torch.Tensor, temperature: float, draws: int) -> bool | Problem:
    """True if every token's count is within the allowed standard errors of softmax(logits / T)."""
    rows, vocab = logits.shape
    counts = torch.nn.functional.one_hot(tokens.reshape(draws, rows), vocab).sum(0).double()  # (B, V)
    probs = torch.softmax(logits.double() / temperature, dim=-1)  # (B, V)
    errors = (counts - draws * probs).abs() / (draws * probs * (1 - probs)).sqrt()
    row, token = divmod(int(errors.argmax()), vocab)
    if float(errors[row, token]) <= _STANDARD_ERRORS:
        return True
    return Problem(f"at temperature {temperature:g}, token {token} of row {row} (logits "
                   f"{[round(x, 3) for x in logits[row].tolist()]}) was drawn in "
                   f"{100 * float(counts[row, token]) / draws:.2f} % of {draws} draws, but softmax(logits / T) gives "
                   f"{100 * float(probs[row, token]):.2f} % ({float(errors[row, token]):.0f} standard errors off)")


def _sampling_profile(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """Distribution at the temperature, reproducibility with the generator, global RNG and logits untouched."""
    logits, temperature, draws, seed = inputs["logits"], inputs["temperature"], inputs["draws"], inputs["seed"]
    batch = logits.repeat(draws, 1)  # (draws·B, V): row i is row i % B of the logits
    untouched, small = batch.clone(), batch[: 500 * logits.shape[0]].clone()

    def draw(rows: torch.Tensor, generator_seed: int, global_seed: int) -> Any:
        torch.manual_seed(global_seed)  # a sampler that ignores `generator` then draws differently
        return fn(logits=rows, temperature=temperature, generator=_seeded(generator_seed))

    with _global_rng_restored():
        torch.manual_seed(1)
        fresh = torch.get_rng_state()
        first = fn(logits=batch, temperature=temperature, generator=_seeded(seed))
        global_untouched = bool(torch.equal(torch.get_rng_state(), fresh))
        problem = _tokens_problem(first, (batch.shape[0],), logits.shape[1])
        if problem is not None:
            return problem
        again, other, repeat = (draw(small.clone(), seed, 2), draw(small.clone(), seed + 1, 2),
                                 draw(small.clone(), seed, 3))
    reproducible = all(isinstance(x, torch.Tensor) for x in (again, other, repeat)) and bool(torch.equal(again, repeat))
    return {
        "frequencies within 5 standard errors of softmax(logits / temperature)":
            _frequencies(first, logits, temperature, draws),
        "the same generator seed gives the same tokens": reproducible,
        "another generator seed gives other tokens": reproducible and not bool(torch.equal(again, other)),
        "torch's global random state is left alone when a generator is given": global_untouched,
        "the logits are left unchanged": bool(torch.equal(batch, untouched)),
    }


def _without_generator(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """With generator=None the draws must follow torch's global random state (restored afterwards)."""
    with _global_rng_restored():
        results = []
        for global_seed in (5, 5, 6):
            torch.manual_seed(global_seed)
            results.append(fn(**inputs))
    problem = _tokens_problem(results[0], (inputs["logits"].shape[0],), inputs["logits"].shape[1])
    if problem is not None:
        return problem
    first, again, other = results
    return {"the same torch.manual_seed gives the same tokens": isinstance(again, torch.Tensor)
            and bool(torch.equal(first, again)),
            "another torch.manual_seed gives other tokens": isinstance(other, torch.Tensor)
            and not bool(torch.equal(first, other))}


def _rng_safe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """``fn(**inputs, generator=...)`` with torch's global random state restored afterwards (greedy, or one
    possible token: the result is known whatever is drawn)."""
    with _global_rng_restored():
        torch.manual_seed(0)
        return fn(**inputs, generator=_seeded(0))


def _sample_cases() -> list[Case]:
    g = _seeded(45)
    greedy_logits = torch.randn(4, 6, generator=g)
    greedy_logits[:, 0] = 0.0  # a zero logit: 0 / 0 = NaN if the temperature is applied before the argmax
    profile = {"frequencies within 5 standard errors of softmax(logits / temperature)": True,
               "the same generator seed gives the same tokens": True,
               "another generator seed gives other tokens": True,
               "torch's global random state is left alone when a generator is given": True,
               "the logits are left unchanged": True}
    only_one = torch.full((1, 5), -math.inf)
    only_one[0, 3] = 0.3
    return [
        Case(f"{_DRAWS} draws from each of 3 rows of logits (B, V) = (3, 5) at temperature 0.5",
             {"logits": _SAMPLE_LOGITS, "temperature": 0.5, "draws": _DRAWS, "seed": 7},
             expected=profile, observe=_sampling_profile,
             hint="draw from softmax(logits / temperature) (divide, never multiply) with "
                  "torch.multinomial(probs, 1, generator=generator), and leave the logits unchanged."),
        Case(f"{_DRAWS} draws from each of 3 rows at temperature 1.3",
             {"logits": _SAMPLE_LOGITS, "temperature": 1.3, "draws": _DRAWS, "seed": 8},
             expected=profile, observe=_sampling_profile,
             hint="pass `generator` to every random call; never torch's global generator when one is given."),
        Case("without a generator: tokens follow torch's global random state (torch.manual_seed)",
             {"logits": torch.zeros(200, 5), "temperature": 1.0},
             expected={"the same torch.manual_seed gives the same tokens": True,
                       "another torch.manual_seed gives other tokens": True}, observe=_without_generator,
             hint="pass generator=None straight on to torch.multinomial; a torch.Generator() made inside the "
                  "function repeats the same tokens at every call."),
        Case("greedy=True at temperature 0.7: the argmax of each row",
             {"logits": greedy_logits, "temperature": 0.7, "greedy": True},
             expected=greedy_logits.argmax(dim=-1), observe=_rng_safe,
             hint="with greedy=True return logits.argmax(dim=-1): no sampling."),
        Case("greedy=True with temperature 0: still the argmax (the temperature is not used at all)",
             {"logits": greedy_logits, "temperature": 0.0, "greedy": True},
             expected=greedy_logits.argmax(dim=-1), observe=_rng_safe,
             hint="take the greedy branch before dividing by the temperature: logits / 0 are ±inf and NaN."),
        Case("a batch of one: logits (1, 5) with one possible token → tokens of shape (1,)",
             {"logits": only_one, "temperature": 0.8}, expected=_ids(3).reshape(1),
             observe=_rng_safe,
             hint="keep the batch dimension: .squeeze(-1) the (B, 1) draws of torch.multinomial, not .squeeze()."),
    ]


# ---------------------------------------------------------------------------------------------
# 04.6 sft_loss
# ---------------------------------------------------------------------------------------------


def _sft_cases() -> list[Case]:
    g = _seeded(46)
    hand = torch.tensor([[[0, 0, LN2], [LN3, 0, 0], [0, 0, 0], [0, 5.0, 0]]])  # (1, 4, 3)
    lengths_logits = torch.randn(2, 5, 5, generator=g)
    lengths = {"logits": lengths_logits, "input_ids": torch.randint(0, 5, (2, 5), generator=g),
               "completion_mask": _ids([0, 0, 0, 1, 1], [0, 1, 1, 1, 1])}
    padded = {"logits": torch.randn(3, 6, 7, generator=g), "input_ids": torch.randint(0, 7, (3, 6), generator=g),
              "completion_mask": _ids([0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1])}
    token_mean = "−Σ log p(completion tokens) / (number of completion tokens in the whole batch)"
    return [
        Case("hand-computed, a batch of one: prompt [1, 2], completion [0, <eos>=2]: loss −(ln 3/5 + ln 1/3)/2 = 0.804719",
             {"logits": hand, "input_ids": _ids([1, 2, 0, 2]), "completion_mask": _ids([0, 0, 1, 1])},
             expected=torch.tensor(0.80471895),
             hint="logits[:, :-1] score input_ids[:, 1:] under completion_mask[:, 1:]; count only completion "
                  "tokens (and the EOS), never the prompt, and take the mean, not the sum."),
        Case("completions of 2 and 4 tokens: a token mean over all 6, not a mean of per-sequence means",
             lengths, hint=f"loss = {token_mean}: every token weighs the same."),
        Case("random left-padded batch (B, L, V) = (3, 6, 7)", padded,
             hint=f"shift logits, ids and mask together; loss = {token_mean}."),
        Case("logits of spread 200: loss (ln 3 + 200)/2 = 100.549, not inf",
             {"logits": torch.tensor([[[0, 0, 0], [200.0, 0, 0], [0, 0, 0]]]), "input_ids": _ids([1, 2, 1]),
              "completion_mask": _ids([0, 1, 1])}, expected=torch.tensor((LN3 + 200.0) / 2),
             hint="use torch.log_softmax: log(softmax(x)) underflows to log 0 = −inf."),
        Case("gradient wrt the logits", lengths, observe=observers.gradients(wrt=["logits"], name="loss"),
             hint="keep the loss in the graph: no .detach(), .item(), torch.no_grad() or NumPy."),
    ]


# ---------------------------------------------------------------------------------------------
# 04.7 reinforce_loss
# ---------------------------------------------------------------------------------------------

_REINFORCE_GRADIENTS = observers.gradients(wrt=["sequence_logps"], constant=["rewards"], name="loss")


def _reinforce_observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """The loss and its gradients (exactly 0 for the rewards), then a plain call so in-place changes are seen."""
    observed = _REINFORCE_GRADIENTS(fn, inputs)
    fn(**inputs)
    return observed


def _reinforce_cases() -> list[Case]:
    g = _seeded(47)
    logps, rewards = -torch.rand(6, generator=g) * 10, (torch.rand(6, generator=g) < 0.5).float()
    hand = {"sequence_logps": _t(-1, -2, -3, -0.5), "rewards": _t(1, 0, 0, 1)}
    return [
        Case("hand-computed: log π = [−1, −2, −3, −0.5], r = [1, 0, 0, 1], baseline 0.5: loss −0.4375",
             hand, expected=torch.tensor(-0.4375),
             hint="L = −mean((r − mean(r)) · log π): subtract the batch-mean reward, a minus sign, a mean."),
        Case("baseline 'none': the same batch gives −mean(r · log π) = 0.375", dict(hand, baseline="none"),
             expected=torch.tensor(0.375), hint="with baseline='none' the weights are the rewards themselves."),
        Case("gradients: −(r − mean r)/B into log π, exactly 0 into the rewards", {"sequence_logps": logps,
                                                                                  "rewards": rewards},
             observe=_reinforce_observe,
             hint="detach the weights: rewards.detach(), and a baseline computed from the detached rewards."),
        Case("gradients with baseline 'none': −r/B into log π, exactly 0 into the rewards",
             {"sequence_logps": logps, "rewards": rewards * 2 - 0.5, "baseline": "none"},
             observe=_reinforce_observe, hint="the rewards are constants: use rewards.detach()."),
        Case("a batch of one: the batch-mean baseline is the reward itself, so loss 0 and gradient 0",
             {"sequence_logps": _t(-2.0), "rewards": _t(1.0)}, observe=_reinforce_observe,
             hint="r − mean(r) is 0 for one completion: subtract the mean only, do not divide by a std (NaN)."),
    ]


EXERCISES = [
    Exercise("04.1", "next_token_logps", "log-probs of the next tokens: shift, temperature, fp32 log_softmax",
             logprobs.next_token_logps, _next_token_cases),
    Exercise("04.2", "completion_mask_from_ids", "the completion mask up to and including the first EOS",
             sampling.completion_mask_from_ids, _mask_cases),
    Exercise("04.3", "sequence_logps", "log π(completion | prompt): the masked sum of token log-probs",
             logprobs.sequence_logps, _sequence_cases),
    Exercise("04.4", "position_ids_from_mask", "position ids from a padded attention mask",
             logprobs.position_ids_from_mask, _position_cases),
    Exercise("04.5", "sample_next_token", "sampling the next token with a temperature and a seeded generator",
             sampling.sample_next_token, _sample_cases),
    Exercise("04.6", "sft_loss", "the SFT loss: a token mean over completion tokens only",
             sft.sft_loss, _sft_cases),
    Exercise("04.7", "reinforce_loss", "REINFORCE on completions with a batch-mean baseline",
             policy_gradient.reinforce_loss, _reinforce_cases),
]
