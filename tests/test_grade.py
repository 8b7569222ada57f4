"""``course-grade`` end to end: a real kernel runs tiny lesson notebooks built here.

The grader runs as a subprocess (``python -m course_lib.grading.grade``), exactly as a learner runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

REPO = Path(__file__).resolve().parents[1]

SETUP = """\
import json, os
import torch
import torch.nn.functional as F
from course_lib import check
with open({probe!r}, "a") as f:
    f.write(json.dumps({{"cwd": os.getcwd(), "strict": os.environ.get("COURSE_STRICT"),
                        "budget": os.environ.get("COURSE_BUDGET"),
                        "log": os.environ.get("COURSE_GRADE_LOG")}}) + "\\n")
"""
CORRECT = """\
def log_prob_of_actions(logits, actions):
    return F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

log_prob_of_actions = check.log_prob_of_actions(log_prob_of_actions)
"""
WRONG = """\
def sample_actions(logits, generator=None):
    return logits.argmax(dim=-1)  # greedy, not sampled

sample_actions = check.sample_actions(sample_actions)
"""
UNSOLVED = """\
def categorical_entropy(logits):
    # YOUR CODE HERE (exercise 00.3)
    raise NotImplementedError("Exercise 00.3 (categorical_entropy): write your solution here")

categorical_entropy = check.categorical_entropy(categorical_entropy)
"""


def _notebook(path: Path, *sources: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# A tiny lesson")] + [v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def _grade(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "course_lib.grading.grade", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def _row(output: str, exercise_id: str) -> list[str]:
    """The table row of one exercise, split on runs of 2+ spaces: [id, name, status, cases]."""
    for line in output.splitlines():
        if line.strip().startswith(exercise_id + " "):
            return [part for part in re.split(r"\s{2,}", line.strip()) if part]
    raise AssertionError(f"no row for {exercise_id} in:\n{output}")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade two notebooks in one run (one kernel start each), keeping everything to inspect."""
    tmp = tmp_path_factory.mktemp("grade")
    probe = tmp / "kernel-env.jsonl"
    main = _notebook(tmp / "work" / "00_tiny.ipynb", SETUP.format(probe=str(probe)), CORRECT, WRONG, UNSOLVED)
    # An early cell raises: later cells still run, and a check that is never called is "not reached".
    partial = _notebook(tmp / "other" / "00_partial.ipynb", SETUP.format(probe=str(probe)),
                        "1 / 0", CORRECT)
    before = {p: p.read_bytes() for p in (main, partial)}
    done = _grade(str(main), str(partial), "--timeout", "120", env={"COURSE_STRICT": "1"})
    return {"done": done, "before": before, "probe": probe, "tmp": tmp, "main": main, "partial": partial}


def test_table_shows_each_status_and_the_score(graded: dict) -> None:
    out = graded["done"].stdout
    main_part, partial_part = out.split(str(graded["partial"]))
    assert _row(main_part, "00.1") == ["00.1", "log_prob_of_actions", "passed", "8/8"]
    assert _row(main_part, "00.2") == ["00.2", "sample_actions", "failed", "0/4"]
    assert _row(main_part, "00.3") == ["00.3", "categorical_entropy", "not attempted", "0/8"]
    assert "score: 1/3" in main_part
    assert "50000 draws" in main_part  # the failing case's one-line explanation is shown
    assert _row(partial_part, "00.1") == ["00.1", "log_prob_of_actions", "passed", "8/8"]
    assert _row(partial_part, "00.2") == ["00.2", "sample_actions", "not reached", "-"]
    assert _row(partial_part, "00.3") == ["00.3", "categorical_entropy", "not reached", "-"]
    assert "cell 3 raised ZeroDivisionError: division by zero" in partial_part
    assert "score: 1/3" in partial_part
    assert "Total: 2/6 exercises passed in 2 notebook(s)" in out


def test_exit_status_is_1_when_an_exercise_did_not_pass(graded: dict) -> None:
    assert graded["done"].returncode == 1, graded["done"].stdout + graded["done"].stderr
    assert "Traceback" not in graded["done"].stdout + graded["done"].stderr


def test_originals_are_untouched_and_nothing_is_written_beside_them(graded: dict) -> None:
    for path, content in graded["before"].items():
        assert path.read_bytes() == content
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_kernel_runs_in_a_temporary_folder_with_the_grading_environment(graded: dict) -> None:
    records = [json.loads(line) for line in graded["probe"].read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert Path(record["cwd"]).resolve() not in {graded["main"].parent.resolve(),
                                                     graded["partial"].parent.resolve(), REPO.resolve()}
        assert not Path(record["cwd"]).exists(), "the temporary folder is removed afterwards"
        assert record["strict"] is None, "COURSE_STRICT=1 from the caller must not reach the kernel"
        assert record["budget"] == "quick"
        assert record["log"] and not Path(record["log"]).exists()


def test_a_fully_solved_lesson_exits_0_and_budget_is_passed_on(tmp_path: Path) -> None:
    probe = tmp_path / "kernel-env.jsonl"
    right = CORRECT + """
def sample_actions(logits, generator=None):
    probs = torch.softmax(logits, dim=-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])

sample_actions = check.sample_actions(sample_actions)

def categorical_entropy(logits):
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * torch.where(torch.isinf(logp), 0.0, logp)).sum(-1)

categorical_entropy = check.categorical_entropy(categorical_entropy)
"""
    path = _notebook(tmp_path / "00_done.ipynb", SETUP.format(probe=str(probe)), right)
    done = _grade(str(tmp_path), "--budget", "full", "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "score: 3/3" in done.stdout and str(path) in done.stdout
    assert json.loads(probe.read_text())["budget"] == "full"


def test_unusable_paths_give_one_line_each_and_a_nonzero_exit(tmp_path: Path) -> None:
    broken = tmp_path / "00_broken.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    unnumbered = _notebook(tmp_path / "notes.ipynb", "x = 1")
    missing = tmp_path / "01_missing.ipynb"
    done = _grade(str(missing), str(broken), str(unnumbered), str(tmp_path / "empty_folder_that_is_missing"))
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert f"course-grade: {missing}: no such file or folder" in errors
    assert any(line.startswith(f"course-grade: {broken}: not valid JSON") for line in errors), done.stderr
    assert any(line.startswith(f"course-grade: {unnumbered}: the file name does not start with a two-digit")
               for line in errors), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "Total: 0/0 exercises passed in 0 notebook(s); 4 path(s) could not be graded" in done.stdout


def test_wrong_option_is_a_usage_error() -> None:
    done = _grade("--budget", "huge")
    assert done.returncode == 2 and "invalid choice" in done.stderr
