"""Read solution notebooks, find their solution regions and turn them into lessons.

A solution notebook (``solutions/NN_topic.ipynb``) solves each exercise inside a function whose body
holds a region between a line ``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` (the markers
nbgrader and otter-grader use, so a later move to either stays cheap). The exercise is the one
registered under the function's name (:func:`course_lib.grading.exercises.id_of`, which reads the
registry's source and imports nothing, so generating lessons never imports torch).

:func:`make_lesson` replaces every region with a two-line stub that names the exercise, drops cells
tagged ``solution-only`` and strips outputs, so ``lessons/NN_topic.ipynb`` is a pure function of
the solution. :func:`extract_solution_functions` hands the solved functions to the sync test.
Every problem with the markers raises :class:`NotebookError` naming the notebook and the cell
(cells are numbered from 1, markdown included, in the order JupyterLab shows them).
"""

from __future__ import annotations

import ast
import copy
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_lib.grading import exercises

Notebook = dict[str, Any]
"""A version-4 notebook as a plain dict (an ``nbformat.NotebookNode`` works too).

This module reads and writes the JSON itself instead of importing ``nbformat``: with a full Jupyter
install, importing ``nbformat`` compiles a URI grammar for ``jsonschema`` and took 3.5 s here,
longer than everything else :mod:`tools.make_lessons` does.
"""

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "SOLUTION_ONLY_TAG",
    "Notebook",
    "NotebookError",
    "SolutionRegion",
    "read_notebook",
    "notebook_text",
    "strip_outputs",
    "find_solution_regions",
    "make_lesson",
    "extract_solution_functions",
]

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"
SOLUTION_ONLY_TAG = "solution-only"

# Metadata written by running or viewing a notebook, not by its author (the keys nbstripout removes).
_NOISY_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")
_NOISY_NOTEBOOK_METADATA = ("widgets", "signature")
_MAGIC_LINE = re.compile(r"^\s*[%!]")


class NotebookError(ValueError):
    """A notebook that cannot be read, or whose solution markers are wrong."""


@dataclass(frozen=True)
class SolutionRegion:
    """One ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of a code cell.

    ``begin`` and ``end`` are 0-based line indices of the two marker lines in the cell's source;
    ``cell`` is the 0-based index of the cell in ``nb["cells"]``.
    """

    cell: int
    begin: int
    end: int
    indent: str
    function: str
    exercise_id: str


