"""A Bradley-Terry reward model: a tiny GPT-2 body with a scalar head, trained on preference pairs (lesson 05).

The model reads ``<bos> prompt completion <eos>`` and gives one number r(x, y), the **score at the
last real token** (the EOS) of the row. Trained on pairs (x, y_w, y_l) with y_w preferred, it models
P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)), and the loss is −mean logσ(r_w − r_l) (algorithms.md §6).
Only differences of rewards matter, so the head has no bias (it would get no gradient).

Why a small wrapper and not ``transformers.GPT2ForSequenceClassification``: that head reads the
rightmost token that is not ``pad_token_id`` (transformers 5.24). With our left padding and pad ≠ eos
this is the EOS, but with a tokenizer whose pad *is* eos it is the token before the EOS (the tests
show both); and unless every caller passes position ids, GPT-2 scores left-padded rows at shifted
positions. Here the index comes from the attention mask and the positions from
:func:`~course_lib.lm.logprobs.position_ids_from_mask`, inside ``forward``.
:class:`RewardModel` uses that class's parameter names (``transformer.*``, ``score.weight``), so its
weights load into ``GPT2ForSequenceClassification(num_labels=1)`` unchanged (the TRL cross-check does).

Preference pairs come from a task: the chosen completion is the reference, the rejected one gives a
wrong final answer, either a near miss (off by ±1 or ±10, two digits swapped, a digit dropped) or a
random wrong number (:func:`preference_pairs`).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2Model, PreTrainedModel, PreTrainedTokenizerBase

from course_lib import runtime, training
from course_lib.lm.logprobs import position_ids_from_mask
from course_lib.lm.model import check_compatible, context_length, tiny_gpt2
from course_lib.lm.sft import encode_sft_batch
from course_lib.lm.tasks import Example, Task

__all__ = ["bradley_terry_loss", "pairwise_accuracy", "RewardModel", "last_token_index", "reward_model_from",
           "score", "PreferencePair", "near_misses", "preference_pairs", "RewardModelConfig", "train_reward_model",
           "pair_rewards", "evaluate_reward_model"]


def _check_reward_pair(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> None:
    for name, value in (("chosen_rewards", chosen_rewards), ("rejected_rewards", rejected_rewards)):
        if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.numel() == 0 or not value.is_floating_point():
            raise ValueError(f"{name} must be a non-empty 1-D float tensor (B,), got "
                             f"{getattr(value, 'shape', type(value).__name__)}")
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(f"chosen_rewards {tuple(chosen_rewards.shape)} and rejected_rewards "
                         f"{tuple(rejected_rewards.shape)} must have the same shape: one of each per pair")


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """−mean(logσ(r_chosen − r_rejected)): the Bradley-Terry negative log-likelihood of the preferences.

    Shapes: chosen_rewards ``(B,)``, rejected_rewards ``(B,)`` → scalar. ln 2 = 0.693147 at equal
    rewards, 0.126928 at a difference of +2, 2.126928 at −2. Computed with ``logsigmoid``, which stays
    finite at any difference (``log(sigmoid(−200))`` is −inf in fp32).
    """
    _check_reward_pair(chosen_rewards, rejected_rewards)
    return -nn.functional.logsigmoid(chosen_rewards - rejected_rewards).mean()


def pairwise_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """Fraction of pairs with r_chosen > r_rejected (a tie counts as wrong, as in TRL). Shapes ``(B,)``, ``(B,)``."""
    _check_reward_pair(chosen_rewards, rejected_rewards)
    return (chosen_rewards > rejected_rewards).float().mean().item()


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token: ``(B, T)`` 0/1 mask → int64 ``(B,)``. Any padding side works."""
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be a 2-D tensor (B, T), got {getattr(attention_mask, 'shape', None)}")
    mask = attention_mask.long()
    if (mask.sum(dim=1) == 0).any():
        raise ValueError("attention_mask has a row without any real token: there is nothing to score")
    positions = torch.arange(mask.shape[1], device=mask.device)  # (T,)
    return (positions * mask).argmax(dim=1)  # (B,): the largest position where the mask is 1


