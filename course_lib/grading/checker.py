"""The exercise checker: compare a learner's function with the reference, case by case.

An :class:`Exercise` names the function a learner writes, the reference implementation in
``course_lib`` and a list of :class:`Case` objects: seeded random inputs plus hand-computed edge
cases (many taken from the bug catalogue in the course's algorithm notes). :func:`check` runs every
case and prints **one line**: either that all cases passed, or the first failing case with its
inputs, the expected and the actual value and a hint.

The checker survives bad learner code: exceptions, wrong shapes or dtypes, NaN or inf, inputs
mutated in place (models included) and code that never returns (a CPU-time limit that counts only
the learner's own call) all become feedback, never a crash.
It returns the learner's function when it passes and, visibly, the reference when it does not, so an
unfinished lesson still runs top to bottom. With ``COURSE_STRICT=1`` a failing check raises
:class:`ExerciseCheckFailed` instead (that is how solutions are graded in CI).
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from course_lib import runtime
from course_lib.grading.compare import compare, compare_modules, describe

__all__ = [
    "Case",
    "Exercise",
    "CheckResult",
    "ExerciseCheckFailed",
    "CheckTimeout",
    "USE_REFERENCE",
    "run_exercise",
    "check",
    "compare",
    "session_results",
    "STRICT_ENV",
    "GRADE_LOG_ENV",
]

STRICT_ENV = "COURSE_STRICT"
GRADE_LOG_ENV = "COURSE_GRADE_LOG"

Status = Literal["passed", "failed", "not attempted"]


class _UseReference:
    def __repr__(self) -> str:
        return "USE_REFERENCE"


USE_REFERENCE: Any = _UseReference()
"""Sentinel for :attr:`Case.expected`: compute the expected value by running the reference."""


class ExerciseCheckFailed(AssertionError):
    """Raised by :func:`check` in strict mode (``COURSE_STRICT=1``) when a check does not pass."""


class CheckTimeout(Exception):
    """The learner's function ran past the exercise's time limit."""


Observer = Callable[[Callable[..., Any], dict[str, Any]], Any]


@dataclass(frozen=True)
class Case:
    """One input (or one behaviour) on which the learner's function must match the reference.

    Attributes:
        label: short name shown when the case fails, e.g. ``"episode boundary resets the sum"``.
        inputs: keyword arguments for the function. Each call gets a deep copy, so a function that
            mutates its inputs cannot corrupt later cases, and the mutation is reported.
        expected: the expected observation, or :data:`USE_REFERENCE` to run the reference on the
            same inputs. Hand-computed values from the algorithm notes go here.
        hint: one sentence pointing at the likely mistake when this case fails.
        observe: how to turn a function into the value that is compared. The default calls
            ``fn(**inputs)``. A custom observer can, for example, return a gradient, or the
            parameters of a model after an update, to test behaviour rather than output.
        atol, rtol: tolerances for floating-point comparison.
        may_modify: names of the inputs the function may change in place (a model whose parameters
            it must update, say). Every other input is compared before and after the call, models
            by parameters, buffers and ``.grad``, and a change is reported as a failure.
    """

    label: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = USE_REFERENCE
    hint: str = ""
    observe: Observer | None = None
    atol: float = 1e-5
    rtol: float = 1e-4
    may_modify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exercise:
    """A graded exercise: a stable id (``"LL.N"``), the function name and its reference.

    ``make_cases`` builds the cases lazily (seeded, so they are the same on every run) and is called
    once per check. ``time_limit_s`` bounds the CPU time the learner's function may use on one case
    (see :func:`run_exercise`: the limit grows with what the reference needs on that case).
    """

    id: str
    name: str
    title: str
    reference: Callable[..., Any]
    make_cases: Callable[[], Sequence[Case]]
    time_limit_s: float = 3.0
    wall_limit_s: float | None = None
    """Wall-clock backstop per case for code that waits instead of computing (default: the larger of
    10 s and 20 times the CPU-time limit)."""

    @property
    def lesson(self) -> str:
        """The two-digit lesson number, e.g. ``"01"`` for exercise ``"01.2"``."""
        return self.id.split(".")[0]

    @property
    def reference_path(self) -> str:
        """Where the reference lives, e.g. ``"course_lib.estimators.reward_to_go"``."""
        return f"{self.reference.__module__}.{self.reference.__qualname__}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one function against one exercise."""

    exercise_id: str
    name: str
    status: Status
    message: str
    cases_passed: int
    cases_total: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


_SESSION: list[CheckResult] = []