def read_notebook(path: str | Path) -> Notebook:
    """Read a version-4 notebook, raising :class:`NotebookError` with the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NotebookError(f"{path}: is a folder, not a notebook file") from None
    except UnicodeDecodeError as err:
        raise NotebookError(f"{path}: not a text file ({err.reason})") from None
    except OSError as err:
        raise NotebookError(f"{path}: cannot be read ({err.strerror})") from None
    if not text.strip():
        raise NotebookError(f"{path}: the file is empty, not a notebook")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{path}: valid JSON, but not a Jupyter notebook (no list of 'cells')")
    if data.get("nbformat") != 4:
        raise NotebookError(f"{path}: notebook format {data.get('nbformat')!r} is not supported (need 4)")
    for number, cell in enumerate(data["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"{path}: cell {number} is not a code, markdown or raw cell")
    for cell in data["cells"]:  # on disk a source is a list of lines; in memory one string
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
        cell.setdefault("metadata", {})
    data.setdefault("metadata", {})
    return data


def notebook_text(nb: Notebook) -> str:
    """Serialise a notebook without outputs exactly like ``nbformat.write`` (and so JupyterLab).

    Sources become lists of lines, keys are sorted, indent is 1, the file ends with a newline:
    stable, diff-friendly text. (Output texts are not split; this course never writes outputs.)
    """
    disk = copy.deepcopy(nb)
    disk.get("metadata", {}).pop("orig_nbformat", None)
    disk.get("metadata", {}).pop("orig_nbformat_minor", None)
    disk.get("metadata", {}).pop("signature", None)
    for cell in disk["cells"]:
        cell.get("metadata", {}).pop("trusted", None)
        if isinstance(cell.get("source"), str):
            cell["source"] = cell["source"].splitlines(True)
    return json.dumps(disk, indent=1, sort_keys=True, ensure_ascii=False, separators=(",", ": ")) + "\n"


def strip_outputs(nb: Notebook) -> Notebook:
    """A copy of ``nb`` with no outputs, no execution counts and no run-time metadata.

    Cell ids, tags and the notebook's kernelspec are kept: they are written by the author.
    """
    clean = copy.deepcopy(nb)
    for key in _NOISY_NOTEBOOK_METADATA:
        clean.get("metadata", {}).pop(key, None)
    for cell in clean["cells"]:
        for key in _NOISY_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return clean


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _function_extents(source: str, where: str) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, int]]:
    """Every function in ``source`` with the last line (1-based) its body reaches, comments included.

    IPython magics (``%time``, ``!pip``) are blanked first so the rest parses as Python.
    """
    lines = source.split("\n")
    parsable = "\n".join("" if _MAGIC_LINE.match(line) else line for line in lines)
    try:
        tree = ast.parse(parsable)
    except SyntaxError as err:
        raise NotebookError(f"{where}: a cell with solution markers must be valid Python "
                            f"({err.msg} at line {err.lineno})") from None
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            last = node.end_lineno or node.lineno
            # Trailing comment lines indented deeper than the `def` (an END marker) still belong to it.
            while last < len(lines):
                line = lines[last]
                indent = len(line) - len(line.lstrip())
                if line.strip() and not (line.lstrip().startswith("#") and indent > node.col_offset):
                    break
                last += 1
            found.append((node, last))
    return found


def _cell_regions(source: str, cell_index: int, where: str) -> list[SolutionRegion]:
    """The solution regions of one code cell's source (``where`` names it in error messages)."""
    lines = source.split("\n")
    marks = [(i, line) for i, line in enumerate(lines) if line.strip() in (BEGIN_MARKER, END_MARKER)]
    if not marks:
        return []
    pairs: list[tuple[int, int, str]] = []
    open_at: int | None = None
    for i, line in marks:
        if line.strip() == BEGIN_MARKER:
            if open_at is not None:
                raise NotebookError(f"{where}, line {i + 1}: nested {BEGIN_MARKER} (the one on line "
                                    f"{open_at + 1} is not closed yet)")
            open_at = i
        else:
            if open_at is None:
                raise NotebookError(f"{where}, line {i + 1}: {END_MARKER} without a {BEGIN_MARKER} before it")
            indent = lines[open_at][: len(lines[open_at]) - len(lines[open_at].lstrip())]
            if not line.startswith(indent) or line[len(indent):] != line.strip():
                raise NotebookError(f"{where}, line {i + 1}: {END_MARKER} is not indented like the "
                                    f"{BEGIN_MARKER} on line {open_at + 1}")
            pairs.append((open_at, i, indent))
            open_at = None
    if open_at is not None:
        raise NotebookError(f"{where}, line {open_at + 1}: {BEGIN_MARKER} is never closed by {END_MARKER}")

    functions = _function_extents(source, where)
    regions = []
    for begin, end, indent in pairs:
        # The innermost function whose body holds both markers, indented less than they are.
        holders = [node for node, last in functions
                   if node.lineno <= begin < last and end < last and node.col_offset < len(indent)]
        if not holders:
            raise NotebookError(f"{where}, line {begin + 1}: the solution region is not inside a function "
                                f"(an exercise is a function whose body holds the region)")
        name = max(holders, key=lambda node: node.lineno).name
        try:
            exercise_id = exercises.id_of(name)
        except AttributeError:
            raise NotebookError(f"{where}, line {begin + 1}: function {name!r} has a solution region, but no "
                                f"exercise is registered under that name in course_lib.grading.exercises") from None
        regions.append(SolutionRegion(cell_index, begin, end, indent, name, exercise_id))
    return regions


def find_solution_regions(nb: Notebook, name: str = "notebook") -> list[SolutionRegion]:
    """Every solution region of ``nb``, in order; ``name`` (e.g. the file) appears in errors."""
    regions: list[SolutionRegion] = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            regions += _cell_regions(_source(cell), index, f"{name}: cell {index + 1}")
    return regions