class RewardModel(nn.Module):
    """A GPT-2 body (``transformer``) and a linear head to one number (``score``), read at the last real token.

    ``forward(input_ids (B, T), attention_mask (B, T))`` → rewards ``(B,)``, fp32. Any padding side;
    position ids are computed from the mask, so padding never changes a row's reward.
    """

    def __init__(self, body: GPT2Model) -> None:
        super().__init__()
        self.transformer = body
        self.config: GPT2Config = body.config
        self.score = nn.Linear(body.config.n_embd, 1, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids and attention_mask must be 2-D tensors of one shape (B, T), got "
                             f"{getattr(input_ids, 'shape', None)} and {getattr(attention_mask, 'shape', None)}")
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids_from_mask(attention_mask),
                                  use_cache=False).last_hidden_state  # (B, T, n_embd)
        last = last_token_index(attention_mask)  # (B,)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return self.score(hidden[rows, last]).squeeze(-1).float()  # (B,)


def reward_model_from(tokenizer: PreTrainedTokenizerBase, *, init_from: PreTrainedModel | None = None, seed: int = 0,
                      **shape: int) -> RewardModel:
    """A reward model for ``tokenizer``, in eval mode: the body copied from ``init_from`` or freshly built.

    ``init_from`` is a GPT-2 policy (an SFT base model, say); its transformer is deep-copied, the
    policy itself is left untouched. Without it the body is :func:`~course_lib.lm.model.tiny_gpt2`'s
    with ``seed`` and ``shape`` (``n_layer``, ``n_head``, ``n_embd``, ``n_positions``). Every dropout is
    set to 0 (as TRL's ``RewardConfig.disable_dropout``). The head starts at zero, so every reward is
    0 and the loss ln 2 before training (``seed`` only matters for a fresh body). Raises
    ``ValueError`` if the tokenizer's vocabulary does not fit the model's embedding.
    """
    if init_from is None:
        body = tiny_gpt2(tokenizer, seed=seed, **shape).transformer
    else:
        if shape:
            raise ValueError(f"shape settings {sorted(shape)} apply to a fresh body only, not with init_from")
        if not isinstance(getattr(init_from, "transformer", None), GPT2Model):
            raise ValueError(f"init_from must be a GPT-2 language model with a .transformer body, got "
                             f"{type(init_from).__name__}")
        body = copy.deepcopy(init_from.transformer)
    for module in body.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    body.config.resid_pdrop = body.config.embd_pdrop = body.config.attn_pdrop = 0.0
    model = RewardModel(body)
    nn.init.zeros_(model.score.weight)
    check_compatible(model, tokenizer)  # type: ignore[arg-type]
    return model.eval()


def _check_texts(prompts: Sequence[str], completions: Sequence[str]) -> None:
    for name, batch in (("prompts", prompts), ("completions", completions)):
        if isinstance(batch, str) or not isinstance(batch, Sequence) or not all(isinstance(t, str) for t in batch):
            raise ValueError(f"{name} must be a sequence of str, got {type(batch).__name__}")
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"prompts and completions must be non-empty and of one length, got {len(prompts)} "
                         f"and {len(completions)}")


def score(reward_model: RewardModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
          completions: Sequence[str]) -> torch.Tensor:
    """r(prompt, completion) for each pair: ``B`` texts each → fp32 ``(B,)``, with the graph kept.

    Rows are ``<bos> prompt completion <eos>``, left-padded (:func:`~course_lib.lm.sft.encode_sft_batch`);
    the score is read at the EOS. Completions are text without the EOS (as sampling returns them).
    Wrap in ``torch.no_grad()`` when no gradient is needed; the model's mode is left as it is.
    """
    check_compatible(reward_model, tokenizer)  # type: ignore[arg-type]
    _check_texts(prompts, completions)
    examples = [Example(prompt, completion, completion) for prompt, completion in zip(prompts, completions, strict=True)]
    batch = encode_sft_batch(tokenizer, examples, max_length=context_length(reward_model))  # type: ignore[arg-type]
    return reward_model(batch.input_ids, batch.attention_mask)  # (B,)


