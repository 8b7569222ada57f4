"""The lesson-04 checks accept the references and reject the known-wrong versions (algorithms.md §10, §11).

Each wrong version below is a bug learners write when a language model becomes the policy: a missing or
reversed shift, the temperature ignored or multiplied, log of softmax, no fp32 upcast, a detached output,
a mask from ``ids != pad_id`` when pad == eos (#19), pad tokens counted (#18), position ids that ignore
left padding (#26), a sampler on the global generator, a mean of per-sequence means, undetached rewards.
Each test also names the case that must catch the bug on its own. Correct alternatives written another
way (loops, masked_fill, cross_entropy with ignore_index, Gumbel-max sampling) must pass.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from course_lib.grading import exercises
from course_lib.grading.checker import run_exercise
from course_lib.grading.exercises.lesson04 import _DRAWS
from course_lib.lm import logprobs, policy_gradient, sampling, sft

EX = {e.name: e for e in exercises.for_lesson("04")}


# --- 04.1 next_token_logps ------------------------------------------------------------------------


def _gather(logits, ids):
    return logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def ntl_no_shift(logits, input_ids, temperature=1.0):
    """logits[:, t] scores input_ids[:, t] (its own input), cut to L − 1 so the shape looks right."""
    return _gather(logits[:, :-1].float() / temperature, input_ids[:, :-1])


def ntl_shift_wrong_way(logits, input_ids, temperature=1.0):
    return _gather(logits[:, 1:].float() / temperature, input_ids[:, :-1])


def ntl_full_length(logits, input_ids, temperature=1.0):
    """No shift at all: (B, L) log-probs of each position's own token."""
    return _gather(logits.float() / temperature, input_ids)


def ntl_ignores_temperature(logits, input_ids, temperature=1.0):
    return _gather(logits[:, :-1].float(), input_ids[:, 1:])


def ntl_multiplies_temperature(logits, input_ids, temperature=1.0):
    return _gather(logits[:, :-1].float() * temperature, input_ids[:, 1:])


def ntl_divides_in_place(logits, input_ids, temperature=1.0):
    logits /= temperature
    return _gather(logits[:, :-1].float(), input_ids[:, 1:])


def ntl_log_of_softmax(logits, input_ids, temperature=1.0):
    probs = torch.softmax(logits[:, :-1].float() / temperature, -1)
    return probs.log().gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def ntl_no_upcast(logits, input_ids, temperature=1.0):
    """log_softmax in the logits' own dtype: bf16 in, bf16 out."""
    return _gather(logits[:, :-1] / temperature, input_ids[:, 1:])


def ntl_upcasts_too_late(logits, input_ids, temperature=1.0):
    """log_softmax in bf16, then .float(): the right dtype, values off by ~1e-2."""
    return _gather(logits[:, :-1] / temperature, input_ids[:, 1:]).float()


def ntl_detached(logits, input_ids, temperature=1.0):
    return logprobs.next_token_logps(logits, input_ids, temperature).detach()


def ntl_squeezes(logits, input_ids, temperature=1.0):
    return logits[:, :-1].float().div(temperature).log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze()


def ntl_cross_entropy(logits, input_ids, temperature=1.0):
    """A correct alternative: −cross_entropy per token, log_softmax over all positions, then the slice."""
    scaled = logits.float() / temperature
    batch, length, vocab = scaled.shape
    nll = F.cross_entropy(scaled[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1), reduction="none")
    return -nll.reshape(batch, length - 1)


def ntl_loops(logits, input_ids, temperature=1.0):
    """A correct alternative: one position at a time, in float64, back to float32."""
    batch, length, _ = logits.shape
    rows = [[torch.log_softmax(logits[b, t].double() / temperature, -1)[input_ids[b, t + 1]]
             for t in range(length - 1)] for b in range(batch)]
    return torch.stack([torch.stack(row) for row in rows]).float()


# --- 04.2 completion_mask_from_ids ----------------------------------------------------------------


