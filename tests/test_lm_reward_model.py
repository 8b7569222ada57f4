"""course_lib.lm.reward_model: the Bradley-Terry loss, where the score is read, preference pairs, training."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import GPT2ForSequenceClassification

from course_lib import training
from course_lib.lm import reward_model as rm
from course_lib.lm import sft, tasks
from course_lib.lm.logprobs import position_ids_from_mask
from course_lib.lm.model import tiny_gpt2
from course_lib.lm.tokenizer import build_char_tokenizer

TASK = tasks.AdditionTask(num_digits=1, num_train=80, num_test=20)
SHAPE = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 32}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The course's thread policy (runtime.set_torch_threads): on a busy 2-core machine two threads ran
    these tiny models several times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(TASK.alphabet)


def _one_label(config):
    """A copy of a GPT-2 config with one output label, for ``GPT2ForSequenceClassification``."""
    config = copy.deepcopy(config)
    config.num_labels = 1
    return config


def _random_head(model: rm.RewardModel, seed: int = 0) -> rm.RewardModel:
    """The head starts at zero (every reward 0): give it weights so rewards differ between rows."""
    with torch.no_grad():
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=torch.Generator().manual_seed(seed)))
    return model


@pytest.fixture(scope="module")
def model(tokenizer):
    return _random_head(rm.reward_model_from(tokenizer, seed=0, **SHAPE))


# --- the loss and the accuracy (hand values, algorithms.md §6; bug catalogue #15) ----------------------


def test_bradley_terry_loss_hand_values():
    assert rm.bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2), abs=1e-6)
    assert rm.bradley_terry_loss(torch.tensor([1.5]), torch.tensor([1.5])).item() == pytest.approx(0.693147, abs=1e-6)
    assert rm.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(0.126928, abs=1e-6)
    assert rm.bradley_terry_loss(torch.tensor([0.0]), torch.tensor([2.0])).item() == pytest.approx(2.126928, abs=1e-6)
    # a mean over pairs, and only the difference matters
    both = rm.bradley_terry_loss(torch.tensor([12.0, 5.0]), torch.tensor([10.0, 7.0])).item()
    assert both == pytest.approx((0.126928 + 2.126928) / 2, abs=1e-6)


def test_bradley_terry_loss_is_stable_where_log_of_sigmoid_is_not():
    chosen, rejected = torch.tensor([0.0]), torch.tensor([200.0])
    assert torch.log(torch.sigmoid(chosen - rejected)).item() == -math.inf  # the naive form: loss = inf
    loss = rm.bradley_terry_loss(chosen.requires_grad_(), rejected)
    assert loss.item() == pytest.approx(200.0)
    loss.backward()
    assert chosen.grad.item() == pytest.approx(-1.0)  # a finite, full-size gradient


def test_bradley_terry_gradient_raises_chosen_and_lowers_rejected():
    chosen = torch.tensor([0.5, -1.0], requires_grad=True)
    rejected = torch.tensor([0.0, 1.0], requires_grad=True)
    rm.bradley_terry_loss(chosen, rejected).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    expected = -torch.sigmoid(-(chosen - rejected)).detach() / 2  # d/dr_c of −logσ(r_c − r_r), mean over 2
    torch.testing.assert_close(chosen.grad, expected)
    torch.testing.assert_close(rejected.grad, -expected)


def test_pairwise_accuracy_counts_ties_as_wrong():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0, -1.0]), torch.tensor([0.0, 0.0, 3.0, -2.0])
    assert rm.pairwise_accuracy(chosen, rejected) == pytest.approx(0.5)
    assert rm.pairwise_accuracy(torch.zeros(4), torch.zeros(4)) == 0.0


def test_loss_and_accuracy_refuse_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        rm.bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="chosen_rewards must be a non-empty 1-D float"):
        rm.bradley_terry_loss(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="rejected_rewards"):
        rm.pairwise_accuracy(torch.zeros(2), torch.zeros(2, dtype=torch.long))


# --- where the score is read (bug catalogue #18) -----------------------------------------------------


def _rows(tokenizer, texts):
    return sft.encode_sft_batch(tokenizer, [tasks.Example(p, c, c) for p, c in texts])


def test_more_left_padding_leaves_every_reward_unchanged(tokenizer, model):
    texts = [("3+4=", "7"), ("9+9=", "18"), ("0+0=", "0")]
    batch = _rows(tokenizer, texts)
    with torch.no_grad():
        rewards = model(batch.input_ids, batch.attention_mask)  # (3,)
        pad = torch.full((3, 5), tokenizer.pad_token_id)
        padded = model(torch.cat([pad, batch.input_ids], 1), torch.cat([torch.zeros_like(pad), batch.attention_mask], 1))
        alone = torch.stack([rm.score(model, tokenizer, [p], [c])[0] for p, c in texts])
    torch.testing.assert_close(padded, rewards, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, rewards, atol=1e-5, rtol=0)


def test_right_padding_gives_the_same_rewards_and_reading_position_minus_one_does_not(tokenizer, model):
    batch = _rows(tokenizer, [("3+4=", "7"), ("9+9=", "18")])
    lengths = batch.attention_mask.sum(1)
    right_ids = torch.full_like(batch.input_ids, tokenizer.pad_token_id)
    right_mask = torch.zeros_like(batch.attention_mask)
    for i, n in enumerate(lengths.tolist()):
        right_ids[i, :n] = batch.input_ids[i, -n:]
        right_mask[i, :n] = 1
    with torch.no_grad():
        left = model(batch.input_ids, batch.attention_mask)
        right = model(right_ids, right_mask)
        hidden = model.transformer(input_ids=right_ids, attention_mask=right_mask,
                                   position_ids=position_ids_from_mask(right_mask)).last_hidden_state
        at_minus_one = model.score(hidden[:, -1]).squeeze(-1)  # the bug: position −1 is a pad of row 0
    torch.testing.assert_close(right, left, atol=1e-5, rtol=0)
    assert rm.last_token_index(right_mask).tolist() == [6, 7] and right_ids[0, -1] == tokenizer.pad_token_id
    assert abs(at_minus_one[0] - left[0]) > 1e-3  # so the test above can fail: the wrong reader differs
    torch.testing.assert_close(at_minus_one[1], left[1], atol=1e-5, rtol=0)  # the longest row has no pad


def test_reading_a_pad_position_or_ignoring_positions_would_change_the_reward(tokenizer, model):
    batch = _rows(tokenizer, [("3+4=", "7"), ("9+9=", "18")])  # row 0 has one left pad
    with torch.no_grad():
        right = model(batch.input_ids, batch.attention_mask)
        hidden = model.transformer(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        without_positions = model.score(hidden[:, -1]).squeeze(-1)
        at_pad = model.score(model.transformer(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                               position_ids=position_ids_from_mask(batch.attention_mask)
                                               ).last_hidden_state[:, 0]).squeeze(-1)
    assert abs(without_positions[0] - right[0]) > 1e-3  # GPT-2 positions shifted by the padding
    assert abs(at_pad[0] - right[0]) > 1e-3


def test_same_rewards_as_gpt2_for_sequence_classification_when_pad_differs_from_eos(tokenizer, model):
    hf = GPT2ForSequenceClassification(_one_label(model.config))
    missing = hf.load_state_dict(model.state_dict(), strict=False)
    assert not missing.unexpected_keys and all(".attn.bias" in key for key in missing.missing_keys)
    batch = _rows(tokenizer, [("3+4=", "7"), ("9+9=", "18"), ("1+0=", "1")])
    with torch.no_grad():
        ours = model(batch.input_ids, batch.attention_mask)
        theirs = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=position_ids_from_mask(batch.attention_mask)).logits.squeeze(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_pad_equal_to_eos_still_reads_the_eos(tokenizer):
    tok = build_char_tokenizer(TASK.alphabet)
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    model = _random_head(rm.reward_model_from(tok, seed=0, **SHAPE))
    batch = _rows(tok, [("3+4=", "7"), ("9+9=", "18")])
    assert batch.input_ids[0, 0] == tok.eos_token_id and batch.attention_mask[0, 0] == 0  # the pad is an eos id
    with torch.no_grad():
        rewards = rm.score(model, tok, ["3+4=", "9+9="], ["7", "18"])
        alone = rm.score(model, tok, ["3+4="], ["7"])
        row = batch.input_ids[1:, :]  # "<bos>9+9=18<eos>", no padding
        at_eos = model.score(model.transformer(input_ids=row).last_hidden_state[0, -1]).item()
        before_eos = model.score(model.transformer(input_ids=row).last_hidden_state[0, -2]).item()
    assert rewards[0].item() == pytest.approx(alone.item(), abs=1e-5)
    assert rewards[1].item() == pytest.approx(at_eos, abs=1e-5)
    # the "rightmost token that is not pad" rule of *ForSequenceClassification reads the token before EOS here
    non_pad = (batch.input_ids != tok.pad_token_id).long()
    assert (torch.arange(batch.input_ids.shape[1]) * non_pad).argmax(1).tolist() == [6, 6]
    assert rm.last_token_index(batch.attention_mask).tolist() == [7, 7]
    assert abs(before_eos - at_eos) > 1e-3
    hf = GPT2ForSequenceClassification(_one_label(model.config))
    hf.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        theirs = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=position_ids_from_mask(batch.attention_mask)).logits.squeeze(-1)
    assert theirs[1].item() == pytest.approx(before_eos, abs=1e-5)  # transformers 5.24: the token before EOS


def test_last_token_index_refuses_an_empty_row():
    assert rm.last_token_index(torch.tensor([[0, 1, 1], [1, 1, 0]])).tolist() == [2, 1]
    with pytest.raises(ValueError, match="without any real token"):
        rm.last_token_index(torch.tensor([[0, 0], [1, 1]]))


# --- building, errors ---------------------------------------------------------------------------------


def test_reward_model_from_a_policy_copies_its_body_and_leaves_it_alone(tokenizer):
    policy = tiny_gpt2(tokenizer, seed=3, **SHAPE)
    model = rm.reward_model_from(tokenizer, init_from=policy)
    for (name, ours), theirs in zip(model.transformer.named_parameters(), policy.transformer.parameters(), strict=True):
        assert torch.equal(ours, theirs), name
        assert ours.data_ptr() != theirs.data_ptr(), name  # a copy: training it never changes the policy
    assert not model.training and model.score.weight.abs().sum() == 0
    assert model.config is not policy.config
    with torch.no_grad():
        assert rm.score(model, tokenizer, ["1+2="], ["3"]).tolist() == [0.0]  # so the loss starts at ln 2


def test_vocabulary_mismatch_is_refused(tokenizer):
    bigger = build_char_tokenizer(TASK.alphabet + ",;")
    small_model = rm.reward_model_from(tokenizer, seed=0, **SHAPE)
    with pytest.raises(ValueError, match="tokenizer has 18 tokens but the model's embedding has only 16"):
        rm.score(small_model, bigger, ["1+2="], ["3"])
    with pytest.raises(ValueError, match="tokenizer has 18 tokens"):
        rm.reward_model_from(bigger, init_from=tiny_gpt2(tokenizer, **SHAPE))
    with pytest.raises(ValueError, match="init_from must be a GPT-2"):
        rm.reward_model_from(tokenizer, init_from=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="one length"):
        rm.score(small_model, tokenizer, ["1+2=", "1+1="], ["3"])


# --- preference pairs ----------------------------------------------------------------------------------


def test_near_misses_hand_cases():
    assert rm.near_misses("132") == {"±1": ["131", "133"], "±10": ["122", "142"], "swap": ["123", "312"],
                                     "drop": ["12", "13", "32"]}
    assert rm.near_misses("10") == {"±1": ["9", "11"], "±10": ["0", "20"], "swap": [], "drop": ["0", "1"]}
    assert rm.near_misses("0") == {"±1": ["1"], "±10": ["10"], "swap": [], "drop": []}
    assert rm.near_misses("11")["swap"] == []  # swapping equal digits gives the answer itself


def test_identical_chosen_and_rejected_is_refused():
    with pytest.raises(ValueError, match="chosen == rejected == '7'"):
        rm.PreferencePair("3+4=", "7", "7")
    with pytest.raises(ValueError, match="kind"):
        rm.PreferencePair("3+4=", "7", "8", kind="close")


def test_pairs_are_deterministic_wrong_and_near_misses_are_near():
    task = tasks.AdditionTask(num_digits=2, num_train=300, num_test=50)
    pairs = rm.preference_pairs(task, "train", 400, seed=5, near_miss_fraction=0.25)
    assert pairs == rm.preference_pairs(task, "train", 400, seed=5, near_miss_fraction=0.25)
    assert pairs != rm.preference_pairs(task, "train", 400, seed=6, near_miss_fraction=0.25)
    assert sum(pair.kind == "near" for pair in pairs) == 100
    answers = {example.prompt: example.completion for example in task.train}
    for pair in pairs:
        assert pair.chosen == answers[pair.prompt] and pair.rejected != pair.chosen
        assert task.score(pair.prompt, pair.rejected) == {"correct": 0.0, "format": 1.0, "length": len(pair.rejected)}
        close = {c for found in rm.near_misses(pair.chosen).values() for c in found}
        assert (pair.rejected in close) == (pair.kind == "near"), pair
        assert pair.kind == "near" or 0 <= int(pair.rejected) <= 198  # far misses: in the range of the answers
    assert {pair.prompt for pair in pairs} == set(answers)  # 400 > 300: every problem, then a second pass
    test_prompts = {pair.prompt for pair in rm.preference_pairs(task, "test", 50, seed=0)}
    assert test_prompts == {example.prompt for example in task.test}


def test_chain_sum_pairs_keep_the_worked_steps_and_change_the_answer():
    task = tasks.ChainSumTask(num_train=40, num_test=10)
    for pair in rm.preference_pairs(task, "train", 40, seed=0):
        head, _, answer = pair.chosen.rpartition(";")
        assert pair.rejected.startswith(head + ";") and pair.rejected != pair.chosen
        assert task.score(pair.prompt, pair.rejected)["correct"] == 0.0
        assert task.score(pair.prompt, pair.rejected)["steps_correct"] == 1.0


def test_preference_pairs_errors_name_the_argument():
    with pytest.raises(ValueError, match="split"):
        rm.preference_pairs(TASK, "validation", 10)
    with pytest.raises(ValueError, match="num_pairs"):
        rm.preference_pairs(TASK, "train", 0)
    with pytest.raises(ValueError, match="near_miss_fraction"):
        rm.preference_pairs(TASK, "train", 10, near_miss_fraction=1.5)


# --- training ------------------------------------------------------------------------------------------


def test_a_short_run_beats_chance_on_held_out_pairs(tokenizer):
    train_pairs = rm.preference_pairs(TASK, "train", 400, seed=0, near_miss_fraction=0.0)
    test_pairs = rm.preference_pairs(TASK, "test", 200, seed=10, near_miss_fraction=0.0)
    model = rm.reward_model_from(tokenizer, seed=0, **SHAPE)
    config = rm.RewardModelConfig(steps=200, batch_size=32, learning_rate=2e-3, warmup_steps=0, decay=False,
                                  eval_every=100)
    history = rm.train_reward_model(model, tokenizer, train_pairs, config, seed=0, eval_pairs=test_pairs)
    assert history["loss"][0] == pytest.approx(math.log(2), abs=1e-6)  # zero head: equal rewards at step 0
    assert history["accuracy"][0] == 0.0  # ties count as wrong
    assert set(history.keys()) == {"step", "loss", "accuracy", "margin", "learning_rate", "wall_seconds",
                                   "eval_accuracy"}
    # seeds 0-3 of pairs and model gave final losses 0.09-0.33 and held-out accuracies 0.77-0.97 in our runs
    assert history["loss"][-10:].mean() < 0.5
    assert history.last("eval_accuracy") == rm.evaluate_reward_model(model, tokenizer, test_pairs) > 0.65
    assert not model.training


def test_same_seed_same_run_and_a_nan_names_the_step(tokenizer):
    pairs = rm.preference_pairs(TASK, "train", 64, seed=0)
    config = rm.RewardModelConfig(steps=3, batch_size=16, learning_rate=1e-3)
    runs = [rm.train_reward_model(rm.reward_model_from(tokenizer, seed=0, **SHAPE), tokenizer, pairs, config, seed=2)
            for _ in range(2)]
    assert runs[0]["loss"].tolist() == runs[1]["loss"].tolist()

    def nan_loss(chosen, rejected):
        return rm.bradley_terry_loss(chosen, rejected) * math.nan

    history = training.History()
    with pytest.raises(training.NonFiniteError, match="reward-model loss became NaN at step 0"):
        rm.train_reward_model(rm.reward_model_from(tokenizer, seed=0, **SHAPE), tokenizer, pairs, config,
                              history=history, loss_fn=nan_loss)
    assert len(history) == 0


def test_training_scores_exactly_what_score_scores(tokenizer, model):
    pairs = rm.preference_pairs(TASK, "test", 20, seed=0) + [rm.PreferencePair("9+9=", "18", "")]
    chosen, rejected = rm.pair_rewards(model, tokenizer, pairs, batch_size=7)
    with torch.no_grad():
        prompts = [pair.prompt for pair in pairs]
        torch.testing.assert_close(chosen, rm.score(model, tokenizer, prompts, [p.chosen for p in pairs]),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(rejected, rm.score(model, tokenizer, prompts, [p.rejected for p in pairs]),
                                   atol=1e-5, rtol=0)
    ids, mask = rm._encode_pairs(tokenizer, pairs[:3], max_length=32)
    reference = sft.encode_sft_batch(tokenizer, [tasks.Example(p.prompt, p.chosen, p.chosen) for p in pairs[:3]])
    width = reference.input_ids.shape[1]
    assert torch.equal(ids[:3, -width:], reference.input_ids) and torch.equal(mask[:3, -width:], reference.attention_mask)


def test_learning_rate_warms_up_then_decays(tokenizer):
    pairs = rm.preference_pairs(TASK, "train", 32, seed=0)
    config = rm.RewardModelConfig(steps=6, batch_size=8, learning_rate=1e-3, warmup_steps=2, decay=True)
    history = rm.train_reward_model(rm.reward_model_from(tokenizer, seed=0, **SHAPE), tokenizer, pairs, config)
    expected = [5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4]
    assert history["learning_rate"].tolist() == pytest.approx(expected)


def test_config_and_training_errors_name_the_problem(tokenizer, model):
    with pytest.raises(ValueError, match="RewardModelConfig.steps"):
        rm.RewardModelConfig(steps=0).validate()
    with pytest.raises(ValueError, match="RewardModelConfig.learning_rate"):
        rm.RewardModelConfig(learning_rate=-1.0).validate()
    with pytest.raises(ValueError, match="PreferencePair"):
        rm.train_reward_model(model, tokenizer, [("1+2=", "3", "4")])
    with pytest.raises(ValueError, match="pairs is empty"):
        rm.evaluate_reward_model(model, tokenizer, [])
