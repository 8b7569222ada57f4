"""PPO for RLHF on a language model: KL-penalised per-token rewards, token GAE and a critic (lesson 05).

The InstructGPT / Ziegler et al. recipe as TRL's (now removed) ``PPOTrainer`` ran it, algorithms.md §7.
An episode is one completion: the state is the prompt plus the tokens so far, an action is the next
token, and the episode ends at the EOS (or the length cap). Per token t of a completion of a prompt x:

    r_t = −β · kl_t  (+ score(x, y) at the last real token),   kl_t = log π_old(y_t) − log π_ref(y_t)

(the k1 estimate; β = ``kl_coef``), then GAE over the tokens with γ = 1, λ = 0.95 and a critic V,
advantages whitened over the batch's real tokens, and Part I's clipped surrogate and value loss,
averaged over completion tokens only. The pieces:

* :func:`per_token_rewards`, :func:`masked_mean`, :func:`masked_var`, :func:`masked_whiten`;
* :func:`token_gae`: Part I's :func:`course_lib.estimators.gae` on the transposed (C, B) tokens,
  ``terminated`` at each row's last real token (nothing is bootstrapped after the EOS);
* :func:`masked_clip_loss`, :func:`masked_value_loss`: the Part I losses over the completion mask;
* :class:`ValueHead`, :func:`make_value_model`, :func:`completion_values`: the critic;
* :class:`PPORLHFConfig`, :func:`make_optimizer`, :func:`collect_rollout`, :func:`ppo_update`,
  :func:`train_ppo_rlhf`.

Shapes: B completions (rows, prompt-major as the sampler gives them), C completion positions,
L = P + C prompt and completion tokens. ``completion_mask`` is 1 on each row's tokens up to and
including its first EOS and 0 after (a prefix of the row), as :func:`~course_lib.lm.sampling.sample`
builds it. Every log-prob divides the logits by the sampling temperature (§10.5).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_lib import estimators, runtime, training
from course_lib.lm.evaluation import evaluate, model_prompts
from course_lib.lm.logprobs import per_token_logps, position_ids_from_mask
from course_lib.lm.model import check_compatible
from course_lib.lm.sampling import Completions, sample
from course_lib.lm.tasks import Task, check_rewards

__all__ = ["per_token_rewards", "masked_mean", "masked_var", "masked_whiten", "token_gae", "masked_clip_loss",
           "masked_value_loss", "ValueHead", "make_value_model", "completion_values", "PPORLHFConfig",
           "make_optimizer", "PPORollout", "collect_rollout", "ppo_update", "train_ppo_rlhf"]

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
"""``reward_fn(prompts, completions) -> one score per completion``: a task's rule or a reward model."""


# --- checks ------------------------------------------------------------------------------------------


def _check_tokens(**tensors: Any) -> torch.Tensor:
    """Floating-point ``(B, C)`` tensors of one shape, B, C >= 1; returns the first."""
    first_name, first = next(iter(tensors.items()))
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.dim() != 2:
            raise ValueError(f"{name} must be a 2-D floating-point tensor (B, C), got "
                             f"{getattr(tensor, 'dtype', type(tensor).__name__)} {tuple(getattr(tensor, 'shape', ()))}")
        if tensor.numel() == 0:
            raise ValueError(f"{name} is empty: it needs at least one completion token")
        if tensor.shape != first.shape:
            raise ValueError(f"{name} must have the shape of {first_name} {tuple(first.shape)}, got {tuple(tensor.shape)}")
    return first


def _check_mask(mask: Any, like: torch.Tensor, name: str = "completion_mask", prefix: bool = False) -> torch.Tensor:
    """``mask`` as bool ``(B, C)``; with ``prefix``, each row must be 1s then 0s with at least one 1."""
    if not isinstance(mask, torch.Tensor) or mask.shape != like.shape:
        raise ValueError(f"{name} must be a tensor of shape {tuple(like.shape)}, got {tuple(getattr(mask, 'shape', ()))}")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{name} must hold only 0s and 1s")
    mask = mask.bool()
    if prefix:
        empty = ~mask.any(dim=1)
        if empty.any():
            raise ValueError(f"{name} row {int(empty.nonzero()[0])} has no completion token")
        gaps = (mask[:, 1:] & ~mask[:, :-1]).any(dim=1)
        if gaps.any():
            raise ValueError(f"{name} row {int(gaps.nonzero()[0])} is not 1s followed by 0s (a real token after padding)")
    return mask