def mask_not_pad(completion_ids, eos_token_id):
    """`completion_ids != pad_id` with pad == eos: the EOS itself is masked out."""
    return (completion_ids != eos_token_id).long()


def _first_eos(completion_ids, eos_token_id):
    is_eos = completion_ids == eos_token_id
    return torch.where(is_eos.any(1), is_eos.int().argmax(1), completion_ids.shape[1])


def mask_excludes_eos(completion_ids, eos_token_id):
    positions = torch.arange(completion_ids.shape[1])
    return (positions < _first_eos(completion_ids, eos_token_id)[:, None]).long()


def mask_last_eos(completion_ids, eos_token_id):
    is_eos = (completion_ids == eos_token_id).int()
    length = completion_ids.shape[1]
    last = torch.where(is_eos.any(1), length - 1 - is_eos.flip(1).argmax(1), length)
    return (torch.arange(length) <= last[:, None]).long()


def mask_cumsum_at_most_one(completion_ids, eos_token_id):
    """cumsum(is_eos) <= 1: keeps the tokens between the first and the second EOS."""
    return ((completion_ids == eos_token_id).long().cumsum(1) <= 1).long()


def mask_no_eos_forgotten(completion_ids, eos_token_id):
    """argmax without .any(): a row with no EOS gets first EOS 0 → [1, 0, 0, ...]."""
    first = (completion_ids == eos_token_id).int().argmax(1)
    return (torch.arange(completion_ids.shape[1]) <= first[:, None]).long()


def mask_zero_means_none(completion_ids, eos_token_id):
    """argmax == 0 read as 'no EOS': an EOS at position 0 gives an all-1 row."""
    first = (completion_ids == eos_token_id).int().argmax(1)
    first = torch.where(first == 0, completion_ids.shape[1], first)
    return (torch.arange(completion_ids.shape[1]) <= first[:, None]).long()


def mask_bool(completion_ids, eos_token_id):
    return sampling.completion_mask_from_ids(completion_ids, eos_token_id).bool()


def mask_squeezes(completion_ids, eos_token_id):
    return sampling.completion_mask_from_ids(completion_ids, eos_token_id).squeeze()


def mask_loops(completion_ids, eos_token_id):
    """A correct alternative: a Python loop over rows and tokens."""
    mask = torch.zeros_like(completion_ids)
    for b, row in enumerate(completion_ids.tolist()):
        for t, token in enumerate(row):
            mask[b, t] = 1
            if token == eos_token_id:
                break
    return mask


def mask_shifted_cumsum(completion_ids, eos_token_id):
    """A correct alternative: 1 while no EOS has been seen before this position."""
    seen = (completion_ids == eos_token_id).long().cumsum(1) - (completion_ids == eos_token_id).long()
    return (seen == 0).long()


# --- 04.3 sequence_logps --------------------------------------------------------------------------


def seq_no_mask(per_token_logps, completion_mask):
    return per_token_logps.sum(-1)


def seq_multiplies(per_token_logps, completion_mask):
    """(logps · mask).sum(): 0 · (−inf) = NaN behind the mask."""
    return (per_token_logps * completion_mask).sum(-1)


def seq_mean(per_token_logps, completion_mask):
    return logprobs.sequence_logps(per_token_logps, completion_mask, reduction="mean")


def seq_detached(per_token_logps, completion_mask):
    return logprobs.sequence_logps(per_token_logps.detach(), completion_mask)


def seq_squeezes(per_token_logps, completion_mask):
    return logprobs.sequence_logps(per_token_logps, completion_mask).squeeze()


def seq_masked_fill(per_token_logps, completion_mask):
    """A correct alternative with only the two arguments of the lesson's signature."""
    return per_token_logps.masked_fill(completion_mask == 0, 0.0).sum(dim=-1)


# --- 04.4 position_ids_from_mask ------------------------------------------------------------------


