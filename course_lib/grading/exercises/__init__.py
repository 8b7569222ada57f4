"""The registry of every graded exercise in the course.

Each lesson has one module here, ``lessonNN.py``, defining ``EXERCISES: list[Exercise]``. Modules are
discovered automatically, so adding a lesson never means editing this file. Exercise names are the
names of the functions learners write and must be unique across the course, because notebooks
reach them as ``check.<name>``.

Loading is lazy, one lesson at a time. :func:`index` reads the ``Exercise("NN.k", "name", ...)``
calls out of each module's source text, without importing it, so finding which lesson
an exercise belongs to costs milliseconds and imports nothing. :func:`by_name` and
:func:`for_lesson` then import only that lesson's module (and so only its references: checking
an exercise of lesson 00 never imports gymnasium or transformers). :func:`all_exercises` imports
every lesson; tests use it. ``tests/test_checker.py`` checks that the index and the imported
modules agree.
"""

from __future__ import annotations

import importlib
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from course_lib.grading.checker import Exercise

__all__ = ["IndexEntry", "index", "names", "id_of", "all_exercises", "by_id", "by_name", "for_lesson"]

_HERE = Path(__file__).resolve().parent


class IndexEntry(NamedTuple):
    """Where an exercise is defined, read from the source: id ``"03.2"``, function name, lesson ``"03"``."""

    id: str
    name: str
    lesson: str


def _sort_key(exercise_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in exercise_id.split("."))


_CALL = re.compile(r"\bExercise\(")
_LITERAL_CALL = re.compile(r"\bExercise\(\s*\"(\d\d\.\d+)\"\s*,\s*\"([A-Za-z_]\w*)\"")


def _entries_in(path: Path) -> list[IndexEntry]:
    """The ``Exercise("NN.k", "name", ...)`` calls of one lesson module, in source order.

    A regular expression, not :mod:`ast`: parsing the lesson modules took 0.2 s here, scanning them
    takes milliseconds. Every ``Exercise(`` must start with the two literal strings.
    """
    lesson = path.stem.removeprefix("lesson")
    text = path.read_text(encoding="utf-8")
    found = [IndexEntry(m.group(1), m.group(2), lesson) for m in _LITERAL_CALL.finditer(text)]
    if len(found) != len(_CALL.findall(text)):
        raise ValueError(f"{path.name}: write every Exercise(\"NN.k\", \"name\", ...) with the id and the name "
                         f"as literal strings first, so the registry can index it without importing it")
    for entry in found:
        if entry.lesson != entry.id.split(".")[0]:
            raise ValueError(f"exercise {entry.id} is defined in {path.name}, not its own lesson module")
    return found


@lru_cache(maxsize=1)
def index() -> dict[str, IndexEntry]:
    """Every exercise's id, name and lesson, keyed by name, ordered by id; nothing is imported."""
    entries: list[IndexEntry] = []
    for path in sorted(_HERE.glob("lesson[0-9]*.py")):
        entries.extend(_entries_in(path))
    by_name: dict[str, IndexEntry] = {}
    ids: set[str] = set()
    for entry in sorted(entries, key=lambda e: _sort_key(e.id)):
        if entry.id in ids:
            raise ValueError(f"exercise id {entry.id} is defined twice")
        if entry.name in by_name:
            raise ValueError(f"exercise name {entry.name!r} is used by {by_name[entry.name].id} and {entry.id}")
        ids.add(entry.id)
        by_name[entry.name] = entry
    return by_name


def names() -> list[str]:
    """The function names of every exercise, in id order."""
    return list(index())


def id_of(name: str) -> str:
    """The id of the exercise whose function is called ``name`` (without importing any lesson)."""
    try:
        return index()[name].id
    except KeyError:
        raise AttributeError(f"no exercise named {name!r}; known exercises: {', '.join(index())}") from None


@cache
def for_lesson(lesson: str) -> list[Exercise]:
    """The exercises of one lesson, e.g. ``for_lesson("01")``, importing only that lesson's module."""
    if not (_HERE / f"lesson{lesson}.py").exists():
        return []
    module = importlib.import_module(f"{__name__}.lesson{lesson}")
    exercises = sorted(module.EXERCISES, key=lambda e: _sort_key(e.id))
    indexed = [e.name for e in index().values() if e.lesson == lesson]
    if sorted(e.name for e in exercises) != sorted(indexed):
        raise ValueError(f"lesson{lesson}.py: EXERCISES {[e.name for e in exercises]} do not match the "
                         f"Exercise(...) calls in its source {indexed}")
    return exercises


def by_name(name: str) -> Exercise:
    """The exercise whose function is called ``name``; imports only its lesson's module."""
    entry = index().get(name)
    if entry is None:
        raise AttributeError(f"no exercise named {name!r}; known exercises: {', '.join(index())}")
    return next(e for e in for_lesson(entry.lesson) if e.name == name)


def all_exercises() -> dict[str, Exercise]:
    """Every exercise, keyed and ordered by id (``"00.1"``, ``"00.2"``, ``"01.1"``, ...); imports all lessons."""
    lessons = sorted({entry.lesson for entry in index().values()})
    found = {e.id: e for lesson in lessons for e in for_lesson(lesson)}
    return dict(sorted(found.items(), key=lambda kv: _sort_key(kv[0])))


def by_id(exercise_id: str) -> Exercise:
    """The exercise with this id, e.g. ``by_id("00.1")``."""
    lesson = exercise_id.split(".")[0]
    for exercise in for_lesson(lesson):
        if exercise.id == exercise_id:
            return exercise
    known = [e.id for e in index().values()]
    raise KeyError(f"no exercise with id {exercise_id!r}; known ids: {known}")
