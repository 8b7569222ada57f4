"""Per-token log-probabilities of completions under a causal LM (lesson 04; used by DPO, GRPO, PPO-RLHF).

The plumbing of algorithms.md §10, in TRL's names and shapes:

* :func:`position_ids_from_mask`: positions that start at 0 on each row's first real token, as
  ``generate`` builds them. GPT-2's position embeddings are absolute, so a left-padded forward
  without them scores a row differently from the same row alone (bug catalogue #26).
* :func:`token_logps_from_logits`: log_softmax in fp32, then gather the label (never log of softmax).
* :func:`per_token_logps`: one forward over prompt + completion, the logits at t scoring token t+1,
  divided by the sampling temperature, for the last ``logits_to_keep`` tokens (TRL
  ``GRPOTrainer._get_per_token_logps_and_entropies``).
* :func:`sequence_logps`: the masked sum (DPO's ``chosen_logps``) or mean over completion tokens.

The naive equivalent of :func:`per_token_logps`, which the tests use as the reference: run the model
on one unpadded row ``prompt + completion[:i]`` at a time and take log_softmax(logits[-1] / T)
at ``completion[i]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch

from course_lib import distributions

__all__ = ["next_token_logps", "position_ids_from_mask", "token_logps_from_logits", "per_token_logps", "sequence_logps"]


def _check_2d(name: str, tensor: Any) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        raise ValueError(f"{name} must be a 2-D torch.Tensor (B, T), got {getattr(tensor, 'shape', type(tensor))}")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: it needs at least one row")


def _check_mask(name: str, mask: Any, like_name: str, like: torch.Tensor) -> None:
    """``mask`` must have the shape of ``like`` and hold only 0s and 1s (int, bool or float)."""
    if not isinstance(mask, torch.Tensor) or mask.shape != like.shape:
        raise ValueError(f"{name} must have the shape of {like_name} {tuple(like.shape)}, "
                         f"got {tuple(getattr(mask, 'shape', ())) or type(mask).__name__}")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{name} must hold only 0s and 1s")


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token among its row's real tokens: cumsum(mask) − 1, and 0 on padding.

    Shapes: attention_mask ``(B, T)`` of 0/1 → int64 ``(B, T)``. A left-padded row ``[pad, pad, a, b]``
    gets ``[0, 0, 0, 1]``, the positions ``a, b`` have when run alone; this is what ``generate``
    computes (``_prepare_position_ids_for_generation``).
    """
    _check_2d("attention_mask", attention_mask)
    mask = attention_mask.long()
    return (mask.cumsum(dim=-1) - 1).masked_fill(mask == 0, 0)  # (B, T)


def token_logps_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) under each row of logits: fp32 log_softmax over V, then gather the label id.

    Shapes: logits ``(B, T, V)`` (any float dtype; bf16/fp16 are upcast first, algorithms.md
    §10.1), labels ``(B, T)`` integer → fp32 ``(B, T)``. No shift happens here: ``logits[:, t]``
    scores ``labels[:, t]``; :func:`per_token_logps` aligns them.
    Naive equivalent: ``torch.log_softmax(logits[b, t].double(), -1)[labels[b, t]]`` for every b, t.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError(f"logits must be a 3-D torch.Tensor (B, T, V), got {getattr(logits, 'shape', type(logits))}")
    return distributions.log_prob_of_actions(logits.float(), labels)  # (B, T)


def next_token_logps(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log π(input_ids[:, t+1] | input_ids[:, :t+1]) for every t: the shift, the temperature and the gather.

    Shapes: logits ``(B, L, V)`` of a forward over input_ids ``(B, L)`` → fp32 ``(B, L−1)``. The
    logits at position t score the token at t+1, so ``logits[:, :-1]`` goes with ``input_ids[:, 1:]``;
    the logits are divided by ``temperature`` (the one used when sampling) and log-softmaxed in fp32.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError(f"logits must be a 3-D torch.Tensor (B, L, V), got {getattr(logits, 'shape', type(logits))}")
    _check_2d("input_ids", input_ids)
    if input_ids.shape != logits.shape[:2] or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be (B, L) with L >= 2 and match logits (B, L, V); got input_ids "
                         f"{tuple(input_ids.shape)} and logits {tuple(logits.shape)}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return token_logps_from_logits(logits[:, :-1].float() / temperature, input_ids[:, 1:])  # (B, L−1)


def per_token_logps(model: Callable[..., Any], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    logits_to_keep: int, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of the last ``logits_to_keep`` tokens of each row (the completion) under ``model``.

    Shapes: input_ids ``(B, L)`` = prompt (left-padded) + completion, attention_mask ``(B, L)``,
    ``C = logits_to_keep`` with ``1 <= C < L`` → fp32 ``(B, C)``, keeping the graph (wrap the call
    in ``torch.no_grad()`` for old or reference log-probs). Entry ``[b, i]`` is
    log π(input_ids[b, L−C+i] | input_ids[b, :L−C+i]), computed from the logits one position
    earlier (the logits at t score token t+1), divided by ``temperature`` as at sampling time
    (algorithms.md §10.5). Position ids come from the attention mask, so padding changes nothing.
    Entries at padded completion positions are computed but meaningless: mask them with the
    ``completion_mask``.
    """
    _check_2d("input_ids", input_ids)
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    _check_mask("attention_mask", attention_mask, "input_ids", input_ids)
    length = input_ids.shape[1]
    if not isinstance(logits_to_keep, int) or isinstance(logits_to_keep, bool) or not 1 <= logits_to_keep < length:
        raise ValueError(f"logits_to_keep must be an int in [1, {length - 1}] (at least one prompt token scores the "
                         f"first completion token), got {logits_to_keep!r} for input_ids of length {length}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    outputs = model(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids_from_mask(attention_mask),
                    logits_to_keep=logits_to_keep + 1, use_cache=False)
    return next_token_logps(outputs.logits, input_ids[:, -(logits_to_keep + 1):], temperature)  # (B, C)


def sequence_logps(per_token_logps: torch.Tensor, completion_mask: torch.Tensor,
                   reduction: Literal["sum", "mean"] = "sum") -> torch.Tensor:
    """Reduce token log-probs over each completion's real tokens: masked sum or masked mean.

    Shapes: per_token_logps ``(B, C)`` float, completion_mask ``(B, C)`` of 0/1 → ``(B,)``.
    ``"sum"`` is log π(completion | prompt), what DPO compares (``chosen_logps``); ``"mean"``
    divides by the number of real tokens (a row with none gives 0). Tokens where the mask is 0
    (after the first EOS, padding) contribute nothing, whatever their value, and get no gradient.
    """
    _check_2d("per_token_logps", per_token_logps)
    if not per_token_logps.is_floating_point():
        raise ValueError(f"per_token_logps must be floating point, got dtype {per_token_logps.dtype}")
    _check_mask("completion_mask", completion_mask, "per_token_logps", per_token_logps)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    mask = completion_mask.to(per_token_logps.dtype)
    # where, not multiply: a -inf log-prob behind the mask must give 0, not 0 * -inf = NaN.
    total = torch.where(mask.bool(), per_token_logps, torch.zeros_like(per_token_logps)).sum(dim=-1)  # (B,)
    if reduction == "sum":
        return total
    return total / mask.sum(dim=-1).clamp(min=1.0)
