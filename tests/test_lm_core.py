"""Unit tests of course_lib.lm.tokenizer, .model and .logprobs: hand-computed cases and round-trips.

The model-level equivalences (vectorised log-probs against a loop over tokens, left padding,
temperature, the shift, generate's scores) are in ``tests/test_lm_sampling.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_lib.lm import logprobs, model, tokenizer

ALPHABET = "0123456789+="


@pytest.fixture(scope="module")
def tok():
    return tokenizer.build_char_tokenizer(ALPHABET)


@pytest.fixture(scope="module")
def gpt(tok):
    return model.tiny_gpt2(tok, n_embd=32, n_head=2, n_positions=24, seed=3)


# --- tokenizer ------------------------------------------------------------------------------------


def test_tokenizer_ids_are_specials_then_the_alphabet(tok):
    assert len(tok) == 4 + len(ALPHABET)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_ids_to_tokens(list(range(len(tok)))) == ["<pad>", "<bos>", "<eos>", "<unk>", *ALPHABET]
    assert tok("12+3=")["input_ids"] == [5, 6, 14, 7, 15]  # one id per character, nothing added around
    assert tok("1x")["input_ids"] == [5, 3]  # outside the alphabet: <unk>
    assert tok.decode(tok("12+34=")["input_ids"]) == "12+34="


def test_tokenizer_pads_on_the_left(tok):
    batch = tok(["1+2=", "12+34="], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == [[0, 0, 5, 14, 6, 15], [5, 6, 14, 7, 8, 15]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1], [1] * 6]


@pytest.mark.parametrize("alphabet, words", [
    ("", "non-empty"),
    ("0120", "repeated characters ['0']"),
    ("<bos>", "can spell the special token(s) ['<bos>']"),
    ("<>adpu", "['<pad>']"),
])
def test_tokenizer_rejects_bad_alphabets(alphabet, words):
    with pytest.raises(ValueError, match="alphabet") as error:
        tokenizer.build_char_tokenizer(alphabet)
    assert words in str(error.value)


def test_tokenizer_save_and_reload_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = ["1+2=", "99+99=", "7x", "<eos>3"]
    assert reloaded(texts, padding=True)["input_ids"] == tok(texts, padding=True)["input_ids"]
    assert reloaded.padding_side == "left" and len(reloaded) == len(tok)
    assert (reloaded.pad_token_id, reloaded.bos_token_id, reloaded.eos_token_id) == (0, 1, 2)
    assert reloaded.decode(reloaded("12+3=")["input_ids"]) == "12+3="


# --- model ----------------------------------------------------------------------------------------


def test_tiny_gpt2_takes_sizes_and_ids_from_the_tokenizer(tok, gpt):
    config = gpt.config
    assert config.vocab_size == len(tok) == gpt.get_input_embeddings().num_embeddings
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)
    assert gpt.generation_config.pad_token_id == 0 and gpt.generation_config.eos_token_id == 2
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == config.summary_first_dropout == 0.0
    assert not gpt.training
    assert model.context_length(gpt) == 24
    default = model.tiny_gpt2(tok)
    assert (default.config.n_layer, default.config.n_head, default.config.n_embd, model.context_length(default)) \
        == (2, 4, 128, 64)


def test_tiny_gpt2_is_seeded_and_leaves_the_global_rng_alone(tok, gpt):
    state = torch.get_rng_state()
    same = model.tiny_gpt2(tok, n_embd=32, n_head=2, n_positions=24, seed=3)
    other = model.tiny_gpt2(tok, n_embd=32, n_head=2, n_positions=24, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(gpt.parameters(), same.parameters(), strict=True))
    assert not torch.equal(gpt.transformer.wte.weight, other.transformer.wte.weight)


def test_two_forwards_agree_in_train_mode(tok, gpt):
    """Dropout is 0 everywhere, so train mode gives the eval-mode logits (ratio 1 at step 0)."""
    ids = torch.tensor([[5, 14, 6, 15]])
    with torch.no_grad():
        eval_logits = gpt(ids).logits
        gpt.train()
        train_logits = gpt(ids).logits
        gpt.eval()
    assert torch.equal(eval_logits, train_logits)


def test_model_save_and_reload_bit_for_bit(gpt, tmp_path):
    gpt.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ours, theirs = gpt.state_dict(), reloaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    ids = torch.tensor([[5, 14, 6, 15, 7]])
    with torch.no_grad():
        assert torch.equal(gpt(ids).logits, reloaded.eval()(ids).logits)


def test_check_compatible(tok, gpt):
    model.check_compatible(gpt, tok)
    bigger = tokenizer.build_char_tokenizer(ALPHABET + "abc")
    with pytest.raises(ValueError, match=r"tokenizer has 19 tokens but the model's embedding has only 16"):
        model.check_compatible(gpt, bigger)
    model.check_compatible(model.tiny_gpt2(bigger, n_embd=32, n_head=2), tok)  # spare rows are fine
    no_pad = tokenizer.build_char_tokenizer(ALPHABET)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="pad_token_id"):
        model.check_compatible(gpt, no_pad)


@pytest.mark.parametrize("kwargs, words", [
    ({"n_embd": 30, "n_head": 4}, "multiple of n_head"),
    ({"n_layer": 0}, "n_layer must be a positive int"),
    ({"seed": -1}, "seed"),
])
def test_tiny_gpt2_rejects_bad_sizes(tok, kwargs, words):
    with pytest.raises(ValueError, match=words):
        model.tiny_gpt2(tok, **kwargs)


# --- log-probs: pure tensors ----------------------------------------------------------------------


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]])
    assert logprobs.position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 1, 0, 0]]
    assert logprobs.position_ids_from_mask(mask.bool()).dtype == torch.int64


def test_token_logps_from_logits_hand_computed():
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]]])  # (1, 2, 2): p = [1/4, 3/4], [1/2, 1/2]
    labels = torch.tensor([[1, 0]])
    expected = torch.tensor([[math.log(0.75), math.log(0.5)]])
    assert torch.allclose(logprobs.token_logps_from_logits(logits, labels), expected, atol=1e-7)


def test_token_logps_from_logits_upcasts_half_precision():
    g = torch.Generator().manual_seed(0)
    logits = (20 * torch.randn(2, 3, 50, generator=g)).to(torch.bfloat16)
    labels = torch.randint(0, 50, (2, 3), generator=g)
    got = logprobs.token_logps_from_logits(logits, labels)
    naive = torch.stack([torch.stack([torch.log_softmax(logits[b, t].double(), -1)[labels[b, t]]
                                      for t in range(3)]) for b in range(2)])
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), naive, atol=1e-5)
    in_bf16 = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert not torch.allclose(in_bf16.double(), naive, atol=1e-3)  # what the upcast is for


def test_sequence_logps_sum_and_mean():
    per_token = torch.tensor([[-1.0, -2.0, -4.0], [-0.5, -float("inf"), -3.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    total = logprobs.sequence_logps(per_token, mask)
    assert total.tolist() == [-3.0, -0.5]  # the -inf behind the mask gives 0, not NaN
    (grad,) = torch.autograd.grad(total.sum(), per_token)
    assert grad.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert logprobs.sequence_logps(per_token, mask, reduction="mean").tolist() == [-1.5, -0.5]
    assert logprobs.sequence_logps(per_token.detach()[:, :1], torch.zeros(2, 1), reduction="mean").tolist() == [0, 0]


@pytest.mark.parametrize("call, words", [
    (lambda: logprobs.sequence_logps(torch.zeros(2, 3), torch.ones(2, 4)), "completion_mask must have the shape"),
    (lambda: logprobs.sequence_logps(torch.zeros(0, 3), torch.ones(0, 3)), "empty batch"),
    (lambda: logprobs.sequence_logps(torch.zeros(2, 3), 2 * torch.ones(2, 3)), "only 0s and 1s"),
    (lambda: logprobs.sequence_logps(torch.zeros(2, 3), torch.ones(2, 3), reduction="max"), "reduction"),
    (lambda: logprobs.sequence_logps(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3)), "floating point"),
    (lambda: logprobs.token_logps_from_logits(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)), "3-D"),
    (lambda: logprobs.token_logps_from_logits(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long)),
     "actions must have shape"),
    (lambda: logprobs.position_ids_from_mask(torch.ones(3)), "2-D"),
])
def test_pure_functions_reject_bad_input(call, words):
    with pytest.raises(ValueError, match=words):
        call()


# --- log-probs: validation of the model forward ---------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"logits_to_keep": 0}, r"logits_to_keep must be an int in \[1, 4\]"),
    ({"logits_to_keep": 5}, r"in \[1, 4\]"),
    ({"logits_to_keep": 2.0}, "logits_to_keep"),
    ({"temperature": 0.0}, "temperature must be a positive"),
    ({"temperature": -1.0}, "temperature"),
    ({"attention_mask": torch.ones(2, 4, dtype=torch.long)}, "attention_mask must have the shape of input_ids"),
    ({"input_ids": torch.zeros(0, 5, dtype=torch.long), "attention_mask": torch.ones(0, 5)}, "empty batch"),
    ({"input_ids": torch.zeros(2, 5)}, "integer token ids"),
])
def test_per_token_logps_rejects_bad_input(gpt, kwargs, words):
    arguments = {"input_ids": torch.full((2, 5), 5), "attention_mask": torch.ones(2, 5, dtype=torch.long),
                 "logits_to_keep": 2, "temperature": 1.0, **kwargs}
    with pytest.raises(ValueError, match=words):
        logprobs.per_token_logps(gpt, **arguments)


def test_per_token_logps_matches_a_full_forward_on_unpadded_rows(gpt):
    """Hand-aligned reference: logits of the whole sequence, position t scoring token t+1."""
    ids = torch.tensor([[5, 14, 6, 15, 7, 2], [9, 9, 14, 9, 15, 4]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        got = logprobs.per_token_logps(gpt, ids, mask, logits_to_keep=3, temperature=0.5)
        log_probs = torch.log_softmax(gpt(ids).logits.double() / 0.5, dim=-1)  # (B, L, V)
    expected = torch.stack([log_probs[b, [2, 3, 4], ids[b, [3, 4, 5]]] for b in range(2)])
    assert got.shape == (2, 3) and got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, atol=1e-5)
