"""course_lib.grading.checker and course_lib.check: comparing values, running learner code safely, feedback."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import NamedTuple

import numpy as np
import pytest
import torch

from course_lib import check
from course_lib.grading import checker, exercises
from course_lib.grading.checker import USE_REFERENCE, Case, Exercise, compare, run_exercise


@pytest.fixture(autouse=True)
def not_strict(monkeypatch):
    monkeypatch.delenv(checker.STRICT_ENV, raising=False)
    monkeypatch.delenv(checker.GRADE_LOG_ENV, raising=False)


# --- compare ------------------------------------------------------------------------------------


class Stats(NamedTuple):
    loss: torch.Tensor
    kl: float


def test_compare_accepts_equal_and_close_values():
    x = torch.tensor([1.0, 2.0, 3.0])
    assert compare(x, x.clone()) is None
    assert compare(x, x + 1e-7) is None
    assert compare(1.0, 1.0 + 1e-9) is None
    assert compare(3, torch.tensor(3.0)) is None  # a one-element tensor counts as a number
    assert compare(np.arange(3.0), np.arange(3.0)) is None
    assert compare(torch.tensor([1.0, math.nan]), torch.tensor([1.0, math.nan])) is None  # NaN stays NaN
    assert compare(math.nan, math.nan) is None


def test_compare_reports_shape_dtype_and_value_differences():
    x = torch.zeros(2, 3)
    assert "expected shape (2, 3), got shape (3, 2)" in compare(x, torch.zeros(3, 2))
    assert "expected dtype torch.float32, got dtype torch.float64" in compare(x, x.double())
    assert "expected dtype torch.int64" in compare(torch.tensor([1]), torch.tensor([1], dtype=torch.int32))
    problem = compare(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
    assert "first difference at flat index 1" in problem and "2.5" in problem
    assert "expected a torch.Tensor, got list" in compare(x, [[0.0] * 3] * 2)
    assert "expected dtype float64, got dtype float32" in compare(np.zeros(2), np.zeros(2, dtype=np.float32))
    assert compare(2.0, 2.1) == "expected 2, got 2.1"


def test_compare_reports_nan_and_inf_where_finite_values_were_expected():
    expected = torch.tensor([0.5, -1.0, 2.0])
    assert "got NaN at flat index 1" in compare(expected, torch.tensor([0.5, math.nan, 2.0]))
    assert "got inf at flat index 2" in compare(expected, torch.tensor([0.5, -1.0, math.inf]))
    assert "got inf" in compare(expected, torch.tensor([0.5, -math.inf, 2.0]))
    assert "got nan" in compare(1.0, math.nan)


def test_compare_walks_nested_tuples_dicts_and_namedtuples_and_names_the_path():
    expected = (torch.ones(2), {"kl": 0.1, "clip": torch.zeros(1)})
    assert compare(expected, (torch.ones(2), {"kl": 0.1, "clip": torch.zeros(1), "extra": 1})) is None
    assert compare(expected, (torch.ones(2), {"kl": 0.2, "clip": torch.zeros(1)})) == "in [1]['kl']: expected 0.1, got 0.2"
    assert "missing the key(s) ['clip']" in compare(expected, (torch.ones(2), {"kl": 0.1}))
    assert "expected 2 items, got 1" in compare(expected, (torch.ones(2),))
    assert compare(expected, [torch.ones(2), {"kl": 0.1, "clip": torch.zeros(1)}]) is None
    stats = Stats(torch.tensor(1.0), 0.5)
    assert compare(stats, Stats(torch.tensor(1.0), 0.5)) is None
    assert compare(stats, (torch.tensor(1.0), 0.7)).startswith("in kl:")
    assert compare(stats, Stats(torch.tensor([1.0]), 0.5)).startswith("in loss: expected shape ()")


def test_compare_bools_none_and_other_values():
    assert compare(True, True) is None and compare(True, np.bool_(True)) is None
    assert compare(True, False) == "expected True, got False"
    assert "expected a bool" in compare(True, "yes")
    assert compare(None, None) is None and "expected None" in compare(None, 0)
    assert compare("abc", "abc") is None and compare((2, 3), (2, 3)) is None
    assert compare("abc", "abd") is not None


# --- run_exercise -------------------------------------------------------------------------------


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def _cases() -> list[Case]:
    return [Case("small", {"x": torch.tensor([1.0, 2.0])}, expected=torch.tensor([2.0, 4.0]),
                 hint="multiply by two."),
            Case("negative values", {"x": torch.tensor([-3.0, 0.5])}, hint="signs matter.")]


TOY = Exercise("98.1", "double_it", "doubling", _double, _cases, time_limit_s=1.0)


def test_reference_passes_every_case():
    result = run_exercise(TOY, _double)
    assert (result.status, result.cases_passed, result.cases_total) == ("passed", 2, 2)
    assert result.passed and result.message == "all 2 cases"


def test_wrong_value_names_the_case_the_values_and_the_hint():
    result = run_exercise(TOY, lambda x: x.abs() * 2)
    assert result.status == "failed" and result.cases_passed == 1
    assert "case 'negative values'" in result.message
    assert "x=tensor([-3.0, 0.5])" in result.message
    assert "Hint: signs matter." in result.message


def test_exception_becomes_failed_with_the_learners_line():
    def broken(x):
        scale = 2 / 0
        return x * scale

    result = run_exercise(TOY, broken)
    assert result.status == "failed" and result.cases_passed == 0
    assert "raised ZeroDivisionError: division by zero" in result.message
    assert "scale = 2 / 0" in result.message


def test_endless_loop_hits_the_time_limit_quickly():
    def forever(x):
        while True:
            pass

    start = time.perf_counter()
    result = run_exercise(TOY, forever)
    assert time.perf_counter() - start < 4.0
    assert result.status == "failed"
    assert "did not return within 1 s" in result.message


def test_time_limit_also_works_outside_the_main_thread():
    def slow(x):
        time.sleep(2.5)
        return x * 2

    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", run_exercise(TOY, slow)))
    start = time.perf_counter()
    worker.start()
    worker.join(10)
    assert time.perf_counter() - start < 2.4
    assert box["result"].status == "failed" and "did not return" in box["result"].message


def test_input_changed_in_place_is_reported():
    def mutating(x):
        out = x * 2
        x.zero_()  # right answer, but the caller's tensor is destroyed
        return out

    result = run_exercise(TOY, mutating)
    assert result.status == "failed"
    assert "changed its input `x` in place" in result.message


def test_mutation_check_can_be_turned_off():
    exercise = Exercise("98.2", "double_inplace", "t", _double,
                        lambda: [Case("c", {"x": torch.ones(2)}, check_mutation=False)])
    assert run_exercise(exercise, lambda x: x.mul_(2)).passed


def test_not_implemented_is_not_attempted():
    def stub(x):
        raise NotImplementedError("Exercise 98.1")

    result = run_exercise(TOY, stub)
    assert result.status == "not attempted" and result.cases_passed == 0
    assert "not attempted" in result.message


@pytest.mark.parametrize("value", [None, 3, "double_it", torch.ones(2)])
def test_non_callable_is_failed(value):
    result = run_exercise(TOY, value)
    assert result.status == "failed" and result.message.startswith("expected a function, got")


def test_use_reference_sentinel_and_custom_observer():
    def grad_of_sum(fn, inputs):
        x = inputs["x"].clone().requires_grad_(True)
        fn(x=x).sum().backward()
        return x.grad

    exercise = Exercise("98.3", "double_grad", "t", _double,
                        lambda: [Case("grad", {"x": torch.ones(3)}, expected=USE_REFERENCE, observe=grad_of_sum)])
    assert run_exercise(exercise, lambda x: x + x).passed
    assert not run_exercise(exercise, lambda x: x.detach() * 2 + 0 * x).passed


# --- check() ------------------------------------------------------------------------------------


def test_check_returns_the_learners_function_on_pass(capsys):
    def mine(x):
        return 2 * x

    assert checker.check(TOY, mine) is mine
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("✅ Exercise 98.1 `double_it`: passed")
    assert checker.session_results()[-1].passed


def test_check_returns_the_reference_visibly_on_failure(capsys):
    assert checker.check(TOY, lambda x: x * 3) is _double
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("❌ Exercise 98.1")
    assert out[0].endswith("_double` for now.") and "→ Using the reference `" in out[0]
    assert checker.session_results()[-1].status == "failed"


def test_check_marks_not_attempted_with_an_hourglass(capsys):
    def stub(x):
        raise NotImplementedError

    assert checker.check(TOY, stub) is _double
    assert capsys.readouterr().out.startswith("⏳ Exercise 98.1")


def test_strict_mode_raises_on_failure_but_not_on_pass(monkeypatch, capsys):
    def stub(x):
        raise NotImplementedError

    monkeypatch.setenv("COURSE_STRICT", "1")
    with pytest.raises(checker.ExerciseCheckFailed, match="Exercise 98.1 .* case 'small'"):
        checker.check(TOY, lambda x: x)
    with pytest.raises(checker.ExerciseCheckFailed, match="not attempted"):
        checker.check(TOY, stub)
    assert checker.check(TOY, _double) is _double
    assert issubclass(checker.ExerciseCheckFailed, AssertionError)


def test_grade_log_gets_one_json_line_per_check(monkeypatch, tmp_path, capsys):
    log = tmp_path / "grades.jsonl"
    monkeypatch.setenv("COURSE_GRADE_LOG", str(log))
    checker.check(TOY, _double)
    checker.check(TOY, lambda x: x)
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["name"], r["status"]) for r in records] == [("98.1", "double_it", "passed"),
                                                                   ("98.1", "double_it", "failed")]
    assert records[0]["cases_passed"] == records[0]["cases_total"] == 2
    assert "case 'small'" in records[1]["message"]


# --- the registry and check.<name> ---------------------------------------------------------------


def test_registry_ids_and_names_are_unique_and_well_formed():
    registry = exercises.all_exercises()
    assert {"00.1", "00.2", "00.3"} <= set(registry)
    names = [e.name for e in registry.values()]
    assert len(names) == len(set(names))
    for exercise_id, exercise in registry.items():
        assert exercise.id == exercise_id
        lesson, number = exercise_id.split(".")
        assert len(lesson) == 2 and lesson.isdigit() and number.isdigit()
        assert callable(exercise.reference) and exercise.name.isidentifier()
        assert len(exercise.make_cases()) >= 1
    assert [e.id for e in exercises.for_lesson("00")] == ["00.1", "00.2", "00.3"]
    assert exercises.by_id("00.2").name == "sample_actions"
    with pytest.raises(KeyError, match="known ids"):
        exercises.by_id("99.9")


def test_check_attribute_checks_by_name(capsys):
    from course_lib import distributions

    fn = check.categorical_entropy(distributions.categorical_entropy)
    assert fn is distributions.categorical_entropy
    assert "Exercise 00.3 `categorical_entropy`: passed" in capsys.readouterr().out
    assert "00.1" in check.log_prob_of_actions.__doc__
    assert {"log_prob_of_actions", "sample_actions", "categorical_entropy", "summary"} <= set(dir(check))


def test_unknown_check_name_lists_the_known_ones():
    with pytest.raises(AttributeError, match="no exercise named 'log_prob'.*log_prob_of_actions"):
        check.log_prob  # noqa: B018


def test_summary_prints_the_latest_result_per_exercise(capsys):
    checker.check(TOY, lambda x: x)
    checker.check(TOY, _double)
    capsys.readouterr()
    check.summary()
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if "double_it" in line]
    assert len(row) == 1 and "passed" in row[0] and "2/2 cases" in row[0]
    assert "exercises passed" in out.splitlines()[-1]