def _stub(region: SolutionRegion) -> list[str]:
    return [
        f"{region.indent}# YOUR CODE HERE (exercise {region.exercise_id})",
        f'{region.indent}raise NotImplementedError("Exercise {region.exercise_id} ({region.function}): '
        f'write your solution here")',
    ]


def make_lesson(nb: Notebook, name: str = "notebook") -> Notebook:
    """The lesson for solution notebook ``nb``: regions become stubs, ``solution-only`` cells go.

    The result is stripped of outputs (:func:`strip_outputs`) and otherwise equal to ``nb``, so the
    same solution always gives byte-identical lessons. ``nb`` itself is not changed.
    """
    regions = find_solution_regions(nb, name)
    lesson = strip_outputs(nb)
    for cell_index in sorted({r.cell for r in regions}):
        cell = lesson["cells"][cell_index]
        lines = _source(cell).split("\n")
        for region in sorted((r for r in regions if r.cell == cell_index), key=lambda r: -r.begin):
            lines[region.begin: region.end + 1] = _stub(region)
        cell["source"] = "\n".join(lines)
    lesson["cells"] = [cell for cell in lesson["cells"] if SOLUTION_ONLY_TAG not in _tags(cell)]
    return lesson


def extract_solution_functions(path: str | Path) -> dict[str, str]:
    """The full source (decorators included, dedented) of each function holding a solution region.

    Keyed by function name, in notebook order. Used by the sync test, which runs each solved
    function through its exercise's checker.
    """
    nb = read_notebook(path)
    found: dict[str, str] = {}
    for region in find_solution_regions(nb, str(path)):
        where = f"{path}: cell {region.cell + 1}"
        source = _source(nb["cells"][region.cell])
        lines = source.split("\n")
        for node, last in _function_extents(source, where):
            if node.name != region.function or not node.lineno <= region.begin < last:
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            text = textwrap.dedent("\n".join(lines[first - 1: last])).rstrip() + "\n"
            if found.get(node.name, text) != text:
                raise NotebookError(f"{where}: function {node.name!r} is solved twice in this notebook")
            found[node.name] = text
    return found



def extract_imports(path: str | Path) -> str:
    """Every top-level ``import`` / ``from ... import`` statement of the notebook's code cells, in order.

    The sync test executes these before a solved function, so each function runs with exactly the
    names its notebook gives it (``F``, ``Tensor``, ``estimators``, ...), not a hand-kept list that can
    drift. Magic and shell lines (``%matplotlib``, ``!pip``) are skipped.
    """
    nb = read_notebook(path)
    statements: list[str] = []
    for number, cell in enumerate(nb["cells"], start=1):
        if cell["cell_type"] != "code":
            continue
        source = "\n".join("" if _MAGIC_LINE.match(line) else line for line in _source(cell).split("\n"))
        try:
            tree = ast.parse(source)
        except SyntaxError as err:
            raise NotebookError(f"{path}: cell {number} is not valid Python ({err.msg}, line {err.lineno})") from None
        statements += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(dict.fromkeys(statements)) + "\n"


def extract_definitions(path: str | Path) -> str:
    """The source of every top-level ``def`` and ``class`` of the notebook's code cells, in order.

    Defining a function runs nothing but its default arguments, so these can be executed outside
    the notebook (after :func:`extract_imports`) to call a lesson's own training loop in a test.
    """
    nb = read_notebook(path)
    blocks: list[str] = []
    for number, cell in enumerate(nb["cells"], start=1):
        if cell["cell_type"] != "code":
            continue
        lines = ["" if _MAGIC_LINE.match(line) else line for line in _source(cell).split("\n")]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError as err:
            raise NotebookError(f"{path}: cell {number} is not valid Python ({err.msg}, line {err.lineno})") from None
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                blocks.append("\n".join(lines[first - 1: node.end_lineno]))
    return "\n\n\n".join(blocks) + "\n"
