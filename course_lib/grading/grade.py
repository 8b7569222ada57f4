"""Grade lesson notebooks: run each in a fresh kernel and report every exercise's status.

Usage::

    course-grade                           # every notebook in lessons/
    course-grade lessons/01_reinforce.ipynb my_work/ --timeout 300 --budget full
    python -m course_lib.grading.grade ...         # the same, without the console script

Each notebook is copied into a temporary folder and executed there (the original file is never
touched; the kernel's working directory is the temporary folder) with ``COURSE_BUDGET`` set to
``--budget`` (default ``quick``), ``COURSE_STRICT`` unset and ``COURSE_GRADE_LOG`` pointing at a
temporary file, to which every ``check.<name>(...)`` call appends one JSON line. Execution goes on
after a cell raises, so one broken cell does not hide later exercises; a cell that runs longer
than ``--timeout`` seconds is interrupted and execution goes on.

Each exercise of the lesson (from :func:`course_lib.grading.exercises.for_lesson`, the lesson being the
two-digit prefix of the file name) is reported as ``passed``, ``failed``, ``not attempted`` (the
stub still raises ``NotImplementedError``) or ``not reached`` (its check never ran, usually
because an earlier cell failed). Cells that raised are listed too.

Exit status: 0 only if every exercise of every graded notebook passed; 1 otherwise, including when
a path is missing, a file is not a readable lesson notebook (those are reported on stderr, and the
other notebooks are still graded) or a kernel died; 2 for a wrong command line. Cells that raised
are reported but do not by themselves change the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_lib.grading import exercises
from course_lib.grading.checker import GRADE_LOG_ENV, STRICT_ENV
from course_lib.grading.notebooks import NotebookError, read_notebook
from course_lib.runtime import BUDGET_ENV

__all__ = ["ExerciseGrade", "NotebookGrade", "GradingError", "grade_notebook", "main"]

_LESSON_FILE = re.compile(r"^(\d{2})_.*\.ipynb$")
_MESSAGE_LIMIT = 300


class GradingError(Exception):
    """A notebook that cannot be graded at all (missing, not a notebook, no lesson number)."""


@dataclass(frozen=True)
class ExerciseGrade:
    """One exercise's outcome in one notebook run."""

    id: str
    name: str
    status: str  # "passed", "failed", "not attempted" or "not reached"
    cases_passed: int | None = None
    cases_total: int | None = None
    message: str = ""


@dataclass
class NotebookGrade:
    """The outcome of running one notebook: its exercises and the cells that raised."""

    path: Path
    lesson: str
    exercises: list[ExerciseGrade] = field(default_factory=list)
    cell_errors: list[tuple[int, str]] = field(default_factory=list)  # (cell number from 1, error)
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(e.status == "passed" for e in self.exercises)


def lesson_of(path: Path) -> str:
    """The two-digit lesson number of ``NN_topic.ipynb``; :class:`GradingError` if there is none."""
    match = _LESSON_FILE.match(path.name)
    if not match:
        raise GradingError(f"{path}: the file name does not start with a two-digit lesson number "
                           f"(expected a name like 01_reinforce.ipynb)")
    return match.group(1)


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _kernel_env(log_path: Path, budget: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(STRICT_ENV, None)
    env[GRADE_LOG_ENV] = str(log_path)
    env[BUDGET_ENV] = budget
    env.setdefault("MPLBACKEND", "Agg")  # nobody sees the figures; skip rendering them inline
    # A source checkout that is not installed still imports the same course_lib in the kernel.
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").exists():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_parent), env.get("PYTHONPATH")]))
    return env


def _read_log(log_path: Path) -> dict[str, dict[str, Any]]:
    """The last logged record per exercise id (a re-run check replaces the earlier one)."""
    records: dict[str, dict[str, Any]] = {}
    if not log_path.exists():
        return records
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "id" in record:
            records[str(record["id"])] = record
    return records


def _execute(path: Path, env: dict[str, str], timeout: int,
             stderr_path: Path) -> tuple[list[tuple[int, str]], str | None]:
    """Run the notebook at ``path`` in its own folder; return (cell errors, fatal problem or None).

    The kernel's own stderr (start-up warnings, a crash message) goes to ``stderr_path``; its last
    line is quoted only if the kernel dies.
    """
    import nbformat  # slow to import (see course_lib.grading.notebooks); only needed when grading
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.from_dict(read_notebook(path))
    errors: list[tuple[int, str]] = []
    current = {"cell": 0}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        current["cell"] = cell_index

    def on_cell_error(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            return  # the author marked this error as expected
        content = execute_reply.get("content", {})
        ename, evalue = content.get("ename", "Error"), _first_line(content.get("evalue", ""))
        errors.append((cell_index + 1, f"{ename}: {evalue}" if evalue else ename))

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran longer than {timeout} s and was interrupted",
                          "traceback": []},
        record_timing=False, resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=on_cell_start, on_cell_error=on_cell_error,
    )
    with open(stderr_path, "w", encoding="utf-8") as kernel_stderr:
        try:
            client.execute(env=env, stderr=kernel_stderr)
        except DeadKernelError:
            last = _last_line(stderr_path)
            return errors, (f"the kernel died while running cell {current['cell'] + 1}; later cells did not run"
                            + (f" (kernel said: {last})" if last else ""))
        except Exception as err:  # noqa: BLE001 - kernel start-up problems are reported, not raised
            return errors, f"could not run the notebook: {type(err).__name__}: {_first_line(str(err))}"
    return errors, None


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line and "WARNING" not in line]
    return lines[-1] if lines else ""


