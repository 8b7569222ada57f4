"""Load a pretrained causal LM from the Hugging Face model hub, for the road to real models (lessons 04-08).

Every function of :mod:`course_lib.lm` takes the model and tokenizer this returns. It needs a
network connection the first time (the files are then in the Hugging Face cache); the course's
lessons and tests never call it, because they run offline on the tiny local model.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["load_pretrained"]


def load_pretrained(name: str, *, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of hub model ``name`` (e.g. ``"Qwen/Qwen2.5-0.5B-Instruct"``), in eval mode.

    ``device`` defaults to ``"cuda"`` when a GPU is available, else ``"cpu"``; ``dtype`` to bfloat16
    on a GPU (log-probs are still computed in float32) and float32 on the CPU. The tokenizer pads
    on the left, as batched sampling needs, and gets its EOS token as the pad token if it has none.
    Raises ``RuntimeError`` saying that the model hub is needed when the files are neither in the
    local cache nor downloadable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a model id such as 'Qwen/Qwen2.5-0.5B-Instruct', got {name!r}")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype if dtype is not None else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as err:
        raise RuntimeError(f"could not load {name!r}: it is not in the local Hugging Face cache and the model hub "
                           f"could not be reached (a network connection is needed the first time; the course's "
                           f"lessons use the tiny local model instead). Original error: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