def session_results() -> list[CheckResult]:
    """Every check run in this Python process (this notebook's kernel), in order."""
    return list(_SESSION)


# --------------------------------------------------------------------------------------------
# Running the learner's code safely
# --------------------------------------------------------------------------------------------


class _LimitedFunction:
    """The learner's function, wrapped so that only the time spent *inside* it counts.

    Each call runs under two timers (Unix, main thread): a CPU-time timer (``ITIMER_PROF``, the
    process's user + system time) with what is left of ``cpu_seconds`` for this case, and a wall-clock
    backstop of ``wall_seconds`` for code that waits instead of computing. CPU time barely grows
    when other programs share the cores, so a correct function is not refused on a slow or busy
    machine (Binder's one shared CPU); the observer's own work (building models, taking gradients of
    the result) runs between calls, with the timers off. Elsewhere (a worker thread) the call runs
    unlimited, and :func:`_run_observer` bounds the whole case by wall time instead.
    """

    def __init__(self, fn: Callable[..., Any], cpu_seconds: float, wall_seconds: float) -> None:
        self.fn = fn
        self.cpu_left = cpu_seconds
        self.wall_seconds = wall_seconds
        self.__name__ = getattr(fn, "__name__", "function")
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _can_use_timers():
            return self.fn(*args, **kwargs)
        if self.cpu_left <= 0:
            raise CheckTimeout()

        def _on_timer(signum, frame):  # noqa: ARG001
            raise CheckTimeout()

        previous = {sig: signal.signal(sig, _on_timer) for sig in (signal.SIGPROF, signal.SIGALRM)}
        cpu_start = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, self.cpu_left)
        signal.setitimer(signal.ITIMER_REAL, self.wall_seconds)
        try:
            return self.fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.cpu_left -= time.process_time() - cpu_start


def _can_use_timers() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _run_observer(observe: Observer, fn: _LimitedFunction, inputs: dict[str, Any]) -> Any:
    """``observe(fn, inputs)``; off the main thread, in a daemon thread abandoned after the wall limit."""
    if _can_use_timers():
        return observe(fn, inputs)
    box: dict[str, Any] = {}

    def _target() -> None:
        try:
            box["value"] = observe(fn, inputs)
        except BaseException as err:  # noqa: BLE001 - handed back to the caller below
            box["error"] = err

    worker = threading.Thread(target=_target, daemon=True)
    worker.start()
    worker.join(fn.wall_seconds)
    if worker.is_alive():
        raise CheckTimeout()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _learner_frame(err: BaseException) -> str:
    """' (line N of your function)' for the innermost frame outside the course's own files."""
    here = os.path.dirname(os.path.abspath(__file__))
    frames = traceback.extract_tb(err.__traceback__)
    for frame in reversed(frames):
        if not os.path.abspath(frame.filename).startswith(here) and "site-packages" not in frame.filename:
            code = (frame.line or "").strip()
            return f" (at line {frame.lineno}: `{code}`)" if code else f" (at line {frame.lineno})"
    return ""


# --------------------------------------------------------------------------------------------
# Checking an exercise
# --------------------------------------------------------------------------------------------


def _default_observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    return fn(**inputs)


