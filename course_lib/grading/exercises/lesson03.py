"""Exercises of lesson 03 (PPO): GAE, the clipped surrogate, the value loss, minibatch normalisation.

Hand-computed cases come from the course's algorithm notes (GAE cases A-G; the PPO table of r, Â,
objective and gradient; the value-clipping example V_old = 1, R = 3, ε = 0.2). Each case is chosen
so that a known bug fails it: truncation treated as termination, a done flag off by one step,
bootstrapping from the reset observation, mixing environments, min/max swapped, the ratio inverted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from course_lib import estimators
from course_lib.grading.checker import Case, Exercise
from course_lib.rl import ppo


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _flags(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------
# 03.1 gae
# ---------------------------------------------------------------------------------------------


def _gae_inputs(next_values: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                gamma: float = 0.9, lam: float = 0.8, rewards: torch.Tensor | None = None,
                values: torch.Tensor | None = None) -> dict[str, Any]:
    return {"rewards": _t(1, 1, 1) if rewards is None else rewards,
            "values": _t(0.5, 0.5, 0.5) if values is None else values,
            "next_values": next_values, "terminated": terminated, "truncated": truncated,
            "gamma": gamma, "lam": lam}


def _with_values(advantages: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return advantages, advantages + values


def _env0_change(fn: Callable[..., Any], inputs: dict[str, Any]) -> torch.Tensor:
    """How much env 0's advantages move when only env 1's rewards change (must be 0)."""
    before, _ = fn(**inputs)
    changed = dict(inputs, rewards=inputs["rewards"].clone())
    changed["rewards"][:, 1] += 10.0
    after, _ = fn(**changed)
    return after[:, 0] - before[:, 0]


def _gae_cases() -> list[Case]:
    no, v = _flags(0, 0, 0), _t(0.5, 0.5, 0.5)
    g = torch.Generator().manual_seed(3)
    rand = {"rewards": torch.randn(6, 2, generator=g), "values": torch.randn(6, 2, generator=g),
            "next_values": torch.randn(6, 2, generator=g),
            "terminated": torch.tensor([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0], [0, 0]], dtype=torch.bool),
            "truncated": torch.tensor([[0, 0], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], dtype=torch.bool),
            "gamma": 0.97, "lam": 0.9}
    return [
        Case("A: no episode end, bootstrap V(s_3) = 0.5", _gae_inputs(v, no, no),
             expected=_with_values(_t(2.12648, 1.634, 0.95), v),
             hint="δ_t = r_t + γ·next_values_t·(1 − terminated_t) − values_t, then Â_t = δ_t + γλ·Â_{t+1} backwards."),
        Case("B: terminated at t=2 (V of the final obs is 2.0 but must be ignored)",
             _gae_inputs(_t(0.5, 0.5, 2.0), _flags(0, 0, 1), no),
             expected=_with_values(_t(1.8932, 1.31, 0.5), v),
             hint="a terminal state has value 0: multiply the bootstrap by (1 − terminated_t)."),
        Case("C: truncated at t=2, V(real final obs) = 2.0", _gae_inputs(_t(0.5, 0.5, 2.0), no, _flags(0, 0, 1)),
             expected=_with_values(_t(2.82632, 2.606, 2.3), v),
             hint="truncation is not termination: bootstrap with next_values (only `terminated` removes it)."),
        Case("C2: truncated at t=1 mid-segment, V(final obs) = 2.0, V(reset obs) = 0.5",
             _gae_inputs(_t(0.5, 2.0, 0.5), no, _flags(0, 1, 0)),
             expected=_with_values(_t(2.606, 2.3, 0.95), v),
             hint="bootstrap from next_values[t] (the real final observation), not values[t+1] (the reset obs); "
                  "and stop the λ-chain at the episode end."),
        Case("D: terminated at t=1, a new episode starts at t=2", _gae_inputs(v, _flags(0, 1, 0), no),
             expected=_with_values(_t(1.31, 0.5, 0.95), v),
             hint="the flags of step t decide both the bootstrap and whether Â_{t+1} is added; "
                  "check you do not use the flags of step t−1 or t+1."),
        Case("E: λ = 1, terminated at t=2 (equals reward-to-go − V)",
             _gae_inputs(v, _flags(0, 0, 1), no, lam=1.0), expected=_with_values(_t(2.21, 1.4, 0.5), v),
             hint="with λ = 1 GAE is the Monte-Carlo return minus V."),
        Case("F: λ = 0 (equals the one-step TD error δ_t)", _gae_inputs(v, no, no, lam=0.0),
             expected=_with_values(_t(0.95, 0.95, 0.95), v), hint="with λ = 0, Â_t = δ_t."),
        Case("G: V ≡ 0, γ = 0.99, λ = 0.95 (the 'values = 0' PPO)",
             _gae_inputs(_t(0, 0, 0), no, no, gamma=0.99, lam=0.95, values=_t(0, 0, 0)),
             expected=_with_values(_t(2.82504, 1.9405, 1.0), _t(0, 0, 0)),
             hint="the recursion uses γλ between steps: Â_t = δ_t + γλ Â_{t+1}."),
        Case("two envs (T, N) = (6, 2) with ends at different times", rand,
             hint="run the recursion along dimension 0 (time) for every env at once; never flatten first."),
        Case("changing env 1's rewards must not change env 0's advantages", rand,
             expected=torch.zeros(6), observe=_env0_change,
             hint="environments are independent: index [t] gives a row of N envs, keep them apart."),
    ]


# ---------------------------------------------------------------------------------------------
# 03.2 ppo_clip_loss
# ---------------------------------------------------------------------------------------------


def _objective_and_slope(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Objective = −loss and its gradient with respect to the ratio r, for a batch of given r."""
    ratio = inputs["ratio"].clone().requires_grad_(True)
    logp_old = torch.full_like(ratio, math.log(0.4))
    loss, _ = fn(logp=torch.log(ratio) + logp_old, logp_old=logp_old,
                 advantages=inputs["advantages"], clip_coef=inputs["clip_coef"])
    (grad,) = torch.autograd.grad(-loss, ratio, allow_unused=True)
    return {"objective": -loss.item(), "d objective / d ratio": torch.zeros_like(ratio) if grad is None else grad}


