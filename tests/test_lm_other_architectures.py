"""course_lib.lm's sampler and log-probs on a model that is not GPT-2: a tiny Llama (rotary positions).

The lessons use GPT-2, but the functions take any causal LM. Here a 2-layer Llama, randomly
initialised with wide weights so that greedy outputs differ between prompts, must give the same
greedy tokens as ``generate`` on left-padded prompts, and the same completion log-probs as running
each row alone, unpadded.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from course_lib.lm import logprobs, sampling
from course_lib.lm.tokenizer import build_char_tokenizer

PROMPTS = ["<bos>92=", "<bos>6054=", "<bos>5=", "<bos>903="]


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer("0123456789+=")


@pytest.fixture(scope="module")
def llama(tok):
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3)
    return model.eval()


def test_greedy_equals_generate_on_a_llama(tok, llama):
    got = sampling.sample(llama, tok, PROMPTS, max_new_tokens=8, greedy=True)
    batch = tok(PROMPTS, padding=True, return_tensors="pt")
    out = llama.generate(**batch, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    assert torch.equal(got.completion_ids, out[:, batch["input_ids"].shape[1]:])
    assert len(set(got.texts)) > 1


def test_llama_completion_logps_do_not_depend_on_padding(tok, llama):
    got = sampling.sample(llama, tok, PROMPTS, num_generations=2, max_new_tokens=6, temperature=1.0,
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = logprobs.per_token_logps(llama, got.input_ids, got.attention_mask, got.logits_to_keep)
        batched = logprobs.sequence_logps(batched, got.completion_mask)  # (B,)
    for b in range(got.completion_ids.shape[0]):
        prompt = got.prompt_ids[b][got.prompt_mask[b].bool()]
        completion = got.completion_ids[b][got.completion_mask[b].bool()]
        ids = torch.cat([prompt, completion]).unsqueeze(0)  # (1, L), no padding
        with torch.no_grad():
            alone = logprobs.per_token_logps(llama, ids, torch.ones_like(ids), len(completion)).sum()
        assert batched[b].item() == pytest.approx(alone.item(), abs=1e-4)