def _check_number(name: str, value: Any, low: float = 0.0) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")


def _check_clip(value: Any, name: str = "clip_coef") -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, ``(B,)`` int64, for a prefix mask."""
    return mask.long().sum(dim=1) - 1


# --- rewards, whitening, advantages -------------------------------------------------------------------


def per_token_rewards(scores: torch.Tensor, per_token_logps: torch.Tensor, ref_per_token_logps: torch.Tensor,
                      completion_mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-token reward r_t = −β·kl_t, plus the score at each row's last real completion token.

    Shapes: scores ``(B,)``, per_token_logps and ref_per_token_logps ``(B, C)`` (the rollout policy's
    and the reference's log-probs, both computed without gradient), completion_mask ``(B, C)`` →
    ``(rewards, kl)``, both ``(B, C)`` and 0 on padding. kl_t = log π_old − log π_ref is the k1
    estimate (TRL's default, InstructGPT); its row sum is the sampled KL of the completion. The last
    real token is found from the mask (the EOS, or the last token of a completion cut at the length
    cap). Raises ``ValueError`` for kl_coef < 0 and for a non-finite score, naming its row.
    """
    logps = _check_tokens(per_token_logps=per_token_logps, ref_per_token_logps=ref_per_token_logps)
    mask = _check_mask(completion_mask, logps, prefix=True)
    _check_number("kl_coef", kl_coef)
    if not isinstance(scores, torch.Tensor) or scores.shape != logps.shape[:1]:
        raise ValueError(f"scores must be a tensor of shape ({logps.shape[0]},), one per row, got "
                         f"{tuple(getattr(scores, 'shape', ())) or type(scores).__name__}")
    bad = ~torch.isfinite(scores)
    if bad.any():
        row = int(bad.nonzero()[0])
        raise ValueError(f"scores[{row}] is {float(scores[row])}: every score must be finite")
    kl = torch.where(mask, (per_token_logps - ref_per_token_logps).detach(), 0.0)  # (B, C)
    rewards = -kl_coef * kl
    rows = torch.arange(logps.shape[0], device=logps.device)
    rewards[rows, _last_index(mask)] += scores.detach().to(rewards.dtype)
    return rewards, kl


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1 (all of them, or along ``dim``).

    Shapes: values and mask the same shape → scalar, or the shape without ``dim``. Entries behind
    the mask are ignored whatever they hold (NaN included). Raises ``ValueError`` if no entry (or a
    slice along ``dim``) is unmasked.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise ValueError(f"values must be a floating-point tensor, got {getattr(values, 'dtype', type(values).__name__)}")
    mask = _check_mask(mask, values, "mask")
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    if (count == 0).any():
        raise ValueError("mask has no 1 entry to average over" + ("" if dim is None else f" in some slice along dim {dim}"))
    total = torch.where(mask, values, 0.0)
    return (total.sum() if dim is None else total.sum(dim=dim)) / count


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the unmasked entries (scalar); ``unbiased`` multiplies by n/(n − 1) (TRL, torch)."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.bool().sum()
        if count < 2:
            raise ValueError("the unbiased variance needs at least 2 unmasked entries")
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values − mean) / sqrt(var + 1e-8) with the mean and unbiased var of the unmasked entries only.

    Shapes: values ``(B, C)`` (any shape), mask the same → the same shape, 0 on masked entries.
    ``shift_mean=False`` adds the mean back (scale only, as TRL does for rewards). As TRL's
    ``masked_whiten``, except that masked entries come back 0 (TRL's trainer zeroes them next).
    """
    bool_mask = _check_mask(mask, values, "mask")
    mean, var = masked_mean(values, bool_mask), masked_var(values, bool_mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(bool_mask, whitened, 0.0)


def token_gae(rewards: torch.Tensor, values: torch.Tensor, completion_mask: torch.Tensor, gamma: float = 1.0,
              lam: float = 0.95, whiten: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over completion tokens: ``(advantages, returns)``, both ``(B, C)`` and 0 on padding.

    Shapes: rewards ``(B, C)`` from :func:`per_token_rewards`, values ``(B, C)`` (V of the state
    before each token, :func:`completion_values`), completion_mask ``(B, C)``. Calls
    :func:`course_lib.estimators.gae` on the time-major ``(C, B)`` transposes, each row an
    environment, with ``terminated`` at the row's last real token: V after it is 0 and the λ-chain
    stops there, so nothing behind the EOS reaches an earlier token (rewards and values on padding
    are ignored). returns = Â + V before whitening; ``whiten`` whitens the advantages over the
    mask (:func:`masked_whiten`).
    """
    _check_tokens(rewards=rewards, values=values)
    mask = _check_mask(completion_mask, rewards, prefix=True)
    rewards_t = torch.where(mask, rewards, 0.0).T  # (C, B)
    values_t = torch.where(mask, values.detach(), 0.0).T  # (C, B)
    next_values = torch.cat([values_t[1:], torch.zeros_like(values_t[:1])])  # (C, B)
    terminated = torch.zeros_like(rewards_t, dtype=torch.bool)
    terminated[_last_index(mask), torch.arange(rewards.shape[0], device=rewards.device)] = True
    advantages, returns = estimators.gae(rewards_t, values_t, next_values, terminated,
                                         torch.zeros_like(terminated), gamma, lam)
    advantages, returns = torch.where(mask, advantages.T, 0.0), torch.where(mask, returns.T, 0.0)
    return (masked_whiten(advantages, mask) if whiten else advantages), returns


# --- losses ------------------------------------------------------------------------------------------


def masked_clip_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                     clip_coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """−masked mean of min(r·Â, clip(r, 1−ε, 1+ε)·Â), r = exp(logp − logp_old), over completion tokens.

    Shapes: logp ``(B, C)`` (with grad), logp_old and advantages ``(B, C)``, mask ``(B, C)`` → scalar
    and ``{"approx_kl", "clipfrac"}``: the k3 estimate mean((r − 1) − log r) and mean(|r − 1| > ε),
    both over the mask. Every real token of the minibatch weighs the same (TRL's ``masked_mean``);
    masked positions get no gradient. Equal to Part I's ``ppo_clip_loss`` on the unmasked tokens.
    """
    _check_tokens(logp=logp, logp_old=logp_old, advantages=advantages)
    mask = _check_mask(mask, logp, "mask")
    _check_clip(clip_coef)
    logratio = torch.where(mask, logp - logp_old.detach(), 0.0)  # 0 behind the mask: no inf, no gradient
    ratio = logratio.exp()  # (B, C)
    advantages = advantages.detach()
    objective = torch.min(ratio * advantages, ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages)
    loss = -masked_mean(objective, mask)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - logratio, mask)
        clipfrac = masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask)
    return loss, {"approx_kl": float(approx_kl), "clipfrac": float(clipfrac)}


