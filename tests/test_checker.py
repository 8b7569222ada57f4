"""course_lib.grading.checker and course_lib.check: comparing values, running learner code safely, feedback."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import check
from course_lib.grading import checker, exercises, observers
from course_lib.grading.checker import USE_REFERENCE, Case, Exercise, compare, run_exercise
from course_lib.grading.compare import Masked


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
    assert "did not return within 1 s of computing time" in result.message


def test_waiting_forever_hits_the_wall_clock_backstop():
    def waits(x):
        time.sleep(60)
        return x * 2

    impatient = dataclasses.replace(TOY, wall_limit_s=1.0)
    start = time.perf_counter()
    result = run_exercise(impatient, waits)
    assert time.perf_counter() - start < 3.0
    assert result.status == "failed" and "did not return" in result.message


def test_time_limit_also_works_outside_the_main_thread():
    def slow(x):
        time.sleep(5)
        return x * 2

    impatient = dataclasses.replace(TOY, wall_limit_s=1.0)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", run_exercise(impatient, slow)))
    start = time.perf_counter()
    worker.start()
    worker.join(10)
    assert time.perf_counter() - start < 3.0
    assert box["result"].status == "failed" and "did not return" in box["result"].message


def _burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_only_the_learners_own_call_counts_against_the_limit():
    """An observer that itself needs 1.5 s of CPU (building models, say) must not use up a 1 s limit."""

    def slow_observer(fn, inputs):
        _burn_cpu(0.75)
        out = fn(**inputs)
        _burn_cpu(0.75)
        return out

    exercise = Exercise("98.4", "double_slowly_observed", "t", _double,
                        lambda: [Case("c", {"x": torch.ones(3)}, expected=torch.full((3,), 2.0),
                                      observe=slow_observer)], time_limit_s=1.0)
    assert run_exercise(exercise, _double).passed


def test_a_correct_answer_on_a_busy_machine_is_not_refused():
    """Waiting for a core (simulated by sleeping: wall time passes, CPU time does not) is not computing."""

    def correct_but_descheduled(x):
        time.sleep(2.0)  # twice the 1 s CPU limit in wall time
        return x * 2

    assert run_exercise(TOY, correct_but_descheduled).passed


def test_the_limit_grows_with_what_the_reference_needs():
    def reference(x):
        _burn_cpu(0.05)
        return x * 2

    def twice_as_slow(x):
        _burn_cpu(0.1)
        return x * 2

    def far_too_slow(x):
        _burn_cpu(5.0)
        return x * 2

    exercise = Exercise("98.5", "double_with_work", "t", reference,
                        lambda: [Case("c", {"x": torch.ones(3)})], time_limit_s=0.05)
    # the limit is 0.05 + 50 x ~0.05 s = ~2.5 s of CPU: twice the reference's time passes, 100x does not
    assert run_exercise(exercise, twice_as_slow).passed
    result = run_exercise(exercise, far_too_slow)
    assert result.status == "failed" and "did not return" in result.message


def test_input_changed_in_place_is_reported():
    def mutating(x):
        out = x * 2
        x.zero_()  # right answer, but the caller's tensor is destroyed
        return out

    result = run_exercise(TOY, mutating)
    assert result.status == "failed"
    assert "changed its input `x` in place" in result.message


def test_an_input_listed_in_may_modify_may_change():
    exercise = Exercise("98.2", "double_inplace", "t", _double,
                        lambda: [Case("c", {"x": torch.ones(2)}, may_modify=("x",))])
    assert run_exercise(exercise, lambda x: x.mul_(2)).passed


# --- models as inputs and outputs -----------------------------------------------------------------


def _scale_model(model: nn.Module, factor: float) -> nn.Module:
    """A reference that returns a new model with scaled weights and leaves its input alone."""
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        for p in scaled.parameters():
            p.mul_(factor)
    return scaled


def _model_exercise(**case_options) -> Exercise:
    def cases():
        torch.manual_seed(0)
        return [Case("scale a small MLP by 2", {"model": nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)),
                                                "factor": 2.0}, **case_options)]

    return Exercise("98.6", "scale_model", "t", _scale_model, cases)


def test_a_model_input_and_output_pass_against_the_reference_itself():
    assert run_exercise(_model_exercise(), _scale_model).passed


def test_a_returned_model_is_compared_by_its_parameters():
    def forgets_the_bias(model, factor):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in scaled.named_parameters():
                if name.endswith("weight"):
                    p.mul_(factor)
        return scaled

    result = run_exercise(_model_exercise(), forgets_the_bias)
    assert not result.passed and "the model's `0.bias`" in result.message


def test_a_model_changed_in_place_is_reported():
    def scales_in_place(model, factor):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(factor)
        return copy.deepcopy(model)

    result = run_exercise(_model_exercise(), scales_in_place)
    assert not result.passed and "changed the model `model` in place" in result.message
    assert run_exercise(_model_exercise(may_modify=("model",)), scales_in_place).passed


def test_gradients_left_in_a_models_grad_are_reported():
    def leaves_grads(model, factor):
        model(torch.ones(1, 3)).sum().backward()
        return _scale_model(model, factor)

    result = run_exercise(_model_exercise(), leaves_grads)
    assert not result.passed and ".grad" in result.message


def test_model_comparison_covers_class_mode_and_buffers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert compare(net, copy.deepcopy(net)) is None
    assert "eval mode" in compare(copy.deepcopy(net).eval(), net)
    other = copy.deepcopy(net)
    other[1].running_mean += 1.0
    assert "running_mean" in compare(net, other)
    assert "expected a Linear model, got a Bilinear" in compare(nn.Linear(2, 2), nn.Bilinear(2, 2, 2))
    assert "expected a model" in compare(nn.Linear(2, 2), torch.ones(2))


# --- masked comparison and observers --------------------------------------------------------------


def test_masked_comparison_ignores_positions_outside_the_mask():
    value = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    anything_outside = torch.where(mask, value, torch.tensor(float("nan")))
    assert compare(Masked(value, mask), anything_outside) is None
    wrong_inside = anything_outside.clone()
    wrong_inside[1, 0] = 0.0
    problem = compare(Masked(value, mask), wrong_inside)
    assert "position (1, 0)" in problem and "1 of 3 masked positions" in problem
    assert "shape" in compare(Masked(value, mask), value[:, :2])


def _per_token_logps(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """A toy per-token log-prob whose padded positions hold 0 (the learner may leave anything there)."""
    logps = torch.log_softmax(logits, -1).gather(-1, input_ids[..., None]).squeeze(-1)  # (B, T)
    return logps * completion_mask


def test_the_masked_observer_accepts_any_value_in_padding():
    def cases():
        g = torch.Generator().manual_seed(0)
        mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
        return [Case("padded batch", {"logits": torch.randn(2, 4, 5, generator=g),
                                      "input_ids": torch.randint(0, 5, (2, 4), generator=g),
                                      "completion_mask": mask},
                     observe=observers.masked("completion_mask"))]

    exercise = Exercise("98.7", "toy_per_token_logps", "t", _per_token_logps, cases)

    def garbage_in_padding(logits, input_ids, completion_mask):
        logps = torch.log_softmax(logits, -1).gather(-1, input_ids[..., None]).squeeze(-1)
        return torch.where(completion_mask.bool(), logps, torch.tensor(float("nan")))

    def wrong_on_a_real_token(logits, input_ids, completion_mask):
        return garbage_in_padding(logits, input_ids, completion_mask) + 0.1

    assert run_exercise(exercise, _per_token_logps).passed
    assert run_exercise(exercise, garbage_in_padding).passed
    assert not run_exercise(exercise, wrong_on_a_real_token).passed


def _weighted_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((values - targets.detach()) ** 2).mean()


def _gradient_exercise() -> Exercise:
    def cases():
        g = torch.Generator().manual_seed(0)
        return [Case("gradients", {"values": torch.randn(5, generator=g), "targets": torch.randn(5, generator=g)},
                     observe=observers.gradients(wrt=["values"], constant=["targets"], name="loss"))]

    return Exercise("98.8", "toy_value_loss", "t", _weighted_loss, cases)


def test_the_gradient_observer_catches_a_detached_output_and_a_leak():
    exercise = _gradient_exercise()
    assert run_exercise(exercise, _weighted_loss).passed

    detached = run_exercise(exercise, lambda values, targets: _weighted_loss(values, targets).detach())
    assert not detached.passed and "no gradient reaches `values`" in detached.message

    leaky = run_exercise(exercise, lambda values, targets: ((values - targets) ** 2).mean())
    assert not leaky.passed and "must be 0: `targets` is a constant" in leaky.message


def test_the_gradient_observer_sees_an_in_place_change_through_detach():
    def writes_through_detach(values, targets):
        loss = ((values - targets.detach()) ** 2).mean()
        targets.detach().zero_()  # an alias of the differentiated copy: no autograd error, data changed
        return loss

    result = run_exercise(_gradient_exercise(), writes_through_detach)
    assert not result.passed and "changed its input `targets` in place" in result.message


def test_the_gradient_observer_catches_a_nan_gradient_behind_a_finite_value():
    def cases():
        return [Case("an impossible action", {"logits": torch.tensor([[0.0, float("-inf")]])},
                     observe=observers.gradients(wrt=["logits"], name="entropy"))]

    def entropy(logits):
        logp = torch.log_softmax(logits, -1)
        return -(logp.exp() * torch.where(torch.isinf(logp), torch.zeros_like(logp), logp)).sum(-1)

    def entropy_with_nan_gradient(logits):
        p = torch.softmax(logits, -1)
        terms = p * torch.log(p)  # value NaN at p = 0 ...
        return -torch.where(p > 0, terms, torch.zeros_like(terms)).sum(-1)  # ... masked, but not its gradient

    exercise = Exercise("98.9", "toy_entropy", "t", entropy, cases)
    assert run_exercise(exercise, entropy).passed
    result = run_exercise(exercise, entropy_with_nan_gradient)
    assert not result.passed and "NaN" in result.message and "d entropy / d logits" in result.message


def test_the_stats_observer_names_a_missing_or_wrong_diagnostic():
    def loss(x):
        return x.mean(), {"clipfrac": 0.5}

    def cases():
        return [Case("stats", {"x": torch.ones(3)}, observe=observers.stats(["clipfrac"]))]

    exercise = Exercise("98.10", "toy_loss_with_stats", "t", loss, cases)
    assert run_exercise(exercise, loss).passed
    missing = run_exercise(exercise, lambda x: (x.mean(), {}))
    assert "missing the key(s) ['clipfrac']" in missing.message
    wrong = run_exercise(exercise, lambda x: (x.mean(), {"clipfrac": torch.tensor(0.25)}))
    assert "expected 0.5, got 0.25" in wrong.message


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


def test_feedback_html_renders_code_spans_and_escapes_the_rest():
    line = "❌ Exercise 01.1 `reward_to_go`: expected <1 & got `x[0]` (a_t_b)"
    assert checker.feedback_html(line) == ("<div>❌ Exercise 01.1 <code>reward_to_go</code>: expected &lt;1 &amp; "
                                           "got <code>x[0]</code> (a_t_b)</div>")


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


def test_the_source_index_agrees_with_the_imported_registry():
    imported = {e.name: (e.id, e.lesson) for e in exercises.all_exercises().values()}
    indexed = {entry.name: (entry.id, entry.lesson) for entry in exercises.index().values()}
    assert imported == indexed
    assert exercises.names() == [e.name for e in exercises.all_exercises().values()]
    assert exercises.id_of("gae") == "03.1"
    with pytest.raises(AttributeError, match="known exercises"):
        exercises.id_of("no_such_function")


def test_the_index_refuses_an_exercise_it_cannot_read_from_the_source(tmp_path: Path):
    from course_lib.grading.exercises import _entries_in

    good = tmp_path / "lesson07.py"
    good.write_text('EXERCISES = [Exercise("07.1", "grpo_loss", "t", ref, cases),\n'
                    '             Exercise(\n    "07.2", "k3_kl", "t", ref, cases)]\n')
    assert [(e.id, e.name, e.lesson) for e in _entries_in(good)] == [("07.1", "grpo_loss", "07"),
                                                                      ("07.2", "k3_kl", "07")]
    computed = tmp_path / "lesson08.py"
    computed.write_text('ID = "08.1"\nEXERCISES = [Exercise(ID, "capstone", "t", ref, cases)]\n')
    with pytest.raises(ValueError, match="literal strings"):
        _entries_in(computed)
    misplaced = tmp_path / "lesson05.py"
    misplaced.write_text('EXERCISES = [Exercise("06.1", "dpo_loss", "t", ref, cases)]\n')
    with pytest.raises(ValueError, match="not its own lesson module"):
        _entries_in(misplaced)


def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return set(done.stdout.split())


def test_checking_an_exercise_imports_only_its_own_lesson():
    loaded = _modules_after("from course_lib import check, distributions\n"
                            "check.log_prob_of_actions(distributions.log_prob_of_actions)")
    assert "course_lib.grading.exercises.lesson00" in loaded
    assert not {"course_lib.grading.exercises.lesson03", "course_lib.rl.ppo", "gymnasium", "transformers"} & loaded


def test_the_lesson_generator_and_import_course_lib_import_no_torch():
    loaded = _modules_after("import course_lib\nfrom course_lib.grading import notebooks\n"
                            "notebooks.find_solution_regions(notebooks.read_notebook('solutions/00_setup.ipynb'))")
    assert "torch" not in loaded and "course_lib.grading.notebooks" in loaded


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
