"""The layering rules of ``course_lib`` (CONTRIBUTING.md, "Layers"), checked on every import statement.

1. Shared modules (``course_lib/*.py``) import only shared modules of ``course_lib``; the one
   exception is :mod:`course_lib.check`, the learner's door into the grading package.
2. ``course_lib.rl`` and ``course_lib.lm`` never import each other.
3. Nothing imports ``course_lib.grading`` except ``course_lib.check`` (and the grading package itself);
   nothing inside ``course_lib`` imports ``course_lib.check``.
4. Heavy optional libraries load only where used: ``trl`` and ``peft`` only inside a function body
   (never when a module is imported), ``transformers`` only in ``course_lib.lm``, ``gymnasium`` only in
   ``course_lib.rl``.

The rules are read from the source with :mod:`ast` (every ``import`` anywhere in a file, nested ones
included), so a violation is found even in code that no test runs. The last tests plant a forbidden
import in a copy of the package and check that each rule catches it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "course_lib"
HALVES = ("rl", "lm")
FUNCTION_ONLY = ("trl", "peft")
ONLY_IN = {"transformers": "lm", "gymnasium": "rl"}


def layer_of(module: str) -> str:
    """'shared', 'check', 'rl', 'lm' or 'grading' for a dotted module name inside course_lib."""
    parts = module.split(".")
    if len(parts) == 1:
        return "shared"  # the package itself
    if parts[1] in (*HALVES, "grading"):
        return parts[1]
    return "check" if parts[1] == "check" else "shared"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level?) for every import in a file; ``from a import b`` gives
    ``a.b`` as well as ``a`` (b may be a submodule)."""
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, id(node) in top_level))
            found += [(f"{node.module}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
    return found


def layer_violations(root: Path = PACKAGE) -> list[str]:
    """Every import in the package at ``root`` that breaks a layering rule, as 'file:line: why'."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        here = _module_name(path, root)
        source_layer = layer_of(here)
        where = f"{path.relative_to(root.parent)}"
        for target, line, module_level in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            top = target.split(".")[0]
            if top == "course_lib":
                target_layer = layer_of(target)
                if target_layer == "check" and source_layer != "check":
                    problems.append(f"{where}:{line}: imports {target}; only notebooks use course_lib.check")
                elif target_layer == "grading" and source_layer not in ("grading", "check"):
                    problems.append(f"{where}:{line}: imports {target}; only course_lib.check may import "
                                    f"the grading package")
                elif source_layer == "shared" and target_layer != "shared":
                    problems.append(f"{where}:{line}: shared module imports {target} ({target_layer}); shared "
                                    f"modules import only shared modules")
                elif source_layer in HALVES and target_layer in HALVES and target_layer != source_layer:
                    problems.append(f"{where}:{line}: course_lib.{source_layer} imports {target}; "
                                    f"rl and lm never import each other")
            elif top in FUNCTION_ONLY and module_level:
                problems.append(f"{where}:{line}: imports {top} at module level; import it inside the "
                                f"function that uses it, so importing course_lib stays fast")
            elif top in ONLY_IN and source_layer != ONLY_IN[top]:
                problems.append(f"{where}:{line}: imports {top}, which only course_lib.{ONLY_IN[top]} may use")
    return problems


def test_the_package_follows_the_layering_rules():
    assert layer_violations() == []


def test_layer_names():
    assert layer_of("course_lib") == layer_of("course_lib.training") == "shared"
    assert layer_of("course_lib.rl.ppo") == "rl" and layer_of("course_lib.lm") == "lm"
    assert layer_of("course_lib.grading.checker") == "grading" and layer_of("course_lib.check") == "check"


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "course_lib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _plant(package: Path, relative: str, line: str) -> None:
    path = package / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else '"""planted"""\n'
    path.write_text(text + "\n" + line + "\n", encoding="utf-8")


@pytest.mark.parametrize("relative, line, words", [
    ("training.py", "from course_lib.rl import envs", "shared module imports course_lib.rl"),
    ("estimators.py", "import course_lib.lm", "shared module imports course_lib.lm"),
    ("rl/ppo.py", "from course_lib.lm import sampling", "rl and lm never import each other"),
    ("lm/planted.py", "from course_lib.rl import rollouts", "rl and lm never import each other"),
    ("rl/trpo.py", "from course_lib.grading import checker", "only course_lib.check may import"),
    ("plots.py", "from course_lib import check", "only notebooks use course_lib.check"),
    ("lm/planted.py", "import trl", "imports trl at module level"),
    ("lm/planted.py", "from peft import LoraConfig", "imports peft at module level"),
    ("rl/networks.py", "import transformers", "only course_lib.lm may use"),
    ("distributions.py", "import gymnasium as gym", "only course_lib.rl may use"),
])
def test_each_rule_catches_a_planted_import(package_copy: Path, relative: str, line: str, words: str):
    assert layer_violations(package_copy) == []
    _plant(package_copy, relative, line)
    problems = layer_violations(package_copy)
    assert len(problems) >= 1 and any(words in p for p in problems), problems


def test_a_heavy_import_inside_a_function_is_allowed(package_copy: Path):
    _plant(package_copy, "lm/planted.py", "def cross_check():\n    import trl\n    return trl")
    assert layer_violations(package_copy) == []


def test_importing_course_lib_and_its_halves_loads_no_heavy_library():
    code = ("import sys, course_lib, course_lib.rl, course_lib.lm, course_lib.grading\n"
            "print(' '.join(m for m in ('torch', 'transformers', 'trl', 'peft', 'gymnasium') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == ""
