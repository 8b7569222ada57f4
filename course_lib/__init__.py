"""course_lib: the shared package behind the policy-optimization course.

Import submodules by name so a reader sees where each piece comes from, for example
``from course_lib import returns`` and then ``returns.reward_to_go(...)``.
"""

from course_lib.runtime import (
    budget_mode,
    choose_device,
    progress,
    seed_everything,
    set_torch_threads,
    setup,
    training_budget,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "budget_mode",
    "choose_device",
    "progress",
    "seed_everything",
    "set_torch_threads",
    "setup",
    "training_budget",
]
