"""Exercises of lesson 01 (policy gradient, REINFORCE): returns, the surrogate loss and the baseline.

Hand-computed cases come from the course's algorithm notes (§1 reward-to-go, §2 REINFORCE, §3 the
λ = 1 column of the GAE table); the bug catalogue's entries 1-5 each have a case that catches them.
Every function takes ``(T,)`` or ``(T, N)``, so the cases include a single step (T = 1) and a single
env (N = 1), where a stray ``.squeeze()`` broadcasts ``(T,)`` against ``(T, 1)`` into ``(T, T)``.
Gradients go through :func:`course_lib.grading.observers.gradients`: what a loss must train has a
gradient, its targets and weights (returns, advantages) get none, and none is NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from course_lib import estimators
from course_lib.grading import observers
from course_lib.grading.checker import Case, Exercise
from course_lib.rl import reinforce


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _b(*flags: int) -> torch.Tensor:
    return torch.tensor(flags, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------
# 01.1 reward_to_go
# ---------------------------------------------------------------------------------------------


def _rtg_cases() -> list[Case]:
    g = _seeded(11)
    rand_rewards = torch.randn(20, generator=g)
    rand_dones = torch.rand(20, generator=g) < 0.2
    batch_rewards = torch.rand(5, 3, generator=g)  # (T, N)
    batch_dones = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=torch.bool)
    return [
        Case("r=[1,1,1], γ=0.5, one episode", {"rewards": _t(1, 1, 1), "dones": _b(0, 0, 1), "gamma": 0.5},
             expected=_t(1.75, 1.5, 1.0), hint="loop backwards: G_t = r_t + γ·G_{t+1}, starting from the end."),
        Case("r=[1,2,3], γ=0.9", {"rewards": _t(1, 2, 3), "dones": _b(0, 0, 1), "gamma": 0.9},
             expected=_t(5.23, 4.7, 3.0), hint="G_t sums r_t, r_{t+1}, ... with weights 1, γ, γ², ..."),
        Case("r=[0,0,1], γ=0.9: the reward of the last step counts at the last step",
             {"rewards": _t(0, 0, 1), "dones": _b(0, 0, 1), "gamma": 0.9}, expected=_t(0.81, 0.9, 1.0),
             hint="G_t starts with r_t itself (not r_{t+1}): check for an off-by-one."),
        Case("two episodes [1,1 | 1], γ=0.5: the sum resets at the boundary",
             {"rewards": _t(1, 1, 1), "dones": _b(0, 1, 1), "gamma": 0.5}, expected=_t(1.5, 1.0, 1.0),
             hint="where dones[t] is True, G_t = r_t: the next episode's rewards must not leak in."),
        Case("segment cut mid-episode: bootstrap last_value = V(s_T) = 0.5, γ=0.9",
             {"rewards": _t(1, 1, 1), "dones": _b(0, 0, 0), "gamma": 0.9, "last_value": 0.5},
             expected=_t(3.0745, 2.305, 1.45), hint="start the backward recursion from last_value, not 0."),
        Case("last_value is ignored when the last step ends an episode",
             {"rewards": _t(1, 1), "dones": _b(0, 1), "gamma": 0.9, "last_value": 10.0},
             expected=_t(1.9, 1.0), hint="multiply the running sum by (1 - done_t) before adding r_t."),
        Case("random episode pieces, T=20, γ=0.97",
             {"rewards": rand_rewards, "dones": rand_dones, "gamma": 0.97, "last_value": 0.3},
             hint="reset at every done, bootstrap from last_value only after the final step."),
        Case("a (T, N) = (5, 3) batch of 3 envs, one last_value per env",
             {"rewards": batch_rewards, "dones": batch_dones, "gamma": 0.9, "last_value": _t(0.5, -1.0, 2.0)},
             hint="index time on dimension 0 only (rewards[t], dones[t]) so it works for (T, N) too."),
        Case("a single step (T = 1) cut mid-episode: G_0 = r_0 + γ·last_value = 2 + 0.9·1",
             {"rewards": _t(2.0), "dones": _b(0), "gamma": 0.9, "last_value": 1.0}, expected=_t(2.9),
             hint="a segment may hold one step: the recursion then runs once, from last_value."),
        Case("one env: (T, N) = (4, 1) with last_value of shape (1,)",
             {"rewards": batch_rewards[:4, :1], "dones": batch_dones[:4, :1], "gamma": 0.9, "last_value": _t(0.5)},
             hint="keep the env dimension even when N = 1 (no .squeeze()): the result has the shape of rewards."),
    ]


# ---------------------------------------------------------------------------------------------
# 01.2 bootstrapped_returns
# ---------------------------------------------------------------------------------------------


def _random_flags(g: torch.Generator, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    draw = torch.rand(shape, generator=g)
    return draw < 0.1, (draw >= 0.1) & (draw < 0.2)  # terminated, truncated, never both


def _boot_cases() -> list[Case]:
    g = _seeded(12)
    ones, half = _t(1, 1, 1), _t(0.5, 0.5, 0.5)
    no = _b(0, 0, 0)
    term, trunc = _random_flags(g, (16, 3))
    rand = {"rewards": torch.rand(16, 3, generator=g), "terminated": term, "truncated": trunc,
            "next_values": torch.randn(16, 3, generator=g), "gamma": 0.95}
    return [
        Case("no episode end: bootstrap from V(s_T) = 0.5 at the segment end, γ=0.9",
             {"rewards": ones, "terminated": no, "truncated": no, "next_values": half, "gamma": 0.9},
             expected=_t(3.0745, 2.305, 1.45),
             hint="the segment was cut in the middle of an episode: start from next_values[-1]."),
        Case("terminated at t=2: no bootstrap, even though next_values[2] = 0.5",
             {"rewards": ones, "terminated": _b(0, 0, 1), "truncated": no, "next_values": half, "gamma": 0.9},
             expected=_t(2.71, 1.9, 1.0), hint="after a true termination the future is worth 0."),
        Case("truncated at t=2 with V(final obs) = 2.0: bootstrap, do not treat it as terminal",
             {"rewards": ones, "terminated": no, "truncated": _b(0, 0, 1), "next_values": _t(0.5, 0.5, 2.0),
              "gamma": 0.9},
             expected=_t(4.168, 3.52, 2.8),
             hint="on a truncated step add γ·next_values[t] to r_t (the episode would have gone on)."),
        Case("terminated at t=1, a new episode at t=2, V(s_3) = 0.5",
             {"rewards": ones, "terminated": _b(0, 1, 0), "truncated": no, "next_values": half, "gamma": 0.9},
             expected=_t(1.9, 1.0, 1.45), hint="reset the sum at the end of the first episode."),
        Case("random (T, N) = (16, 3) segment with terminations and truncations", rand,
             hint="dones = terminated | truncated resets the sum; only truncated steps bootstrap."),
        Case("a single step (T = 1), truncated: G_0 = r_0 + γ·V(final obs) = 1 + 0.9·2",
             {"rewards": _t(1.0), "terminated": _b(0), "truncated": _b(1), "next_values": _t(2.0), "gamma": 0.9},
             expected=_t(2.8), hint="a segment may hold one step; a truncated step still bootstraps once."),
        Case("one env: (T, N) = (16, 1) segment", {**rand, **{k: rand[k][:, :1] for k in
                                                             ("rewards", "terminated", "truncated", "next_values")}},
             hint="keep the env dimension even when N = 1 (no .squeeze()): the result has the shape of rewards."),
    ]


# ---------------------------------------------------------------------------------------------
# 01.3 policy_gradient_loss
# ---------------------------------------------------------------------------------------------


_PG_GRADIENTS = observers.gradients(wrt=["logp"], constant=["advantages"], name="loss")
"""The loss, ∂L/∂logp (must be −Â/B) and ∂L/∂advantages (must be 0: the advantage is a constant weight)."""


def _grad_into_critic(fn: Callable[..., Any], inputs: dict[str, Any]) -> list[torch.Tensor]:
    """Observe the gradient that the policy loss alone sends into a critic: it must be exactly 0."""
    torch.manual_seed(0)
    critic = torch.nn.Linear(3, 1)
    values = critic(inputs["obs"]).squeeze(-1)  # (B,)
    advantages = inputs["returns"] - values  # depends on the critic's parameters
    logp = inputs["logp"].clone().requires_grad_(True)
    loss = fn(logp=logp, advantages=advantages)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return [torch.full((1, 3), float("nan")), torch.full((1,), float("nan"))]
    params = [critic.weight, critic.bias, logp]
    grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params[:2], grads[:2], strict=True)]


def _bandit_step(fn: Callable[..., Any], inputs: dict[str, Any]) -> torch.Tensor:
    """One SGD step on a 2-armed bandit where arm 0 pays 1; return π(a=0) after the step."""
    logits = torch.zeros(2, requires_grad=True)
    actions, rewards = inputs["actions"], inputs["rewards"]
    logp = torch.log_softmax(logits, -1)[actions]  # (B,)
    advantages = rewards - rewards.mean()
    loss = fn(logp=logp, advantages=advantages)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    with torch.no_grad():
        return torch.softmax(logits - 1.0 * grad, -1)[0]


def _pg_cases() -> list[Case]:
    g = _seeded(13)
    logp = -torch.rand(6, 4, generator=g) * 2  # (T, N)
    adv = torch.randn(6, 4, generator=g)
    flat_logp, flat_adv = -torch.rand(8, generator=g), torch.randn(8, generator=g)
    one_env_logp, one_env_adv = -torch.rand(5, 1, generator=g), torch.randn(5, 1, generator=g)
    return [
        Case("hand-computed: logp = [ln ½, ln ¼], Â = [1, 2]",
             {"logp": _t(-0.6931472, -1.3862944), "advantages": _t(1.0, 2.0)}, expected=torch.tensor(1.7328680),
             hint="L = -mean(logp · Â): a minus sign, and a mean (not a sum)."),
        Case("random (T, N) = (6, 4) batch", {"logp": logp, "advantages": adv},
             hint="average over every element, whatever the shape; return a scalar tensor."),
        Case("one env: (T, N) = (5, 1) batch", {"logp": one_env_logp, "advantages": one_env_adv},
             hint="multiply tensors of the same shape: a .squeeze() on one side turns (5,) · (5, 1) into a (5, 5) "
                  "outer product and the mean is wrong."),
        Case("∂L/∂logp = -Â / B, and no gradient into the advantages", {"logp": flat_logp, "advantages": flat_adv},
             observe=_PG_GRADIENTS,
             hint="keep logp in the graph (no .detach() or .item() on it) and use advantages.detach(): the "
                  "advantage is a constant weight, not something to optimise."),
        Case("the policy loss sends no gradient into the critic (Â = G − V is detached)",
             {"logp": flat_logp[:5], "returns": torch.randn(5, generator=g), "obs": torch.randn(5, 3, generator=g)},
             expected=[torch.zeros(1, 3), torch.zeros(1)], observe=_grad_into_critic,
             hint="use advantages.detach(): the advantage is a constant weight, not something to optimise."),
        Case("bandit: one gradient step must make the paying arm more likely (π(a=0) > ½)",
             {"actions": torch.tensor([0, 1, 0, 1]), "rewards": _t(1, 0, 1, 0)}, observe=_bandit_step,
             hint="optimisers minimise: the loss needs a minus sign so that descent raises logp·Â."),
    ]


# ---------------------------------------------------------------------------------------------
# 01.4 value_loss
# ---------------------------------------------------------------------------------------------


_VALUE_GRADIENTS = observers.gradients(wrt=["values"], constant=["returns"], name="loss")
"""The loss, ∂L/∂values (must be 2(V − G)/B) and ∂L/∂returns (must be 0: the returns are targets)."""


def _value_cases() -> list[Case]:
    g = _seeded(14)
    values, rets = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g) * 5
    return [
        Case("hand-computed: V = [1, 2, 3], G = [2, 2, 5] → (1 + 0 + 4)/3",
             {"values": _t(1, 2, 3), "returns": _t(2, 2, 5)}, expected=torch.tensor(5 / 3),
             hint="mean((V − G)²): square the error, average it, no ½ factor."),
        Case("random (T, N) = (7, 3) batch", {"values": values, "returns": rets},
             hint="average over every element, whatever the shape; return a scalar tensor."),
        Case("one env: (T, N) = (5, 1) batch", {"values": values[:5, :1], "returns": rets[:5, :1]},
             hint="subtract tensors of the same shape: values.squeeze() (for a critic's (B, 1) output) turns "
                  "(5,) − (5, 1) into a (5, 5) table of differences and the mean is wrong."),
        Case("gradients: 2(V − G)/B into the values, nothing into the targets",
             {"values": values[:, 0], "returns": rets[:, 0]}, observe=_VALUE_GRADIENTS,
             hint="keep the values in the graph (no .detach() or .item()); the returns are regression targets: "
                  "use returns.detach()."),
        Case("a perfect fit V = G: loss 0, and gradient 0 rather than NaN",
             {"values": _t(1, -2, 3), "returns": _t(1, -2, 3)}, observe=_VALUE_GRADIENTS,
             hint="square the errors directly: a square root (e.g. torch.sqrt(Σ(V − G)²)², an RMSE squared) has "
                  "gradient 0/0 = NaN where every error is 0."),
    ]


# ---------------------------------------------------------------------------------------------
# 01.5 batch_advantages
# ---------------------------------------------------------------------------------------------


_ADV_GRADIENTS = observers.gradients(constant=["values", "returns"], name="advantages")
"""The advantages, and their gradients wrt the values and the returns, which must be 0 (detached)."""


def _adv_cases() -> list[Case]:
    g = _seeded(15)
    rets, values = torch.randn(8, 4, generator=g) * 3 + 5, torch.randn(8, 4, generator=g)
    return [
        Case("reward-to-go of two episodes [2, 1] and [4, 3, 2, 1], V = 0: one normalisation for all six",
             {"returns": _t(2, 1, 4, 3, 2, 1), "values": torch.zeros(6)},
             expected=_t(-0.1426, -0.9980, 1.5682, 0.7128, -0.1426, -0.9980), atol=2e-4,
             hint="use the mean and std of the whole batch (torch's default, unbiased .std())."),
        Case("a (T, N) = (4, 2) batch where each env column is one episode",
             {"returns": torch.tensor([[4.0, 1.0], [3.0, 0.5], [2.0, 0.25], [1.0, 0.125]]), "values": torch.zeros(4, 2)},
             hint="normalise over all T·N numbers at once, not per env or per episode: per-episode "
                  "weights always sum to 0, so no episode can count as good overall."),
        Case("a batch of eight 1-step bandit episodes, (T, N) = (1, 8)",
             {"returns": _t(1, 0, 1, 1, 0, 1, 0, 0).reshape(1, 8), "values": torch.zeros(1, 8)},
             hint="normalising each 1-step episode gives std = NaN (or 0/eps = 0): nothing is learned."),
        Case("the baseline V(s) is subtracted before normalising", {"returns": rets, "values": values},
             hint="Â = G − V first, then (Â − mean) / (std + eps)."),
        Case("all advantages equal: the result is 0, not NaN",
             {"returns": _t(1, 1, 1, 1), "values": torch.zeros(4)}, expected=torch.zeros(4),
             hint="add a small eps (1e-8) to the std before dividing."),
        Case("one env: (T, N) = (5, 1) batch", {"returns": rets[:5, :1], "values": values[:5, :1]},
             hint="subtract tensors of the same shape: values.squeeze(-1) (for a critic's (B, 1) output) turns "
                  "(5, 1) − (5,) into a (5, 5) table and the result has the wrong shape."),
        Case("the advantages are constants: no gradient reaches the returns or the values",
             {"returns": rets, "values": values}, observe=_ADV_GRADIENTS,
             hint="detach G − V before normalising: V comes from the critic, and a policy loss weighted by "
                  "undetached advantages would push the critic too."),
    ]


EXERCISES = [
    Exercise("01.1", "reward_to_go", "reward-to-go with episode boundaries and a bootstrap value",
             estimators.reward_to_go, _rtg_cases),
    Exercise("01.2", "bootstrapped_returns", "returns of a rollout segment: terminated, truncated, cut",
             reinforce.bootstrapped_returns, _boot_cases),
    Exercise("01.3", "policy_gradient_loss", "the REINFORCE surrogate loss −mean(logp · sg(Â))",
             reinforce.policy_gradient_loss, _pg_cases),
    Exercise("01.4", "value_loss", "mean squared error of the value baseline",
             reinforce.value_loss, _value_cases),
    Exercise("01.5", "batch_advantages", "advantages G − V normalised over the whole batch",
             reinforce.batch_advantages, _adv_cases),
]
