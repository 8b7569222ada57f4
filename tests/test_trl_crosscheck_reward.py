"""Cross-check: our Bradley-Terry loss and reward model against TRL's ``RewardTrainer`` (checked with TRL 1.16).

TRL is an optional peer (``pip install "trl==1.16.*"``); without it this file is skipped. TRL is
imported inside the test only, never by ``course_lib``. The loss lives in
``RewardTrainer.compute_loss`` (no standalone function), so the test builds one trainer, sets
``trainer.model.train()`` and calls ``trainer.compute_loss(model, inputs)`` on a hand-built batch
(platform.md, "TRL as the production peer").

Our :class:`~course_lib.lm.reward_model.RewardModel` has the parameter names of
``GPT2ForSequenceClassification``, so TRL gets the very same weights. TRL right-pads with its own
collator and reads the rightmost non-pad token; ours left-pads, passes position ids and reads the
last real token from the mask. With pad ≠ eos both read the EOS, so the rewards, the loss, the
accuracy metric and every parameter's gradient must agree in fp32.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2ForSequenceClassification

from course_lib.lm import reward_model as rm
from course_lib.lm import tasks
from course_lib.lm.tokenizer import build_char_tokenizer

TRL_REASON = "TRL is an optional peer for this cross-check; install it with: pip install 'trl==1.16.*'"
SHAPE = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 32}


def _one_label(config):
    """A copy of a GPT-2 config with one output label, for ``GPT2ForSequenceClassification``."""
    config = copy.deepcopy(config)
    config.num_labels = 1
    return config


def test_bradley_terry_loss_and_gradients_match_trl_reward_trainer(tmp_path):
    pytest.importorskip("trl", reason=TRL_REASON)
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    task = tasks.AdditionTask(num_digits=2, num_train=20, num_test=5)
    tokenizer = build_char_tokenizer(task.alphabet)
    ours = rm.reward_model_from(tokenizer, seed=0, **SHAPE)
    with torch.no_grad():  # a non-zero head, so that rewards and the loss are not the trivial ln 2
        ours.score.weight.copy_(torch.randn(ours.score.weight.shape, generator=torch.Generator().manual_seed(1)))
    theirs = GPT2ForSequenceClassification(_one_label(ours.config))
    loaded = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not loaded.unexpected_keys and all(key.endswith(".attn.bias") for key in loaded.missing_keys)

    # pairs of different lengths, so that TRL's batch has right padding and ours left padding
    pairs = [rm.PreferencePair("47+85=", "132", "13"), rm.PreferencePair("3+4=", "7", "70"),
             rm.PreferencePair("99+99=", "198", "189"), rm.PreferencePair("0+5=", "5", "6")]

    def row(prompt: str, completion: str) -> list[int]:
        ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        return [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]

    features = [{"chosen_ids": row(p.prompt, p.chosen), "rejected_ids": row(p.prompt, p.rejected)} for p in pairs]
    args = RewardConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                        per_device_train_batch_size=len(pairs), disable_dropout=True, activation_checkpointing=False,
                        center_rewards_coefficient=None, save_strategy="no", logging_strategy="no")
    trainer = RewardTrainer(model=theirs, args=args, train_dataset=Dataset.from_list(features),
                            processing_class=tokenizer)
    assert trainer.model.config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    assert trainer.args.gradient_checkpointing is False  # TRL defaults it to True (transformers 5: activation_checkpointing)
    inputs = trainer.data_collator(features)  # TRL's own collator: chosen rows, then rejected rows, right-padded
    assert (inputs["attention_mask"][:, -1] == 0).any()  # some rows really are padded
    trainer.model.train()
    trl_loss, outputs = trainer.compute_loss(trainer.model, inputs, return_outputs=True)
    trl_loss.backward()

    ours.train()
    prompts = [p.prompt for p in pairs]
    chosen_rewards = rm.score(ours, tokenizer, prompts, [p.chosen for p in pairs])  # (4,)
    rejected_rewards = rm.score(ours, tokenizer, prompts, [p.rejected for p in pairs])  # (4,)
    loss = rm.bradley_terry_loss(chosen_rewards, rejected_rewards)
    loss.backward()

    torch.testing.assert_close(torch.cat([chosen_rewards, rejected_rewards]), outputs.logits.squeeze(-1),
                               atol=1e-5, rtol=1e-5)
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert abs(loss.item() - 0.693147) > 1e-2  # not the trivial value at equal rewards
    assert rm.pairwise_accuracy(chosen_rewards, rejected_rewards) == trainer._metrics["train"]["accuracy"][-1]
    trl_grads = dict(trainer.model.named_parameters())
    for name, parameter in ours.named_parameters():
        # fp32 rounding between two graphs: about 1e-5 of each tensor's largest entry (measured up to 7e-6)
        scale = parameter.grad.abs().max().item()
        assert (parameter.grad - trl_grads[name].grad).abs().max().item() <= 5e-5 * scale + 1e-8, name
