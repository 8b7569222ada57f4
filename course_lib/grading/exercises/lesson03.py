"""Exercises of lesson 03 (PPO): GAE, the clipped surrogate, the value loss, minibatch normalisation.

Hand-computed cases come from the course's algorithm notes (GAE cases A-G; the PPO table of r, Â,
objective and gradient; the value-clipping example V_old = 1, R = 3, ε = 0.2). Each case is chosen
so that a known bug fails it: truncation treated as termination, a done flag off by one step,
bootstrapping from the reset observation, mixing environments, min/max swapped, the ratio inverted.
Besides the catalogue, every exercise covers the classes of bug that apply to it: one step of one
env and (T, 1) inputs (GAE), a detached loss, a gradient leaking into a constant (logp_old,
advantages, values_old, returns), a NaN gradient behind a finite loss, every returned diagnostic,
in-place changes of an input, and ratios (or value changes) just inside, just outside and exactly
on the clip range, with an ε other than the usual 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from course_lib import estimators
from course_lib.grading import observers
from course_lib.grading.checker import Case, Exercise
from course_lib.grading.compare import Problem
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
        *_gae_shape_cases(),
    ]


def _gae_shape_cases() -> list[Case]:
    """A batch of one: one step of one env, a single step of shape (1,), and case C as one env (T, 1)."""
    keep = ("keep the shapes you are given: (T, 1) stays (T, 1) and T = 1 is a whole segment; never "
            ".squeeze() the inputs (it drops the env dimension, and the time dimension too when T = 1).")
    one_step = {"rewards": _t(1).reshape(1, 1), "values": _t(0.5).reshape(1, 1),
                "next_values": _t(2.0).reshape(1, 1), "terminated": _flags(0).reshape(1, 1),
                "truncated": _flags(1).reshape(1, 1), "gamma": 0.9, "lam": 0.8}
    column = {k: v.reshape(3, 1) if isinstance(v, torch.Tensor) else v
              for k, v in _gae_inputs(_t(0.5, 0.5, 2.0), _flags(0, 0, 0), _flags(0, 0, 1)).items()}
    return [
        Case("(T, N) = (1, 1): one step of one env, truncated, V(final obs) = 2.0: Â = 1 + 0.9·2 − 0.5 = 2.3",
             one_step, expected=(_t(2.3).reshape(1, 1), _t(2.8).reshape(1, 1)),
             hint="a segment of one step is δ_0 alone, bootstrapped through next_values; " + keep),
        Case("T = 1, shape (1,): one terminated step, V(final obs) = 2.0 ignored: Â = 0.5",
             _gae_inputs(_t(2.0), _flags(1), _flags(0), rewards=_t(1), values=_t(0.5)),
             expected=(_t(0.5), _t(1.0)), hint="one step: Â_0 = δ_0 = r_0 − V_0 when it terminates; " + keep),
        Case("(T, N) = (3, 1): case C as one env in a column, results of shape (3, 1)", column,
             expected=tuple(x.reshape(3, 1) for x in _with_values(_t(2.82632, 2.606, 2.3), _t(0.5, 0.5, 0.5))),
             hint=keep),
    ]


# ---------------------------------------------------------------------------------------------
# 03.2 ppo_clip_loss
# ---------------------------------------------------------------------------------------------

_LOG_OLD = math.log(0.4)
_CLIP_STATS = ("approx_kl", "clipfrac")
_clip_loss_and_grads = observers.gradients(wrt=["logp"], constant=["logp_old", "advantages"], name="loss")
_clip_stats = observers.stats(_CLIP_STATS)


def _clip_observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """The loss, d loss / d logp (0 for logp_old and advantages) and every diagnostic of ``(loss, stats)``.

    The stats come from a plain call on the case's own inputs, so the checker also sees an input changed
    in place (the gradient observer works on copies of the tensors it differentiates).
    """
    observed = _clip_loss_and_grads(fn, inputs)
    found = _clip_stats(fn, inputs)
    return found if isinstance(found, Problem) else {**observed, **found}


def _ratio_inputs(ratios: tuple[float, ...], advantages: tuple[float, ...], clip_coef: float = 0.2,
                  logp_old: float = _LOG_OLD) -> dict[str, Any]:
    """logp, logp_old and advantages for the given ratios r = exp(logp − logp_old)."""
    old = torch.full((len(ratios),), logp_old, dtype=torch.float32)
    return {"logp": old + torch.log(_t(*ratios)), "logp_old": old, "advantages": _t(*advantages),
            "clip_coef": clip_coef}


def _k3(*ratios: float) -> float:
    return sum((r - 1.0) - math.log(r) for r in ratios) / len(ratios)


def _clip_expected(ratios: tuple[float, ...], objectives: tuple[float, ...], slopes: tuple[float, ...],
                   clip_coef: float = 0.2) -> dict[str, Any]:
    """Loss = −mean(objective), d loss / d logp_i = −r_i·(d objective_i / d r_i)/B, approx_kl and clipfrac."""
    n = len(ratios)
    return {"loss": torch.tensor(-sum(objectives) / n, dtype=torch.float32),
            "d loss / d logp": _t(*(-r * s / n for r, s in zip(ratios, slopes, strict=True))),
            "approx_kl": _k3(*ratios), "clipfrac": sum(abs(r - 1.0) > clip_coef for r in ratios) / n}


def _clip_cases() -> list[Case]:
    rows = [  # (r, Â, objective, d objective / d r, why) from the PPO table (ε = 0.2)
        (1.5, 1.0, 1.2, 0.0, "Â > 0 and r > 1 + ε: the gain is capped at (1 + ε)Â and the gradient is 0"),
        (0.5, 1.0, 0.5, 1.0, "Â > 0 but r fell: the pessimistic min keeps the unclipped r·Â and its gradient"),
        (1.5, -1.0, -1.5, -1.0, "Â < 0 and r rose: the harm is counted in full (unclipped)"),
        (0.5, -1.0, -0.8, 0.0, "Â < 0 and r < 1 − ε: the gain is capped at (1 − ε)Â, gradient 0"),
        (1.0, 1.0, 1.0, 1.0, "r = 1 (first minibatch): objective = Â, gradient Â"),
    ]
    cases = [Case(f"r = {r}, Â = {a:+g}: objective {obj}, slope {slope}", _ratio_inputs((r,), (a,)),
                  expected=_clip_expected((r,), (obj,), (slope,)), observe=_clip_observe,
                  hint=f"{why}. Objective = min(r·Â, clip(r, 1 − ε, 1 + ε)·Â), r = exp(logp − logp_old), "
                       f"loss = −mean(objective) (a 0-dim tensor), so d loss / d logp = −r·slope; the stats are compared too.")
             for r, a, obj, slope, why in rows]
    g = torch.Generator().manual_seed(4)
    logp_old = -torch.rand(16, generator=g) * 2
    batch = {"logp": logp_old + 0.4 * torch.randn(16, generator=g), "logp_old": logp_old,
             "advantages": torch.randn(16, generator=g), "clip_coef": 0.2}
    cases += [
        Case("random batch of 16: loss and d loss / d logp; logp_old and advantages get exactly 0 gradient", batch,
             observe=_clip_observe,
             hint="take the mean over the batch and let the gradient flow into logp (no .detach() there); "
                  "logp_old and advantages are constants: use logp_old.detach() and advantages.detach()."),
        *_clip_range_cases(),
        Case("π_old(a) underflows in float32: logp_old = −110, logp = −100, Â = +1: r = e^10 is clipped, "
             "loss −1.2, gradient 0 (not NaN)",
             {"logp": _t(-100.0), "logp_old": _t(-110.0), "advantages": _t(1.0), "clip_coef": 0.2},
             expected={"loss": torch.tensor(-1.2, dtype=torch.float32), "d loss / d logp": _t(0.0),
                       "approx_kl": math.exp(10.0) - 11.0, "clipfrac": 1.0}, observe=_clip_observe,
             hint="compute r = exp(logp − logp_old) from the difference of log-probs: exp(logp) / exp(logp_old) "
                  "divides by exp(−110) = 0 here, and its gradient is NaN even though the clipped loss is finite."),
        Case("stats at log r = ln 1.5: approx_kl (k3) = 0.094535, clipfrac 1",
             {"logp": _t(math.log(0.6)), "logp_old": _t(math.log(0.4)), "advantages": _t(1.0), "clip_coef": 0.2},
             expected={"approx_kl": 0.094535, "clipfrac": 1.0}, observe=_clip_stats,
             hint="approx_kl = mean((r − 1) − log r) (k3, never negative); clipfrac = mean(|r − 1| > ε)."),
        Case("stats at log r = ln 0.5: approx_kl = 0.193147",
             {"logp": _t(math.log(0.2)), "logp_old": _t(math.log(0.4)), "advantages": _t(1.0), "clip_coef": 0.2},
             expected={"approx_kl": 0.193147, "clipfrac": 1.0}, observe=_clip_stats,
             hint="k3 = (r − 1) − log r with log r = logp − logp_old."),
        Case("stats of r = [1, 1.1, 1.5, 0.5]: clipfrac 0.5", _ratio_inputs((1.0, 1.1, 1.5, 0.5), (1, -1, 1, -1)),
             expected={"approx_kl": _k3(1.0, 1.1, 1.5, 0.5), "clipfrac": 0.5}, observe=_clip_stats,
             hint="clipfrac counts |r − 1| > ε whatever the sign of Â (CleanRL's definition)."),
        Case("first minibatch: logp == logp_old gives approx_kl 0 and clipfrac 0",
             {"logp": logp_old.clone(), "logp_old": logp_old, "advantages": batch["advantages"], "clip_coef": 0.2},
             expected={"approx_kl": 0.0, "clipfrac": 0.0}, observe=_clip_stats,
             hint="when the policy has not changed yet, r = 1 exactly."),
    ]
    return cases


def _clip_range_cases() -> list[Case]:
    """Ratios just inside and just outside [1 − ε, 1 + ε] for each sign of Â, exactly on it, and ε = 0.1."""
    near = (1.19, 1.21, 0.81, 0.79)
    strict = ("clipfrac = mean(|r − 1| > ε) with a strict >, whatever the sign of Â (CleanRL's definition, not "
              "'where the clip binds'): 1.21 and 0.79 count, 1.19 and 0.81 do not")
    return [
        Case("just inside/outside the clip range, Â = +1: r = [1.19, 1.21, 0.81, 0.79], ε = 0.2, clipfrac 0.5",
             _ratio_inputs(near, (1, 1, 1, 1)),
             expected=_clip_expected(near, (1.19, 1.2, 0.81, 0.79), (1, 0, 1, 1)), observe=_clip_observe,
             hint=f"with Â > 0 only r > 1 + ε is capped (objective 1.2, gradient 0); r = 0.79 keeps r·Â and its "
                  f"gradient (the min is pessimistic). {strict}."),
        Case("just inside/outside the clip range, Â = −1: r = [1.19, 1.21, 0.81, 0.79], ε = 0.2, clipfrac 0.5",
             _ratio_inputs(near, (-1, -1, -1, -1)),
             expected=_clip_expected(near, (-1.19, -1.21, -0.81, -0.8), (-1, -1, -1, 0)), observe=_clip_observe,
             hint=f"with Â < 0 only r < 1 − ε is capped (objective −0.8, gradient 0); r = 1.21 is counted in "
                  f"full. {strict}."),
        Case("r exactly on the clip boundary: ε = 0.25, r = 1.25 and 0.75 exactly, clipfrac 0",
             _ratio_inputs((1.25, 0.75), (1, -1), clip_coef=0.25, logp_old=0.0),
             expected={"approx_kl": _k3(1.25, 0.75), "clipfrac": 0.0}, observe=_clip_stats,
             hint="|r − 1| = ε is on the boundary, not outside it: count |r − 1| > ε, never >= ε."),
        Case("ε = 0.1 (not 0.2): r = [1.15, 1.05, 0.95, 0.85], Â = [+1, +1, −1, −1], loss −0.075, clipfrac 0.5",
             _ratio_inputs((1.15, 1.05, 0.95, 0.85), (1, 1, -1, -1), clip_coef=0.1),
             expected=_clip_expected((1.15, 1.05, 0.95, 0.85), (1.1, 1.05, -0.95, -0.9), (0, 1, -1, 0), 0.1),
             observe=_clip_observe,
             hint="use the clip_coef argument everywhere, in the clamp and in clipfrac; never a hard-coded 0.2."),
    ]


# ---------------------------------------------------------------------------------------------
# 03.3 ppo_value_loss
# ---------------------------------------------------------------------------------------------

_value_loss_and_grads = observers.gradients(wrt=["values"], constant=["values_old", "returns"], name="loss")


def _value_observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """The loss and d loss / d values (0 for values_old and returns), then one plain call on the case's own
    inputs so the checker sees an input changed in place (the gradient observer works on copies)."""
    observed = _value_loss_and_grads(fn, inputs)
    fn(**inputs)
    return observed


def _value_expected(loss: float, *grads: float) -> dict[str, Any]:
    return {"loss": torch.tensor(loss, dtype=torch.float32), "d loss / d values": _t(*grads)}


def _value_cases() -> list[Case]:
    def one(v_new: float, clip: float | None) -> dict[str, Any]:
        return {"values": _t(v_new), "values_old": _t(1.0), "returns": _t(3.0), "clip_coef": clip}

    g = torch.Generator().manual_seed(5)
    values_old = torch.randn(12, generator=g)
    batch = {"values": values_old + 0.5 * torch.randn(12, generator=g), "values_old": values_old,
             "returns": values_old + torch.randn(12, generator=g)}
    hint_clip = ("V_clip = V_old + clip(V − V_old, −ε, ε); loss = ½·mean(max((V − R)², (V_clip − R)²)); "
                 "the max (pessimistic) picks the larger error.")
    constants = ("values_old and returns are targets: detach them, so they get exactly 0 gradient and only "
                 "values is trained.")
    near = {"values": _t(1.19, 1.21, 0.81, 0.79), "values_old": _t(1, 1, 1, 1), "returns": _t(3, 3, -1, -1),
            "clip_coef": 0.2}
    return [
        Case("V_old = 1, R = 3, ε = 0.2, V = 2.0: clipped branch, loss 1.62 and zero gradient",
             one(2.0, 0.2), expected=_value_expected(1.62, 0.0), observe=_value_observe, hint=hint_clip),
        Case("V_old = 1, R = 3, ε = 0.2, V = 0.5: unclipped branch, loss 3.125",
             one(0.5, 0.2), expected=_value_expected(3.125, -2.5), observe=_value_observe, hint=hint_clip),
        Case("V_old = 1, R = 3, ε = 0.2, V = 1.1: inside the clip range, loss 1.805",
             one(1.1, 0.2), expected=_value_expected(1.805, -1.9), observe=_value_observe, hint=hint_clip),
        Case("no clipping (clip_coef=None), V = 2, R = 3: loss ½(V − R)² = 0.5, gradient −1",
             one(2.0, None), expected=_value_expected(0.5, -1.0), observe=_value_observe,
             hint="clip_coef=None means the plain ½·mean((V − R)²)."),
        Case("random batch of 12, clipped: d loss / d values, and exactly 0 for values_old and returns",
             dict(batch, clip_coef=0.2), observe=_value_observe,
             hint="take the max per sample, then the mean over the batch; " + constants),
        Case("random batch of 12, unclipped: d loss / d values, and exactly 0 for returns",
             dict(batch, clip_coef=None), observe=_value_observe,
             hint="½·mean((V − R)²), the mean over the batch; " + constants),
        Case("just inside/outside the clip range: V − V_old = +0.19, +0.21 (R = 3) and −0.19, −0.21 (R = −1), "
             "ε = 0.2, loss 1.629025", near, expected=_value_expected(1.629025, -0.4525, 0.0, 0.4525, 0.0),
             observe=_value_observe,
             hint="clip V − V_old on both sides, to [−ε, ε]: a step of 0.21 toward R (up or down) takes the clipped "
                  "branch (gradient 0), a step of 0.19 stays unclipped (gradient (V − R)/B)."),
        Case("ε = 0.5 (not 0.2): V_old = 1, R = 3, V = [1.4, 1.6]: loss 1.2025, gradient [−0.8, 0]",
             {"values": _t(1.4, 1.6), "values_old": _t(1, 1), "returns": _t(3, 3), "clip_coef": 0.5},
             expected=_value_expected(1.2025, -0.8, 0.0), observe=_value_observe,
             hint="clip with the clip_coef argument, never a hard-coded 0.2: V = 1.4 is inside ±0.5 of V_old."),
    ]


# ---------------------------------------------------------------------------------------------
# 03.4 normalize_advantages
# ---------------------------------------------------------------------------------------------


def _normalize_cases() -> list[Case]:
    g = torch.Generator().manual_seed(6)
    return [
        Case("[1, 2, 3, 4] → [−1.1619, −0.3873, 0.3873, 1.1619]", {"advantages": _t(1, 2, 3, 4)},
             expected=_t(-1.1619, -0.3873, 0.3873, 1.1619),
             hint="(Â − mean) / (std + 1e-8) with torch's default (unbiased) std; build a new tensor, "
                  "never `advantages -= mean` (that changes the caller's buffer)."),
        Case("a random minibatch of 64", {"advantages": 3.0 + 2.0 * torch.randn(64, generator=g)},
             hint="normalise over the whole minibatch: one mean and one std."),
        Case("all advantages equal: zeros, not NaN", {"advantages": _t(2, 2, 2)}, expected=_t(0, 0, 0),
             hint="add eps = 1e-8 to the std so 0 / 0 cannot happen."),
        Case("the smallest minibatch, M = 2: [1, 3] → [−0.70711, 0.70711]", {"advantages": _t(1, 3)},
             expected=_t(-0.70711, 0.70711),
             hint="two samples are enough: the unbiased std of [1, 3] is √2 (divide by M − 1 = 1)."),
        Case("eps = 0.5 is used: [1, 2, 3, 4] → (Â − 2.5) / (1.29099 + 0.5)",
             {"advantages": _t(1, 2, 3, 4), "eps": 0.5}, expected=_t(-0.837524, -0.279175, 0.279175, 0.837524),
             hint="divide by std + eps with the eps argument, not a hard-coded 1e-8."),
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
