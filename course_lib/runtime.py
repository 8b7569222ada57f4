"""Device choice, seeding, the torch thread policy, training budgets and progress bars.

Every notebook starts with ``course_lib.setup(seed=...)``, which applies all of these and prints one
line saying what was chosen, so a learner always knows where their code runs.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable
from typing import Literal, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "in_jupyter_kernel",
    "choose_device",
    "seed_everything",
    "set_torch_threads",
    "budget_mode",
    "training_budget",
    "progress",
    "setup",
]

DEVICE_ENV = "COURSE_DEVICE"
THREADS_ENV = "COURSE_THREADS"
BUDGET_ENV = "COURSE_BUDGET"

T = TypeVar("T")


def choose_device(preferred: str | None = None) -> tuple[torch.device, str]:
    """Pick CUDA, then Apple MPS, then CPU; ``COURSE_DEVICE`` (or ``preferred``) overrides.

    Returns the device and a short reason, e.g. ``(device('cpu'), 'no CUDA or MPS found')``.
    An override naming a device that is not available raises ``ValueError`` instead of silently
    falling back, so a typo in ``COURSE_DEVICE`` is noticed.
    """
    wanted = preferred if preferred is not None else os.environ.get(DEVICE_ENV, "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as err:
            raise ValueError(f"{DEVICE_ENV}={wanted!r} is not a torch device name: {err}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={wanted!r} asks for CUDA, but torch sees no CUDA GPU")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"{DEVICE_ENV}={wanted!r} asks for Apple MPS, which is not available")
        return device, f"set by {DEVICE_ENV}" if preferred is None else "requested"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"CUDA GPU: {torch.cuda.get_device_name(0)}"
    if _mps_available():
        return torch.device("mps"), "Apple MPS GPU"
    return torch.device("cpu"), "no CUDA or MPS found"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch generator seeded the same way.

    Call it at the start of every training run: the same seed then gives the same numbers on the
    same CPU with one thread (another CPU model may round matrix products differently).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_torch_threads(num_threads: int | None = None) -> int:
    """Apply the course's thread policy and return the number of threads torch now uses.

    The course's models are tiny (a few thousand to a few hundred thousand parameters). For them,
    extra threads cost more in synchronisation than they save: on a busy 2-core machine one thread
    was measured up to 4x faster than two. So the default is **one** thread on CPU. Set
    ``COURSE_THREADS`` (or pass ``num_threads``) for bigger models.
    """
    if num_threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if raw:
            try:
                num_threads = int(raw)
            except ValueError:
                raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}") from None
        else:
            num_threads = 1
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def budget_mode() -> Literal["full", "quick"]:
    """``"quick"`` when ``COURSE_BUDGET=quick`` (used by CI for unsolved lessons), else ``"full"``."""
    raw = os.environ.get(BUDGET_ENV, "full").strip().lower() or "full"
    if raw not in ("full", "quick"):
        raise ValueError(f"{BUDGET_ENV} must be 'full' or 'quick', got {raw!r}")
    return raw  # type: ignore[return-value]


def training_budget(full: T, quick: T) -> T:
    """Return ``full`` normally and ``quick`` when ``COURSE_BUDGET=quick``.

    Lessons use it for the number of training steps, so an unsolved lesson can be executed in CI
    without repeating the full training its solution already proves.
    """
    return quick if budget_mode() == "quick" else full


def progress(iterable: Iterable[T], **kwargs) -> Iterable[T]:
    """A ``tqdm.auto`` progress bar: a widget in JupyterLab, text in a terminal, none in CI logs."""
    kwargs.setdefault("disable", os.environ.get("CI") == "true" and not sys.stdout.isatty())
    return tqdm(iterable, **kwargs)


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbclient, nbval); False in plain Python or a REPL."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def setup(seed: int = 0, device: str | None = None, num_threads: int | None = None) -> torch.device:
    """Apply the thread policy, seed everything, choose the device and print one report line."""
    from course_lib import __version__

    threads = set_torch_threads(num_threads)
    seed_everything(seed)
    dev, reason = choose_device(device)
    budget = budget_mode()
    print(
        f"course_lib {__version__} | torch {torch.__version__} | device {dev} ({reason}) | "
        f"{threads} torch thread{'s' if threads != 1 else ''} | seed {seed} | budget {budget}"
    )
    return dev
