"""binder/ must build the same environment pyproject.toml describes, with a CPU-only torch.

repo2docker ignores pyproject.toml when binder/ exists, so the runtime dependencies are repeated in
binder/requirements.txt; these tests keep the two lists from drifting apart.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _runtime_dependencies() -> list[Requirement]:
    return [Requirement(line) for line in _pyproject()["project"]["dependencies"]]


def _binder_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split(" #")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _binder_requirements() -> dict[str, Requirement]:
    found: dict[str, Requirement] = {}
    for line in _binder_lines():
        if line.startswith("-"):
            continue  # pip options such as --extra-index-url
        try:
            requirement = Requirement(line)
        except InvalidRequirement as err:
            pytest.fail(f"binder/requirements.txt: {line!r} is not a valid requirement ({err})")
        name = canonicalize_name(requirement.name)
        assert name not in found, f"binder/requirements.txt lists {requirement.name} twice"
        found[name] = requirement
    return found


@pytest.mark.parametrize("dependency", _runtime_dependencies(), ids=lambda r: r.name)
def test_runtime_dependency_is_in_binder_with_a_compatible_spec(dependency: Requirement) -> None:
    binder = _binder_requirements().get(canonicalize_name(dependency.name))
    assert binder is not None, f"{dependency.name} (a runtime dependency in pyproject.toml) is missing from binder"
    pins = [spec for spec in binder.specifier if spec.operator == "=="]
    if pins:
        # A pin is compatible when pyproject.toml accepts the pinned version.
        version = pins[0].version
        assert dependency.specifier.contains(version, prereleases=True), (
            f"binder pins {binder}, which pyproject.toml's {dependency} does not allow")
    else:
        assert binder.specifier == dependency.specifier, (
            f"binder has {binder}, pyproject.toml has {dependency}: use the same bounds")
    assert binder.extras == dependency.extras, f"{dependency.name}: extras differ ({binder} vs {dependency})"


def test_binder_lists_nothing_that_pyproject_does_not() -> None:
    runtime = {canonicalize_name(r.name) for r in _runtime_dependencies()}
    extra = sorted(set(_binder_requirements()) - runtime)
    assert not extra, f"binder/requirements.txt installs {extra}, which are not runtime dependencies"


def test_torch_is_the_cpu_build() -> None:
    options = [line for line in _binder_lines() if line.startswith("-")]
    index_options = [o for o in options if re.match(r"--(extra-)?index-url\b", o)]
    assert any(o.split()[-1].rstrip("/") == CPU_INDEX for o in index_options), (
        f"binder/requirements.txt needs `--extra-index-url {CPU_INDEX}` so pip takes the CPU wheel")
    torch = _binder_requirements()["torch"]
    pins = [spec for spec in torch.specifier if spec.operator == "=="]
    assert pins, f"torch must be pinned exactly (`torch==X.Y.Z`), got {torch}"
    assert "+" not in pins[0].version, "pin the public version; the index supplies the +cpu build"


def test_runtime_python_satisfies_requires_python() -> None:
    text = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+\.\d+(?:\.\d+)?)", text)
    assert match, f"binder/runtime.txt must read like 'python-3.11', got {text!r}"
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert requires.contains(match.group(1)), f"{text} does not satisfy requires-python {requires}"


def test_post_build_stops_on_errors_and_installs_the_package() -> None:
    path = BINDER / "postBuild"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines and lines[0].startswith("#!"), "postBuild must start with a shebang such as #!/bin/bash"
    commands = [line for line in lines[1:] if line and not line.startswith("#")]
    assert commands and commands[0] == "set -e", "the first command of postBuild must be `set -e`"
    install = [c for c in commands if re.match(r"(python -m )?pip install\b", c)]
    assert any(re.search(r"(^|\s)(-e\s+)?\.$", c) for c in install), (
        "postBuild must install the package from the repository root (`pip install --no-deps -e .`)")
    assert os.access(path, os.X_OK), "binder/postBuild must be executable (chmod +x, then git add)"
