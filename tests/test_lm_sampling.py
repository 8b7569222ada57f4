"""Tests of course_lib.lm.sampling and of the log-probs of sampled batches, against independent references.

The references: ``model.generate`` (greedy tokens, scores, and sampled frequencies), the exact
two-token distribution computed by plain forwards of unpadded rows, and a loop over tokens that
runs the model on one unpadded row at a time. Each reference test also shows that a known bug
(no temperature, no position ids, an off-by-one shift, a mask from ``ids != pad``) fails it.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from course_lib.lm import logprobs, model, sampling, tokenizer

ALPHABET = "0123456789+="
PROMPTS = ["92=", "6054=", "5=", "903="]  # different lengths, so the batch is left-padded


@pytest.fixture(scope="module")
def tok():
    return tokenizer.build_char_tokenizer(ALPHABET)


@pytest.fixture(scope="module")
def random_gpt(tok):
    """Random weights at a larger scale than GPT-2's init, so greedy paths differ between prompts."""
    gpt = model.tiny_gpt2(tok, n_positions=32, seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in gpt.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.3, generator=g)
    return gpt


def _reversal_example(rng: random.Random) -> tuple[str, str]:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
    return digits + "=", digits[::-1] + "<eos>"


@pytest.fixture(scope="module")
def trained_gpt(tok):
    """40 SFT steps on "digits=" → reversed digits, EOS: enough that EOS ends rows at different lengths."""
    gpt = model.tiny_gpt2(tok, n_positions=32, seed=0)
    rng = random.Random(0)
    optimizer = torch.optim.Adam(gpt.parameters(), lr=3e-3)
    for _ in range(40):
        pairs = [_reversal_example(rng) for _ in range(32)]
        batch = tok([prompt + answer for prompt, answer in pairs], padding=True, return_tensors="pt")
        answer_lengths = torch.tensor([len(tok(answer)["input_ids"]) for _, answer in pairs])
        width = int(answer_lengths.max())
        answer_mask = torch.arange(width).unsqueeze(0) >= width - answer_lengths.unsqueeze(1)  # right-aligned
        per_token = logprobs.per_token_logps(gpt, batch["input_ids"], batch["attention_mask"], width)
        loss = -logprobs.sequence_logps(per_token, answer_mask).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return gpt.eval()


def _generate(gpt, tok, prompts, **kwargs) -> torch.Tensor:
    """``model.generate``'s new tokens ``(B, C)`` for left-padded prompts (the independent reference)."""
    batch = tok(prompts, padding=True, return_tensors="pt")
    out = gpt.generate(**batch, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kwargs)
    return out[:, batch["input_ids"].shape[1]:]


def _naive_logps(gpt, tok, completions: sampling.Completions, temperature: float) -> list[torch.Tensor]:
    """The loop over tokens: each row alone, unpadded, one forward per completion token (float64 log_softmax)."""
    rows = []
    for b in range(completions.completion_ids.shape[0]):
        prompt = completions.prompt_ids[b][completions.prompt_mask[b].bool()].tolist()
        completion = completions.completion_ids[b][completions.completion_mask[b].bool()].tolist()
        values = []
        for i, token in enumerate(completion):
            with torch.no_grad():
                logits = gpt(torch.tensor([prompt + completion[:i]])).logits[0, -1]  # (V,)
            values.append(torch.log_softmax(logits.double() / temperature, dim=-1)[token])
        rows.append(torch.stack(values))
    return rows