def _stats_of(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, float]:
    _, stats = fn(**inputs)
    return {key: float(stats[key]) for key in ("approx_kl", "clipfrac")}


def _loss_and_grad(fn: Callable[..., Any], inputs: dict[str, Any], wrt: str = "logp") -> dict[str, Any]:
    """The loss value and its gradient with respect to the input ``wrt`` (it must reach it)."""
    x = inputs[wrt].clone().requires_grad_(True)
    out = fn(**dict(inputs, **{wrt: x}))
    loss = out[0] if isinstance(out, tuple) else out
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return {"loss": float(loss.detach()), f"d loss / d {wrt}": torch.zeros_like(x) if grad is None else grad}


def _clip_cases() -> list[Case]:
    rows = [  # (r, Â, objective, d objective / d r, why) from the PPO table (ε = 0.2)
        (1.5, 1.0, 1.2, 0.0, "Â > 0 and r > 1 + ε: the gain is capped at (1 + ε)Â and the gradient is 0"),
        (0.5, 1.0, 0.5, 1.0, "Â > 0 but r fell: the pessimistic min keeps the unclipped r·Â and its gradient"),
        (1.5, -1.0, -1.5, -1.0, "Â < 0 and r rose: the harm is counted in full (unclipped)"),
        (0.5, -1.0, -0.8, 0.0, "Â < 0 and r < 1 − ε: the gain is capped at (1 − ε)Â, gradient 0"),
        (1.0, 1.0, 1.0, 1.0, "r = 1 (first minibatch): objective = Â, gradient Â"),
    ]
    cases = [Case(f"r = {r}, Â = {a:+g}: objective {obj}, slope {slope}",
                  {"ratio": _t(r), "advantages": _t(a), "clip_coef": 0.2},
                  expected={"objective": obj, "d objective / d ratio": _t(slope)}, observe=_objective_and_slope,
                  hint=f"{why}. Objective = min(r·Â, clip(r, 1 − ε, 1 + ε)·Â), r = exp(logp − logp_old), "
                       f"loss = −mean(objective).")
             for r, a, obj, slope, why in rows]
    g = torch.Generator().manual_seed(4)
    logp_old = -torch.rand(16, generator=g) * 2
    batch = {"logp": logp_old + 0.4 * torch.randn(16, generator=g), "logp_old": logp_old,
             "advantages": torch.randn(16, generator=g), "clip_coef": 0.2}
    lo = torch.full((4,), math.log(0.4))
    mixed = {"logp": lo + torch.log(_t(1.0, 1.1, 1.5, 0.5)), "logp_old": lo, "advantages": _t(1, -1, 1, -1),
             "clip_coef": 0.2}
    cases += [
        Case("random batch of 16: loss and d loss / d logp", batch, observe=_loss_and_grad,
             hint="take the mean over the batch and let the gradient flow into logp (no .detach() there)."),
        Case("stats at log r = ln 1.5: approx_kl (k3) = 0.094535, clipfrac 1",
             {"logp": _t(math.log(0.6)), "logp_old": _t(math.log(0.4)), "advantages": _t(1.0), "clip_coef": 0.2},
             expected={"approx_kl": 0.094535, "clipfrac": 1.0}, observe=_stats_of,
             hint="approx_kl = mean((r − 1) − log r) (k3, never negative); clipfrac = mean(|r − 1| > ε)."),
        Case("stats at log r = ln 0.5: approx_kl = 0.193147",
             {"logp": _t(math.log(0.2)), "logp_old": _t(math.log(0.4)), "advantages": _t(1.0), "clip_coef": 0.2},
             expected={"approx_kl": 0.193147, "clipfrac": 1.0}, observe=_stats_of,
             hint="k3 = (r − 1) − log r with log r = logp − logp_old."),
        Case("stats of r = [1, 1.1, 1.5, 0.5]: clipfrac 0.5", mixed,
             expected={"approx_kl": float(((_t(1.0, 1.1, 1.5, 0.5) - 1) - torch.log(_t(1.0, 1.1, 1.5, 0.5))).mean()),
                       "clipfrac": 0.5}, observe=_stats_of,
             hint="clipfrac counts |r − 1| > ε whatever the sign of Â (CleanRL's definition)."),
        Case("first minibatch: logp == logp_old gives approx_kl 0 and clipfrac 0",
             {"logp": logp_old.clone(), "logp_old": logp_old, "advantages": batch["advantages"], "clip_coef": 0.2},
             expected={"approx_kl": 0.0, "clipfrac": 0.0}, observe=_stats_of,
             hint="when the policy has not changed yet, r = 1 exactly."),
    ]
    return cases