def masked_value_loss(values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                      clip_coef: float | None = None) -> torch.Tensor:
    """½ masked mean of (V − R)², or with ``clip_coef`` ½ masked mean of max((V − R)², (V_clip − R)²).

    Shapes: values ``(B, C)`` (with grad), values_old ``(B, C)`` (V at rollout time), returns
    ``(B, C)``, mask ``(B, C)`` → scalar. V_clip = V_old + clip(V − V_old, −ε, ε), as Part I's
    ``ppo_value_loss`` (and TRL's ``cliprange_value``), which it equals on the unmasked tokens.
    """
    _check_tokens(values=values, values_old=values_old, returns=returns)
    mask = _check_mask(mask, values, "mask")
    returns = returns.detach()
    errors = (values - returns) ** 2
    if clip_coef is not None:
        _check_number("clip_coef", clip_coef)
        if clip_coef == 0:
            raise ValueError("clip_coef must be a positive number or None, got 0")
        clipped = values_old.detach() + (values - values_old.detach()).clamp(-clip_coef, clip_coef)
        errors = torch.max(errors, (clipped - returns) ** 2)
    return 0.5 * masked_mean(errors, mask)


# --- the critic ---------------------------------------------------------------------------------------


class ValueHead(nn.Module):
    """A critic V(s): a transformer body and a linear head reading a scalar at every position.

    Why a separate critic and not a value head on the policy's own body: the policy's gradient
    then comes from the policy loss alone (a shared body would also be pulled by the value loss,
    whose scale differs and changes as V learns, and vf_coef would trade one against the other),
    the two can be clipped and inspected separately, and it mirrors Part I's separate actor and
    critic. The cost is a second body: one more forward and backward per minibatch, and its
    parameters and Adam state in memory (:mod:`course_lib.memory` measures it). The body starts
    as a copy of the SFT model's (:func:`make_value_model`), features that already read the task's
    prompts (a reward model's body is the other usual start); the head starts at 0, so V ≡ 0 at
    first (the "zero-init" of algorithms.md §7).

    ``forward(input_ids (B, L), attention_mask (B, L)) -> values (B, L)``: ``values[:, t]`` is V of
    the state made of the tokens up to and including t, read from the hidden state at t. Position
    ids come from the attention mask (left-padded prompts, as the policy sees them).
    """

    def __init__(self, body: nn.Module, hidden_size: int | None = None) -> None:
        super().__init__()
        hidden_size = hidden_size if hidden_size is not None else getattr(getattr(body, "config", None), "n_embd", None)
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError("hidden_size must be a positive int (or the body must have config.n_embd)")
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=position_ids_from_mask(attention_mask), use_cache=False).last_hidden_state
        return self.head(hidden).squeeze(-1)  # (B, L)


