"""course_lib: the shared package behind the policy-optimization course.

The package is layered (CONTRIBUTING.md, "Layers"; ``tests/test_layers.py`` holds the rules):

- shared modules at the top: :mod:`~course_lib.runtime` (device, seeds, threads, budgets),
  :mod:`~course_lib.training` (history, NaN guards, interrupts), :mod:`~course_lib.plots`,
  :mod:`~course_lib.distributions` (categorical policies), :mod:`~course_lib.estimators` (returns,
  GAE, normalisation, explained variance) and :mod:`~course_lib.check` (the learner's checker);
- :mod:`course_lib.rl`: the control half (environments, networks, rollouts, REINFORCE, TRPO, PPO);
- :mod:`course_lib.lm`: the language-model half (lessons 04-08);
- :mod:`course_lib.grading`: the machinery behind ``check`` and ``course-grade``.

Import submodules by name so a reader sees where each piece comes from, for example
``from course_lib import estimators`` then ``estimators.gae(...)``, or
``from course_lib.rl import ppo`` then ``ppo.train(...)``.

``import course_lib`` itself imports nothing heavy: the helpers below (``course_lib.setup`` and
friends, from :mod:`course_lib.runtime`) load torch on first use, so tools that only read
notebooks start in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_RUNTIME_HELPERS = ("budget_mode", "choose_device", "progress", "seed_everything", "set_torch_threads",
                    "setup", "training_budget")

__all__ = ["__version__", *_RUNTIME_HELPERS]


def __getattr__(name: str) -> Any:
    if name in _RUNTIME_HELPERS:
        return getattr(importlib.import_module("course_lib.runtime"), name)
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_RUNTIME_HELPERS])
