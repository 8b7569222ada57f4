"""Supervised fine-tuning (SFT): teach a causal LM to write a task's reference completions (lesson 04).

An example is encoded as ``<bos> prompt completion <eos>`` and the loss is the mean negative
log-likelihood of the **completion tokens and the EOS only**: the prompt is given, not learned
(a loss over prompt tokens would spend the model's capacity on predicting questions, bug of
issue 8's list). Batches are left-padded like the sampler's prompts, with position ids from the
attention mask, so the model is trained at the positions it will generate at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_lib import runtime, training
from course_lib.lm.evaluation import evaluate
from course_lib.lm.logprobs import position_ids_from_mask, token_logps_from_logits
from course_lib.lm.model import check_compatible, context_length
from course_lib.lm.tasks import Example, Task

__all__ = ["SFTBatch", "encode_sft_batch", "sft_loss", "SFTConfig", "train_sft"]


@dataclass(frozen=True)
class SFTBatch:
    """A left-padded batch of ``<bos> prompt completion <eos>`` rows."""

    input_ids: torch.Tensor
    """``(B, L)`` int64, left-padded with the pad id."""
    attention_mask: torch.Tensor
    """``(B, L)`` int64, 1 on real tokens."""
    completion_mask: torch.Tensor
    """``(B, L)`` int64, 1 on the completion tokens and the EOS, 0 on padding, ``<bos>`` and prompt."""


def encode_sft_batch(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example],
                     max_length: int | None = None) -> SFTBatch:
    """Encode examples for SFT. Shapes: ``B = len(examples)`` rows of length ``L`` (the longest row).

    Raises ``ValueError`` for an empty list, a tokenizer without bos/eos/pad, or a row longer than
    ``max_length`` (the model's context), naming the example.
    """
    if not examples:
        raise ValueError("examples is empty: an SFT batch needs at least one example")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"the tokenizer has no {name[:-9]} token, which SFT batches need")
    rows, masks = [], []
    for example in examples:
        prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
        row = [tokenizer.bos_token_id, *prompt, *completion, tokenizer.eos_token_id]
        if max_length is not None and len(row) > max_length:
            raise ValueError(f"example {example.prompt!r} → {example.completion!r} needs {len(row)} tokens "
                             f"with <bos> and <eos>, more than the model's context of {max_length}")
        rows.append(row)
        masks.append([0] * (1 + len(prompt)) + [1] * (len(completion) + 1))
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        input_ids[i, length - len(row):] = torch.tensor(row)
        attention_mask[i, length - len(row):] = 1
        completion_mask[i, length - len(row):] = torch.tensor(mask)
    return SFTBatch(input_ids, attention_mask, completion_mask)


def sft_loss(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the completion tokens, over all of them in the batch.

    Shapes: logits ``(B, L, V)``, input_ids and completion_mask ``(B, L)`` → scalar. The logits at
    position t score token t+1, so ``logits[:, :-1]`` is compared with ``input_ids[:, 1:]`` under
    ``completion_mask[:, 1:]``. Every completion token weighs the same (a token mean, not a mean of
    per-sequence means).
    """
    if logits.dim() != 3 or input_ids.shape != logits.shape[:2] or completion_mask.shape != input_ids.shape:
        raise ValueError(f"expected logits (B, L, V) and input_ids, completion_mask (B, L); got "
                         f"{tuple(logits.shape)}, {tuple(input_ids.shape)}, {tuple(completion_mask.shape)}")
    token_logps = token_logps_from_logits(logits[:, :-1], input_ids[:, 1:])  # (B, L−1)
    keep = completion_mask[:, 1:].bool()  # (B, L−1): which scored tokens are completion tokens
    if not keep.any():
        raise ValueError("completion_mask selects no token: there is nothing to learn in this batch")
    # select, never multiply: a −inf log-prob behind the mask times 0 would be NaN
    return -torch.where(keep, token_logps, torch.zeros_like(token_logps)).sum() / keep.sum()


@dataclass(frozen=True)
class SFTConfig:
    """Settings of :func:`train_sft`."""

    max_steps: int = 600
    """Gradient steps at most (training stops earlier once ``target_accuracy`` is reached)."""
    batch_size: int = 64
    learning_rate: float = 3e-3
    """AdamW learning rate, after a linear warm-up, decayed linearly towards 0 at ``max_steps``."""
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50
    """Greedy held-out accuracy every this many steps (and at the end)."""
    eval_examples: int = 200
    """How many test problems each evaluation uses."""
    target_accuracy: float | None = None
    """Stop at the first evaluation at or above this greedy accuracy; None trains ``max_steps``."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("max_steps", "batch_size", "eval_every", "eval_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SFTConfig.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"SFTConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        for name in ("learning_rate", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"SFTConfig.{name} must be a positive number, got {value!r}")
        if self.weight_decay < 0:
            raise ValueError(f"SFTConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError(f"SFTConfig.target_accuracy must be in (0, 1] or None, got {self.target_accuracy!r}")


def _learning_rate(config: SFTConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then linear decay to 0 at ``max_steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    remaining = (config.max_steps - step) / max(1, config.max_steps - config.warmup_steps)
    return config.learning_rate * max(remaining, 0.0)


def train_sft(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
              config: SFTConfig = SFTConfig(), *, seed: int = 0, history: training.History | None = None,
              callback: Callable[[int, training.History], None] | None = None,
              progress: bool = False, loss_fn: Callable[..., torch.Tensor] = sft_loss) -> training.History:
    """Fine-tune ``model`` in place on ``task.train``; return the history.

    Each step draws ``batch_size`` training examples (a fresh permutation per pass, from a generator
    seeded with ``seed``), takes one AdamW step on :func:`sft_loss` with a global gradient-norm
    clip, and logs ``step``, ``loss``, ``learning_rate`` and ``wall_seconds``; every ``eval_every``
    steps and at the end it adds ``eval_accuracy`` (greedy, on the first ``eval_examples`` test
    problems). ``callback(step, history)`` runs after each step (a live plot, say). ``loss_fn`` has
    the signature of :func:`sft_loss` (a lesson passes the learner's). Ctrl-C stops training and
    keeps the history.
    """
    config.validate()
    check_compatible(model, tokenizer)
    if not task.train:
        raise ValueError(f"task {task.name!r} has no training examples")
    history = history if history is not None else training.History()
    generator = runtime.seed_everything(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    limit = context_length(model)
    order: list[int] = []
    start = time.perf_counter()
    steps = range(config.max_steps)
    with training.interruptible(history):
        for step in runtime.progress(steps, desc="SFT", disable=not progress):
            if len(order) < config.batch_size:  # a fresh pass over the training set
                order += torch.randperm(len(task.train), generator=generator).tolist()
            picked, order = order[:config.batch_size], order[config.batch_size:]
            batch = encode_sft_batch(tokenizer, [task.train[i] for i in picked], max_length=limit)
            model.train()
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=position_ids_from_mask(batch.attention_mask)).logits  # (B, L, V)
            loss = loss_fn(logits, batch.input_ids, batch.completion_mask)
            training.ensure_finite(loss, "SFT loss", f"step {step}")
            lr = _learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            history.log(step=step + 1, loss=loss.item(), learning_rate=lr,
                        wall_seconds=time.perf_counter() - start)
            last = step + 1 == config.max_steps
            if (step + 1) % config.eval_every == 0 or last:
                accuracy = evaluate(model, tokenizer, task, "test", num_examples=config.eval_examples).accuracy
                history.extend_last(eval_accuracy=accuracy)
                if config.target_accuracy is not None and accuracy >= config.target_accuracy:
                    if callback is not None:
                        callback(step + 1, history)
                    break
            if callback is not None:
                callback(step + 1, history)
    model.eval()
    return history