def make_value_model(policy: PreTrainedModel) -> ValueHead:
    """A critic whose body is a trainable copy of ``policy``'s transformer body (not its LM head)."""
    body = copy.deepcopy(policy.base_model)
    body.requires_grad_(True)
    return ValueHead(body, policy.config.hidden_size).to(policy.device)


def completion_values(value_model: Callable[..., torch.Tensor], input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """V of the state before each of the last ``logits_to_keep`` tokens: ``(B, L)`` inputs → ``(B, C)``.

    Entry ``[b, i]`` reads position L − C − 1 + i, the last token before completion token i (the
    state the token was chosen in), exactly as the log-prob of token i is read from the logits
    one position earlier (TRL slices ``values[:, context_length − 1 : −1]``).
    """
    length = input_ids.shape[1]
    if not isinstance(logits_to_keep, int) or not 1 <= logits_to_keep < length:
        raise ValueError(f"logits_to_keep must be an int in [1, {length - 1}], got {logits_to_keep!r}")
    values = value_model(input_ids, attention_mask)  # (B, L)
    return values[:, length - logits_to_keep - 1:length - 1].float()  # (B, C)


# --- training -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PPORLHFConfig:
    """Settings of :func:`train_ppo_rlhf`. Defaults tuned on the addition base model (see the function)."""

    steps: int = 250
    """Rollouts, each followed by ``ppo_epochs`` passes of updates."""
    prompts_per_step: int = 16
    num_generations: int = 4
    """Completions sampled per prompt; a rollout has B = prompts_per_step × num_generations rows."""
    ppo_epochs: int = 2
    """Passes over each rollout (TRL ``num_ppo_epochs``, 4 there)."""
    num_minibatches: int = 2
    """Minibatches of rows per pass (TRL ``num_mini_batches``); must divide B."""
    learning_rate: float = 2e-4
    """AdamW (no weight decay) learning rate of the policy and the critic at the first step."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly towards 0 over ``steps`` (TRL's linear schedule, Part I's ``anneal_lr``)."""
    kl_coef: float = 0.05
    """β of the per-token KL penalty (TRL's default 0.05)."""
    clip_coef: float = 0.2
    """ε of the clipped surrogate (TRL ``cliprange``)."""
    clip_vloss: bool = False
    """Clip the value loss around the rollout values with ``clip_coef`` (TRL clips, by 0.2; off, as Part I)."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss (TRL's 0.1): see :func:`make_optimizer`."""
    gamma: float = 1.0
    """Discount over tokens (1: the score counts for every token in full)."""
    gae_lambda: float = 0.95
    """GAE λ over tokens (TRL ``lam``; the course's one name for it is ``gae_lambda``)."""
    whiten_advantages: bool = True
    """Whiten the advantages over the real tokens of the whole rollout (TRL)."""
    temperature: float = 0.7
    """Sampling temperature (TRL's 0.7), used again in every log-prob (rollout, reference, update)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip, applied to the policy and to the critic separately."""
    eval_every: int = 25
    eval_examples: int = 200
    """Greedy held-out accuracy on the first ``eval_examples`` test problems every ``eval_every`` steps."""

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.num_generations

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("steps", "prompts_per_step", "num_generations", "ppo_epochs", "num_minibatches",
                     "eval_every", "eval_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PPORLHFConfig.{name} must be an int >= 1, got {value!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"PPORLHFConfig.num_minibatches={self.num_minibatches} must divide the "
                             f"{self.batch_size} rows of a rollout (prompts_per_step x num_generations)")
        for name in ("learning_rate", "temperature", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                raise ValueError(f"PPORLHFConfig.{name} must be a positive number, got {value!r}")
        for name in ("kl_coef", "vf_coef"):
            _check_number(f"PPORLHFConfig.{name}", getattr(self, name))
        _check_clip(self.clip_coef, "PPORLHFConfig.clip_coef")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"PPORLHFConfig.{name} must be a number in [0, 1], got {value!r}")


def make_optimizer(policy: nn.Module, value_model: nn.Module, config: PPORLHFConfig) -> torch.optim.Optimizer:
    """One AdamW (no weight decay) with two parameter groups: the policy's, then the critic's.

    One optimizer and one total loss pg + vf_coef·vf, as TRL and Part I. The critic shares no
    parameter with the policy, so each term reaches only its own model; gradient norms are clipped
    per model (:func:`ppo_update`), so a large critic gradient never shrinks the policy's step.
    Adam divides out a gradient's scale, so vf_coef mostly matters through the critic's clip.
    """
    return torch.optim.AdamW([{"params": list(policy.parameters())}, {"params": list(value_model.parameters())}],
                             lr=config.learning_rate, weight_decay=0.0)


@dataclass(frozen=True)
class PPORollout:
    """One rollout and what PPO computes from it, all ``(B, C)`` unless said (TRL's names in brackets)."""

    completions: Completions
    scores: torch.Tensor
    """``(B,)`` reward_fn's score of each completion."""
    logp_old: torch.Tensor
    """Rollout policy's token log-probs [logprobs]."""
    ref_per_token_logps: torch.Tensor
    """Reference's token log-probs [ref_logprobs]."""
    values: torch.Tensor
    """Critic's V of the state before each token, 0 on padding."""
    rewards: torch.Tensor
    kl: torch.Tensor
    """k1 per token, 0 on padding; ``kl.sum(1)`` is each completion's sampled KL."""
    advantages: torch.Tensor
    """Whitened if ``config.whiten_advantages``; 0 on padding."""
    returns: torch.Tensor


@torch.no_grad()
def collect_rollout(policy: PreTrainedModel, ref_policy: PreTrainedModel, value_model: nn.Module,
                    tokenizer: PreTrainedTokenizerBase, task: Task, prompts: list[str], reward_fn: RewardFn,
                    config: PPORLHFConfig, generator: torch.Generator | None = None, where: str = "rollout") -> PPORollout:
    """Sample ``num_generations`` completions of each task prompt, score them, and compute the
    rollout's log-probs, values, rewards, advantages and returns (all without gradient)."""
    batch = sample(policy, tokenizer, model_prompts(tokenizer, prompts), num_generations=config.num_generations,
                   max_new_tokens=task.max_completion_chars + 1, temperature=config.temperature, generator=generator)
    repeated = [prompts[i] for i in batch.prompt_index.tolist()]
    try:
        scores = check_rewards(reward_fn(repeated, batch.texts), len(repeated), "scores")
    except ValueError as err:
        raise ValueError(f"reward_fn at {where}: {err}") from None
    ids, attention, keep, mask = batch.input_ids, batch.attention_mask, batch.logits_to_keep, batch.completion_mask
    logp_old = per_token_logps(policy, ids, attention, keep, config.temperature)  # (B, C)
    ref_logps = per_token_logps(ref_policy, ids, attention, keep, config.temperature)  # (B, C)
    values = torch.where(mask.bool(), completion_values(value_model, ids, attention, keep), 0.0)  # (B, C)
    scores_t = torch.tensor(scores, dtype=logp_old.dtype, device=logp_old.device)  # (B,)
    rewards, kl = per_token_rewards(scores_t, logp_old, ref_logps, mask, config.kl_coef)
    advantages, returns = token_gae(rewards, values, mask, config.gamma, config.gae_lambda,
                                    whiten=config.whiten_advantages)
    return PPORollout(batch, scores_t, logp_old, ref_logps, values, rewards, kl, advantages, returns)


def ppo_update(policy: PreTrainedModel, value_model: nn.Module, optimizer: torch.optim.Optimizer,
               rollout: PPORollout, config: PPORLHFConfig, generator: torch.Generator | None = None,
               where: str = "update", policy_loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]] = masked_clip_loss,
               value_loss_fn: Callable[..., torch.Tensor] = masked_value_loss) -> dict[str, float]:
    """``ppo_epochs`` passes over the rollout's rows in shuffled minibatches; returns mean statistics.

    Each minibatch: the policy's token log-probs and the critic's values with gradient, loss =
    policy loss + vf_coef · value loss, ``training.ensure_finite`` on it and on both gradient norms
    (naming ``where``, the epoch and the minibatch), per-model gradient clipping, one AdamW step.
    ``first_ratio_error`` is max |r − 1| over the first minibatch's real tokens (must be ~0).
    """
    batch, mask = rollout.completions, rollout.completions.completion_mask
    if mask.shape[0] % config.num_minibatches:
        raise ValueError(f"num_minibatches={config.num_minibatches} must divide the rollout's {mask.shape[0]} rows")
    size = mask.shape[0] // config.num_minibatches
    policy_params, value_params = list(policy.parameters()), list(value_model.parameters())
    sums = {"loss/policy": 0.0, "loss/value": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
    count, ratio_error = 0, None
    for epoch in range(config.ppo_epochs):
        order = torch.randperm(mask.shape[0], generator=generator).to(mask.device)
        for k in range(config.num_minibatches):
            idx = order[k * size:(k + 1) * size]
            ids, attention = batch.input_ids[idx], batch.attention_mask[idx]
            logp = per_token_logps(policy, ids, attention, batch.logits_to_keep, config.temperature)  # (M, C)
            if ratio_error is None:
                ratio = (logp.detach() - rollout.logp_old[idx]).exp()
                ratio_error = float((ratio - 1).abs()[mask[idx].bool()].max())
            pg_loss, stats = policy_loss_fn(logp, rollout.logp_old[idx], rollout.advantages[idx], mask[idx],
                                            config.clip_coef)
            values = completion_values(value_model, ids, attention, batch.logits_to_keep)  # (M, C)
            vf_loss = value_loss_fn(values, rollout.values[idx], rollout.returns[idx], mask[idx],
                                    config.clip_coef if config.clip_vloss else None)
            loss = pg_loss + config.vf_coef * vf_loss
            at = f"{where}, epoch {epoch}, minibatch {k}"
            training.ensure_finite(loss, "PPO-RLHF loss", at)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for name, params in (("policy", policy_params), ("critic", value_params)):
                norm = nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                training.ensure_finite(norm, f"{name} gradient norm", at)
            optimizer.step()
            for key, value in (("loss/policy", pg_loss.item()), ("loss/value", vf_loss.item()),
                               ("approx_kl", stats["approx_kl"]), ("clipfrac", stats["clipfrac"])):
                sums[key] += value
            count += 1
    return {**{key: total / count for key, total in sums.items()}, "first_ratio_error": ratio_error}


def _clone(state: Any) -> Any:
    """A copy of a state dict's tensors (nested dicts and lists; other values are immutable)."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: _clone(value) for key, value in state.items()}
    return [_clone(value) for value in state] if isinstance(state, list) else state


def _snapshot(*objects: nn.Module | torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The state dicts of models and optimizers, copied (3 ms for the addition models; deepcopy: 19)."""
    return [_clone(obj.state_dict()) for obj in objects]


def _restore(snapshot: list[dict[str, Any]], *objects: nn.Module | torch.optim.Optimizer) -> None:
    for obj, state in zip(objects, snapshot, strict=True):
        obj.load_state_dict(state)


def train_ppo_rlhf(policy: PreTrainedModel, ref_policy: PreTrainedModel | None, reward_fn: RewardFn | None,
                   value_model: nn.Module | None, tokenizer: PreTrainedTokenizerBase, task: Task,
                   config: PPORLHFConfig = PPORLHFConfig(), *, seed: int = 0, history: training.History | None = None,
                   callback: Callable[[int, training.History], bool | None] | None = None, progress: bool = False,
                   policy_loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]] = masked_clip_loss,
                   value_loss_fn: Callable[..., torch.Tensor] = masked_value_loss) -> training.History:
    """Improve ``policy`` (and ``value_model``) in place with PPO-RLHF on ``task.train`` prompts.

    ``ref_policy``: the frozen reference (None: a frozen copy of ``policy`` as it is now);
    ``reward_fn(prompts, completions)``: the score of each completion (None: the task's ``correct``
    rule; a learned reward model's score fits); ``value_model``: the critic (None: a fresh
    :func:`make_value_model` of ``policy``, then not returned). Each step: draw prompts, sample,
    :func:`collect_rollout`, :func:`ppo_update`, log. Every model stays in eval mode (dropout off,
    so r = 1 on the first minibatch). ``policy_loss_fn`` and ``value_loss_fn`` have the signatures
    of :func:`masked_clip_loss` and :func:`masked_value_loss` (a lesson passes the learner's).

    Logs per step (1, 2, ...): ``reward`` (mean score), ``reward_std``, ``kl`` (mean over
    completions of the summed k1 KL to the reference, at rollout time), ``completion_length``,
    ``loss/policy``, ``loss/value``, ``approx_kl``, ``clipfrac`` (means over minibatches),
    ``first_ratio_error``, ``explained_variance`` (rollout V vs returns, real tokens),
    ``wall_seconds``; ``eval_accuracy`` (greedy, first ``eval_examples`` test problems) at step 0,
    every ``eval_every`` steps and at the last. ``callback(step, history)`` runs at step 0 and after
    every step; returning True stops. A NaN or inf loss or gradient raises
    :class:`~course_lib.training.NonFiniteError` naming the step, and a bad score a ``ValueError``
    naming it, after restoring the policy, the critic and the optimizer to the end of the last
    complete step (also on an interrupt).
    """
    config.validate()
    check_compatible(policy, tokenizer)
    if ref_policy is policy:
        raise ValueError("ref_policy is the policy itself: pass a frozen copy (copy.deepcopy(policy)) or None")
    ref_policy = ref_policy if ref_policy is not None else copy.deepcopy(policy)
    ref_policy.requires_grad_(False).eval()
    reward_fn = reward_fn if reward_fn is not None else task.reward
    value_model = value_model if value_model is not None else make_value_model(policy)
    history = history if history is not None else training.History()
    generator = runtime.seed_everything(seed)
    optimizer = make_optimizer(policy, value_model, config)
    policy.eval()
    value_model.eval()
    order: list[int] = []
    start = time.perf_counter()
    history.log(step=0, eval_accuracy=evaluate(policy, tokenizer, task, num_examples=config.eval_examples).accuracy)
    if callback is not None and callback(0, history):
        return history
    with training.interruptible(history):
        for step in runtime.progress(range(1, config.steps + 1), desc="PPO-RLHF", disable=not progress):
            if len(order) < config.prompts_per_step:
                order += torch.randperm(len(task.train), generator=generator).tolist()
            picked, order = order[:config.prompts_per_step], order[config.prompts_per_step:]
            for group in optimizer.param_groups:  # linear from the initial rate at step 1 towards 0
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * (
                    1 - (step - 1) / config.steps if config.anneal_lr else 1.0)
            snapshot = _snapshot(policy, value_model, optimizer)
            try:
                rollout = collect_rollout(policy, ref_policy, value_model, tokenizer, task,
                                          [task.train[i].prompt for i in picked], reward_fn, config, generator,
                                          f"step {step}")
                stats = ppo_update(policy, value_model, optimizer, rollout, config, generator, f"step {step}",
                                   policy_loss_fn, value_loss_fn)
            except training.NonFiniteError as err:
                _restore(snapshot, policy, value_model, optimizer)
                raise training.NonFiniteError(f"{err} The policy, the critic and the optimizer are restored to "
                                              f"the end of step {step - 1}.") from err
            except (ValueError, KeyboardInterrupt):
                _restore(snapshot, policy, value_model, optimizer)
                raise
            mask = rollout.completions.completion_mask.bool()
            history.log(step=step, reward=rollout.scores.mean().item(), reward_std=rollout.scores.std().item(),
                        kl=rollout.kl.sum(dim=1).mean().item(), completion_length=mask.sum(dim=1).float().mean().item(),
                        explained_variance=estimators.explained_variance(rollout.values[mask], rollout.returns[mask]),
                        learning_rate=optimizer.param_groups[0]["lr"], wall_seconds=time.perf_counter() - start,
                        **stats)
            if step % config.eval_every == 0 or step == config.steps:
                history.extend_last(eval_accuracy=evaluate(policy, tokenizer, task,
                                                           num_examples=config.eval_examples).accuracy)
            if callback is not None and callback(step, history):
                break
    policy.eval()
    return history