def pos_arange(attention_mask):
    return torch.arange(attention_mask.shape[1]).expand_as(attention_mask).clone()


def pos_no_minus_one(attention_mask):
    return attention_mask.long().cumsum(-1).masked_fill(attention_mask == 0, 0)


def pos_pads_not_reset(attention_mask):
    """cumsum − 1 only: −1 on left pads, and the last position repeated on right pads."""
    return attention_mask.long().cumsum(-1) - 1


def pos_pads_one(attention_mask):
    """Older transformers' GPT-2 convention: pads at position 1."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)


def pos_assumes_left_padding(attention_mask):
    """t − (number of pads), clamped at 0: right for left padding only."""
    pads = (attention_mask == 0).sum(-1, keepdim=True)
    return (torch.arange(attention_mask.shape[1]) - pads).clamp(min=0)


def pos_squeezes(attention_mask):
    return logprobs.position_ids_from_mask(attention_mask).squeeze()


def pos_loops(attention_mask):
    """A correct alternative: count the real tokens row by row."""
    out = torch.zeros_like(attention_mask, dtype=torch.long)
    for b, row in enumerate(attention_mask.tolist()):
        seen = 0
        for t, real in enumerate(row):
            if real:
                out[b, t] = seen
                seen += 1
    return out


# --- 04.5 sample_next_token -----------------------------------------------------------------------


def _multinomial(probs, generator):
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def samp_ignores_temperature(logits, temperature=1.0, generator=None, greedy=False):
    if greedy:
        return logits.argmax(-1)
    return _multinomial(torch.softmax(logits.float(), -1), generator)


def samp_multiplies_temperature(logits, temperature=1.0, generator=None, greedy=False):
    if greedy:
        return logits.argmax(-1)
    return _multinomial(torch.softmax(logits.float() * temperature, -1), generator)


def samp_global_rng(logits, temperature=1.0, generator=None, greedy=False):
    if greedy:
        return logits.argmax(-1)
    return _multinomial(torch.softmax(logits.float() / temperature, -1), None)


def samp_fresh_generator(logits, temperature=1.0, generator=None, greedy=False):
    """generator or torch.Generator(): with None, the same tokens at every call."""
    return sampling.sample_next_token(logits, temperature, generator or torch.Generator(), greedy)


def samp_ignores_greedy(logits, temperature=1.0, generator=None, greedy=False):
    return _multinomial(torch.softmax(logits.float() / temperature, -1), generator)


def samp_divides_before_greedy(logits, temperature=1.0, generator=None, greedy=False):
    scaled = logits.float() / temperature
    if greedy:
        return scaled.argmax(-1)
    return _multinomial(torch.softmax(scaled, -1), generator)


def samp_divides_in_place(logits, temperature=1.0, generator=None, greedy=False):
    if greedy:
        return logits.argmax(-1)
    logits /= temperature
    return _multinomial(torch.softmax(logits, -1), generator)


def samp_squeezes(logits, temperature=1.0, generator=None, greedy=False):
    return sampling.sample_next_token(logits, temperature, generator, greedy).squeeze()


def samp_gumbel_max(logits, temperature=1.0, generator=None, greedy=False):
    """A correct alternative: Gumbel-max (argmax of logits / T + Gumbel noise) with the generator."""
    if greedy:
        return logits.argmax(-1)
    uniform = torch.rand(logits.shape, generator=generator).clamp(min=1e-12)
    return (logits.float() / temperature - torch.log(-torch.log(uniform))).argmax(-1)


def samp_inverse_cdf(logits, temperature=1.0, generator=None, greedy=False):
    """A correct alternative: one uniform per row against the cumulative probabilities."""
    if greedy:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits.double() / temperature, -1).cumsum(-1)
    uniform = torch.rand(logits.shape[0], 1, generator=generator, dtype=torch.float64)
    return (cdf < uniform).sum(-1).clamp(max=logits.shape[-1] - 1)


# --- 04.6 sft_loss --------------------------------------------------------------------------------


def _token_logps(logits, ids):
    return logits.float().log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def sft_all_tokens(logits, input_ids, completion_mask):
    """The prompt (and padding) counted: a mean over every next-token prediction."""
    return -_token_logps(logits[:, :-1], input_ids[:, 1:]).mean()


def sft_no_shift(logits, input_ids, completion_mask):
    mask = completion_mask.float()
    return -(_token_logps(logits, input_ids) * mask).sum() / mask.sum()


def sft_shift_wrong_way(logits, input_ids, completion_mask):
    mask = completion_mask[:, :-1].float()
    return -(_token_logps(logits[:, 1:], input_ids[:, :-1]) * mask).sum() / mask.sum()


def sft_mask_not_shifted(logits, input_ids, completion_mask):
    """The logits and ids shifted, the mask not: completion_mask[:, :-1] marks the wrong targets."""
    mask = completion_mask[:, :-1].float()
    return -(_token_logps(logits[:, :-1], input_ids[:, 1:]) * mask).sum() / mask.sum()


def sft_mean_of_means(logits, input_ids, completion_mask):
    mask = completion_mask[:, 1:].float()
    per_row = (_token_logps(logits[:, :-1], input_ids[:, 1:]) * mask).sum(-1) / mask.sum(-1)
    return -per_row.mean()


def sft_sum(logits, input_ids, completion_mask):
    mask = completion_mask[:, 1:].float()
    return -(_token_logps(logits[:, :-1], input_ids[:, 1:]) * mask).sum()


def sft_log_of_softmax(logits, input_ids, completion_mask):
    probs = torch.softmax(logits[:, :-1].float(), -1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = completion_mask[:, 1:].float()
    return -(probs.log() * mask).sum() / mask.sum()


def sft_detached(logits, input_ids, completion_mask):
    return sft.sft_loss(logits, input_ids, completion_mask).detach()


def sft_cross_entropy(logits, input_ids, completion_mask):
    """A correct alternative, as Hugging Face writes it: labels −100 outside the completion."""
    labels = input_ids[:, 1:].masked_fill(completion_mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=-100)


# --- 04.7 reinforce_loss --------------------------------------------------------------------------


def rl_no_baseline(sequence_logps, rewards, baseline="batch_mean"):
    return -(rewards.detach() * sequence_logps).mean()


def rl_rewards_not_detached(sequence_logps, rewards, baseline="batch_mean"):
    weights = rewards - rewards.mean() if baseline == "batch_mean" else rewards
    return -(weights * sequence_logps).mean()


def rl_baseline_not_detached(sequence_logps, rewards, baseline="batch_mean"):
    """r.detach() − r.mean(): the baseline still carries gradient into the rewards."""
    weights = rewards.detach() - rewards.mean() if baseline == "batch_mean" else rewards.detach()
    return -(weights * sequence_logps).mean()


def rl_none_path_not_detached(sequence_logps, rewards, baseline="batch_mean"):
    weights = (rewards - rewards.mean()).detach() if baseline == "batch_mean" else rewards
    return -(weights * sequence_logps).mean()


def rl_sign_flipped(sequence_logps, rewards, baseline="batch_mean"):
    return -policy_gradient.reinforce_loss(sequence_logps, rewards, baseline)


def rl_sum(sequence_logps, rewards, baseline="batch_mean"):
    return policy_gradient.reinforce_loss(sequence_logps, rewards, baseline) * sequence_logps.shape[0]


def rl_always_baseline(sequence_logps, rewards, baseline="batch_mean"):
    return policy_gradient.reinforce_loss(sequence_logps, rewards, "batch_mean")


def rl_std_normalised(sequence_logps, rewards, baseline="batch_mean"):
    """GRPO's (r − mean)/std without eps: 0/0 = NaN for a batch of one."""
    r = rewards.detach()
    std = (((r - r.mean()) ** 2).sum() / (r.numel() - 1)).sqrt() if r.numel() > 1 else torch.tensor(0.0)
    weights = (r - r.mean()) / std if baseline == "batch_mean" else r
    return -(weights * sequence_logps).mean()


