"""The registry of every graded exercise in the course.

Each lesson has one module here, ``lessonNN.py``, defining ``EXERCISES: list[Exercise]``. Modules are
discovered automatically, so adding a lesson never means editing this file. Exercise names are the
names of the functions learners write and must be unique across the course, because notebooks
reach them as ``check.<name>``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from course_lib.checker import Exercise

__all__ = ["all_exercises", "by_id", "by_name", "for_lesson"]


@lru_cache(maxsize=1)
def all_exercises() -> dict[str, Exercise]:
    """Every exercise, keyed and ordered by id (``"00.1"``, ``"00.2"``, ``"01.1"``, ...)."""
    found: dict[str, Exercise] = {}
    names: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("lesson"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for exercise in module.EXERCISES:
            if exercise.id in found:
                raise ValueError(f"exercise id {exercise.id} is defined twice")
            if exercise.name in names:
                raise ValueError(f"exercise name {exercise.name!r} is used by {names[exercise.name]} and {exercise.id}")
            if exercise.lesson != info.name.removeprefix("lesson"):
                raise ValueError(f"exercise {exercise.id} is defined in {info.name}, not its own lesson module")
            found[exercise.id] = exercise
            names[exercise.name] = exercise.id
    return dict(sorted(found.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("."))))


def by_id(exercise_id: str) -> Exercise:
    """The exercise with this id, e.g. ``by_id("00.1")``."""
    try:
        return all_exercises()[exercise_id]
    except KeyError:
        raise KeyError(f"no exercise with id {exercise_id!r}; known ids: {list(all_exercises())}") from None


def by_name(name: str) -> Exercise:
    """The exercise whose function is called ``name``."""
    for exercise in all_exercises().values():
        if exercise.name == name:
            return exercise
    known = ", ".join(e.name for e in all_exercises().values())
    raise AttributeError(f"no exercise named {name!r}; known exercises: {known}")


def for_lesson(lesson: str) -> list[Exercise]:
    """The exercises of one lesson, e.g. ``for_lesson("01")``."""
    return [e for e in all_exercises().values() if e.lesson == lesson]
