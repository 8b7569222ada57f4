"""REINFORCE on sequences: lesson 01's estimator with a language model as the policy (lesson 04).

An episode is one completion: the state is the prompt and the tokens so far, an action is the next
token, and the reward comes once, at the end, from the task's rule. With no discount and a single
terminal reward, the reward-to-go of every token of a completion is that completion's reward, so
the policy-gradient loss of a batch of B completions is

    L = −(1/B) Σ_i (r_i − b) · log π(y_i | x_i),   log π(y_i | x_i) = Σ_t log π(y_i,t | x_i, y_i,<t),

with the sum over the completion's tokens up to and including its EOS, and a baseline b: here the
mean reward of the batch, held constant (no gradient flows through it). The batch mean includes
r_i itself, which scales the expected gradient by 1 − 1/B (0.98 for B = 64); a leave-one-out mean
(RLOO) removes that factor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_lib import runtime, training
from course_lib.lm.evaluation import evaluate, model_prompts
from course_lib.lm.logprobs import per_token_logps, sequence_logps
from course_lib.lm.model import check_compatible
from course_lib.lm.sampling import sample
from course_lib.lm.tasks import Task, check_rewards

__all__ = ["reinforce_loss", "ReinforceLMConfig", "train_reinforce"]

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
"""``reward_fn(prompts, completions) -> one reward per completion`` (a task's ``reward`` fits)."""


def reinforce_loss(sequence_logps: torch.Tensor, rewards: torch.Tensor,
                   baseline: Literal["batch_mean", "none"] = "batch_mean") -> torch.Tensor:
    """−mean((r − b) · log π(y | x)) over a batch of completions, with b the batch-mean reward or 0.

    Shapes: sequence_logps ``(B,)`` (with grad), rewards ``(B,)`` → scalar. The rewards and the
    baseline are constants: the weights are detached, so only log π carries gradient.
    """
    if not isinstance(sequence_logps, torch.Tensor) or sequence_logps.dim() != 1 or sequence_logps.numel() == 0:
        raise ValueError(f"sequence_logps must be a non-empty 1-D tensor (B,), got "
                         f"{getattr(sequence_logps, 'shape', type(sequence_logps))}")
    if not isinstance(rewards, torch.Tensor) or rewards.shape != sequence_logps.shape:
        raise ValueError(f"rewards must be a tensor of the same shape as sequence_logps {tuple(sequence_logps.shape)}, "
                         f"got {getattr(rewards, 'shape', type(rewards))}")
    if baseline not in ("batch_mean", "none"):
        raise ValueError(f"baseline must be 'batch_mean' or 'none', got {baseline!r}")
    rewards = rewards.detach().to(sequence_logps.dtype)
    weights = rewards - rewards.mean() if baseline == "batch_mean" else rewards  # (B,)
    return -(weights * sequence_logps).mean()


@dataclass(frozen=True)
class ReinforceLMConfig:
    """Settings of :func:`train_reinforce`."""

    steps: int = 300
    """Policy updates (one per batch of completions)."""
    prompts_per_step: int = 16
    num_generations: int = 4
    """Completions sampled per prompt; a batch has prompts_per_step × num_generations of them."""
    learning_rate: float = 2e-4
    """AdamW, constant; 1e-3 collapsed the addition base model within 25 steps in our runs."""
    temperature: float = 1.0
    """Sampling temperature, used again in the log-probs."""
    baseline: Literal["batch_mean", "none"] = "batch_mean"
    max_grad_norm: float = 1.0
    eval_every: int = 25
    eval_examples: int = 200

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("steps", "prompts_per_step", "num_generations", "eval_every", "eval_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ReinforceLMConfig.{name} must be an int >= 1, got {value!r}")
        for name in ("learning_rate", "temperature", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"ReinforceLMConfig.{name} must be a positive number, got {value!r}")
        if self.baseline not in ("batch_mean", "none"):
            raise ValueError(f"ReinforceLMConfig.baseline must be 'batch_mean' or 'none', got {self.baseline!r}")


def train_reinforce(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
                    config: ReinforceLMConfig = ReinforceLMConfig(), *, seed: int = 0,
                    reward_fn: RewardFn | None = None, history: training.History | None = None,
                    callback: Callable[[int, training.History], None] | None = None,
                    progress: bool = False, loss_fn: Callable[..., torch.Tensor] = reinforce_loss) -> training.History:
    """Improve ``model`` in place with REINFORCE on ``task.train`` prompts; return the history.

    Each step: draw ``prompts_per_step`` training prompts, sample ``num_generations`` completions of
    each at ``temperature``, score them with ``reward_fn`` (default: the task's ``correct`` reward),
    and take one AdamW step on :func:`reinforce_loss`. Logs ``step``, ``reward``, ``loss``,
    ``completion_length`` and ``wall_seconds``; ``eval_accuracy`` (greedy, on the first
    ``eval_examples`` test problems) before the first step and every ``eval_every`` steps.
    ``loss_fn`` has the signature of :func:`reinforce_loss` (a lesson passes the learner's).
    ``callback(step, history)`` runs after the first evaluation (step 0) and after every step.
    """
    config.validate()
    check_compatible(model, tokenizer)
    reward_fn = reward_fn if reward_fn is not None else task.reward
    history = history if history is not None else training.History()
    generator = runtime.seed_everything(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    order: list[int] = []
    start = time.perf_counter()
    history.log(step=0, eval_accuracy=evaluate(model, tokenizer, task, num_examples=config.eval_examples).accuracy)
    if callback is not None:
        callback(0, history)
    with training.interruptible(history):
        for step in runtime.progress(range(config.steps), desc="REINFORCE", disable=not progress):
            if len(order) < config.prompts_per_step:
                order += torch.randperm(len(task.train), generator=generator).tolist()
            picked, order = order[:config.prompts_per_step], order[config.prompts_per_step:]
            prompts = [task.train[i].prompt for i in picked]
            model.eval()
            batch = sample(model, tokenizer, model_prompts(tokenizer, prompts), num_generations=config.num_generations,
                           max_new_tokens=task.max_completion_chars + 1, temperature=config.temperature,
                           generator=generator)
            repeated = [prompts[i] for i in batch.prompt_index.tolist()]
            rewards = torch.tensor(check_rewards(reward_fn(repeated, batch.texts), len(repeated)))  # (B,)
            model.train()
            token_logps = per_token_logps(model, batch.input_ids, batch.attention_mask, batch.logits_to_keep,
                                          config.temperature)  # (B, C)
            loss = loss_fn(sequence_logps(token_logps, batch.completion_mask), rewards, config.baseline)
            training.ensure_finite(loss, "REINFORCE loss", f"step {step}")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            history.log(step=step + 1, reward=rewards.mean().item(), loss=loss.item(),
                        completion_length=batch.completion_mask.sum(dim=1).float().mean().item(),
                        wall_seconds=time.perf_counter() - start)
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                history.extend_last(eval_accuracy=evaluate(model, tokenizer, task,
                                                           num_examples=config.eval_examples).accuracy)
            if callback is not None:
                callback(step + 1, history)
    model.eval()
    return history