def grade_notebook(path: Path, timeout: int = 600, budget: str = "quick") -> tuple[NotebookGrade, str | None]:
    """Execute a copy of the notebook at ``path`` and grade it; the file itself is not modified.

    Returns the grade and, if the run stopped early (the kernel died), a one-line reason.
    Raises :class:`GradingError` if the file cannot be graded at all.
    """
    lesson = lesson_of(path)
    try:
        read_notebook(path)
    except NotebookError as err:
        raise GradingError(str(err)) from None
    grade = NotebookGrade(path, lesson)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        work = Path(tmp) / "notebook"
        work.mkdir()
        copy = work / path.name
        shutil.copyfile(path, copy)
        log_path = Path(tmp) / "grade-log.jsonl"
        grade.cell_errors, fatal = _execute(copy, _kernel_env(log_path, budget), timeout,
                                            Path(tmp) / "kernel-stderr.txt")
        logged = _read_log(log_path)
    grade.seconds = time.perf_counter() - start

    expected = [entry for entry in exercises.index().values() if entry.lesson == lesson]
    for exercise in expected:
        record = logged.pop(exercise.id, None)
        if record is None:
            grade.exercises.append(ExerciseGrade(exercise.id, exercise.name, "not reached"))
        else:
            grade.exercises.append(ExerciseGrade(
                exercise.id, exercise.name, str(record.get("status")), record.get("cases_passed"),
                record.get("cases_total"), str(record.get("message", ""))))
    return grade, fatal


def _cases(grade: ExerciseGrade) -> str:
    if grade.cases_total is None:
        return "-"
    return f"{grade.cases_passed}/{grade.cases_total}"


def _shorten(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def print_report(grade: NotebookGrade, fatal: str | None) -> None:
    """Print one notebook's table: exercises, cells that raised, the score."""
    print(f"{grade.path}  (lesson {grade.lesson}, {grade.seconds:.1f} s)")
    if not grade.exercises:
        print(f"  lesson {grade.lesson} has no registered exercises")
    else:
        width = max(len(e.name) for e in grade.exercises)
        print(f"  {'id':<6} {'exercise':<{width}}  {'status':<13}  cases")
        for e in grade.exercises:
            print(f"  {e.id:<6} {e.name:<{width}}  {e.status:<13}  {_cases(e)}")
            if e.status == "failed" and e.message:
                print(f"  {'':<6} {_shorten(e.message)}")
    for number, error in grade.cell_errors:
        print(f"  cell {number} raised {_shorten(error)}")
    if fatal:
        print(f"  stopped early: {fatal}")
    print(f"  score: {grade.passed}/{len(grade.exercises)}")


def _expand(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Notebook files named or contained (not recursively) in ``paths``, and problems found."""
    notebooks: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.ipynb") if p.is_file())
            if not found:
                problems.append(f"{path}: no notebooks (*.ipynb) in this folder")
            notebooks += found
        elif path.exists():
            notebooks.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return notebooks, problems


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``course-grade``; returns the exit status (see module docs)."""
    parser = argparse.ArgumentParser(
        prog="course-grade", description="Run lesson notebooks in fresh kernels and report each exercise.",
        epilog="Exit status: 0 only if every exercise of every graded notebook passed, 1 otherwise.")
    parser.add_argument("paths", nargs="*", default=["lessons"], metavar="NOTEBOOK_OR_FOLDER",
                        help="notebooks, or folders of notebooks, to grade (default: lessons/)")
    parser.add_argument("--timeout", type=int, default=600, metavar="SECONDS",
                        help="interrupt a cell that runs longer than this (default: 600)")
    parser.add_argument("--budget", choices=["quick", "full"], default="quick",
                        help="training budget for the lessons (COURSE_BUDGET; default: quick)")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error("--timeout must be at least 1 second")

    notebooks, problems = _expand(args.paths)
    for problem in problems:
        print(f"course-grade: {problem}", file=sys.stderr)
    passed = total = graded = 0
    all_passed = not problems
    for path in notebooks:
        try:
            grade, fatal = grade_notebook(path, args.timeout, args.budget)
        except GradingError as err:
            print(f"course-grade: {err}", file=sys.stderr)
            all_passed = False
            continue
        print_report(grade, fatal)
        print()
        graded += 1
        passed += grade.passed
        total += len(grade.exercises)
        all_passed = all_passed and grade.passed == len(grade.exercises) and fatal is None
    skipped = len(notebooks) - graded + len(problems)
    note = f"; {skipped} path(s) could not be graded (see above)" if skipped else ""
    print(f"Total: {passed}/{total} exercises passed in {graded} notebook(s){note}")
    return 0 if all_passed and graded else 1


if __name__ == "__main__":
    sys.exit(main())
