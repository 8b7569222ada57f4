"""A learner's copy of the real lesson 00 with one wrong answer: clear feedback, the notebook finishes,
and the grade report scores it (issue "done means": a deliberately wrong answer in a copy of lesson 00).

The copy is ``lessons/00_setup.ipynb`` as generated, with exercise 00.1 answered wrongly (``torch.softmax``
probabilities instead of log-probabilities, a classic slip), 00.2 answered correctly (the body from
``solutions/``) and 00.3 left unsolved. It runs in a fresh kernel (nbclient), then through
``python -m course_lib.grading.grade``, exactly as a learner would run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
WRONG_BODY = "    return torch.softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)\n"


def _solution_body(function_name: str) -> str:
    """The lines between the solution markers of ``function_name`` in solutions/00_setup.ipynb."""
    nb = nbformat.read(REPO / "solutions" / "00_setup.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and f"def {function_name}(" in cell.source:
            body = cell.source.split("### BEGIN SOLUTION\n", 1)[1].split("### END SOLUTION", 1)[0]
            return "\n".join(line for line in body.splitlines() if line.strip()) + "\n"
    raise AssertionError(f"no solution of {function_name} in solutions/00_setup.ipynb")


def _answer(nb: nbformat.NotebookNode, function_name: str, body: str) -> None:
    """Replace the stub (comment + raise) of ``function_name`` in the lesson with ``body``."""
    stub = re.compile(r"    # YOUR CODE HERE[^\n]*\n    raise NotImplementedError\([^\n]*\)\n?")
    for cell in nb.cells:
        if cell.cell_type == "code" and f"def {function_name}(" in cell.source:
            cell.source, count = stub.subn(lambda _: body, cell.source)
            assert count == 1, f"the lesson's stub of {function_name} changed shape:\n{cell.source}"
            return
    raise AssertionError(f"no exercise {function_name} in lessons/00_setup.ipynb")


def _output_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") if out.get("output_type") == "stream"
                     else str(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


@pytest.fixture(scope="module")
def learner_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nb = nbformat.read(REPO / "lessons" / "00_setup.ipynb", as_version=4)
    _answer(nb, "log_prob_of_actions", WRONG_BODY)
    _answer(nb, "sample_actions", _solution_body("sample_actions"))
    path = tmp_path_factory.mktemp("learner") / "00_setup.ipynb"
    nbformat.write(nb, path)
    return path


def test_wrong_answer_gives_one_clear_line_and_the_notebook_finishes(learner_copy: Path) -> None:
    nb = nbformat.read(learner_copy, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_STRICT", "COURSE_GRADE_LOG")}
    env.update(COURSE_BUDGET="quick", MPLBACKEND="Agg")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(learner_copy.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    errors = [c for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "every cell ran without an exception"
    check_lines = {c.source.split(" = ")[0]: _output_text(c).strip() for c in nb.cells
                   if c.cell_type == "code" and c.source.startswith(tuple(
                       f"{n} = check." for n in ("log_prob_of_actions", "sample_actions",
                                                 "categorical_entropy")))}
    wrong = check_lines["log_prob_of_actions"]
    assert len(wrong.splitlines()) == 1, wrong
    assert "00.1" in wrong and "expected" in wrong and "got" in wrong and "reference" in wrong, wrong
    assert "00.2" in check_lines["sample_actions"] and "passed" in check_lines["sample_actions"]
    assert "not attempted" in check_lines["categorical_entropy"], check_lines["categorical_entropy"]
    # In JupyterLab the line is rich output: code spans rendered, no literal backticks; the plain text
    # stays beside it for nbval, nbclient and text front ends.
    check_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("log_prob_of_actions = check."))
    rich = [o["data"]["text/html"] for o in check_cell.outputs if "text/html" in o.get("data", {})]
    assert len(rich) == 1 and "<code>log_prob_of_actions</code>" in rich[0] and "`" not in rich[0], rich
    summary = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "check.summary()")
    assert "1/3 exercises passed" in _output_text(summary), _output_text(summary)


def test_grade_report_scores_the_copy(learner_copy: Path) -> None:
    before = learner_copy.read_bytes()
    done = subprocess.run([sys.executable, "-m", "course_lib.grading.grade", str(learner_copy), "--timeout", "300"],
                          capture_output=True, text=True, timeout=400, cwd=REPO)
    rows = {}
    for line in done.stdout.splitlines():
        parts = [p for p in re.split(r"\s{2,}", line.strip()) if p]
        if parts and parts[0] in ("00.1", "00.2", "00.3"):
            rows[parts[0]] = parts[1:3]
    assert rows == {"00.1": ["log_prob_of_actions", "failed"], "00.2": ["sample_actions", "passed"],
                    "00.3": ["categorical_entropy", "not attempted"]}, done.stdout
    assert "score: 1/3" in done.stdout, done.stdout
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert learner_copy.read_bytes() == before, "the grader never modifies the learner's notebook"
