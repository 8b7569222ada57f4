"""Tests of course_lib.lm.tasks: splits, rule-based rewards and scores, validation, check_rewards."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib.lm import tasks
from course_lib.lm.tasks import AdditionTask, ChainSumTask, Example, check_rewards, make_task

TASKS_FILE = Path(tasks.__file__)
NAMES = ("addition", "chain_sum")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


@pytest.fixture(scope="module", params=NAMES)
def task(request):
    return make_task(request.param)


def terms_of(prompt: str) -> list[int]:
    assert prompt.endswith("=")
    return [int(term) for term in prompt[:-1].split("+")]


# --- the factory -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [("addition", AdditionTask), ("chain_sum", ChainSumTask)])
def test_make_task_builds_the_named_task(name, cls):
    built = make_task(name, num_train=20, num_test=5, seed=3)
    assert type(built) is cls and built.name == name
    assert built == cls(num_train=20, num_test=5, seed=3)


def test_make_task_unknown_name_lists_the_known_names():
    with pytest.raises(ValueError, match=r"'sorting'.*addition, chain_sum"):
        make_task("sorting")


def test_make_task_unknown_setting_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"\['digits'\].*'addition'.*num_digits"):
        make_task("addition", digits=2)


# --- splits ----------------------------------------------------------------------------------------


def test_splits_have_the_requested_sizes_and_no_repeats(task):
    assert (len(task.train), len(task.test)) == (task.num_train, task.num_test)
    assert len({e.prompt for e in task.train}) == len(task.train)
    assert len({e.prompt for e in task.test}) == len(task.test)
    assert all(isinstance(e, Example) for e in task.train + task.test)


def test_train_and_test_are_disjoint(task):
    assert not {e.prompt for e in task.train} & {e.prompt for e in task.test}


def test_addition_is_disjoint_on_operand_pairs_and_within_range():
    task = AdditionTask(num_digits=2, num_train=9000, num_test=1000, seed=1)
    train = {tuple(terms_of(e.prompt)) for e in task.train}
    test = {tuple(terms_of(e.prompt)) for e in task.test}
    assert not train & test
    assert train | test == {(a, b) for a in range(100) for b in range(100)}  # all 10,000 pairs, each once


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_splits_other_seed_other_splits(name):
    first, again, other = make_task(name, seed=7), make_task(name, seed=7), make_task(name, seed=8)
    assert first.train == again.train and first.test == again.test
    assert first.train != other.train and first.test != other.test
    assert {e.prompt for e in first.test} != {e.prompt for e in other.test}


def test_splits_do_not_depend_on_the_process_hash_seed():
    code = ("import json, sys, importlib.util as u; s = u.spec_from_file_location('t', sys.argv[1]); "
            "m = u.module_from_spec(s); sys.modules['t'] = m; s.loader.exec_module(m); "
            "print(json.dumps([[e.prompt for e in m.make_task(n).test] for n in ('addition', 'chain_sum')]))")
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", code, str(TASKS_FILE)], env=env, capture_output=True,
                             text=True, check=True)
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1] == [[e.prompt for e in make_task(n).test] for n in NAMES]


def test_chain_sum_balances_the_number_of_terms_as_far_as_problems_allow():
    task = ChainSumTask()  # 100 two-term, 1,000 three-term, 10,000 four-term problems; 3,300 drawn
    counts = {size: 0 for size in (2, 3, 4)}
    for example in task.train + task.test:
        counts[len(terms_of(example.prompt))] += 1
    assert counts == {2: 100, 3: 1000, 4: 2200}
    small = ChainSumTask(num_train=240, num_test=60)  # 300 fit evenly
    assert sorted(len(terms_of(e.prompt)) for e in small.train + small.test) == [2] * 100 + [3] * 100 + [4] * 100


@pytest.mark.parametrize("capacities, total, expected", [
    ([100, 1000, 10000], 3300, [100, 1000, 2200]),
    ([10000, 100, 1000], 3300, [2200, 100, 1000]),
    ([5, 5], 7, [3, 4]),
    ([5, 5], 10, [5, 5]),
    ([3], 2, [2]),
])
def test_allocate_shares_equally_within_capacities(capacities, total, expected):
    assert tasks._allocate(capacities, total) == expected


def test_allocate_never_exceeds_a_capacity_and_hands_out_everything():
    rng = random.Random(0)
    for _ in range(500):
        capacities = [rng.randint(0, 50) for _ in range(rng.randint(1, 5))]
        total = rng.randint(0, sum(capacities))
        shares = tasks._allocate(capacities, total)
        assert sum(shares) == total
        assert all(0 <= share <= capacity for share, capacity in zip(shares, capacities, strict=True))


def test_every_problem_can_be_used():
    task = AdditionTask(num_digits=1, num_train=90, num_test=10)
    assert len({e.prompt for e in task.train + task.test}) == 100
    chain = ChainSumTask(min_terms=2, max_terms=2, max_value=3, num_train=15, num_test=1)
    assert len({e.prompt for e in chain.train + chain.test}) == 16


@pytest.mark.parametrize("build, message", [
    (lambda: AdditionTask(num_digits=1, num_train=95, num_test=10), r"95 \+ 10 = 105 is more than the 100 distinct"),
    (lambda: AdditionTask(num_train=10000, num_test=1), r"10000 \+ 1 = 10001 is more than the 10000 distinct"),
    (lambda: ChainSumTask(max_terms=2, num_train=100, num_test=1), r"100 \+ 1 = 101 is more than the 100 distinct"),
    (lambda: ChainSumTask(num_train=11000, num_test=101), r"11101 is more than the 11100 distinct"),
    (lambda: AdditionTask(num_train=0), r"num_train must be an integer >= 1, got 0"),
    (lambda: AdditionTask(num_test=0), r"num_test must be an integer >= 1, got 0"),
    (lambda: ChainSumTask(num_train=2.5), r"num_train must be an integer >= 1, got 2.5"),
    (lambda: AdditionTask(num_digits=0), r"num_digits must be an integer in \[1, 9\], got 0"),
    (lambda: AdditionTask(num_digits=10), r"num_digits must be an integer in \[1, 9\], got 10"),
    (lambda: AdditionTask(seed=True), r"seed must be an integer, got True"),
    (lambda: ChainSumTask(seed="0"), r"seed must be an integer, got '0'"),
    (lambda: ChainSumTask(min_terms=1), r"min_terms must be an integer in \[2, 8\], got 1"),
    (lambda: ChainSumTask(min_terms=4, max_terms=3), r"max_terms must be an integer in \[4, 8\], got 3"),
    (lambda: ChainSumTask(max_terms=9), r"max_terms must be an integer in \[2, 8\], got 9"),
    (lambda: ChainSumTask(max_value=0), r"max_value must be an integer in \[1, 99\], got 0"),
])
def test_bad_settings_raise_naming_the_numbers(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_tasks_and_examples_are_frozen(task):
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.train = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.train[0].completion = "0"


# --- alphabet and lengths --------------------------------------------------------------------------


def test_alphabet_covers_every_prompt_and_completion_and_nothing_else(task):
    used = {char for e in task.train + task.test for char in e.prompt + e.completion}
    assert used == set(task.alphabet)
    assert len(set(task.alphabet)) == len(task.alphabet)
    assert not set("<>") & set(task.alphabet)  # the tokenizer's special tokens stay unspellable


def test_max_lengths_hold_for_every_example(task):
    assert max(len(e.prompt) for e in task.train + task.test) <= task.max_prompt_chars
    assert max(len(e.completion) for e in task.train + task.test) <= task.max_completion_chars


@pytest.mark.parametrize("task, prompt_chars, completion_chars, longest", [
    (AdditionTask(), 6, 3, "99+99="),
    (AdditionTask(num_digits=3, num_train=5, num_test=5), 8, 4, "999+999="),
    (ChainSumTask(), 8, 25, "9+9+9+9="),
    (ChainSumTask(max_terms=3, max_value=99, num_train=5, num_test=5), 9, 24, "99+99+99="),
])
def test_max_lengths_are_those_of_the_longest_problem(task, prompt_chars, completion_chars, longest):
    assert (task.max_prompt_chars, task.max_completion_chars) == (prompt_chars, completion_chars)
    terms = terms_of(longest)
    reference = str(sum(terms)) if task.name == "addition" else tasks._chain_completion(terms)
    assert (len(longest), len(reference)) == (prompt_chars, completion_chars)
    assert task.score(longest, reference)["correct"] == 1.0


def test_default_problems_fit_the_model_context_with_bos_and_eos(task):
    assert task.max_prompt_chars + task.max_completion_chars + 2 <= 64


# --- reference completions -------------------------------------------------------------------------


def test_every_reference_completion_gets_full_marks(task):
    examples = task.train + task.test
    prompts, completions = [e.prompt for e in examples], [e.completion for e in examples]
    assert task.reward(prompts, completions) == [1.0] * len(examples)
    assert task.reward(prompts, completions, kind="format") == [1.0] * len(examples)
    for example in examples:
        scores = task.score(example.prompt, example.completion)
        assert list(scores) == list(task.components)
        assert scores["length"] == len(example.completion)
        assert task.parse_answer(example.completion) == example.answer == str(sum(terms_of(example.prompt)))
        if task.name == "chain_sum":
            assert scores["steps_correct"] == 1.0
            assert scores["num_steps"] == len(terms_of(example.prompt)) - 1


def test_chain_sum_reference_follows_the_grammar():
    assert tasks._chain_completion([3, 5, 2]) == "3+5=8,8+2=10;10"
    assert tasks._chain_completion([9, 0]) == "9+0=9;9"
    assert tasks._chain_completion([7, 4, 1, 3]) == "7+4=11,11+1=12,12+3=15;15"


# --- wrong completions: addition -------------------------------------------------------------------


@pytest.mark.parametrize("completion, correct, well_formed, answer", [
    ("132", 1.0, 1.0, "132"),
    ("131", 0.0, 1.0, "131"),       # wrong answer
    ("0132", 0.0, 0.0, None),       # leading zero
    ("132 ", 0.0, 0.0, None),       # extra character after the answer
    ("1322", 0.0, 1.0, "1322"),     # extra digit: a wrong number
    ("132=", 0.0, 0.0, None),
    ("", 0.0, 0.0, None),           # nothing written
    ("<bos>13<pad>2", 0.0, 0.0, None),
    ("+=+", 0.0, 0.0, None),
    ("١٣٢", 0.0, 0.0, None),       # Unicode digits are not digits of the alphabet
    ("1٣٢", 0.0, 0.0, None),
    ("9" * 5000, 0.0, 0.0, None),   # past int()'s digit limit: still no crash
])
def test_addition_scores_of_known_completions(completion, correct, well_formed, answer):
    task = AdditionTask(num_train=5, num_test=5)
    assert task.score("47+85=", completion) == {"correct": correct, "format": well_formed,
                                                "length": float(len(completion))}
    assert task.parse_answer(completion) == answer


def test_addition_zero_is_a_number():
    task = AdditionTask(num_train=5, num_test=5)
    assert task.score("0+0=", "0")["correct"] == 1.0
    assert task.score("0+0=", "00")["format"] == 0.0


# --- wrong completions: chain sums -----------------------------------------------------------------

CHAIN_CASES = [
    # completion, correct, format, steps_correct, num_steps
    ("3+5=8,8+2=10;10", 1.0, 1.0, 1.0, 2),
    ("3+5=8,8+2=10;11", 0.0, 1.0, 1.0, 2),        # wrong answer after right steps
    ("3+5=8,8+2=11;10", 1.0, 1.0, 0.5, 2),        # right answer, wrong second step
    ("3+5=9,9+2=11;11", 0.0, 1.0, 0.5, 2),        # a slip in step 1, step 2 right given what was written
    ("3+5=8,8+3=11;11", 0.0, 1.0, 0.5, 2),        # step 2 adds the wrong term
    ("5+3=8,8+2=10;10", 1.0, 1.0, 0.5, 2),        # step 1 starts from the wrong term
    ("3+5=8,9+2=11;11", 0.0, 1.0, 0.5, 2),        # step 2 does not continue from the sum written before
    ("3+5=8,8+2=10", 0.0, 0.0, 1.0, 2),           # missing ';' and answer
    ("3+5=88+2=10;10", 1.0, 0.0, 0.0, 1),         # missing ','
    ("3+5=8;8+2=10;10", 0.0, 0.0, 0.5, 1),        # ';' where ',' belongs
    ("3+5=08,8+2=10;10", 1.0, 0.0, 0.5, 2),       # unreadable step 1; step 2 judged against the true sum
    (";10", 1.0, 0.0, 0.0, 0),                    # the answer alone: correct, but no worked section
    ("10", 0.0, 0.0, 0.0, 1),
    ("", 0.0, 0.0, 0.0, 0),                       # nothing written
    ("<bos>+=;,<pad>", 0.0, 0.0, 0.0, 1),         # garbage
    (",,,;", 0.0, 0.0, 0.0, 4),
    ("3+5=8,", 0.0, 0.0, 0.5, 1),                 # stopped after one step
    ("3+5=8,8+2=10;10;", 0.0, 0.0, 1.0, 2),       # extra characters after the answer
    ("3+5=8,8+2=10;10x", 0.0, 0.0, 1.0, 2),
    ("3+5=8,8+2=10,10+0=10;10", 1.0, 1.0, 2 / 3, 3),  # one step too many
    ("3+5=8,8+2=10,10+2=12;12", 0.0, 1.0, 2 / 3, 3),  # the last term added twice
    ("3+5=8,8+2=10 ;10", 1.0, 0.0, 0.5, 2),
]


@pytest.mark.parametrize("completion, correct, well_formed, steps_correct, num_steps", CHAIN_CASES)
def test_chain_sum_scores_of_known_completions(completion, correct, well_formed, steps_correct, num_steps):
    scores = ChainSumTask(num_train=5, num_test=5).score("3+5+2=", completion)
    assert scores == pytest.approx({"correct": correct, "format": well_formed, "steps_correct": steps_correct,
                                    "num_steps": float(num_steps), "length": float(len(completion))}, abs=1e-12)


@pytest.mark.parametrize("completion, expected", [
    ("3+5=8,8+2=10;10", [(5, 1.0), (12, 1.0)]),
    ("3+5=8,8+2=11;10", [(5, 1.0), (12, 0.0)]),
    ("3+5=8,8+2=10", [(5, 1.0), (11, 1.0)]),      # the last step ends at its last character
    ("3+5=8,", [(5, 1.0)]),                       # a trailing ',' opens no step
    (",", [(0, 0.0)]),
    ("3+5=8,;8", [(5, 1.0), (6, 0.0)]),           # an empty step closed by ';'
    ("", []),
    (";10", []),
])
def test_chain_sum_step_rewards_and_where_each_step_ends(completion, expected):
    assert ChainSumTask(num_train=5, num_test=5).step_rewards("3+5+2=", completion) == expected


@pytest.mark.parametrize("case", CHAIN_CASES)
def test_chain_sum_steps_score_is_the_step_rewards_over_the_expected_steps(case):
    task, completion = ChainSumTask(num_train=5, num_test=5), case[0]
    rewards = task.step_rewards("3+5+2=", completion)
    scores = task.score("3+5+2=", completion)
    assert scores["num_steps"] == len(rewards)
    assert scores["steps_correct"] == pytest.approx(sum(r for _, r in rewards) / max(2, len(rewards)))


def test_chain_sum_parse_answer():
    task = ChainSumTask(num_train=5, num_test=5)
    assert task.parse_answer("3+5=8,8+2=10;10") == "10"
    assert task.parse_answer(";0") == "0"
    for completion in ("3+5=8,8+2=10", "10;10;10", "x;", "1;01", "1;1 ", ""):
        assert task.parse_answer(completion) is None, completion


# --- garbage never crashes -------------------------------------------------------------------------


def _garbage(task, rng: random.Random) -> str:
    pieces = list(task.alphabet) + list(SPECIALS) + [" ", "\n", "é"]
    if rng.random() < 0.5:  # near misses: a reference completion with a few characters changed
        text = list(rng.choice(task.train).completion)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(text) + 1)
            text[position:position + rng.randint(0, 1)] = [rng.choice(pieces)]
        return "".join(text)
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))


def test_garbage_completions_score_finite_and_bounded(task):
    rng = random.Random(0)
    examples = [rng.choice(task.test) for _ in range(2000)]
    completions = [_garbage(task, rng) for _ in examples]
    for example, completion in zip(examples, completions, strict=True):
        scores = task.score(example.prompt, completion)
        assert all(math.isfinite(value) for value in scores.values())
        assert all(0.0 <= scores[key] <= 1.0 for key in ("correct", "format", "steps_correct") if key in scores)
        assert scores["length"] == len(completion)
        if task.name == "chain_sum":
            ends = [end for end, _ in task.step_rewards(example.prompt, completion)]
            assert ends == sorted(set(ends)) and all(0 <= end < len(completion) for end in ends)
    assert check_rewards(task.reward([e.prompt for e in examples], completions), len(examples))


# --- reward(): kinds and validation ----------------------------------------------------------------


def test_reward_kinds_are_the_score_components():
    task = ChainSumTask(num_train=5, num_test=5)
    prompts = ["3+5+2="] * 3 + ["1+1="]
    completions = ["3+5=8,8+2=10;10", "3+5=8,8+2=11;10", "", "1+1=2;3"]
    assert task.reward(prompts, completions) == [1.0, 1.0, 0.0, 0.0]
    assert task.reward(prompts, completions, kind="format") == [1.0, 1.0, 0.0, 1.0]
    assert task.reward(prompts, completions, kind="steps_correct") == [1.0, 0.5, 0.0, 1.0]
    assert task.reward(prompts, completions, kind="length") == [15.0, 15.0, 0.0, 7.0]
    assert task.reward([], []) == []


@pytest.mark.parametrize("prompts, completions, message", [
    (["1+2="] * 3, ["3", "3"], r"3 prompts and 2 completions"),
    (["1+2="], [], r"1 prompts and 0 completions"),
    ("1+2=", ["3"], r"prompts must be a sequence of str"),
    (["1+2="], "3", r"completions must be a sequence of str"),
    (["1+2=", "1+1="], ["3", None], r"completions\[1\] must be a str"),
    ([b"1+2="], ["3"], r"prompts\[0\] must be a str"),
])
def test_reward_rejects_bad_batches(task, prompts, completions, message):
    with pytest.raises(ValueError, match=message):
        task.reward(prompts, completions)


def test_reward_rejects_an_unknown_kind(task):
    with pytest.raises(ValueError, match=r"kind must be one of \['correct', 'format'.*got 'steps'"):
        task.reward(["1+2="], ["3"], kind="steps")


@pytest.mark.parametrize("prompt", ["47+85", "47+85=132", "47-85=", " 47+85=", "047+85=", "", "a+b=", "47+85=<eos>"])
def test_addition_unparsable_prompt_raises_naming_it(prompt):
    task = AdditionTask(num_train=5, num_test=5)
    with pytest.raises(ValueError, match=f"prompt {prompt!r} is not an addition prompt".replace("+", r"\+")):
        task.reward([prompt], ["132"])


@pytest.mark.parametrize("prompt", ["5=", "3+5+2", "3++5=", "3+5+2==", ""])
def test_chain_sum_unparsable_prompt_raises_naming_it(prompt):
    task = ChainSumTask(num_train=5, num_test=5)
    for call in (task.score, task.step_rewards):
        with pytest.raises(ValueError, match=f"prompt {prompt!r} is not a chain-sum prompt".replace("+", r"\+")):
            call(prompt, "3+5=8,8+2=10;10")


def test_prompts_outside_the_splits_are_scored():
    assert AdditionTask(num_train=5, num_test=5).score("123+4=", "127")["correct"] == 1.0
    assert ChainSumTask(num_train=5, num_test=5).score("10+20+30+40+50=", "10+20=30,30+30=60,60+40=100,"
                                                       "100+50=150;150") == {
        "correct": 1.0, "format": 1.0, "steps_correct": 1.0, "num_steps": 4.0, "length": 42.0}


# --- check_rewards ---------------------------------------------------------------------------------


def test_check_rewards_accepts_numbers_of_every_usual_container():
    assert check_rewards([1, 0.5, True], 3) == [1.0, 0.5, 1.0]
    assert check_rewards((0.0,), 1) == [0.0]
    assert check_rewards(np.array([1.0, -2.0], dtype=np.float32), 2) == [1.0, -2.0]
    assert check_rewards([], 0) == []
    assert all(type(value) is float for value in check_rewards([np.int64(1), 2], 2))


def test_check_rewards_accepts_a_tensor():
    torch = pytest.importorskip("torch")
    assert check_rewards(torch.tensor([1.0, 0.0]), 2) == [1.0, 0.0]


@pytest.mark.parametrize("rewards, message", [
    ([1.0, 0.0], r"expected 3, got 2"),
    ([1.0, 0.0, 1.0, 1.0], r"expected 3, got 4"),
    ([1.0, 0.0, math.nan], r"rewards\[2\] must be a finite number, got nan"),
    ([math.inf, 0.0, math.nan], r"rewards\[0\] must be a finite number, got inf"),
    ([1.0, -math.inf, 0.0], r"rewards\[1\] must be a finite number"),
    ([1.0, None, 0.0], r"rewards\[1\] must be a finite number, got None"),
    ([1.0, 0.0, "1.0"], r"rewards\[2\] must be a finite number, got '1.0'"),
    ([1.0, [0.0], 0.0], r"rewards\[1\] must be a finite number"),
    (np.array([0.0, np.nan, 1.0]), r"rewards\[1\]"),
    (None, r"rewards must be a sequence of 3 numbers, got NoneType"),
    (1.0, r"rewards must be a sequence of 3 numbers, got float"),
    ("101", r"rewards must be a sequence of 3 numbers, got str"),
    ((x for x in [1.0, 0.0, 1.0]), r"rewards must be a sequence of 3 numbers, got generator"),
])
def test_check_rewards_rejects_bad_output(rewards, message):
    with pytest.raises(ValueError, match=message):
        check_rewards(rewards, 3)


def test_check_rewards_names_the_reward_function_and_checks_n():
    with pytest.raises(ValueError, match=r"my_reward\[0\] must be a finite number"):
        check_rewards([math.nan], 1, name="my_reward")
    with pytest.raises(ValueError, match=r"n must be an integer >= 0, got -1"):
        check_rewards([], -1)


# --- layering --------------------------------------------------------------------------------------


def test_tasks_module_is_pure_python():
    code = ("import sys, importlib.util as u; s = u.spec_from_file_location('t', sys.argv[1]); "
            "m = u.module_from_spec(s); sys.modules['t'] = m; s.loader.exec_module(m); m.make_task('chain_sum'); "
            "print(sorted({'torch', 'numpy', 'transformers', 'course_lib'} & set(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code, str(TASKS_FILE)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