def rl_written_out(sequence_logps, rewards, baseline="batch_mean"):
    """A correct alternative: the sum divided by B, the weights detached after the subtraction."""
    weights = (rewards - rewards.mean() if baseline == "batch_mean" else rewards).detach()
    return -(weights * sequence_logps).sum() / sequence_logps.shape[0]


# --- the tests ------------------------------------------------------------------------------------


def test_lesson04_registers_seven_exercises():
    assert [(e.id, e.name) for e in exercises.for_lesson("04")] == [
        ("04.1", "next_token_logps"), ("04.2", "completion_mask_from_ids"), ("04.3", "sequence_logps"),
        ("04.4", "position_ids_from_mask"), ("04.5", "sample_next_token"), ("04.6", "sft_loss"),
        ("04.7", "reinforce_loss")]


@pytest.mark.parametrize("name, ref", [
    ("next_token_logps", logprobs.next_token_logps),
    ("completion_mask_from_ids", sampling.completion_mask_from_ids),
    ("sequence_logps", logprobs.sequence_logps),
    ("position_ids_from_mask", logprobs.position_ids_from_mask),
    ("sample_next_token", sampling.sample_next_token),
    ("sft_loss", sft.sft_loss),
    ("reinforce_loss", policy_gradient.reinforce_loss),
])
def test_checks_accept_the_reference(name, ref):
    assert EX[name].reference is ref
    result = run_exercise(EX[name], ref)
    assert result.passed, result.message
    assert result.cases_passed == result.cases_total >= 5
    assert result.seconds < 1.0