def _masked_rows(per_token: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [per_token[b][mask[b].bool()].double() for b in range(per_token.shape[0])]


def _max_error(rows: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return max(float((row - ref).abs().max()) for row, ref in zip(rows, reference, strict=True))


# --- greedy decoding equals generate --------------------------------------------------------------


@pytest.mark.parametrize("which", ["random_gpt", "trained_gpt"])
def test_greedy_equals_generate_on_left_padded_prompts(request, tok, which):
    gpt = request.getfixturevalue(which)
    got = sampling.sample(gpt, tok, PROMPTS, max_new_tokens=10, greedy=True)
    assert torch.equal(got.completion_ids, _generate(gpt, tok, PROMPTS, do_sample=False, max_new_tokens=10))
    assert len(set(got.texts)) == len(PROMPTS)  # the prompts really lead to different outputs


def test_trained_model_stops_at_eos_and_the_mask_keeps_it(tok, trained_gpt):
    prompts = ["92=", "6054=", "5=", "903=", "17=", "4="]
    got = sampling.sample(trained_gpt, tok, prompts, max_new_tokens=10, greedy=True)
    eos = tok.eos_token_id
    lengths = got.completion_mask.sum(dim=1)
    assert len(set(lengths.tolist())) >= 3 and got.completion_ids.shape[1] < 10  # stopped early
    for b in range(len(prompts)):
        n = int(lengths[b])
        assert got.completion_ids[b, n - 1] == eos and (got.completion_ids[b, : n - 1] != eos).all()
        assert (got.completion_ids[b, n:] == tok.pad_token_id).all()
        assert got.texts[b] == tok.decode(got.completion_ids[b, : n - 1].tolist())
    assert sum(text == prompt[:-1][::-1] for text, prompt in zip(got.texts, prompts, strict=True)) >= 3  # learning
    assert torch.equal(got.completion_ids, _generate(trained_gpt, tok, prompts, do_sample=False, max_new_tokens=10))


def test_pad_equal_to_eos_keeps_the_first_eos_in_the_mask(tok, trained_gpt):
    pad_is_eos = copy.deepcopy(tok)
    pad_is_eos.pad_token = pad_is_eos.eos_token
    assert pad_is_eos.pad_token_id == pad_is_eos.eos_token_id == 2
    got = sampling.sample(trained_gpt, pad_is_eos, PROMPTS, max_new_tokens=10, greedy=True)
    plain = sampling.sample(trained_gpt, tok, PROMPTS, max_new_tokens=10, greedy=True)
    assert torch.equal(got.completion_mask, plain.completion_mask) and got.texts == plain.texts
    assert torch.equal(got.completion_ids, _generate(trained_gpt, pad_is_eos, PROMPTS, do_sample=False,
                                                     max_new_tokens=10))
    ends = got.completion_mask.sum(dim=1) - 1  # index of the first EOS in every row
    assert (got.completion_ids[torch.arange(len(PROMPTS)), ends] == 2).all()
    assert (got.completion_mask[torch.arange(len(PROMPTS)), ends] == 1).all()
    wrong = (got.completion_ids != pad_is_eos.pad_token_id).long()  # bug #19: drops the EOS itself
    assert not torch.equal(wrong, got.completion_mask)


def test_completion_mask_from_ids_hand_computed():
    ids = torch.tensor([[5, 2, 7, 2], [2, 0, 0, 0], [5, 6, 7, 8], [5, 6, 7, 2]])
    assert sampling.completion_mask_from_ids(ids, eos_token_id=2).tolist() == [
        [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]


# --- sampled tokens follow softmax(logits / T) ----------------------------------------------------


def _exact_two_token_probs(gpt, tok, prompt: str, temperature: float) -> torch.Tensor:
    """p(t1, t2 | prompt) ``(V, V)`` from plain forwards of unpadded rows; after EOS the sampler pads."""
    ids = tok(prompt)["input_ids"]
    vocab = len(tok)
    with torch.no_grad():
        first = torch.softmax(gpt(torch.tensor([ids])).logits[0, -1].double() / temperature, dim=-1)  # (V,)
        rows = torch.tensor([ids + [t] for t in range(vocab)])  # (V, P + 1): every first token
        second = torch.softmax(gpt(rows).logits[:, -1].double() / temperature, dim=-1)  # (V, V)
    second[tok.eos_token_id] = 0.0
    second[tok.eos_token_id, tok.pad_token_id] = 1.0
    return first.unsqueeze(1) * second  # (V, V)


def _frequencies(first_two: torch.Tensor, vocab: int) -> torch.Tensor:
    counts = torch.bincount(first_two[:, 0] * vocab + first_two[:, 1], minlength=vocab * vocab)
    return counts.double().reshape(vocab, vocab) / first_two.shape[0]


def _within_five_sigma(freq: torch.Tensor, probs: torch.Tensor, n: int) -> bool:
    return bool(((freq - probs).abs() <= 5 * (probs * (1 - probs) / n).sqrt() + 2 / n).all())


def test_sampled_two_token_frequencies_match_softmax_over_temperature(tok, random_gpt):
    temperature, n = 0.7, 6000
    prompts = ["92=", "6054="]
    got = sampling.sample(random_gpt, tok, prompts, num_generations=n, max_new_tokens=2, temperature=temperature,
                          generator=torch.Generator().manual_seed(0))
    vocab = len(tok)
    for k, prompt in enumerate(prompts):
        freq = _frequencies(got.completion_ids[k * n:(k + 1) * n, :2], vocab)
        probs = _exact_two_token_probs(random_gpt, tok, prompt, temperature)
        assert _within_five_sigma(freq, probs, n), float((freq - probs).abs().max())
        # The test can fail: the same samples are far from the distribution without the temperature.
        assert not _within_five_sigma(freq, _exact_two_token_probs(random_gpt, tok, prompt, 1.0), n)


def test_generate_samples_the_same_distribution(tok, random_gpt):
    """generate(do_sample=True, top_k=0) agrees with the exact reference, which checks the reference itself."""
    temperature, n = 0.7, 4000
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        new = _generate(random_gpt, tok, ["6054="] * n, do_sample=True, temperature=temperature, top_k=0,
                        max_new_tokens=2)
    freq = _frequencies(new[:, :2], len(tok))
    assert _within_five_sigma(freq, _exact_two_token_probs(random_gpt, tok, "6054=", temperature), n)


def test_a_seeded_generator_reproduces_samples_and_leaves_the_global_rng_alone(tok, random_gpt):
    state = torch.get_rng_state()
    draws = [sampling.sample(random_gpt, tok, PROMPTS, num_generations=3, max_new_tokens=6,
                             generator=torch.Generator().manual_seed(seed)) for seed in (7, 7, 8)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(draws[0].completion_ids, draws[1].completion_ids) and draws[0].texts == draws[1].texts
    assert not torch.equal(draws[0].completion_ids, draws[2].completion_ids)


def test_rows_are_prompt_major(tok, random_gpt):
    got = sampling.sample(random_gpt, tok, PROMPTS, num_generations=3, max_new_tokens=4, greedy=True)
    assert got.num_generations == 3 and got.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    alone = tok(PROMPTS, padding=True, return_tensors="pt")
    assert torch.equal(got.prompt_ids, alone["input_ids"].repeat_interleave(3, dim=0))
    assert torch.equal(got.prompt_mask, alone["attention_mask"].repeat_interleave(3, dim=0))
    assert torch.equal(got.input_ids, torch.cat([got.prompt_ids, got.completion_ids], dim=1))
    assert torch.equal(got.attention_mask, torch.cat([got.prompt_mask, got.completion_mask], dim=1))
    assert got.logits_to_keep == got.completion_ids.shape[1]
    assert got.texts[0] == got.texts[1] == got.texts[2] != got.texts[3]


@pytest.mark.parametrize("prompts, kwargs, words", [
    ([], {}, "non-empty list of str"),
    (["1="], {"num_generations": 0}, "num_generations must be an int >= 1"),
    (["1="], {"max_new_tokens": 0}, "max_new_tokens"),
    (["1="], {"temperature": 0.0}, "temperature must be a positive"),
    (["1=", ""], {}, "prompt '' encodes to no tokens"),
    (["1=", "1234567890+1234567890="], {"max_new_tokens": 11},
     "'1234567890\\+1234567890=' has 22 tokens, and with max_new_tokens=11 that exceeds the model's context of 32"),
])
def test_sample_rejects_bad_arguments(tok, random_gpt, prompts, kwargs, words):
    if "max_new_tokens" in kwargs and kwargs["max_new_tokens"] > 1:  # one token less fits exactly
        sampling.sample(random_gpt, tok, prompts, greedy=True, max_new_tokens=kwargs["max_new_tokens"] - 1)
    with pytest.raises(ValueError, match=words):
        sampling.sample(random_gpt, tok, prompts, **{"max_new_tokens": 4, **kwargs})


def test_sample_rejects_a_tokenizer_the_model_cannot_embed(random_gpt):
    bigger = tokenizer.build_char_tokenizer(ALPHABET + "abc")
    with pytest.raises(ValueError, match="tokenizer has 19 tokens"):
        sampling.sample(random_gpt, bigger, ["1="], max_new_tokens=2)


def test_greedy_ignores_the_temperature(tok, random_gpt):
    cold = sampling.sample(random_gpt, tok, PROMPTS, max_new_tokens=5, greedy=True, temperature=0.0)
    warm = sampling.sample(random_gpt, tok, PROMPTS, max_new_tokens=5, greedy=True, temperature=3.0)
    assert torch.equal(cold.completion_ids, warm.completion_ids)


# --- log-probs of sampled batches against the loop over tokens ------------------------------------


@pytest.fixture(scope="module")
def sampled(tok, trained_gpt) -> sampling.Completions:
    """Sampled at T = 0.7 from the trained model: rows end at different lengths, some never end."""
    got = sampling.sample(trained_gpt, tok, PROMPTS, num_generations=3, max_new_tokens=6, temperature=0.7,
                          generator=torch.Generator().manual_seed(1))
    lengths = got.completion_mask.sum(dim=1)
    assert lengths.min() < lengths.max() and (got.completion_mask[:, -1] == 0).any()
    return got


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_per_token_logps_equal_the_loop_over_tokens(tok, trained_gpt, sampled, temperature):
    with torch.no_grad():
        per_token = logprobs.per_token_logps(trained_gpt, sampled.input_ids, sampled.attention_mask,
                                             sampled.logits_to_keep, temperature=temperature)
    naive = _naive_logps(trained_gpt, tok, sampled, temperature)
    assert per_token.shape == sampled.completion_ids.shape
    assert _max_error(_masked_rows(per_token, sampled.completion_mask), naive) < 1e-5
    totals = logprobs.sequence_logps(per_token, sampled.completion_mask)
    assert torch.allclose(totals.double(), torch.stack([row.sum() for row in naive]), atol=1e-5)
    other = _naive_logps(trained_gpt, tok, sampled, 1.7 - temperature)  # the temperature matters
    assert _max_error(_masked_rows(per_token, sampled.completion_mask), other) > 1e-2


def test_an_off_by_one_shift_fails_the_loop_reference(tok, trained_gpt, sampled):
    """The bug: scoring token t with the logits at t (no shift) gives other numbers."""
    keep = sampled.logits_to_keep
    with torch.no_grad():
        logits = trained_gpt(input_ids=sampled.input_ids, attention_mask=sampled.attention_mask,
                             position_ids=logprobs.position_ids_from_mask(sampled.attention_mask)).logits
    unshifted = logprobs.token_logps_from_logits(logits[:, -keep:], sampled.input_ids[:, -keep:])
    shifted = logprobs.token_logps_from_logits(logits[:, -keep - 1:-1], sampled.input_ids[:, -keep:])
    naive = _naive_logps(trained_gpt, tok, sampled, 1.0)
    assert _max_error(_masked_rows(shifted, sampled.completion_mask), naive) < 1e-5
    assert _max_error(_masked_rows(unshifted, sampled.completion_mask), naive) > 1e-1


def test_left_padding_changes_nothing_unless_position_ids_are_ignored(tok, trained_gpt, sampled, monkeypatch):
    """Bug catalogue #26: a row scores the same alone and left-padded in a batch, thanks to position ids."""
    row = int(sampled.prompt_mask.sum(dim=1).argmin())  # the shortest prompt: the most left padding
    keep = sampled.logits_to_keep
    real = sampled.attention_mask[row].bool()
    real[-keep:] = True  # keep every completion column, so the row alone has the same C
    alone_ids = sampled.input_ids[row][real].unsqueeze(0)
    alone_mask = sampled.attention_mask[row][real].unsqueeze(0)
    columns = sampled.completion_mask[row].bool()

    def row_logps() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            batch = logprobs.per_token_logps(trained_gpt, sampled.input_ids, sampled.attention_mask, keep)
            alone = logprobs.per_token_logps(trained_gpt, alone_ids, alone_mask, keep)
        return batch[row][columns], alone[0][columns]

    in_batch, alone = row_logps()
    assert (sampled.prompt_mask[row] == 0).sum() >= 2
    assert torch.allclose(in_batch, alone, atol=1e-5)
    monkeypatch.setattr(logprobs, "position_ids_from_mask",
                        lambda mask: torch.arange(mask.shape[1]).expand(mask.shape[0], -1))
    in_batch, alone = row_logps()
    assert (in_batch - alone).abs().max() > 1e-2


def test_appended_padding_changes_nothing(trained_gpt, sampled):
    """Bug catalogue #18: pad columns after the completion, masked out, leave every log-prob as it was."""
    extra = torch.zeros(sampled.completion_ids.shape[0], 3, dtype=torch.long)
    ids = torch.cat([sampled.input_ids, extra], dim=1)
    mask = torch.cat([sampled.attention_mask, extra], dim=1)
    completion_mask = torch.cat([sampled.completion_mask, extra], dim=1)
    with torch.no_grad():
        before = logprobs.per_token_logps(trained_gpt, sampled.input_ids, sampled.attention_mask,
                                          sampled.logits_to_keep)
        after = logprobs.per_token_logps(trained_gpt, ids, mask, sampled.logits_to_keep + 3)
    assert torch.allclose(after[:, :-3], before, atol=1e-6)
    assert torch.allclose(logprobs.sequence_logps(after, completion_mask),
                          logprobs.sequence_logps(before, sampled.completion_mask), atol=1e-5)


def test_per_token_logps_match_generate_scores(tok, trained_gpt):
    """Bug catalogue #26 the other way: the log-prob forward agrees with generate's own logits."""
    batch = tok(PROMPTS, padding=True, return_tensors="pt")
    out = trained_gpt.generate(**batch, do_sample=False, max_new_tokens=6, output_logits=True,
                               return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
    got = sampling.sample(trained_gpt, tok, PROMPTS, max_new_tokens=6, greedy=True)
    assert torch.equal(got.completion_ids, out.sequences[:, batch["input_ids"].shape[1]:])
    scores = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # (B, C, V)
    expected = scores.gather(-1, got.completion_ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        per_token = logprobs.per_token_logps(trained_gpt, got.input_ids, got.attention_mask, got.logits_to_keep)
    mask = got.completion_mask.bool()
    assert torch.allclose(per_token[mask], expected[mask], atol=1e-5)
