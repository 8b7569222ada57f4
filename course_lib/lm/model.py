"""The course's policy: a tiny GPT-2 built from a tokenizer, trained locally (lesson 04).

With the defaults (2 layers, 4 heads, 128 wide, 64 positions) and a character vocabulary the model
has about 0.4M parameters and trains in seconds on one CPU thread (platform.md, "A tiny language
model"). Every dropout is 0: with GPT-2's default of 0.1 the probability ratio of PPO and GRPO is
not 1 at step 0 and two forwards of one batch disagree (algorithms.md §10.6).

GPT-2 has *absolute* position embeddings, so a left-padded row must be given position ids that
start at 0 on its first real token (:func:`course_lib.lm.logprobs.position_ids_from_mask`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["tiny_gpt2", "check_compatible", "context_length"]


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def tiny_gpt2(tokenizer: PreTrainedTokenizerBase, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 128,
              n_positions: int = 64, seed: int = 0) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 sized to ``tokenizer``, with every dropout 0, in eval mode.

    The vocabulary size is ``len(tokenizer)`` and the pad/bos/eos ids are the tokenizer's (in the
    model config and its generation config, so ``generate`` pads and stops like the tokenizer says).
    The weights depend on ``seed`` only: the same seed gives identical parameters, and torch's global
    random state is left as it was. The model maps ``input_ids (B, T)`` to ``logits (B, T, V)``
    with ``T <= n_positions``.
    """
    for name, value in (("n_layer", n_layer), ("n_head", n_head), ("n_embd", n_embd), ("n_positions", n_positions)):
        _positive_int(name, value)
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define pad_token and eos_token (build it with build_char_tokenizer)")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, name, getattr(config, name))
    return model.eval()


def context_length(model: PreTrainedModel) -> int:
    """The most positions the model can attend over (``n_positions`` for GPT-2, else ``max_position_embeddings``)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"{type(config).__name__} defines neither n_positions nor max_position_embeddings")


def check_compatible(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise ``ValueError`` unless every token id of ``tokenizer`` has a row in the model's embedding.

    A model may have more embedding rows than the tokenizer has tokens (unused rows are harmless); a
    tokenizer with more tokens than rows would index past the embedding. The tokenizer must also
    define pad and eos, which padding, stopping and the completion mask need.
    """
    model_vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > model_vocab:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding has only {model_vocab} "
                         f"rows (vocab_size {model_vocab}): build the model from this tokenizer")
    for name in ("pad_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"tokenizer.{name} is None: sampling needs a pad token and an eos token")