# ---------------------------------------------------------------------------------------------
# 03.3 ppo_value_loss
# ---------------------------------------------------------------------------------------------


def _value_cases() -> list[Case]:
    def one(v_new: float, clip: float | None) -> dict[str, Any]:
        return {"values": _t(v_new), "values_old": _t(1.0), "returns": _t(3.0), "clip_coef": clip}

    g = torch.Generator().manual_seed(5)
    values_old = torch.randn(12, generator=g)
    batch = {"values": values_old + 0.5 * torch.randn(12, generator=g), "values_old": values_old,
             "returns": values_old + torch.randn(12, generator=g)}
    hint_clip = ("V_clip = V_old + clip(V − V_old, −ε, ε); loss = ½·mean(max((V − R)², (V_clip − R)²)); "
                 "the max (pessimistic) picks the larger error.")
    return [
        Case("V_old = 1, R = 3, ε = 0.2, V = 2.0: clipped branch, loss 1.62 and zero gradient",
             one(2.0, 0.2), expected={"loss": 1.62, "d loss / d values": _t(0.0)},
             observe=partial_grad("values"), hint=hint_clip),
        Case("V_old = 1, R = 3, ε = 0.2, V = 0.5: unclipped branch, loss 3.125",
             one(0.5, 0.2), expected={"loss": 3.125, "d loss / d values": _t(-2.5)},
             observe=partial_grad("values"), hint=hint_clip),
        Case("V_old = 1, R = 3, ε = 0.2, V = 1.1: inside the clip range, loss 1.805",
             one(1.1, 0.2), expected={"loss": 1.805, "d loss / d values": _t(-1.9)},
             observe=partial_grad("values"), hint=hint_clip),
        Case("no clipping (clip_coef=None), V = 2, R = 3: loss ½(V − R)² = 0.5, gradient −1",
             one(2.0, None), expected={"loss": 0.5, "d loss / d values": _t(-1.0)},
             observe=partial_grad("values"), hint="clip_coef=None means the plain ½·mean((V − R)²)."),
        Case("random batch of 12, clipped", dict(batch, clip_coef=0.2), observe=partial_grad("values"),
             hint="take the max per sample, then the mean over the batch."),
        Case("random batch of 12, unclipped", dict(batch, clip_coef=None), observe=partial_grad("values"),
             hint="½·mean((V − R)²), the mean over the batch."),
    ]


def partial_grad(wrt: str) -> Callable[[Callable[..., Any], dict[str, Any]], dict[str, Any]]:
    """An observer returning the loss and its gradient with respect to the input ``wrt``."""
    return lambda fn, inputs: _loss_and_grad(fn, inputs, wrt)


# ---------------------------------------------------------------------------------------------
# 03.4 normalize_advantages
# ---------------------------------------------------------------------------------------------


def _normalize_cases() -> list[Case]:
    g = torch.Generator().manual_seed(6)
    return [
        Case("[1, 2, 3, 4] → [−1.1619, −0.3873, 0.3873, 1.1619]", {"advantages": _t(1, 2, 3, 4)},
             expected=_t(-1.1619, -0.3873, 0.3873, 1.1619),
             hint="(Â − mean) / (std + 1e-8) with torch's default (unbiased) std."),
        Case("a random minibatch of 64", {"advantages": 3.0 + 2.0 * torch.randn(64, generator=g)},
             hint="normalise over the whole minibatch: one mean and one std."),
        Case("all advantages equal: zeros, not NaN", {"advantages": _t(2, 2, 2)}, expected=_t(0, 0, 0),
             hint="add eps = 1e-8 to the std so 0 / 0 cannot happen."),
    ]


EXERCISES = [
    Exercise("03.1", "gae", "generalized advantage estimation with terminated/truncated flags",
             estimators.gae, _gae_cases),
    Exercise("03.2", "ppo_clip_loss", "the clipped surrogate loss with approx_kl and clipfrac",
             ppo.ppo_clip_loss, _clip_cases),
    Exercise("03.3", "ppo_value_loss", "the (optionally clipped) value loss",
             ppo.ppo_value_loss, _value_cases),
    Exercise("03.4", "normalize_advantages", "per-minibatch advantage normalisation",
             ppo.normalize_advantages, _normalize_cases),
]
