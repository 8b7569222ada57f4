"""course_lib.lm.sft, evaluation and policy_gradient: SFT batches, the trainers' logs and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.lm import evaluation, policy_gradient, sft, tasks
from course_lib.lm.model import tiny_gpt2
from course_lib.lm.tokenizer import build_char_tokenizer

TASK = tasks.AdditionTask(num_digits=1, num_train=60, num_test=10)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(TASK.alphabet)


def _model(tokenizer):
    return tiny_gpt2(tokenizer, n_layer=1, n_head=2, n_embd=16, n_positions=16, seed=0)


def test_sft_batch_is_left_padded_and_masks_exactly_the_completion_and_eos(tokenizer):
    examples = [tasks.Example("3+4=", "7", "7"), tasks.Example("9+9=", "18", "18")]
    batch = sft.encode_sft_batch(tokenizer, examples)
    tokens = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in batch.input_ids]
    assert tokens[0] == ["<pad>", "<bos>", "3", "+", "4", "=", "7", "<eos>"]
    assert tokens[1] == ["<bos>", "9", "+", "9", "=", "1", "8", "<eos>"]
    assert batch.attention_mask.tolist() == [[0, 1, 1, 1, 1, 1, 1, 1], [1] * 8]
    assert batch.completion_mask.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1]]


def test_sft_batch_errors_name_the_problem(tokenizer):
    with pytest.raises(ValueError, match="at least one example"):
        sft.encode_sft_batch(tokenizer, [])
    with pytest.raises(ValueError, match="needs 8 tokens.*context of 6"):
        sft.encode_sft_batch(tokenizer, [tasks.Example("9+9=", "18", "18")], max_length=6)


def test_sft_loss_ignores_prompt_and_padding_positions(tokenizer):
    batch = sft.encode_sft_batch(tokenizer, [tasks.Example("3+4=", "7", "7"), tasks.Example("9+9=", "18", "18")])
    logits = torch.randn(2, 8, len(tokenizer), generator=torch.Generator().manual_seed(0))
    loss = sft.sft_loss(logits, batch.input_ids, batch.completion_mask)
    changed = logits.clone()
    changed[:, :4] += 5 * torch.randn(2, 4, len(tokenizer))  # logits that score prompt tokens only
    assert sft.sft_loss(changed, batch.input_ids, batch.completion_mask).item() == pytest.approx(loss.item())
    changed[0, 5, 0] = -math.inf  # the logit of a token no completion position uses
    assert torch.isfinite(sft.sft_loss(changed, batch.input_ids, batch.completion_mask))


def test_train_sft_lowers_the_loss_and_logs_evaluations(tokenizer):
    model = _model(tokenizer)
    config = sft.SFTConfig(max_steps=30, batch_size=16, learning_rate=1e-2, warmup_steps=2, eval_every=10,
                           eval_examples=5)
    history = sft.train_sft(model, tokenizer, TASK, config, seed=0)
    losses = history["loss"]
    assert len(losses) == 30 and losses[-5:].mean() < losses[:5].mean() - 0.5
    evaluated = history["eval_accuracy"][np.isfinite(history["eval_accuracy"])]
    assert len(evaluated) == 3 and all(0.0 <= a <= 1.0 for a in evaluated)
    assert not model.training


def test_sft_stops_at_the_target_accuracy(tokenizer, monkeypatch):
    monkeypatch.setattr(sft, "evaluate", lambda *args, **kwargs: evaluation.Evaluation(0.9, 5, 1, True, ()))
    config = sft.SFTConfig(max_steps=50, batch_size=8, eval_every=5, eval_examples=5, target_accuracy=0.8)
    history = sft.train_sft(_model(tokenizer), tokenizer, TASK, config, seed=0)
    assert history.last("step") == 5


def test_sft_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="SFTConfig.batch_size"):
        sft.SFTConfig(batch_size=0).validate()
    with pytest.raises(ValueError, match="target_accuracy"):
        sft.SFTConfig(target_accuracy=1.5).validate()


def test_evaluate_greedy_is_deterministic_and_sampling_is_seeded(tokenizer):
    model = _model(tokenizer)
    first = evaluation.evaluate(model, tokenizer, TASK, num_examples=4)
    assert first.completions == evaluation.evaluate(model, tokenizer, TASK, num_examples=4).completions
    sampled = [evaluation.evaluate(model, tokenizer, TASK, num_examples=4, greedy=False, num_generations=3,
                                   seed=s).completions for s in (0, 0, 1)]
    assert len(sampled[0]) == 12 and sampled[0] == sampled[1] and sampled[0] != sampled[2]
    with pytest.raises(ValueError, match="split"):
        evaluation.evaluate(model, tokenizer, TASK, split="valid")


def test_reinforce_rejects_a_reward_function_with_the_wrong_count_or_nan(tokenizer):
    config = policy_gradient.ReinforceLMConfig(steps=1, prompts_per_step=2, num_generations=2, eval_examples=2)
    with pytest.raises(ValueError, match="4"):
        policy_gradient.train_reinforce(_model(tokenizer), tokenizer, TASK, config,
                                        reward_fn=lambda prompts, completions: [1.0])
    with pytest.raises(ValueError, match="finite|NaN|nan"):
        policy_gradient.train_reinforce(_model(tokenizer), tokenizer, TASK, config,
                                        reward_fn=lambda prompts, completions: [math.nan] * len(completions))


def test_reinforce_logs_every_step_and_changes_the_model(tokenizer):
    model = _model(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    config = policy_gradient.ReinforceLMConfig(steps=3, prompts_per_step=4, num_generations=2, eval_every=3,
                                               eval_examples=4, learning_rate=1e-2)
    seen = []
    history = policy_gradient.train_reinforce(model, tokenizer, TASK, config, seed=0,
                                              reward_fn=lambda p, c: [float(len(x)) for x in c],
                                              callback=lambda step, h: seen.append(step))
    assert seen == [0, 1, 2, 3] and history.last("step") == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