@pytest.mark.parametrize("name, other", [
    ("next_token_logps", ntl_cross_entropy), ("next_token_logps", ntl_loops),
    ("completion_mask_from_ids", mask_loops), ("completion_mask_from_ids", mask_shifted_cumsum),
    ("sequence_logps", seq_masked_fill),
    ("position_ids_from_mask", pos_loops),
    ("sample_next_token", samp_gumbel_max), ("sample_next_token", samp_inverse_cdf),
    ("sft_loss", sft_cross_entropy),
    ("reinforce_loss", rl_written_out),
])
def test_checks_accept_correct_alternatives(name, other):
    """The cases test behaviour, not one way of writing it (the learner's 04.3 has no `reduction` argument)."""
    result = run_exercise(EX[name], other)
    assert result.passed, result.message


def _only(name, failing_case):
    exercise = EX[name]
    only = dataclasses.replace(exercise, make_cases=lambda: [
        c for c in exercise.make_cases() if c.label.startswith(failing_case)])
    assert len(only.make_cases()) == 1, failing_case
    return only


WRONG = [
    # 04.1: the shift, the temperature, log of softmax, fp32, the gradient, the shape
    ("next_token_logps", ntl_no_shift, "hand-computed", "first difference"),
    ("next_token_logps", ntl_shift_wrong_way, "hand-computed", "first difference"),
    ("next_token_logps", ntl_full_length, "hand-computed", "expected shape (2, 2), got shape (2, 3)"),
    ("next_token_logps", ntl_full_length, "a batch of one", "expected shape (1, 1), got shape (1, 2)"),
    ("next_token_logps", ntl_ignores_temperature, "temperature 2", "expected"),
    ("next_token_logps", ntl_ignores_temperature, "temperature 0.7 on random", "expected"),
    ("next_token_logps", ntl_multiplies_temperature, "temperature 2", "expected"),
    ("next_token_logps", ntl_multiplies_temperature, "temperature 0.7 on random", "expected"),
    ("next_token_logps", ntl_divides_in_place, "temperature 2", "changed its input `logits` in place"),
    ("next_token_logps", ntl_log_of_softmax, "logits of spread 200", "got inf"),
    ("next_token_logps", ntl_no_upcast, "bf16 logits", "expected dtype torch.float32, got dtype torch.bfloat16"),
    ("next_token_logps", ntl_upcasts_too_late, "bf16 logits", "first difference"),
    ("next_token_logps", ntl_detached, "gradient wrt the logits", "no gradient reaches `logits`"),
    ("next_token_logps", ntl_squeezes, "a batch of one", "expected shape (1, 1), got shape ()"),
    # 04.2: pad == eos (#19), the EOS itself, two EOS, no EOS, EOS first, dtype and shape
    ("completion_mask_from_ids", mask_not_pad, "pad == eos", "expected"),
    ("completion_mask_from_ids", mask_excludes_eos, "one EOS at position 2", "expected"),
    ("completion_mask_from_ids", mask_excludes_eos, "pad == eos", "expected"),
    ("completion_mask_from_ids", mask_last_eos, "EOS twice", "expected"),
    ("completion_mask_from_ids", mask_cumsum_at_most_one, "EOS twice", "expected"),
    ("completion_mask_from_ids", mask_no_eos_forgotten, "a row without EOS", "expected"),
    ("completion_mask_from_ids", mask_zero_means_none, "EOS at position 0", "expected"),
    ("completion_mask_from_ids", mask_bool, "one EOS at position 2", "expected dtype torch.int64, got dtype torch.bool"),
    ("completion_mask_from_ids", mask_squeezes, "a batch of one", "expected shape (1, 4), got shape (4,)"),
    # 04.3: no mask (#18), 0 · (−inf), mean, the gradient, the shape
    ("sequence_logps", seq_no_mask, "hand-computed", "expected"),
    ("sequence_logps", seq_no_mask, "gradient", "in ['sequence log-probs']"),
    ("sequence_logps", seq_multiplies, "−inf behind the mask", "got NaN"),
    ("sequence_logps", seq_mean, "hand-computed", "expected"),
    ("sequence_logps", seq_mean, "gradient", "in ['sequence log-probs']"),
    ("sequence_logps", seq_detached, "gradient", "no gradient reaches `per_token_logps`"),
    ("sequence_logps", seq_squeezes, "a batch of one", "expected shape (1,), got shape ()"),
    # 04.4: left padding (#26), cumsum − 1, pads at 0, right padding, the shape
    ("position_ids_from_mask", pos_arange, "left padding", "expected"),
    ("position_ids_from_mask", pos_no_minus_one, "left padding", "expected"),
    ("position_ids_from_mask", pos_no_minus_one, "no padding", "expected"),
    ("position_ids_from_mask", pos_pads_not_reset, "left padding", "expected"),
    ("position_ids_from_mask", pos_pads_not_reset, "right padding", "expected"),
    ("position_ids_from_mask", pos_pads_one, "left padding", "expected"),
    ("position_ids_from_mask", pos_assumes_left_padding, "right padding", "expected"),
    ("position_ids_from_mask", pos_squeezes, "a batch of one", "expected shape (1, 5), got shape (5,)"),
    # 04.5: the temperature (statistically), the generator, greedy, in place, the shape
    ("sample_next_token", samp_ignores_temperature, f"{_DRAWS} draws from each of 3 rows of logits",
     "standard errors off"),
    ("sample_next_token", samp_ignores_temperature, f"{_DRAWS} draws from each of 3 rows at temperature 1.3",
     "standard errors off"),
    ("sample_next_token", samp_multiplies_temperature, f"{_DRAWS} draws from each of 3 rows of logits",
     "standard errors off"),
    ("sample_next_token", samp_global_rng, f"{_DRAWS} draws from each of 3 rows of logits",
     "the same generator seed gives the same tokens"),
    ("sample_next_token", samp_fresh_generator, "without a generator", "another torch.manual_seed gives other tokens"),
    ("sample_next_token", samp_ignores_greedy, "greedy=True at temperature 0.7", "expected"),
    ("sample_next_token", samp_divides_before_greedy, "greedy=True with temperature 0", "expected"),
    ("sample_next_token", samp_divides_in_place, f"{_DRAWS} draws from each of 3 rows of logits",
     "the logits are left unchanged"),
    ("sample_next_token", samp_squeezes, "a batch of one", "expected shape (1,), got shape ()"),
    # 04.6: prompt tokens counted, the shift, the mask's shift, the token mean, sum, log of softmax, gradient
    ("sft_loss", sft_all_tokens, "hand-computed", "expected"),
    ("sft_loss", sft_no_shift, "hand-computed", "expected"),
    ("sft_loss", sft_shift_wrong_way, "hand-computed", "expected"),
    ("sft_loss", sft_mask_not_shifted, "hand-computed", "expected"),
    ("sft_loss", sft_mean_of_means, "completions of 2 and 4 tokens", "expected"),
    ("sft_loss", sft_sum, "hand-computed", "expected"),
    ("sft_loss", sft_log_of_softmax, "logits of spread 200", "got inf"),
    ("sft_loss", sft_detached, "gradient wrt the logits", "no gradient reaches `logits`"),
    # 04.7: the baseline, detached weights, the sign, the mean, baseline "none"
    ("reinforce_loss", rl_no_baseline, "hand-computed", "expected tensor(-0.4375), got tensor(0.375)"),
    ("reinforce_loss", rl_rewards_not_detached, "gradients:", "must be 0: `rewards` is a constant"),
    ("reinforce_loss", rl_baseline_not_detached, "gradients:", "must be 0: `rewards` is a constant"),
    ("reinforce_loss", rl_none_path_not_detached, "gradients with baseline 'none'",
     "must be 0: `rewards` is a constant"),
    ("reinforce_loss", rl_sign_flipped, "hand-computed", "expected tensor(-0.4375), got tensor(0.4375)"),
    ("reinforce_loss", rl_sum, "hand-computed", "expected tensor(-0.4375), got tensor(-1.75)"),
    ("reinforce_loss", rl_always_baseline, "baseline 'none'", "expected tensor(0.375), got tensor(-0.4375)"),
    ("reinforce_loss", rl_std_normalised, "a batch of one", "got NaN"),
]