# --- preference pairs from a task ------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: for ``prompt``, ``chosen`` is preferred to ``rejected`` (completions without EOS)."""

    prompt: str
    chosen: str
    rejected: str
    kind: str = ""
    """How ``rejected`` was made: ``"near"`` (a near miss), ``"far"`` (a random wrong number), ``""`` (by hand)."""

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected", "kind"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"PreferencePair.{name} must be a str, got {type(getattr(self, name)).__name__}")
        if self.chosen == self.rejected:
            raise ValueError(f"PreferencePair for {self.prompt!r} has chosen == rejected == {self.chosen!r}: "
                             f"a pair must compare two different completions")
        if self.kind not in ("", "near", "far"):
            raise ValueError(f"PreferencePair.kind must be 'near', 'far' or '', got {self.kind!r}")


def _is_number(text: str) -> bool:
    return text.isdigit() and (text == "0" or not text.startswith("0"))


def near_misses(answer: str) -> dict[str, list[str]]:
    """Wrong answers close to ``answer``, by kind: ``±1``, ``±10``, ``swap`` (adjacent digits), ``drop`` (a digit).

    Only well-formed numbers (no leading zeros) different from ``answer``; a kind may be empty.
    """
    n = int(answer)
    kinds = {"±1": [str(m) for m in (n + 1, n - 1) if m >= 0],
             "±10": [str(m) for m in (n + 10, n - 10) if m >= 0],
             "swap": [answer[:i] + answer[i + 1] + answer[i] + answer[i + 2:] for i in range(len(answer) - 1)],
             "drop": [answer[:i] + answer[i + 1:] for i in range(len(answer))]}
    return {kind: sorted({c for c in found if c != answer and _is_number(c)}, key=int) for kind, found in kinds.items()}


