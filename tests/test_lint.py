"""ruff checks every Python file and notebook in the repository (configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    # the ruff next to this Python first (a venv used without activating it), then the PATH
    beside = Path(sys.executable).with_name("ruff")
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: install the dev extra with pip install -e '.[dev]'")
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lesson_notebook_has_a_solution_and_no_outputs():
    import json

    lessons = sorted(p.name for p in (ROOT / "lessons").glob("*.ipynb"))
    solutions = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    assert lessons == solutions and solutions, (lessons, solutions)
    for folder in ("lessons", "solutions"):
        for path in (ROOT / folder).glob("*.ipynb"):
            cells = json.loads(path.read_text())["cells"]
            with_output = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and c.get("outputs")]
            assert not with_output, f"{path} has saved outputs in cells {with_output}"
