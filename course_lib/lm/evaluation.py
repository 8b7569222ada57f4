"""Held-out accuracy of a language-model policy on a task: greedy and sampled (lessons 04-07).

A task's prompt is plain text (``"47+85="``); the model sees it after a ``<bos>`` token, which
:func:`model_prompts` adds, so that even the first character of a prompt is predicted from
something. Completions are scored by the task's own rule (:meth:`Task.reward`, ``kind="correct"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_lib.lm.sampling import sample
from course_lib.lm.tasks import Example, Task

__all__ = ["model_prompts", "Evaluation", "evaluate", "complete"]


def model_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[str]:
    """The texts the model is given: each task prompt after the tokenizer's ``<bos>`` token."""
    if tokenizer.bos_token is None:
        raise ValueError("the tokenizer has no bos_token: the course's prompts start with one")
    return [tokenizer.bos_token + prompt for prompt in prompts]


def complete(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task, prompts: Sequence[str], *,
             greedy: bool = True, num_generations: int = 1, temperature: float = 1.0,
             generator: torch.Generator | None = None, batch_size: int = 256) -> list[str]:
    """Completions (text before the first EOS) of ``prompts``, ``num_generations`` per prompt, prompt-major.

    At most ``task.max_completion_chars + 1`` new tokens each (the longest reference and its EOS),
    sampled in batches of ``batch_size`` prompts. Returns ``len(prompts) * num_generations`` strings.
    """
    if not prompts:
        raise ValueError("prompts is empty: there is nothing to complete")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = model_prompts(tokenizer, prompts[start:start + batch_size])
        done = sample(model, tokenizer, chunk, num_generations=num_generations,
                      max_new_tokens=task.max_completion_chars + 1, temperature=temperature, greedy=greedy,
                      generator=generator)
        texts.extend(done.texts)
    return texts


@dataclass(frozen=True)
class Evaluation:
    """The accuracy of one evaluation, and what it was measured on."""

    accuracy: float
    """Mean ``correct`` reward over every completion, in [0, 1]."""
    num_prompts: int
    num_generations: int
    greedy: bool
    completions: tuple[str, ...]
    """Every completion, prompt-major (rows 0..G−1 belong to the first prompt)."""


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task, split: str = "test", *,
             num_examples: int | None = None, greedy: bool = True, num_generations: int = 1,
             temperature: float = 1.0, seed: int = 0, batch_size: int = 256) -> Evaluation:
    """Accuracy on the first ``num_examples`` problems of ``task.<split>`` (all of them if None).

    ``greedy=True`` takes the argmax token at every step (one completion per prompt); otherwise
    ``num_generations`` completions per prompt are sampled at ``temperature`` from a generator seeded
    with ``seed``, so the same call gives the same number. The model is switched to eval mode.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    examples: Sequence[Example] = getattr(task, split)
    if num_examples is not None:
        if not isinstance(num_examples, int) or num_examples < 1:
            raise ValueError(f"num_examples must be an int >= 1 or None, got {num_examples!r}")
        examples = examples[:num_examples]
    if not examples:
        raise ValueError(f"task {task.name!r} has no {split} examples to evaluate on")
    generations = 1 if greedy else num_generations
    prompts = [example.prompt for example in examples]
    model.eval()
    generator = None if greedy else torch.Generator(device=model.device).manual_seed(seed)
    texts = complete(model, tokenizer, task, prompts, greedy=greedy, num_generations=generations,
                     temperature=temperature, generator=generator, batch_size=batch_size)
    repeated = [prompt for prompt in prompts for _ in range(generations)]
    rewards = task.reward(repeated, texts, kind="correct")
    return Evaluation(accuracy=sum(rewards) / len(rewards), num_prompts=len(prompts), num_generations=generations,
                      greedy=greedy, completions=tuple(texts))