def _describe_inputs(inputs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={describe(v)}" for k, v in inputs.items())


_REFERENCE_TIME_FACTOR = 50.0
"""A case allows the learner ``time_limit_s`` plus this many times the reference's CPU time on it."""
_WALL_FACTOR = 20.0
_MIN_WALL_SECONDS = 10.0


def _mutation(case: Case, before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """A sentence about the first input changed in place that the case does not allow to change."""
    for key, original in before.items():
        if key in case.may_modify:
            continue
        now = after[key]
        if isinstance(original, torch.nn.Module) and isinstance(now, torch.nn.Module):
            changed = compare_modules(original, now)
            if changed is not None:
                return (f"your function changed the model `{key}` in place ({changed}); "
                        f"this exercise must leave it untouched")
            if any(p.grad is not None for p in now.parameters()) and all(
                    p.grad is None for p in original.parameters()):
                return (f"your function left gradients in `{key}`'s parameters (.grad); use "
                        f"torch.autograd.grad(...) instead of .backward() so nothing accumulates")
        elif compare(original, now, atol=0.0, rtol=0.0) is not None:
            return (f"your function changed its input `{key}` in place; build a new "
                    f"tensor instead (e.g. `x = x + 1`, not `x += 1`)")
    return None


def run_exercise(exercise: Exercise, fn: Any) -> CheckResult:
    """Run every case of ``exercise`` on ``fn``; never raises for anything the learner wrote.

    For each case: the expected value (the reference, observed on a deep copy of the inputs, unless
    the case gives it), then the learner's function on another deep copy, under a CPU-time limit of
    ``exercise.time_limit_s`` plus 50 times the reference's CPU time on that case (only time inside
    the learner's function counts), then the comparison, then the check that no input the case does
    not list in ``may_modify`` was changed in place.
    """
    start = time.perf_counter()
    cases: Sequence[Case] = exercise.make_cases()

    def result(status: Status, message: str, passed: int) -> CheckResult:
        return CheckResult(exercise.id, exercise.name, status, message, passed, len(cases),
                           time.perf_counter() - start)

    if not callable(fn):
        return result("failed", f"expected a function, got {type(fn).__name__} {describe(fn)}", 0)

    for number, case in enumerate(cases):
        observe = case.observe or _default_observe
        cpu_start = time.process_time()
        if case.expected is USE_REFERENCE:
            expected = observe(exercise.reference, copy.deepcopy(dict(case.inputs)))
        else:
            expected = case.expected
        reference_cpu = time.process_time() - cpu_start
        cpu_limit = exercise.time_limit_s + _REFERENCE_TIME_FACTOR * reference_cpu
        wall_limit = exercise.wall_limit_s or max(_MIN_WALL_SECONDS, _WALL_FACTOR * cpu_limit)
        limited = _LimitedFunction(fn, cpu_limit, wall_limit)
        call_inputs = copy.deepcopy(dict(case.inputs))
        try:
            got = _run_observer(observe, limited, call_inputs)
        except NotImplementedError:
            return result("not attempted", "not attempted yet (your function raises NotImplementedError)", 0)
        except CheckTimeout:
            problem = (f"did not return within {cpu_limit:.2g} s of computing time or {wall_limit:.2g} s in all "
                       f"(an endless loop, a wait, or far too much work for a small input)")
            return result("failed", _case_message(case, problem), number)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - learner code may raise anything
            problem = f"raised {type(err).__name__}: {err}{_learner_frame(err)}"
            return result("failed", _case_message(case, problem), number)

        problem = compare(expected, got, case.atol, case.rtol)
        if problem is None:
            problem = _mutation(case, case.inputs, call_inputs)
        if problem is not None:
            return result("failed", _case_message(case, problem), number)
    return result("passed", "the one case" if len(cases) == 1 else f"all {len(cases)} cases", len(cases))


def _case_message(case: Case, problem: str) -> str:
    text = f"case '{case.label}'"
    if case.inputs:
        text += f" with {_describe_inputs(case.inputs)}"
    text += f": {problem}."
    if case.hint:
        text += f" Hint: {case.hint}"
    return text


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


def _log(result: CheckResult) -> None:
    path = os.environ.get(GRADE_LOG_ENV)
    if not path:
        return
    record = {"id": result.exercise_id, "name": result.name, "status": result.status,
              "message": result.message, "cases_passed": result.cases_passed,
              "cases_total": result.cases_total}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def feedback_html(line: str) -> str:
    """The feedback line as HTML: escaped, with each `backticked` span shown as code."""
    return "<div>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line, quote=False)) + "</div>"


def show_feedback(line: str) -> None:
    """Show one feedback line: in a notebook as rich output (code spans rendered, the plain text kept as
    the ``text/plain`` alternative that nbval, nbclient and text front ends read), elsewhere printed."""
    if not runtime.in_jupyter_kernel():
        print(line)
        return
    from IPython.display import display

    display({"text/plain": line, "text/html": feedback_html(line)}, raw=True)


def check(exercise: Exercise, fn: Any) -> Callable[..., Any]:
    """Check ``fn`` against ``exercise``, print one line, and return the function to use next.

    Returns ``fn`` itself when every case passes. Otherwise prints the first failing case and returns
    the reference implementation, so the rest of the notebook still runs; in strict mode
    (``COURSE_STRICT=1``) raises :class:`ExerciseCheckFailed` instead.
    """
    outcome = run_exercise(exercise, fn)
    _SESSION.append(outcome)
    _log(outcome)
    head = f"Exercise {exercise.id} `{exercise.name}`"
    if outcome.passed:
        show_feedback(f"✅ {head}: passed {outcome.message} ({outcome.seconds:.2f} s). Using your function.")
        return fn
    mark = "⏳" if outcome.status == "not attempted" else "❌"
    line = f"{mark} {head}: {outcome.message}"
    if _strict():
        raise ExerciseCheckFailed(line)
    show_feedback(f"{line} → Using the reference `{exercise.reference_path}` for now.")
    return exercise.reference
