"""A character-level tokenizer for the course's tiny language models, built offline (lesson 04).

One token per character of an alphabet, after four special tokens, so a learner can read every
token id of a batch by eye. It is a ``tokenizers`` ``WordLevel`` vocabulary with a pre-tokenizer
that isolates every character and a ``Fuse`` decoder (decoding gives the string back), wrapped in
:class:`transformers.PreTrainedTokenizerFast` so it saves, reloads (``AutoTokenizer``), pads and
batches like any Hugging Face tokenizer. No model hub is involved.

Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, then the alphabet in order. Nothing is
added around an encoded string (no BOS/EOS post-processor): ``"1+2="`` is four ids, and the caller
decides where a ``<bos>`` or an ``<eos>`` goes. Padding is on the left, as batched generation with
a decoder-only model needs (algorithms.md §10.4).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "build_char_tokenizer"]

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
"""The special tokens, in id order: pad 0, bos 1, eos 2, unk 3."""


def _check_alphabet(alphabet: str) -> None:
    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError(f"alphabet must be a non-empty str of characters, got {alphabet!r}")
    repeated = sorted({char for char in alphabet if alphabet.count(char) > 1})
    if repeated:
        raise ValueError(f"alphabet has repeated characters {repeated}: each character must be one token")
    # Special tokens are matched in the raw text before it is split into characters: if the alphabet
    # can spell one, that text would silently encode as the special token instead of its characters.
    clashes = [token for token in SPECIAL_TOKENS if set(token) <= set(alphabet)]
    if clashes:
        raise ValueError(f"alphabet {alphabet!r} can spell the special token(s) {clashes}, so such text would "
                         f"encode as the special token; drop '<' or '>' from the alphabet")


def build_char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A character tokenizer over ``alphabet``: specials ``<pad> <bos> <eos> <unk>``, then one id per char.

    ``len(tokenizer) == 4 + len(alphabet)``. Characters outside the alphabet encode as ``<unk>``.
    Encoding a batch returns ``input_ids`` and ``attention_mask`` of shape ``(B, T)``, left-padded
    with ``<pad>``; ``decode`` fuses the characters back into the string. Raises ``ValueError`` for an
    empty alphabet, a repeated character, or an alphabet containing a special token.
    """
    _check_alphabet(alphabet)
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *alphabet])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # every char alone
    backend.decoder = decoders.Fuse()  # join the tokens without spaces
    pad, bos, eos, unk = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, bos_token=bos, eos_token=eos,
                                   unk_token=unk, padding_side="left")
