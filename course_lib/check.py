"""Check an exercise by its function name: ``reward_to_go = check.reward_to_go(reward_to_go)``.

Every exercise in :mod:`course_lib.exercises` is reachable here as an attribute named after the
function the learner writes. The call prints one line of feedback and returns the function to use
next: yours if it passed, the reference otherwise (see :func:`course_lib.checker.check`).
``check.summary()`` prints a table of every check run in this notebook so far.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from course_lib import checker, exercises


def __getattr__(name: str) -> Callable[[Any], Callable[..., Any]]:
    if name.startswith("__"):
        raise AttributeError(name)
    exercise = exercises.by_name(name)
    checker_fn = partial(checker.check, exercise)
    checker_fn.__doc__ = f"Check exercise {exercise.id}: {exercise.title}."  # type: ignore[attr-defined]
    return checker_fn


def __dir__() -> list[str]:
    return sorted([e.name for e in exercises.all_exercises().values()] + ["summary"])


def summary() -> None:
    """Print one line per exercise checked in this kernel: id, name, status, cases passed."""
    results = checker.session_results()
    if not results:
        print("No exercise has been checked in this notebook yet.")
        return
    latest = {r.exercise_id: r for r in results}
    for result in latest.values():
        print(f"{result.exercise_id:>6}  {result.name:<28} {result.status:<14} "
              f"{result.cases_passed}/{result.cases_total} cases")
    passed = sum(r.passed for r in latest.values())
    print(f"{passed}/{len(latest)} exercises passed")
