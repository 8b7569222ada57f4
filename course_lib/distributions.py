"""Categorical policies from logits: log-probabilities, sampling and entropy (lesson 00).

The same three functions serve a CartPole policy (logits of shape ``(B, A)``, one row per state)
and a language model (logits of shape ``(B, T, V)``, one row per token position), so they accept
any number of leading dimensions ``...``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["log_prob_of_actions", "sample_actions", "categorical_entropy"]


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last dimension of size >= 1 (the actions), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")


def log_prob_of_actions(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a|s) of the chosen actions, computed stably with ``log_softmax`` + ``gather``.

    Shapes: logits ``(..., A)``, actions ``(...)`` integer → returns ``(...)`` in the logits' dtype.
    ``log(softmax(x))`` is avoided on purpose: softmax underflows to 0 for very negative logits and
    its log becomes ``-inf`` (and its gradient NaN), while ``log_softmax`` stays finite.
    """
    _check_logits(logits)
    if not isinstance(actions, torch.Tensor) or actions.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"actions must be an integer torch.Tensor, got {getattr(actions, 'dtype', type(actions))}")
    if tuple(actions.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"actions must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, got {tuple(actions.shape)}")
    if actions.numel() and (actions.min() < 0 or actions.max() >= logits.shape[-1]):
        raise ValueError(f"actions must lie in [0, {logits.shape[-1] - 1}], got values from {int(actions.min())} to {int(actions.max())}")
    log_probs = F.log_softmax(logits, dim=-1)  # (..., A)
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # (...)


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one action per row from the categorical distribution softmax(logits).

    Shapes: logits ``(..., A)`` → int64 actions ``(...)``. Passing a seeded ``torch.Generator``
    makes the samples reproducible without touching torch's global random state.
    """
    _check_logits(logits)
    probs = F.softmax(logits.detach().float(), dim=-1).reshape(-1, logits.shape[-1])  # (N, A)
    samples = torch.multinomial(probs, num_samples=1, generator=generator)  # (N, 1)
    return samples.reshape(logits.shape[:-1])


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy H = -Σ_a π(a) log π(a) of each row, in nats.

    Shapes: logits ``(..., A)`` → ``(...)``. Actions with probability 0 (logit ``-inf``, or far below
    the others) contribute 0, as the limit p·log p → 0 says, instead of ``0 * -inf = NaN``.
    """
    _check_logits(logits)
    log_probs = F.log_softmax(logits, dim=-1)  # (..., A)
    probs = log_probs.exp()
    # log 0 = -inf becomes 0 where p = 0 exactly: the term is 0 · 0 = 0, and its gradient is 0 too
    # (clamping -inf to the most negative float instead overflows to NaN in the backward pass).
    safe_log_probs = torch.where(torch.isinf(log_probs), torch.zeros_like(log_probs), log_probs)
    return -(probs * safe_log_probs).sum(dim=-1)  # (...)
