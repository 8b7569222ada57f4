"""Base models: a tiny GPT-2 fine-tuned (SFT) on a task, built once and cached on disk (lessons 04-08).

Lessons 05-08 start from a model that already half-solves its task, so each method has room to show
its own effect. Building one takes well under 90 s on 2 CPU cores; :func:`load_base_model` builds it
the first time and loads it afterwards.

The cache is safe to share:

* **One key per recipe.** A base model lives in ``<cache>/<task>-<key>``, where the key hashes the
  whole :class:`BaseModelSpec` (task settings, model shape, SFT settings, seed) and the cache format.
  Change anything and a new model is built; nothing stale is ever loaded.
* **Never half-written.** A build writes into a temporary folder, records the SHA-256 of every file
  in ``manifest.json`` last, then renames the folder into place in one step.
* **Checked on every load.** A folder whose manifest is missing, unreadable, for another key, or
  whose files do not match their hashes is reported, moved aside and rebuilt, never loaded.
* **One builder at a time.** Builders take an exclusive lock on ``<cache>/<task>-<key>.lock``; a second
  process (nbval runs two notebooks at once) waits, then loads what the first one built.

The cache folder is ``$COURSE_CACHE_DIR`` if set, else the user's cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux and macOS, ``%LOCALAPPDATA%`` on Windows) under
``policy-optimization-course/base-models``: never inside the checkout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerBase

from course_lib.lm.model import tiny_gpt2
from course_lib.lm.sft import SFTConfig, train_sft
from course_lib.lm.tasks import Task, make_task
from course_lib.lm.tokenizer import build_char_tokenizer

__all__ = ["BaseModelSpec", "BASE_MODELS", "BaseModel", "cache_dir", "load_base_model"]

CACHE_FORMAT = 1
"""Bump when the layout of a cached model changes: every key changes with it."""
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BaseModelSpec:
    """Everything that decides a base model's weights, so it can be the cache key."""

    task: str = "addition"
    """A name :func:`course_lib.lm.tasks.make_task` knows."""
    task_settings: tuple[tuple[str, Any], ...] = ()
    """Keyword settings of the task, as ``(name, value)`` pairs (hashable), e.g. ``(("num_digits", 2),)``."""
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 64
    sft: SFTConfig = field(default_factory=SFTConfig)
    """SFT settings; ``sft.target_accuracy`` is the greedy held-out accuracy the base model stops at."""
    seed: int = 0

    def make_task(self) -> Task:
        return make_task(self.task, **dict(self.task_settings))

    def key(self) -> str:
        """16 hex digits of the SHA-256 of the spec and the cache format."""
        text = json.dumps({"format": CACHE_FORMAT, **dataclasses.asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


BASE_MODELS: dict[str, BaseModelSpec] = {
    "addition": BaseModelSpec(task="addition", sft=SFTConfig(max_steps=800, target_accuracy=0.5)),
    "chain_sum": BaseModelSpec(task="chain_sum", sft=SFTConfig(max_steps=600, target_accuracy=0.5)),
}
"""The base models the lessons use, by task: SFT stops at the first evaluation with greedy accuracy ≥ 0.5."""


@dataclass(frozen=True)
class BaseModel:
    """A loaded base model with its tokenizer, task and build record."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    task: Task
    spec: BaseModelSpec
    path: Path
    built: bool
    """True if this call built the model, False if it was loaded from the cache."""
    record: dict[str, Any]
    """What the build measured: ``sft_steps``, ``eval_accuracy``, ``build_seconds``, versions."""


def cache_dir() -> Path:
    """The folder base models are cached in (see the module docstring); not created here."""
    override = os.environ.get("COURSE_CACHE_DIR")
    if override:
        return Path(override).expanduser() / "base-models"
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "policy-optimization-course" / "base-models"


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``path`` (created if needed) for the ``with`` block."""
    with open(path, "a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after 10 s: keep waiting for the other builder
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load progress bar (a 28-tensor model loads in milliseconds)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.enable_progress_bar()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _problem_with(folder: Path, key: str) -> str | None:
    """Why ``folder`` is not a complete cached model for ``key``, or None if it is."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "it has no manifest (a build was interrupted)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its manifest cannot be read ({err.__class__.__name__})"
    if manifest.get("key") != key:
        return f"its manifest is for key {manifest.get('key')!r}, not {key!r}"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != expected:
            return f"{name} does not match its recorded SHA-256 (the file is corrupted)"
    return None


def _build(spec: BaseModelSpec, folder: Path, progress: bool) -> None:
    """Train the base model and write it, with its manifest last, into the empty ``folder``."""
    import transformers

    start = time.perf_counter()
    task = spec.make_task()
    tokenizer = build_char_tokenizer(task.alphabet)
    model = tiny_gpt2(tokenizer, n_layer=spec.n_layer, n_head=spec.n_head, n_embd=spec.n_embd,
                      n_positions=spec.n_positions, seed=spec.seed)
    history = train_sft(model, tokenizer, task, spec.sft, seed=spec.seed, progress=progress)
    accuracies = history["eval_accuracy"]
    finite = accuracies[accuracies == accuracies]  # the rows with an evaluation
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record = {"sft_steps": int(history.last("step")), "eval_accuracy": float(finite[-1]),
              "build_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
              "transformers": transformers.__version__}
    (folder / "build.json").write_text(json.dumps(record, indent=1))
    files = {path.name: _sha256(path) for path in sorted(folder.iterdir()) if path.is_file()}
    manifest = {"key": spec.key(), "spec": dataclasses.asdict(spec), "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))


def load_base_model(spec: BaseModelSpec | str = "addition", *, rebuild: bool = False,
                    progress: bool = True) -> BaseModel:
    """The base model of ``spec`` (or of ``BASE_MODELS[name]``), from the cache or built now.

    A missing, partial or corrupted cache entry is rebuilt (with a warning that says why);
    ``rebuild=True`` rebuilds in any case. ``progress`` shows the SFT progress bar while building.
    The model is returned in eval mode on the CPU.
    """
    if isinstance(spec, str):
        if spec not in BASE_MODELS:
            raise ValueError(f"no base model named {spec!r}; known: {sorted(BASE_MODELS)}")
        spec = BASE_MODELS[spec]
    if not isinstance(spec, BaseModelSpec):
        raise ValueError(f"spec must be a BaseModelSpec or a name in {sorted(BASE_MODELS)}, got {type(spec).__name__}")
    key = spec.key()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{spec.task}-{key}"
    built = False
    problem = "a rebuild was asked for" if rebuild else _problem_with(folder, key)
    if problem is not None:
        with _exclusive_lock(root / f"{spec.task}-{key}.lock"):
            # another process may have built it while this one waited for the lock
            problem = "a rebuild was asked for" if rebuild else _problem_with(folder, key)
            if problem is not None:
                if folder.exists():
                    warnings.warn(f"the cached base model at {folder} is not usable: {problem}; rebuilding it",
                                  stacklevel=2)
                    broken = folder.with_name(f"{folder.name}.broken-{os.getpid()}")
                    folder.rename(broken)
                    shutil.rmtree(broken, ignore_errors=True)
                staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=root))
                try:
                    _build(spec, staging, progress)
                    staging.rename(folder)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                built = True
    with _quiet_loading():
        model = GPT2LMHeadModel.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    model.eval()
    record = json.loads((folder / "build.json").read_text())
    return BaseModel(model, tokenizer, spec.make_task(), spec, folder, built, record)
