"""The solution notebooks and course_lib agree: every solved function passes its own checker.

Each function holding a ``### BEGIN SOLUTION`` region in ``solutions/*.ipynb`` is pulled out of
the notebook, executed on its own in a namespace holding exactly what the notebook's import
statements give it (notebook functions take what they use, so nothing else is needed), and run
through :func:`course_lib.grading.checker.run_exercise`, which compares it with the reference in
``course_lib`` on seeded inputs. A teaching version that drifts from the library's version fails
here, without running the notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from course_lib.grading import checker, exercises
from course_lib.grading.notebooks import extract_imports, extract_solution_functions

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))


def _solved_functions() -> list[Any]:
    params = []
    for path in SOLUTIONS:
        for name, source in extract_solution_functions(path).items():
            params.append(pytest.param(path, name, source, id=f"{path.stem}::{name}"))
    return params


def _namespace(path: Path) -> dict[str, Any]:
    """The names the notebook's own import statements define, and nothing else."""
    namespace: dict[str, Any] = {}
    exec(compile(extract_imports(path), f"{path.name}::imports", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path, name, source", _solved_functions())
def test_solved_function_passes_its_checker(path: Path, name: str, source: str) -> None:
    exercise = exercises.by_name(name)
    assert exercise.lesson == path.name[:2], (
        f"{path.name} solves exercise {exercise.id} ({name}), which belongs to lesson {exercise.lesson}")
    namespace = _namespace(path)
    exec(compile(source, f"{path.name}::{name}", "exec"), namespace)
    result = checker.run_exercise(exercise, namespace[name])
    assert result.passed, f"{path.name}: exercise {exercise.id} ({name}) {result.status}: {result.message}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_exercise_of_the_lesson_is_solved_in_its_notebook(path: Path) -> None:
    """A registered exercise missing from its notebook would have no stub in the lesson."""
    solved = set(extract_solution_functions(path))
    registered = {e.name for e in exercises.for_lesson(path.name[:2])}
    assert solved == registered, (f"{path.name}: registered but not solved {sorted(registered - solved)}, "
                                  f"solved but registered elsewhere {sorted(solved - registered)}")
