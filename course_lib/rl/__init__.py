"""The control half of the course (lessons 01-03): policies for Gymnasium environments.

- :mod:`~course_lib.rl.envs`: vector environments with same-step autoreset, greedy evaluation;
- :mod:`~course_lib.rl.networks`: the policy and value MLPs;
- :mod:`~course_lib.rl.rollouts`: fixed-length rollout segments ``(T, N)``;
- :mod:`~course_lib.rl.onpolicy`: the settings and the start of a run every trainer shares, the
  optimizers and the greedy-evaluation schedule (counted in env steps);
- :mod:`~course_lib.rl.reinforce`, :mod:`~course_lib.rl.trpo`, :mod:`~course_lib.rl.ppo`: the
  methods, each with its loss functions and a reference ``train()``.

Lessons import what they use by name: ``from course_lib.rl import ppo``. This package imports
shared modules of ``course_lib`` and never :mod:`course_lib.lm` (``tests/test_layers.py``).
"""
