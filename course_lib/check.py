"""Check an exercise by its function name: ``reward_to_go = check.reward_to_go(reward_to_go)``.

Every exercise in :mod:`course_lib.grading.exercises` is reachable here as an attribute named
after the function the learner writes. The call prints one line of feedback and returns the
function to use next: yours if it passed, the reference otherwise (see
:func:`course_lib.grading.checker.check`). Only the exercise's own lesson is loaded, so the first
check of lesson 00 never imports the language-model stack.

Besides the exercises:

- ``check.summary()`` prints a table of every check run in this notebook so far;
- ``check.latest_results()`` returns the latest result of each exercise checked in this kernel;
- ``check.run_cases(name, fn)`` runs an exercise's cases on ``fn`` and returns the result without
  printing it and without falling back to the reference (to look at a wrong version on purpose).

This is the one module of ``course_lib`` that imports :mod:`course_lib.grading`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from course_lib.grading import checker, exercises
from course_lib.grading.checker import CheckResult

__all__ = ["summary", "latest_results", "run_cases"]


def __getattr__(name: str) -> Callable[[Any], Callable[..., Any]]:
    if name.startswith("__"):
        raise AttributeError(name)
    exercise = exercises.by_name(name)
    checker_fn = partial(checker.check, exercise)
    checker_fn.__doc__ = f"Check exercise {exercise.id}: {exercise.title}."  # type: ignore[attr-defined]
    return checker_fn


def __dir__() -> list[str]:
    return sorted([*exercises.names(), *__all__])


def latest_results() -> dict[str, CheckResult]:
    """The latest result of every exercise checked in this kernel, keyed by id (``"01.2"``)."""
    return {result.exercise_id: result for result in checker.session_results()}


def run_cases(name: str, fn: Callable[..., Any]) -> CheckResult:
    """Run the cases of exercise ``name`` on ``fn``: the result, nothing printed or recorded."""
    return checker.run_exercise(exercises.by_name(name), fn)


def summary() -> None:
    """Print one line per exercise checked in this kernel: id, name, status, cases passed."""
    latest = latest_results()
    if not latest:
        print("No exercise has been checked in this notebook yet.")
        return
    for result in latest.values():
        print(f"{result.exercise_id:>6}  {result.name:<28} {result.status:<14} "
              f"{result.cases_passed}/{result.cases_total} cases")
    passed = sum(r.passed for r in latest.values())
    print(f"{passed}/{len(latest)} exercises passed")
