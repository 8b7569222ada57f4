"""Each lesson's visible training loop and the library's ``train()`` of the same method agree.

The loop (``train_reinforce``, ``train_trpo``, ``train_ppo``) is pulled out of the solution
notebook with the functions the learner wrote there, run for a few updates, and compared with the
library's ``train()`` on the same config and seed: the same start (``onpolicy.start_run``), the same
optimizers (each method's ``make_optimizer(s)``), the same callback protocol and schedule counted in
env steps, so the same parameters (bit for bit) and the same logged numbers come out. A change to one that is not
made to the other fails here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from course_lib import runtime, training
from course_lib.grading.notebooks import extract_definitions, extract_imports
from course_lib.rl import onpolicy, ppo, reinforce, trpo

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "01_policy_gradient": ("train_reinforce", reinforce.train,
                           dataclasses.replace(reinforce.ReinforceConfig(), total_steps=3 * 2048)),
    "02_trpo": ("train_trpo", trpo.train, dataclasses.replace(trpo.TRPOConfig(), total_steps=3 * 1024)),
    "03_ppo": ("train_ppo", ppo.train, dataclasses.replace(ppo.PPOConfig(), total_steps=4 * 250)),
}


def _lesson_loop(stem: str, name: str) -> Any:
    path = REPO / "solutions" / f"{stem}.ipynb"
    namespace: dict[str, Any] = {}
    exec(compile(extract_imports(path) + extract_definitions(path), str(path), "exec"), namespace)
    return namespace[name]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    runtime.set_torch_threads(1)  # the course's thread policy: results depend on the thread count
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("stem", list(CASES))
def test_the_lessons_loop_and_the_library_train_agree(stem: str) -> None:
    name, library_train, config = CASES[stem]
    loop = _lesson_loop(stem, name)
    seed = 3
    lesson_history = training.History()
    lesson_eval = onpolicy.GreedyEvaluation(config.env_id, every=500, episodes=3, history=lesson_history)
    out = loop(config, seed=seed, history=lesson_history, callback=lesson_eval)
    lesson_policy = out[0] if isinstance(out, tuple) else out

    library_history = training.History()
    library_eval = onpolicy.GreedyEvaluation(config.env_id, every=500, episodes=3, history=library_history)
    result = library_train(config, seed=seed, callback=library_eval, history=library_history)

    for key, tensor in result.policy.state_dict().items():
        assert torch.equal(lesson_policy.state_dict()[key], tensor), (
            f"{stem}: policy parameter {key} differs between the lesson's loop and the library's train()")
    assert len(lesson_history) == len(library_history) == config.num_iterations
    shared = [k for k in lesson_history.keys() if k != "wall_seconds"]
    assert set(shared) <= set(library_history.keys()), (
        f"{stem}: the lesson logs {sorted(set(shared) - set(library_history.keys()))}, the library does not")
    assert "eval_return" in shared and len(lesson_eval.points) == len(library_eval.points) >= 1
    for key in shared:
        np.testing.assert_allclose(lesson_history[key], library_history[key], rtol=1e-4, atol=1e-6,
                                   err_msg=f"{stem}: metric {key!r}")


def test_the_greedy_evaluation_schedule_counts_env_steps_and_stops():
    history = training.History()
    evaluation = onpolicy.GreedyEvaluation("CartPole-v1", every=1_000, episodes=2, history=history, stop_at=2_500)
    policy = torch.nn.Sequential(torch.nn.Linear(4, 2))
    stops = []
    for steps in (600, 1_200, 1_800, 2_400, 2_700):
        history.log(env_steps=steps)
        stops.append(evaluation(steps, policy))
    assert [p.env_steps for p in evaluation.points] == [1_200, 2_400]  # the first iteration past each mark
    assert stops == [False, False, False, False, True]  # stop_at 2,500
    assert np.isnan(history["eval_return"][0]) and history["eval_return"][1] == evaluation.points[0].eval_return
    evaluation.finish(2_700, policy)  # the final policy was not evaluated yet
    assert evaluation.points[-1].env_steps == 2_700 and evaluation.total_train_seconds is not None
    evaluation.finish(2_700, policy)
    assert len(evaluation.points) == 3
    target = onpolicy.GreedyEvaluation("CartPole-v1", every=1_000, episodes=2, target=-1.0)
    assert target(1_000, policy) is True  # any return beats -1
    with pytest.raises(ValueError, match="every"):
        onpolicy.GreedyEvaluation("CartPole-v1", every=-5)