@pytest.mark.parametrize("name, wrong, failing_case, says", WRONG)
def test_checks_reject_known_bugs(name, wrong, failing_case, says):
    assert not run_exercise(EX[name], wrong).passed
    result = run_exercise(_only(name, failing_case), wrong)  # the named case catches it on its own
    assert result.status == "failed" and failing_case in result.message, result.message
    assert says in result.message, result.message


def test_every_exercise_has_a_batch_of_one_and_hints():
    for exercise in EX.values():
        cases = exercise.make_cases()
        assert any("batch of one" in c.label for c in cases), exercise.name
        assert all(c.hint for c in cases), exercise.name
        labels = [c.label for c in cases]
        assert len(set(labels)) == len(labels), exercise.name


def test_the_bf16_case_needs_the_upcast():
    """The bf16 case's logits give log-probs that bf16 arithmetic gets wrong by more than 1e-3."""
    case = next(c for c in EX["next_token_logps"].make_cases() if c.label.startswith("bf16 logits"))
    logits, ids = case.inputs["logits"], case.inputs["input_ids"]
    assert logits.dtype == torch.bfloat16
    exact = logprobs.next_token_logps(logits, ids)
    assert exact.dtype == torch.float32
    assert (ntl_upcasts_too_late(logits, ids) - exact).abs().max() > 1e-3


def test_the_sampler_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    run_exercise(EX["sample_next_token"], samp_global_rng)
    run_exercise(EX["sample_next_token"], sampling.sample_next_token)
    assert torch.equal(torch.get_rng_state(), before)


def test_unattempted_stub_is_reported_not_failed():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for exercise in EX.values():
        assert run_exercise(exercise, stub).status == "not attempted", exercise.name
