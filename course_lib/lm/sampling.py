"""Sampling G completions per prompt from a causal LM, with a KV cache (lesson 04; used by GRPO, PPO-RLHF).

:func:`sample` is a plain decoding loop, short enough to read next to the algorithm: left-pad the
prompts, run them once to fill the KV cache, then feed one new token per step with its position id,
divide the last logits by the temperature, draw the next token (or take the argmax), and stop once
every row has emitted EOS. With ``greedy=True`` it gives exactly what ``model.generate(do_sample=
False)`` gives; sampled tokens follow softmax(logits / T) with no top-k or top-p (``generate``'s
default top_k=50 is a different distribution). The tests check both against ``generate``.

Rows are prompt-major, as in TRL's GRPO: rows ``0 .. G−1`` are the G completions of prompt 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_lib import distributions
from course_lib.lm.logprobs import position_ids_from_mask
from course_lib.lm.model import check_compatible, context_length

__all__ = ["Completions", "completion_mask_from_ids", "sample_next_token", "sample"]


@dataclass(frozen=True)
class Completions:
    """A batch of sampled completions and the prompts they continue; B = num_prompts × G rows."""

    prompt_ids: torch.Tensor
    """``(B, P)`` int64 prompt tokens, left-padded with the tokenizer's pad id."""
    prompt_mask: torch.Tensor
    """``(B, P)`` int64, 1 on real prompt tokens, 0 on the left padding."""
    completion_ids: torch.Tensor
    """``(B, C)`` int64 sampled tokens; after a row's first EOS, the pad id."""
    completion_mask: torch.Tensor
    """``(B, C)`` int64, 1 on completion tokens up to and including the first EOS, 0 after it."""
    prompt_index: torch.Tensor
    """``(B,)`` int64, which prompt of the input list each row continues."""
    texts: list[str]
    """The B decoded completions, cut before the first EOS (special tokens sampled earlier are kept)."""
    num_generations: int
    """G, the number of completions per prompt."""

    @property
    def input_ids(self) -> torch.Tensor:
        """``(B, P + C)`` prompt then completion, what a log-prob forward takes."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``(B, P + C)`` prompt mask then completion mask."""
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)

    @property
    def logits_to_keep(self) -> int:
        """C, the number of completion positions (for :func:`course_lib.lm.logprobs.per_token_logps`)."""
        return self.completion_ids.shape[1]


