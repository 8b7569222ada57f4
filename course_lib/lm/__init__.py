"""The language-model half of the course (lessons 04-08): a tiny causal LM as a policy.

- :mod:`~course_lib.lm.tokenizer`: a character tokenizer built offline with ``tokenizers``
  (``<pad> <bos> <eos> <unk>``, then one id per character; left padding);
- :mod:`~course_lib.lm.model`: a tiny GPT-2 sized to the tokenizer, dropout 0, seeded;
  ``check_compatible`` and ``context_length``;
- :mod:`~course_lib.lm.logprobs`: position ids from the attention mask, per-token log-probs of
  completions (shift, temperature, fp32 log_softmax) and their masked sums;
- :mod:`~course_lib.lm.sampling`: G completions per prompt with a KV cache (prompt-major rows),
  the completion mask up to and including the first EOS;
- :mod:`~course_lib.lm.tasks`: synthetic tasks with verifiable answers and rule-based rewards
  (``addition``, ``chain_sum`` with a worked section whose steps are checked one by one);
- :mod:`~course_lib.lm.evaluation`: greedy and sampled held-out accuracy;
- :mod:`~course_lib.lm.sft`: the SFT batch, the loss on completion tokens only, and ``train_sft``;
- :mod:`~course_lib.lm.base_models`: SFT base models per task, cached on disk under a key of
  their recipe (atomic builds, checked hashes, one builder at a time).

Still to come in Part II: reward models, PPO-RLHF, DPO and GRPO. Lessons import what they use by name: ``from course_lib.lm import sampling``. This package
imports shared modules of ``course_lib`` and never :mod:`course_lib.rl`; heavy libraries
(transformers, and trl or peft where a lesson needs them) are imported inside the modules that use
them, never at ``import course_lib`` or ``import course_lib.lm`` (``tests/test_layers.py`` holds
both rules).
"""
