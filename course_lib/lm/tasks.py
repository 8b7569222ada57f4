"""Synthetic tasks with verifiable answers and rule-based rewards (lessons 04-07).

Each task is a frozen dataclass that builds a fixed train split and a disjoint test split of
:class:`Example` s from its seed (the same seed gives the same splits), and scores completions by
rule, so SFT, REINFORCE, reward models, PPO-RLHF, DPO and GRPO all see the same, checkable numbers.

Two tasks (``make_task("addition")``, ``make_task("chain_sum")``):

* :class:`AdditionTask`: ``"47+85="`` → ``"132"``.
* :class:`ChainSumTask`: ``"3+5+2="`` → ``"3+5=8,8+2=10;10"``: the running sums, then the answer. Its
  completion grammar (``number`` is a decimal without leading zeros, at most 18 digits)::

      completion := step ("," step)* ";" number
      step       := number "+" number "=" number

Conventions shared by both:

* A completion is the decoded text the model wrote *before* its EOS, without the EOS: the reference
  completions never contain it. Matching is exact: no spaces, no leading zeros, nothing after the
  answer (``"132 "`` and ``"0132"`` are wrong answers).
* ``score(prompt, completion)`` returns named components, all finite floats: ``correct`` (1.0 if the
  final answer is right, else 0.0), ``format`` (1.0 if the completion matches the task's grammar,
  whatever the numbers), ``length`` (characters, which are tokens for the course's tokenizer), and
  for chain sums ``steps_correct`` and ``num_steps`` (see :class:`ChainSumTask`). ``correct`` only
  reads the answer, so a completion can be correct with a broken worked section.
* ``reward(prompts, completions, kind="correct")`` is ``score(...)[kind]`` for each pair (``kind``
  is any name in ``task.components``). A lesson builds shaped rewards from these, e.g.
  ``correct + 0.1 * format``.
* Completions may be anything (an untrained model writes garbage, or nothing): they never raise and
  score 0.0 where they do not fit. Prompts are the task's own, so a prompt that does not parse is
  a bug in the caller and raises ``ValueError`` naming it. Any prompt of the task's grammar is
  accepted, also one that is in neither split.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

__all__ = ["Example", "Task", "AdditionTask", "ChainSumTask", "make_task", "check_rewards"]

_NUMBER = r"(?:0|[1-9][0-9]{0,17})"  # at most 18 digits, so int() is always cheap and exact
_STEP = rf"{_NUMBER}\+{_NUMBER}={_NUMBER}"
_NUMBER_RE = re.compile(_NUMBER)
_STEP_RE = re.compile(rf"({_NUMBER})\+({_NUMBER})=({_NUMBER})")
_ADDITION_PROMPT_RE = re.compile(rf"({_NUMBER})\+({_NUMBER})=")
_CHAIN_PROMPT_RE = re.compile(rf"{_NUMBER}(?:\+{_NUMBER})+=")
_CHAIN_COMPLETION_RE = re.compile(rf"{_STEP}(?:,{_STEP})*;{_NUMBER}")


@dataclass(frozen=True)
class Example:
    """One problem: the model is given ``prompt`` and should write ``completion``, then EOS."""

    prompt: str
    """What the model is given, e.g. ``"47+85="``."""
    completion: str
    """The reference completion, without EOS (the model learns to append it), e.g. ``"132"``."""
    answer: str
    """The final answer alone, e.g. ``"132"``: what ``parse_answer(completion)`` returns."""


class Task(Protocol):
    """What every task offers; the lessons are written against this, never against one task."""

    name: str
    """The name ``make_task`` knows the task by."""
    alphabet: str
    """Every character a prompt or a reference completion can contain (build the tokenizer from it)."""
    components: tuple[str, ...]
    """The keys of ``score``, in order: the allowed ``kind`` s of ``reward``."""
    train: tuple[Example, ...]
    """The training problems (fixed by the seed, in a shuffled order)."""
    test: tuple[Example, ...]
    """The held-out problems: no prompt of ``test`` is in ``train``."""

    @property
    def max_prompt_chars(self) -> int:
        """The longest prompt the settings allow, in characters."""

    @property
    def max_completion_chars(self) -> int:
        """The longest reference completion the settings allow, in characters (EOS not counted)."""

    def parse_answer(self, completion: str) -> str | None:
        """The final answer written in ``completion``, or None if none can be read."""

    def score(self, prompt: str, completion: str) -> dict[str, float]:
        """Every component of one completion (see the module docstring)."""

    def reward(self, prompts: Sequence[str], completions: Sequence[str], kind: str = "correct") -> list[float]:
        """``score(prompt, completion)[kind]`` for each pair: one float per completion."""


# --- validation ------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__} {value!r}")


def _batch_reward(task: Task, prompts: Sequence[str], completions: Sequence[str], kind: str) -> list[float]:
    """The shared body of every ``reward``: check the batch, then score each pair."""
    if kind not in task.components:
        raise ValueError(f"kind must be one of {list(task.components)}, got {kind!r}")
    for name, batch in (("prompts", prompts), ("completions", completions)):
        if isinstance(batch, str) or not isinstance(batch, Sequence):
            raise ValueError(f"{name} must be a sequence of str (one per completion), got {type(batch).__name__}")
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length, got {len(prompts)} prompts "
                         f"and {len(completions)} completions")
    for name, batch in (("prompts", prompts), ("completions", completions)):
        for index, text in enumerate(batch):
            _check_text(f"{name}[{index}]", text)
    return [task.score(prompt, completion)[kind] for prompt, completion in zip(prompts, completions, strict=True)]


def check_rewards(rewards: Any, n: int, name: str = "rewards") -> list[float]:
    """``rewards`` as a list of ``n`` finite floats, or ``ValueError`` naming the first bad index.

    Trainers call it on the output of any reward function (user-written ones included) before using
    it. Accepts a list, tuple, numpy array or 1-D tensor of numbers (bools count as 0/1); refuses a
    wrong count, a string, None, NaN and ±inf. ``name`` says whose output it is in the message.
    """
    _check_int("n", n, 0)
    try:
        size = None if isinstance(rewards, str | bytes) else len(rewards)
    except TypeError:
        size = None
    if size is None:
        raise ValueError(f"{name} must be a sequence of {n} numbers, got {type(rewards).__name__} {rewards!r}")
    if size != n:
        raise ValueError(f"{name} must have one value per completion: expected {n}, got {size}")
    checked = []
    for index, value in enumerate(rewards):
        try:
            number = math.nan if isinstance(value, str | bytes) else float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{name}[{index}] must be a finite number, got {value!r}")
        checked.append(number)
    return checked


# --- splits ----------------------------------------------------------------------------------------


def _allocate(capacities: Sequence[int], total: int) -> list[int]:
    """Share ``total`` among strata as equally as their capacities allow (water-filling).

    Smallest stratum first: each takes an equal share of what is left, or all it has; the floor
    remainders go to the larger strata. Needs ``total <= sum(capacities)``.
    """
    shares = [0] * len(capacities)
    remaining, left = total, len(capacities)
    for k in sorted(range(len(capacities)), key=capacities.__getitem__):
        shares[k] = min(capacities[k], remaining // left)
        remaining, left = remaining - shares[k], left - 1
    return shares


def _draw_split(capacities: Sequence[int], num_train: int, num_test: int,
                seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Distinct problems ``(stratum, index)``, drawn without replacement, as (train, test)."""
    _check_int("num_train", num_train, 1)
    _check_int("num_test", num_test, 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    total, available = num_train + num_test, sum(capacities)
    if total > available:
        raise ValueError(f"num_train + num_test = {num_train} + {num_test} = {total} is more than the "
                         f"{available} distinct problems these settings allow")
    rng = random.Random(seed)
    drawn = [(k, index) for k, share in enumerate(_allocate(capacities, total))
             for index in rng.sample(range(capacities[k]), share)]
    rng.shuffle(drawn)
    return drawn[num_test:], drawn[:num_test]


# --- task 1: addition ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdditionTask:
    """``"a+b="`` → ``"<a+b>"``, with 0 <= a, b < 10**num_digits; train and test disjoint on (a, b).

    There are ``100**num_digits`` problems (10,000 for two digits). Components: ``correct``,
    ``format`` (the completion is one number), ``length``.
    """

    num_digits: int = 2
    """Each operand has at most this many digits (1 to 9)."""
    num_train: int = 8000
    """Number of training problems."""
    num_test: int = 500
    """Number of held-out problems."""
    seed: int = 0
    """Fixes both splits."""
    train: tuple[Example, ...] = field(init=False, repr=False)
    test: tuple[Example, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_int("num_digits", self.num_digits, 1, 9)
        base = 10**self.num_digits
        train, test = _draw_split([base * base], self.num_train, self.num_test, self.seed)
        for split, drawn in (("train", train), ("test", test)):
            object.__setattr__(self, split, tuple(self._example(*divmod(index, base)) for _, index in drawn))

    @staticmethod
    def _example(a: int, b: int) -> Example:
        return Example(prompt=f"{a}+{b}=", completion=str(a + b), answer=str(a + b))

    name = "addition"
    alphabet = "0123456789+="
    components = ("correct", "format", "length")

    @property
    def max_prompt_chars(self) -> int:
        return 2 * self.num_digits + 2

    @property
    def max_completion_chars(self) -> int:
        return self.num_digits + 1

    def parse_answer(self, completion: str) -> str | None:
        """The completion itself if it is exactly one number (no leading zeros), else None."""
        _check_text("completion", completion)
        return completion if _NUMBER_RE.fullmatch(completion) else None

    def score(self, prompt: str, completion: str) -> dict[str, float]:
        _check_text("prompt", prompt)
        match = _ADDITION_PROMPT_RE.fullmatch(prompt)
        if match is None:
            raise ValueError(f"prompt {prompt!r} is not an addition prompt like '47+85='")
        answer = self.parse_answer(completion)
        return {"correct": float(answer == str(int(match[1]) + int(match[2]))),
                "format": float(answer is not None), "length": float(len(completion))}

    def reward(self, prompts: Sequence[str], completions: Sequence[str], kind: str = "correct") -> list[float]:
        return _batch_reward(self, prompts, completions, kind)


# --- task 2: chain sums with a checkable worked section ---------------------------------------------


def _chain_completion(terms: Sequence[int]) -> str:
    steps, total = [], terms[0]
    for term in terms[1:]:
        steps.append(f"{total}+{term}={total + term}")
        total += term
    return ",".join(steps) + f";{total}"


@dataclass(frozen=True)
class ChainSumTask:
    """``"3+5+2="`` → ``"3+5=8,8+2=10;10"``: one step per ``+``, then ``;`` and the answer.

    Prompts have ``min_terms`` to ``max_terms`` terms, each in ``0..max_value``. Each number of terms
    is equally common in the splits as far as its problems allow (there are only
    ``(max_value + 1)**2`` two-term problems), so completion lengths really vary. The steps are the
    pieces of the completion before its first ``;``, split at ``,``. Step j is right when it reads
    ``x+y=z`` with y the (j+1)-th term, z = x + y, and x the sum written by the step before it (the
    first term for step 1; the true running sum if that step cannot be read): an early slip costs
    one step, not all. Components: ``correct``,
    ``format`` (the grammar of the module docstring; the step count is not checked), ``steps_correct``
    (right steps / max(terms − 1, steps written)), ``num_steps`` (steps written, malformed ones too)
    and ``length``. :meth:`step_rewards` gives the per-step rewards and where each step ends.
    """

    min_terms: int = 2
    """Fewest terms in a prompt (at least 2)."""
    max_terms: int = 4
    """Most terms in a prompt (at most 8)."""
    max_value: int = 9
    """Largest term (1 to 99); terms start at 0."""
    num_train: int = 3000
    """Number of training problems."""
    num_test: int = 300
    """Number of held-out problems."""
    seed: int = 0
    """Fixes both splits."""
    train: tuple[Example, ...] = field(init=False, repr=False)
    test: tuple[Example, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_int("min_terms", self.min_terms, 2, 8)
        _check_int("max_terms", self.max_terms, self.min_terms, 8)
        _check_int("max_value", self.max_value, 1, 99)
        base = self.max_value + 1
        sizes = range(self.min_terms, self.max_terms + 1)
        train, test = _draw_split([base**size for size in sizes], self.num_train, self.num_test, self.seed)
        for split, drawn in (("train", train), ("test", test)):
            examples = []
            for k, index in drawn:
                terms = [index // base**position % base for position in range(sizes[k])]
                examples.append(Example(prompt="+".join(map(str, terms)) + "=", completion=_chain_completion(terms),
                                        answer=str(sum(terms))))
            object.__setattr__(self, split, tuple(examples))

    name = "chain_sum"
    alphabet = "0123456789+=,;"
    components = ("correct", "format", "steps_correct", "num_steps", "length")

    @property
    def max_prompt_chars(self) -> int:
        return len("+".join([str(self.max_value)] * self.max_terms)) + 1

    @property
    def max_completion_chars(self) -> int:
        return len(_chain_completion([self.max_value] * self.max_terms))  # every number is longest here

    def _terms(self, prompt: str) -> list[int]:
        _check_text("prompt", prompt)
        if _CHAIN_PROMPT_RE.fullmatch(prompt) is None:
            raise ValueError(f"prompt {prompt!r} is not a chain-sum prompt like '3+5+2=' (two or more terms)")
        return [int(term) for term in prompt[:-1].split("+")]

    def parse_answer(self, completion: str) -> str | None:
        """The number after the one ``;`` of the completion, or None (no ``;``, two, or no number after it)."""
        _check_text("completion", completion)
        answer = completion.partition(";")[2]
        return answer if _NUMBER_RE.fullmatch(answer) else None

    def step_rewards(self, prompt: str, completion: str) -> list[tuple[int, float]]:
        """``(end, reward)`` per written step: 1.0 if the step is right, else 0.0.

        ``end`` is the index in ``completion`` of the ``,`` or ``;`` that closes the step (its last
        character if nothing does): with one token per character it is the token that gets the step's
        reward in process supervision (GRPO, algorithms.md §9). Empty for an empty worked section.
        """
        terms = self._terms(prompt)
        _check_text("completion", completion)
        work = completion.partition(";")[0]
        rewards: list[tuple[int, float]] = []
        previous, start = terms[0], 0
        for j, piece in enumerate(work.split(",") if work else []):
            end = start + len(piece)
            if end == len(completion) and not piece:
                break  # a trailing "," with nothing after it opens no step
            match = _STEP_RE.fullmatch(piece)
            right = False
            if match is None:
                previous = sum(terms[: j + 2])  # nothing to read: judge the next step against the true sum
            else:
                x, y, z = map(int, match.groups())
                right = j + 1 < len(terms) and x == previous and y == terms[j + 1] and z == x + y
                previous = z
            rewards.append((min(end, len(completion) - 1), float(right)))
            start = end + 1
        return rewards

    def score(self, prompt: str, completion: str) -> dict[str, float]:
        rewards = self.step_rewards(prompt, completion)  # checks both arguments
        terms = self._terms(prompt)
        return {"correct": float(self.parse_answer(completion) == str(sum(terms))),
                "format": float(_CHAIN_COMPLETION_RE.fullmatch(completion) is not None),
                "steps_correct": sum(reward for _, reward in rewards) / max(len(terms) - 1, len(rewards)),
                "num_steps": float(len(rewards)), "length": float(len(completion))}

    def reward(self, prompts: Sequence[str], completions: Sequence[str], kind: str = "correct") -> list[float]:
        return _batch_reward(self, prompts, completions, kind)


def make_task(name: str, **settings: Any) -> Task:
    """The task called ``name`` ("addition" or "chain_sum"), built with ``settings`` (its dataclass fields)."""
    known = {"addition": AdditionTask, "chain_sum": ChainSumTask}
    if name not in known:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known)}")
    accepted = [f.name for f in fields(known[name]) if f.init]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for task {name!r}; it accepts {accepted}")
    return known[name](**settings)
