"""The language-model half of the course (lessons 04-08): a tiny causal LM as a policy.

Reserved for Part II: tokenizer and model, synthetic tasks with verifiable rewards, sampling,
per-token log-probs, reward models, PPO-RLHF, DPO and GRPO will live here. It imports shared modules
of ``course_lib`` and never :mod:`course_lib.rl`; heavy libraries (transformers, and trl or peft
where a lesson needs them) are imported inside the modules that use them, never at
``import course_lib`` (``tests/test_layers.py`` holds both rules).
"""
