"""Generate ``lessons/*.ipynb`` from ``solutions/*.ipynb``; ``--check`` only reports what is stale.

Usage (from the repository root; no install needed)::

    python tools/make_lessons.py            # regenerate lessons/, strip outputs from solutions/
    python tools/make_lessons.py --check    # change nothing; exit 1 if anything is out of date

The default mode writes every lesson whose text differs from what its solution generates, deletes
lessons that have no solution, and strips outputs and execution counts from the solutions in place
(so a notebook committed after a run cannot carry its outputs). ``--check`` is the CI gate: it
lists each stale, missing or extra lesson and each solution with outputs, and exits 1 if there is
any. Both modes exit 1 when a solution cannot be turned into a lesson (bad markers, bad JSON).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from course_lib.grading.notebooks import (  # noqa: E402
    NotebookError,
    make_lesson,
    notebook_text,
    read_notebook,
    strip_outputs,
)


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def sync(root: Path, check: bool) -> int:
    """Bring ``root/lessons`` in line with ``root/solutions`` (or only report, with ``check``).

    Returns the exit status: 0 when everything is (now) up to date, 1 otherwise.
    """
    solutions_dir, lessons_dir = root / "solutions", root / "lessons"
    solutions = sorted(solutions_dir.glob("*.ipynb"))
    problems: list[str] = []
    changes: list[str] = []

    for solution in solutions:
        rel_solution = solution.relative_to(root)
        lesson_path = lessons_dir / solution.name
        rel_lesson = lesson_path.relative_to(root)
        try:
            nb = read_notebook(solution)
            lesson_text = notebook_text(make_lesson(nb, str(rel_solution)))
        except NotebookError as err:
            problems.append(f"error: {err}")
            continue

        if strip_outputs(nb) != nb:
            if check:
                problems.append(f"has outputs: {rel_solution} (outputs or execution counts are stored)")
            else:
                _write_text(solution, notebook_text(strip_outputs(nb)))
                changes.append(f"stripped outputs: {rel_solution}")

        current = _read_text(lesson_path)
        if current == lesson_text:
            continue
        if check and current is None:
            problems.append(f"missing: {rel_lesson} (generated from {rel_solution})")
        elif check:
            problems.append(f"stale: {rel_lesson} (differs from what {rel_solution} generates)")
        else:
            _write_text(lesson_path, lesson_text)
            changes.append(f"{'wrote' if current is None else 'updated'}: {rel_lesson}")

    solution_names = {s.name for s in solutions}
    for lesson_path in sorted(lessons_dir.glob("*.ipynb")):
        if lesson_path.name in solution_names:
            continue
        rel_lesson = lesson_path.relative_to(root)
        if check:
            problems.append(f"extra: {rel_lesson} (no solutions/{lesson_path.name} generates it)")
        else:
            lesson_path.unlink()
            changes.append(f"deleted: {rel_lesson} (no solutions/{lesson_path.name})")

    for line in changes:
        print(line)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        if check:
            print("lessons/ is out of date: run `python tools/make_lessons.py` and commit the result",
                  file=sys.stderr)
        return 1
    print(f"lessons/ is up to date ({len(solutions)} notebooks)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 listing stale, missing or extra lessons and "
                             "solutions that store outputs")
    parser.add_argument("--root", type=Path, default=REPO,
                        help="repository root holding solutions/ and lessons/ (default: this checkout)")
    args = parser.parse_args(argv)
    return sync(args.root.resolve(), args.check)


if __name__ == "__main__":
    sys.exit(main())
