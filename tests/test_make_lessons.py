"""The lesson generator: stubs, dropped cells, stripped outputs, marker errors and ``--check``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from nbformat import v4

from course_lib.grading import checker, exercises
from course_lib.grading.notebooks import (
    NotebookError,
    extract_imports,
    extract_solution_functions,
    make_lesson,
    notebook_text,
    read_notebook,
    strip_outputs,
)

REPO = Path(__file__).resolve().parents[1]

LOG_PROB_CELL = '''\
import torch
import torch.nn.functional as F


def log_prob_of_actions(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(..., A) logits, (...) actions -> (...) log-probabilities."""
    ### BEGIN SOLUTION
    logp = F.log_softmax(logits, dim=-1)  # (..., A)
    return logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    ### END SOLUTION


log_prob_of_actions = check.log_prob_of_actions(log_prob_of_actions)
'''

# A region nested one block deeper (8 spaces), a decorator and an IPython magic in the same cell.
SAMPLE_CELL = '''\
%matplotlib inline
@torch.no_grad()
def sample_actions(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., A) logits -> (...) int64 actions."""
    if True:
        ### BEGIN SOLUTION
        probs = torch.softmax(logits, dim=-1).reshape(-1, logits.shape[-1])  # (N, A)
        draws = torch.multinomial(probs, 1, generator=generator)  # (N, 1)
        return draws.reshape(logits.shape[:-1])
        ### END SOLUTION'''

ENTROPY_CELL = '''\
def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    return -(p * torch.where(torch.isinf(logp), 0.0, logp)).sum(-1)
    ### END SOLUTION
'''


def solution_notebook() -> nbformat.NotebookNode:
    """A small solution notebook for lesson 00, with outputs as if it had just been run."""
    cells = [
        v4.new_markdown_cell("# Lesson 00\nWrite `log_prob_of_actions`."),
        v4.new_code_cell(LOG_PROB_CELL),
        v4.new_code_cell(SAMPLE_CELL),
        v4.new_code_cell("assert True  # the method learns", metadata={"tags": ["solution-only"]}),
        v4.new_code_cell(ENTROPY_CELL, metadata={"tags": ["keep-me"], "execution": {"iopub.status.busy": "2025-01-01T00:00:00.000Z"}, "scrolled": True}),
        v4.new_code_cell("print('done')"),
    ]
    for number, cell in enumerate(cells):
        cell.id = f"cell-{number}"  # nbformat draws random ids; the tests compare whole files
        if cell.cell_type == "code":
            cell.execution_count = number
            cell.outputs = [v4.new_output("stream", name="stdout", text=f"output {number}\n")]
    nb = v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
    nb.metadata["widgets"] = {"state": {}}
    return nb


def write(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# make_lesson
# ---------------------------------------------------------------------------------------------


def test_regions_become_stubs_with_the_exercise_id_and_the_marker_indentation() -> None:
    lesson = make_lesson(solution_notebook())
    log_prob = lesson.cells[1].source.split("\n")
    assert log_prob[6:8] == [
        "    # YOUR CODE HERE (exercise 00.1)",
        '    raise NotImplementedError("Exercise 00.1 (log_prob_of_actions): write your solution here")',
    ]
    assert log_prob[:6] == LOG_PROB_CELL.split("\n")[:6]  # the signature and docstring stay
    assert log_prob[8:] == LOG_PROB_CELL.split("\n")[10:]  # so does the check call after the region
    sample = lesson.cells[2].source.split("\n")
    assert sample[-2:] == [
        "        # YOUR CODE HERE (exercise 00.2)",
        '        raise NotImplementedError("Exercise 00.2 (sample_actions): write your solution here")',
    ]
    assert "BEGIN SOLUTION" not in notebook_text(lesson) and "multinomial" not in notebook_text(lesson)


def test_the_stub_runs_and_raises_not_implemented() -> None:
    source = make_lesson(solution_notebook()).cells[3].source  # categorical_entropy (cell 4 is dropped)
    namespace = {"torch": torch, "F": F}
    exec(compile(source, "lesson", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=r"Exercise 00\.3 \(categorical_entropy\)"):
        namespace["categorical_entropy"](torch.zeros(1, 2))
    result = checker.run_exercise(exercises.by_name("categorical_entropy"), namespace["categorical_entropy"])
    assert result.status == "not attempted"


def test_solution_only_cells_are_dropped_and_everything_else_kept_in_order() -> None:
    solution = solution_notebook()
    lesson = make_lesson(solution)
    assert len(lesson.cells) == len(solution.cells) - 1
    assert all("solution-only" not in c.metadata.get("tags", []) for c in lesson.cells)
    assert [c.get("id") for c in lesson.cells] == [c.get("id") for i, c in enumerate(solution.cells) if i != 3]
    assert lesson.cells[0].source == solution.cells[0].source
    assert lesson.cells[-1].source == "print('done')"
    assert lesson.cells[3].metadata == {"tags": ["keep-me"]}  # run-time noise gone, the author's tag kept
    assert lesson.metadata["kernelspec"]["name"] == "python3" and "widgets" not in lesson.metadata


def test_outputs_and_counts_are_stripped_and_the_input_is_not_modified() -> None:
    solution = solution_notebook()
    before = notebook_text(solution)
    lesson = make_lesson(solution)
    code = [c for c in lesson.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert notebook_text(solution) == before
    stripped = strip_outputs(solution)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in stripped.cells)
    assert [c.source for c in stripped.cells] == [c.source for c in solution.cells]


def test_generation_is_deterministic_and_serialised_like_nbformat() -> None:
    first = notebook_text(make_lesson(solution_notebook()))
    assert first == notebook_text(make_lesson(solution_notebook()))
    lesson = make_lesson(solution_notebook())
    assert notebook_text(lesson) == nbformat.writes(lesson) + "\n"


def test_make_lesson_of_a_lesson_changes_nothing(tmp_path: Path) -> None:
    """A generated lesson has no regions left, so generating again is the identity."""
    text = notebook_text(make_lesson(solution_notebook()))
    path = tmp_path / "00_tour.ipynb"
    path.write_text(text, encoding="utf-8")
    assert notebook_text(make_lesson(read_notebook(path))) == text


BAD_CELLS = {
    "nested": ("def log_prob_of_actions(logits, actions):\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n"
               "    pass\n    ### END SOLUTION\n", "nested"),
    "end without begin": ("def log_prob_of_actions(logits, actions):\n    pass\n    ### END SOLUTION\n",
                          "without a ### BEGIN SOLUTION"),
    "never closed": ("def log_prob_of_actions(logits, actions):\n    ### BEGIN SOLUTION\n    pass\n",
                     "never closed"),
    "outside a function": ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "not inside a function"),
    "in an if after a function": ("def log_prob_of_actions(logits, actions):\n    pass\n\nif True:\n"
                                  "    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION\n",
                                  "not inside a function"),
    "unregistered name": ("def my_helper(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n",
                          "'my_helper'"),
    "end indented differently": ("def log_prob_of_actions(logits, actions):\n    ### BEGIN SOLUTION\n"
                                 "    pass\n  ### END SOLUTION\n", "not indented like"),
    "not python": ("def log_prob_of_actions(logits, actions:\n    ### BEGIN SOLUTION\n    pass\n"
                   "    ### END SOLUTION\n", "valid Python"),
}


@pytest.mark.parametrize("source, problem", BAD_CELLS.values(), ids=BAD_CELLS.keys())
def test_marker_errors_name_the_notebook_cell_and_problem(source: str, problem: str) -> None:
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("intro"), v4.new_code_cell("x = 1"), v4.new_code_cell(source)])
    with pytest.raises(NotebookError) as info:
        make_lesson(nb, "solutions/00_tour.ipynb")
    message = str(info.value)
    assert message.startswith("solutions/00_tour.ipynb: cell 3"), message
    assert problem in message


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("", "empty"),
    ("{not json", "not valid JSON"),
    ('{"metadata": {}}', "not a Jupyter notebook"),
    ('{"cells": [], "nbformat": 3}', "format 3"),
], ids=["missing", "empty", "invalid JSON", "no cells", "old format"])
def test_read_notebook_errors_name_the_file(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "00_tour.ipynb"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(NotebookError, match=problem) as info:
        read_notebook(path)
    assert str(info.value).startswith(str(path))


def test_extract_solution_functions_returns_whole_functions_that_pass_their_checks(tmp_path: Path) -> None:
    path = write(tmp_path / "00_tour.ipynb", solution_notebook())
    functions = extract_solution_functions(path)
    assert list(functions) == ["log_prob_of_actions", "sample_actions", "categorical_entropy"]
    assert functions["sample_actions"].startswith("@torch.no_grad()\ndef sample_actions(")
    assert functions["sample_actions"].rstrip().endswith("### END SOLUTION")
    assert "%matplotlib" not in functions["sample_actions"] and "check." not in functions["log_prob_of_actions"]
    imports = extract_imports(path)
    assert "import torch" in imports and "%matplotlib" not in imports
    for name, source in functions.items():
        namespace: dict = {}
        exec(compile(imports + source, name, "exec"), namespace)
        result = checker.run_exercise(exercises.by_name(name), namespace[name])
        assert result.passed, f"{name}: {result.message}"


# ---------------------------------------------------------------------------------------------
# tools/make_lessons.py
# ---------------------------------------------------------------------------------------------


def _tool():
    spec = importlib.util.spec_from_file_location("make_lessons", REPO / "tools" / "make_lessons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: Path, *args: str, capsys) -> tuple[int, str]:
    status = _tool().main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return status, out + err


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.ipynb"))}


def test_generate_writes_lessons_strips_solutions_and_deletes_orphans(tmp_path: Path, capsys) -> None:
    solution = write(tmp_path / "solutions" / "00_tour.ipynb", solution_notebook())
    orphan = write(tmp_path / "lessons" / "99_gone.ipynb", v4.new_notebook())
    status, output = _run(tmp_path, capsys=capsys)
    assert status == 0, output
    lesson = tmp_path / "lessons" / "00_tour.ipynb"
    assert lesson.read_text(encoding="utf-8") == notebook_text(make_lesson(solution_notebook()))
    assert not orphan.exists()
    stored = read_notebook(solution)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in stored["cells"])
    assert "### BEGIN SOLUTION" in stored["cells"][1]["source"]  # the solution keeps its solution
    assert "stripped outputs: solutions/00_tour.ipynb" in output and "deleted: lessons/99_gone.ipynb" in output


def test_generate_is_idempotent(tmp_path: Path, capsys) -> None:
    write(tmp_path / "solutions" / "00_tour.ipynb", solution_notebook())
    _run(tmp_path, capsys=capsys)
    first = _snapshot(tmp_path)
    status, output = _run(tmp_path, capsys=capsys)
    assert status == 0 and _snapshot(tmp_path) == first
    assert output.strip() == "lessons/ is up to date (1 notebooks)"


def test_check_passes_on_a_fresh_tree_and_changes_nothing(tmp_path: Path, capsys) -> None:
    write(tmp_path / "solutions" / "00_tour.ipynb", solution_notebook())
    _run(tmp_path, capsys=capsys)
    before = _snapshot(tmp_path)
    status, output = _run(tmp_path, "--check", capsys=capsys)
    assert (status, output.strip()) == (0, "lessons/ is up to date (1 notebooks)")
    assert _snapshot(tmp_path) == before


def test_check_reports_stale_missing_extra_and_outputs_without_changing_anything(tmp_path: Path, capsys) -> None:
    write(tmp_path / "solutions" / "00_tour.ipynb", solution_notebook())
    write(tmp_path / "solutions" / "01_next.ipynb", v4.new_notebook(cells=[v4.new_markdown_cell("next")]))
    _run(tmp_path, capsys=capsys)
    # Stale: the solution changed after generation, and was saved with outputs.
    changed = solution_notebook()
    changed.cells[0].source = "# Lesson 00, revised"
    write(tmp_path / "solutions" / "00_tour.ipynb", changed)
    (tmp_path / "lessons" / "01_next.ipynb").unlink()  # missing
    write(tmp_path / "lessons" / "02_orphan.ipynb", v4.new_notebook())  # extra
    before = _snapshot(tmp_path)
    status, output = _run(tmp_path, "--check", capsys=capsys)
    assert status == 1
    assert "stale: lessons/00_tour.ipynb" in output
    assert "missing: lessons/01_next.ipynb" in output
    assert "extra: lessons/02_orphan.ipynb" in output
    assert "has outputs: solutions/00_tour.ipynb" in output
    assert "up to date" not in output.replace("out of date", "")
    assert _snapshot(tmp_path) == before


def test_bad_markers_fail_both_modes_with_the_cell(tmp_path: Path, capsys) -> None:
    bad = v4.new_notebook(cells=[v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n")])
    write(tmp_path / "solutions" / "00_bad.ipynb", bad)
    for args in ([], ["--check"]):
        status, output = _run(tmp_path, *args, capsys=capsys)
        assert status == 1 and "solutions/00_bad.ipynb: cell 1, line 1" in output
    assert not (tmp_path / "lessons" / "00_bad.ipynb").exists()


def test_the_repository_lessons_are_up_to_date() -> None:
    """The CI gate itself, run as a script the way CI and contributors run it."""
    done = subprocess.run([sys.executable, str(REPO / "tools" / "make_lessons.py"), "--check"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lessons/ is up to date" in done.stdout