def completion_mask_from_ids(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 on each row's tokens up to and including its first EOS, 0 after; all 1 in a row with no EOS.

    Shapes: completion_ids ``(B, C)`` → int64 ``(B, C)``. Found from the position of the first EOS,
    never from ``ids != pad_id``: when pad == eos that would drop the EOS itself, and the model would
    never be taught to stop (bug catalogue #19).
    """
    if not isinstance(completion_ids, torch.Tensor) or completion_ids.dim() != 2:
        raise ValueError(f"completion_ids must be a 2-D torch.Tensor (B, C), got "
                         f"{getattr(completion_ids, 'shape', type(completion_ids))}")
    is_eos = completion_ids == eos_token_id  # (B, C)
    length = completion_ids.shape[1]
    first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), length)  # (B,); C when none
    positions = torch.arange(length, device=completion_ids.device)  # (C,)
    return (positions.unsqueeze(0) <= first_eos.unsqueeze(1)).long()  # (B, C)


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
                      greedy: bool = False) -> torch.Tensor:
    """One next token per row: a draw from softmax(logits / temperature), or the argmax if ``greedy``.

    Shapes: logits ``(B, V)`` (any float dtype; computed in fp32) → int64 ``(B,)``. The draw uses
    ``torch.multinomial`` with ``generator`` only (the global random state is untouched when a
    generator is given). The temperature must be the one the log-probs are later computed with.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a 2-D torch.Tensor (B, V), got {getattr(logits, 'shape', type(logits))}")
    logits = logits.float()
    if greedy:
        return logits.argmax(dim=-1)  # (B,)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a positive finite number (or pass greedy=True), got {temperature!r}")
    return distributions.sample_actions(logits / temperature, generator=generator)  # (B,)


def _check_sampling_args(prompts: list[str], num_generations: int, max_new_tokens: int, temperature: float,
                         greedy: bool) -> None:
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a non-empty list of str, got {prompts!r:.80}")
    for name, value in (("num_generations", num_generations), ("max_new_tokens", max_new_tokens)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not greedy and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                       or not 0 < temperature < math.inf):
        raise ValueError(f"temperature must be a positive finite number (or pass greedy=True), got {temperature!r}")


def _encode_prompts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                    max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``input_ids, attention_mask`` ``(num_prompts, P)``; checks every prompt fits the context."""
    encoded = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    lengths = encoded["attention_mask"].sum(dim=1)  # (num_prompts,)
    if (lengths == 0).any():
        raise ValueError(f"prompt {prompts[int(lengths.argmin())]!r} encodes to no tokens: the model needs at least "
                         f"one token to continue (start prompts with the tokenizer's bos_token)")
    limit = context_length(model)
    longest = int(lengths.argmax())
    if int(lengths[longest]) + max_new_tokens > limit:
        raise ValueError(f"the longest prompt {prompts[longest]!r} has {int(lengths[longest])} tokens, and with "
                         f"max_new_tokens={max_new_tokens} that exceeds the model's context of {limit} positions")
    return encoded["input_ids"].long(), encoded["attention_mask"].long()


@torch.no_grad()
def sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
           num_generations: int = 1, max_new_tokens: int, temperature: float = 1.0, greedy: bool = False,
           generator: torch.Generator | None = None) -> Completions:
    """Sample ``num_generations`` completions of at most ``max_new_tokens`` tokens for every prompt.

    Returns :class:`Completions` with ``B = len(prompts) * num_generations`` prompt-major rows and
    ``C <= max_new_tokens`` columns (the loop stops early once every row has emitted EOS). Each
    token is drawn from softmax(logits / temperature) with ``torch.multinomial`` and ``generator``
    (a seeded generator on the model's device makes the samples reproducible, and leaves torch's
    global random state alone); ``greedy=True`` takes the argmax and ignores the temperature. The
    model is used as it is (call ``model.eval()`` first if it has dropout) and the results live on
    the model's device. Raises ``ValueError`` for an empty prompt
    list, a prompt that does not fit the context with ``max_new_tokens``, ``num_generations < 1``, a
    non-positive temperature without ``greedy``, or a tokenizer the model cannot embed.
    """
    _check_sampling_args(prompts, num_generations, max_new_tokens, temperature, greedy)
    check_compatible(model, tokenizer)
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    prompt_ids, prompt_mask = _encode_prompts(model, tokenizer, prompts, max_new_tokens)
    prompt_index = torch.arange(len(prompts)).repeat_interleave(num_generations)  # (B,) prompt-major
    prompt_ids, prompt_mask = prompt_ids[prompt_index].to(device), prompt_mask[prompt_index].to(device)
    batch_size = prompt_ids.shape[0]

    # Prefill: one forward over the prompts fills the KV cache; positions start at each row's first token.
    positions = position_ids_from_mask(prompt_mask)  # (B, P)
    attention_mask = prompt_mask
    outputs = model(input_ids=prompt_ids, attention_mask=attention_mask, position_ids=positions,
                    use_cache=True, logits_to_keep=1)
    next_position = positions[:, -1:] + 1  # (B, 1)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    new_tokens = []
    for step in range(max_new_tokens):
        tokens = sample_next_token(outputs.logits[:, -1, :], temperature, generator, greedy=greedy)  # (B,)
        tokens = tokens.masked_fill(finished, pad_id)  # rows that already stopped get padding
        new_tokens.append(tokens)
        finished |= tokens == eos_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        # Decode: feed only the new token; the cache holds the keys and values of everything before.
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch_size, 1)], dim=1)  # (B, P + step + 1)
        outputs = model(input_ids=tokens.unsqueeze(1), attention_mask=attention_mask, position_ids=next_position,
                        cache=outputs.cache, use_cache=True)
        next_position = next_position + 1

    completion_ids = torch.stack(new_tokens, dim=1)  # (B, C)
    completion_mask = completion_mask_from_ids(completion_ids, eos_id)  # (B, C)
    lengths = (completion_mask.sum(dim=1) - (completion_ids == eos_id).any(dim=1).long()).tolist()  # before EOS
    texts = [tokenizer.decode(row[:n].tolist()) for row, n in zip(completion_ids, lengths, strict=True)]
    return Completions(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                       completion_mask=completion_mask, prompt_index=prompt_index.to(device), texts=texts,
                       num_generations=num_generations)