def preference_pairs(task: Task, split: str = "train", num_pairs: int = 1000, seed: int = 0,
                     near_miss_fraction: float = 0.5) -> list[PreferencePair]:
    """``num_pairs`` pairs (reference completion ≻ a wrong answer) from the problems of ``task.<split>``.

    Problems are drawn without replacement (repeating in fresh passes when ``num_pairs`` is larger).
    ``round(near_miss_fraction * num_pairs)`` of the rejected answers are near misses (a kind from
    :func:`near_misses`, then one of its answers, uniformly), the rest are uniform over the wrong
    numbers in ``[0, largest answer of the split]`` that are no near miss. The rejected completion
    is the reference with its final answer replaced, so for ``chain_sum`` the worked steps stay right.
    The same arguments give the same pairs.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(num_pairs, int) or isinstance(num_pairs, bool) or num_pairs < 1:
        raise ValueError(f"num_pairs must be an int >= 1, got {num_pairs!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(near_miss_fraction, (int, float)) or not 0.0 <= near_miss_fraction <= 1.0:
        raise ValueError(f"near_miss_fraction must be a number in [0, 1], got {near_miss_fraction!r}")
    examples: Sequence[Example] = getattr(task, split)
    if not examples:
        raise ValueError(f"task {task.name!r} has no {split} examples")
    for example in examples:
        if not _is_number(example.answer) or not example.completion.endswith(example.answer):
            raise ValueError(f"example {example.prompt!r}: its completion must end in its numeric answer, got "
                             f"{example.completion!r} and {example.answer!r}")
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < num_pairs:
        order += rng.sample(range(len(examples)), len(examples))
    num_near = round(near_miss_fraction * num_pairs)
    kinds = ["near"] * num_near + ["far"] * (num_pairs - num_near)
    rng.shuffle(kinds)
    largest = max(int(example.answer) for example in examples)
    pairs = []
    for index, kind in zip(order[:num_pairs], kinds, strict=True):
        example = examples[index]
        near = near_misses(example.answer)
        excluded = {c for found in near.values() for c in found if int(c) <= largest} | {example.answer}
        if kind == "far" and len(excluded) <= largest:  # some number in [0, largest] is left to draw
            wrong = example.answer
            while wrong in excluded:  # rejection sampling: uniform over the numbers not excluded
                wrong = str(rng.randint(0, largest))
        else:
            kind, options = "near", [found for found in near.values() if found]
            wrong = rng.choice(rng.choice(options))
        rejected = example.completion[:len(example.completion) - len(example.answer)] + wrong
        if task.score(example.prompt, rejected)["correct"] != 0.0:
            raise ValueError(f"the rejected completion {rejected!r} of {example.prompt!r} is scored correct")
        pairs.append(PreferencePair(example.prompt, example.completion, rejected, kind))
    return pairs


# --- training and evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class RewardModelConfig:
    """Settings of :func:`train_reward_model`.

    The defaults were tuned on the addition base model (``load_base_model("addition")``, body copied
    with ``init_from``) and 8,000 pairs from its train split. In our runs (one torch thread, a busy
    2-core CPU, 41-46 s) they gave 88.7% and 90.1% pairwise accuracy on 2,000 test-split pairs for
    two seeds: 95-96% on far misses and 83-84% on near misses, where off-by-one answers stayed near
    chance (51-59%) while ±10, swapped and dropped digits reached 86-100%. 600 steps gave 86-87%,
    3,000 steps 92.5% (off-by-one still 58%).
    """

    steps: int = 1000
    """Optimizer steps, one per batch of pairs."""
    batch_size: int = 32
    """Pairs per step (2 × batch_size rows per forward)."""
    learning_rate: float = 5e-4
    """AdamW peak learning rate (no weight decay); 1e-3 and above learned less in our runs."""
    warmup_steps: int = 20
    """Linear warm-up of the learning rate over this many steps."""
    decay: bool = True
    """Decay the learning rate linearly to 0 at ``steps`` (after the warm-up); False keeps it constant."""
    max_grad_norm: float = 1.0
    eval_every: int = 100
    """Held-out accuracy on ``eval_pairs`` every this many steps (and at the end), when they are given."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RewardModelConfig.{name} must be an int >= 1, got {value!r}")
        for name in ("learning_rate", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"RewardModelConfig.{name} must be a positive number, got {value!r}")
        if not isinstance(self.warmup_steps, int) or isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise ValueError(f"RewardModelConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.decay, bool):
            raise ValueError(f"RewardModelConfig.decay must be True or False, got {self.decay!r}")


def _encode_pairs(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[PreferencePair],
                  max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair as rows of ``encode_sft_batch``'s layout, tokenized in two batched calls.

    Returns input_ids and attention_mask ``(2N, T)``, left-padded to the longest row: rows ``0..N−1``
    are ``<bos> prompt chosen <eos>``, rows ``N..2N−1`` the same with ``rejected``.
    """
    if not pairs or not all(isinstance(pair, PreferencePair) for pair in pairs):
        raise ValueError("pairs must be a non-empty sequence of PreferencePair")
    n = len(pairs)
    prompts = tokenizer([pair.prompt for pair in pairs], add_special_tokens=False)["input_ids"]
    completions = tokenizer([pair.chosen for pair in pairs] + [pair.rejected for pair in pairs],
                            add_special_tokens=False)["input_ids"]
    rows = [[tokenizer.bos_token_id, *prompts[i % n], *ids, tokenizer.eos_token_id] for i, ids in enumerate(completions)]
    length = max(len(row) for row in rows)
    if length > max_length:
        i = max(range(2 * n), key=lambda k: len(rows[k]))
        raise ValueError(f"pair {pairs[i % n]!r} needs {length} tokens with <bos> and <eos>, more than the "
                         f"model's context of {max_length}")
    input_ids = torch.full((2 * n, length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((2 * n, length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row):] = torch.tensor(row)
        attention_mask[i, length - len(row):] = 1
    return input_ids, attention_mask


def _batch_rewards(reward_model: RewardModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   picked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected rewards ``(B,)``, ``(B,)`` of pairs ``picked`` ``(B,)``, from one forward over 2B rows."""
    num_pairs = input_ids.shape[0] // 2
    rows = torch.cat([picked, picked + num_pairs])  # (2B,)
    ids, mask = input_ids[rows], attention_mask[rows]  # (2B, T)
    first = int(mask.any(dim=0).long().argmax())  # drop the columns that are padding in every row
    rewards = reward_model(ids[:, first:], mask[:, first:])  # (2B,)
    return rewards[:len(picked)], rewards[len(picked):]


def _learning_rate(config: RewardModelConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant, or (``decay``) linear decay to 0 at ``steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if not config.decay:
        return config.learning_rate
    return config.learning_rate * (config.steps - step) / max(1, config.steps - config.warmup_steps)


def train_reward_model(reward_model: RewardModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[PreferencePair],
                       config: RewardModelConfig = RewardModelConfig(), *, seed: int = 0,
                       eval_pairs: Sequence[PreferencePair] | None = None, history: training.History | None = None,
                       callback: Callable[[int, training.History], None] | None = None, progress: bool = False,
                       loss_fn: Callable[..., torch.Tensor] = bradley_terry_loss) -> training.History:
    """Train ``reward_model`` in place on ``pairs`` with the Bradley-Terry loss; return the history.

    Each step draws ``batch_size`` pairs (a fresh permutation per pass, from a generator seeded with
    ``seed``) and takes one AdamW step with a global gradient-norm clip. Logs ``step``, ``loss``,
    ``accuracy`` (of the batch, before the step), ``margin`` (mean r_chosen − r_rejected),
    ``learning_rate`` and ``wall_seconds``; with ``eval_pairs``, ``eval_accuracy`` every ``eval_every``
    steps and at the end. ``callback(step, history)`` runs after every step; ``loss_fn`` has the
    signature of :func:`bradley_terry_loss` (a lesson passes the learner's). Ctrl-C stops training
    and keeps the history. The pairs are tokenized once, before the first step.
    """
    config.validate()
    check_compatible(reward_model, tokenizer)  # type: ignore[arg-type]
    input_ids, attention_mask = _encode_pairs(tokenizer, pairs, context_length(reward_model))  # type: ignore[arg-type]
    history = history if history is not None else training.History()
    generator = runtime.seed_everything(seed)
    optimizer = torch.optim.AdamW(reward_model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    order: list[int] = []
    start = time.perf_counter()
    with training.interruptible(history):
        for step in runtime.progress(range(config.steps), desc="reward model", disable=not progress):
            if len(order) < config.batch_size:
                order += torch.randperm(len(pairs), generator=generator).tolist()
            picked, order = order[:config.batch_size], order[config.batch_size:]
            reward_model.train()
            chosen_rewards, rejected_rewards = _batch_rewards(reward_model, input_ids, attention_mask,
                                                              torch.tensor(picked))  # (B,), (B,)
            loss = loss_fn(chosen_rewards, rejected_rewards)
            training.ensure_finite(loss, "reward-model loss", f"step {step}")
            lr = _learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reward_model.parameters(), config.max_grad_norm)
            optimizer.step()
            history.log(step=step + 1, loss=loss.item(), accuracy=pairwise_accuracy(chosen_rewards, rejected_rewards),
                        margin=(chosen_rewards - rejected_rewards).mean().item(), learning_rate=lr,
                        wall_seconds=time.perf_counter() - start)
            if eval_pairs and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
                history.extend_last(eval_accuracy=evaluate_reward_model(reward_model, tokenizer, eval_pairs))
            if callback is not None:
                callback(step + 1, history)
    reward_model.eval()
    return history


def pair_rewards(reward_model: RewardModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[PreferencePair],
                 batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected rewards of every pair, ``(B,)`` each, without gradient, in eval mode."""
    if not pairs:
        raise ValueError("pairs is empty: there is nothing to score")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    check_compatible(reward_model, tokenizer)  # type: ignore[arg-type]
    input_ids, attention_mask = _encode_pairs(tokenizer, pairs, context_length(reward_model))  # type: ignore[arg-type]
    reward_model.eval()
    chosen, rejected = [], []
    with torch.no_grad():
        for begin in range(0, len(pairs), batch_size):
            picked = torch.arange(begin, min(begin + batch_size, len(pairs)))
            c, r = _batch_rewards(reward_model, input_ids, attention_mask, picked)
            chosen.append(c)
            rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


def evaluate_reward_model(reward_model: RewardModel, tokenizer: PreTrainedTokenizerBase,
                          pairs: Sequence[PreferencePair]) -> float:
    """Pairwise accuracy on ``pairs`` (held-out ones, say): the fraction where r_chosen > r_rejected."""
    return pairwise_accuracy(*pair_rewards(reward_model, tokenizer, pairs))
