"""Give each notebook kernel that nbval starts the environment its folder calls for.

- ``solutions/*.ipynb``: ``COURSE_STRICT=1`` (a failing check raises) and ``COURSE_BUDGET=full``
  (the solutions prove that every method learns, with the full training budget);
- ``lessons/*.ipynb``: ``COURSE_STRICT`` unset (unsolved checks fall back to the reference) and
  ``COURSE_BUDGET=quick`` (an unsolved lesson only has to run top to bottom);
- both: ``MPLBACKEND=Agg`` (no figure is rendered inline, which nbval would ignore anyway).

How: nbval starts one kernel per notebook in ``IPyNbFile.setup()``, which pytest calls while
setting up the notebook's first cell item, and the kernel copies ``os.environ`` at that moment. A
``tryfirst`` ``pytest_runtest_setup`` runs before pytest's own setup of the item (and so before the
kernel starts), so setting ``os.environ`` there is enough. Any other item gets the environment the
session started with back, so ordinary tests never see a notebook's settings.

This file sits at the repository root, so pytest loads it for any run inside the repository,
including one on notebooks alone (``pytest lessons/01_policy_gradient.ipynb``). The hook is
registered as a global plugin from ``pytest_configure`` so that it applies to every collected item
whatever folder it comes from.

A kernel that dies while starting is started again, up to three times. On a busy machine two
kernels started at the same moment can pick the same TCP port (jupyter_client chooses free ports
before the kernel binds them), and the loser exits before replying: seen once in a clean-clone CI
run on 2026-12-02 ("Kernel died before replying to kernel_info", every cell of one notebook). Only
the start is retried; a cell that fails still fails.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nbval.kernel
import pytest

_MANAGED = ("COURSE_STRICT", "COURSE_BUDGET", "MPLBACKEND")
_NOTEBOOK_ENV: dict[str, dict[str, str | None]] = {
    "solutions": {"COURSE_STRICT": "1", "COURSE_BUDGET": "full", "MPLBACKEND": "Agg"},
    "lessons": {"COURSE_STRICT": None, "COURSE_BUDGET": "quick", "MPLBACKEND": "Agg"},
}
_PLUGIN_NAME = "course-notebook-environment"


def notebook_environment(path: Path) -> dict[str, str | None] | None:
    """The variables to set (``None``: unset) for a notebook at ``path``; ``None`` if not one."""
    if path.suffix != ".ipynb":
        return None
    return _NOTEBOOK_ENV.get(path.parent.name)


class NotebookEnvironment:
    """The plugin: set the environment for notebook items, restore it for every other item."""

    def __init__(self) -> None:
        self.original = {name: os.environ.get(name) for name in _MANAGED}

    @staticmethod
    def _apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._apply(notebook_environment(Path(item.path)) or self.original)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(NotebookEnvironment(), _PLUGIN_NAME)


_start_new_kernel = nbval.kernel.start_new_kernel
_KERNEL_START_ATTEMPTS = 3


def _start_new_kernel_with_retries(*args, **kwargs):
    """nbval's ``start_new_kernel``, tried again when the kernel dies before it is ready."""
    for attempt in range(1, _KERNEL_START_ATTEMPTS + 1):
        try:
            return _start_new_kernel(*args, **kwargs)
        except RuntimeError:
            if attempt == _KERNEL_START_ATTEMPTS:
                raise
            logging.getLogger("nbval").warning("kernel start failed (attempt %d of %d); starting it again",
                                               attempt, _KERNEL_START_ATTEMPTS)
    raise AssertionError("unreachable")


nbval.kernel.start_new_kernel = _start_new_kernel_with_retries
