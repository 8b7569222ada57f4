"""Exercises of lesson 02 (TRPO): the KL, Fisher-vector products, CG, the scaled step, the line search.

Hand-computed cases come from the TRPO section of the course's algorithm notes (the p = (0.7, 0.3)
bias-only example, the 2×2 CG system); the bug catalogue there says what each case must catch:
a KL with neither side detached, no damping, a wrong sign or scale of the step, a CG bug, a line
search that checks only the KL or never rolls back.

Further cases come from an audit with wrong implementations: a single state ``(A,)`` and a batch of
one state; gradients that are detached, leak into the old side or turn NaN where a probability is
exactly 0 (the value being fine); every diagnostic the line search returns, and whether the policy
is still trainable after it; inputs changed in place. Only the line search may move its policy,
and its cases that pass the policy as an input say so with ``may_modify``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from course_lib.grading import observers
from course_lib.grading.checker import Case, Exercise
from course_lib.grading.compare import Problem
from course_lib.rl import trpo

_NEVER = -1000.0
"""A logit whose softmax probability underflows to exactly 0 (in float32 and float64): an action never taken."""


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_policy(obs_dim: int, n_actions: int, seed: int) -> nn.Linear:
    """A linear-softmax policy, logits = W s + b, with seeded weights."""
    torch.manual_seed(seed)
    policy = nn.Linear(obs_dim, n_actions)
    with torch.no_grad():
        policy.weight.normal_(0.0, 0.5, generator=_seeded(seed))
        policy.bias.normal_(0.0, 0.5, generator=_seeded(seed + 1))
    return policy


class BiasOnlyPolicy(nn.Module):
    """The same logits in every state: parameters θ = the logits themselves, shape ``(A,)``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(obs.shape[0], -1)  # (B, A)


class MatVec:
    """The product v ↦ A v of a fixed matrix, given to CG as a function (CG never sees A)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.calls = 0

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.matrix @ vector

    def __eq__(self, other: object) -> bool:  # the checker compares inputs before and after a call
        return isinstance(other, MatVec) and torch.equal(self.matrix, other.matrix)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        rows = self.matrix.tolist()
        if self.matrix.numel() <= 4:
            return f"v ↦ A v with A = {[[round(x, 5) for x in row] for row in rows]}"
        return f"v ↦ A v with a {len(rows)}×{len(rows)} symmetric positive-definite A"


def _random_spd(size: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    m = torch.randn(size, size, generator=_seeded(seed), dtype=dtype)
    return m @ m.T / size + 0.5 * torch.eye(size, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# 02.1 categorical_kl
# ---------------------------------------------------------------------------------------------


_KL_GRADIENTS = observers.gradients(wrt=["new_logits"], constant=["old_logits"], name="KL")
"""The KL and d(Σ w·KL)/d(new_logits), which must exist, and d/d(old_logits), which must be 0."""


def _kl_curvature(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Value, gradient and Hessian-vector product of mean KL(z ‖ z) at equal logits z."""
    z = inputs["logits"].clone().requires_grad_(True)
    kl = fn(old_logits=z, new_logits=z)
    if not isinstance(kl, torch.Tensor):
        return {"value": torch.tensor(float("nan"))}
    kl = kl.mean()
    nothing = torch.zeros_like(z)
    if not kl.requires_grad:
        return {"value": kl.detach(), "gradient": nothing, "Hessian-vector product": nothing}
    (grad,) = torch.autograd.grad(kl, z, create_graph=True, allow_unused=True)
    if grad is None or not grad.requires_grad:
        return {"value": kl.detach(), "gradient": nothing if grad is None else grad.detach(),
                "Hessian-vector product": nothing}
    (hvp,) = torch.autograd.grad((grad * inputs["vector"]).sum(), z, allow_unused=True)
    return {"value": kl.detach(), "gradient": grad.detach(),
            "Hessian-vector product": nothing if hvp is None else hvp}


def _analytic_logit_fisher(logits: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """(diag(p) − p pᵀ) v / B for each row: the Hessian of the mean KL wrt the logits."""
    p = torch.softmax(logits, dim=-1)  # (B, A)
    pv = (p * vector).sum(-1, keepdim=True)  # (B, 1)
    return (p * vector - p * pv) / logits.shape[0]


def _kl_cases() -> list[Case]:
    g = _seeded(20)
    old, new = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    z, v = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    one_old, one_new = torch.randn(4, generator=g), torch.randn(4, generator=g)
    p07 = torch.log(torch.tensor([[0.7, 0.3]]))
    never_old = torch.tensor([[0.0, 1.0, _NEVER], [0.2, _NEVER, 0.1]])
    never_new = torch.tensor([[0.5, 0.0, _NEVER], [-0.3, _NEVER, 0.4]])
    z_never = torch.cat([z[:, :2], torch.full((4, 1), _NEVER)], dim=1)  # action 2 has probability 0
    hint_log = ("torch.log(torch.softmax(...)) is -inf where a probability underflows to 0; masking the "
                "0 * -inf term (torch.where, nansum) fixes the value, but the backward pass still multiplies "
                "0 by 1/0 = inf and gives NaN. Use F.log_softmax for both sides.")
    return [
        Case("hand-computed: old (0.5, 0.5), new (0.9, 0.1)",
             {"old_logits": torch.zeros(1, 2), "new_logits": torch.log(torch.tensor([[0.9, 0.1]]))},
             expected=torch.tensor([0.5108256]),
             hint="KL(old ‖ new) = Σ_a p_old(a) (log p_old(a) − log p_new(a)), weighted by the OLD "
                  "probabilities (0.368 would be the reverse direction KL(new ‖ old))."),
        Case("the lesson's example: p_old = (0.7, 0.3), logits moved by ±0.13868",
             {"old_logits": p07, "new_logits": p07 + torch.tensor([[0.13868, -0.13868]])},
             expected=torch.tensor([0.0077671]), hint="compute it analytically from both softmaxes."),
        Case("random batch (5, 3), one KL per state", {"old_logits": old, "new_logits": new},
             hint="sum over the action dimension only (dim=-1); do not average over states here."),
        Case("a single state, shape (A,): the KL is a 0-dim tensor", {"old_logits": one_old, "new_logits": one_new},
             hint="reduce over dim=-1 only; do not loop over or index the first dimension, which is the action "
                  "dimension when there is no batch."),
        Case("language-model shape (2, 4, 6)",
             {"old_logits": torch.randn(2, 4, 6, generator=g), "new_logits": torch.randn(2, 4, 6, generator=g)},
             hint="reduce over dim=-1 so any leading shape works."),
        Case("an action the old policy never takes contributes 0, not NaN",
             {"old_logits": torch.tensor([[0.0, -1000.0]]), "new_logits": torch.zeros(1, 2)},
             expected=torch.tensor([0.6931472]),
             hint="log(softmax(x)) is -inf where softmax underflows and 0 * -inf = NaN; use log_softmax."),
        Case("the gradient reaches the new logits, and no gradient flows into the old logits",
             {"old_logits": old, "new_logits": new}, observe=_KL_GRADIENTS,
             hint="detach the old side only: `old_logits.detach()`, the fixed data-collecting policy. Keep the "
                  "new side in the graph (no .detach(), .item() or torch.no_grad() on it)."),
        Case("an action neither policy takes (probability 0): finite gradient wrt the new logits, not NaN",
             {"old_logits": never_old, "new_logits": never_new}, observe=_KL_GRADIENTS, hint=hint_log),
        Case("KL(z ‖ z): value 0 and gradient 0, but its Hessian is the Fisher matrix",
             {"logits": z, "vector": v}, observe=_kl_curvature,
             expected={"value": torch.tensor(0.0), "gradient": torch.zeros(4, 3),
                       "Hessian-vector product": _analytic_logit_fisher(z, v)},
             hint="detach exactly one side (the old one). With neither side detached KL(z ‖ z) is 0 "
                  "for every z, so its Hessian is 0 too and TRPO's trust region disappears."),
        Case("KL(z ‖ z) with an action of probability 0: the Hessian is still the finite Fisher matrix",
             {"logits": z_never, "vector": v}, observe=_kl_curvature,
             expected={"value": torch.tensor(0.0), "gradient": torch.zeros(4, 3),
                       "Hessian-vector product": _analytic_logit_fisher(z_never, v)},
             hint=hint_log + " The second backward pass (the Hessian) must stay finite too."),
    ]


# ---------------------------------------------------------------------------------------------
# 02.2 fisher_vector_product
# ---------------------------------------------------------------------------------------------


def _analytic_linear_fisher(policy: nn.Linear, obs: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """F v = mean_s Jᵀ (diag(p) − p pᵀ) J v for logits = W s + b, parameters (W row-major, b)."""
    n_actions, obs_dim = policy.weight.shape
    with torch.no_grad():
        p = torch.softmax(policy(obs), dim=-1)  # (B, A)
        v_w, v_b = vector[: n_actions * obs_dim].reshape(n_actions, obs_dim), vector[n_actions * obs_dim:]
        jv = obs @ v_w.T + v_b  # (B, A): the change of the logits along v
        u = p * jv - p * (p * jv).sum(-1, keepdim=True)  # (B, A)
        f_w = u.T @ obs / obs.shape[0]  # (A, D)
        f_b = u.mean(0)  # (A,)
    return torch.cat([f_w.reshape(-1), f_b])


def _fvp_twice(fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """Call twice with the same inputs: both answers must agree (nothing accumulates in .grad)."""
    first = fn(**inputs)
    return fn(**inputs) if isinstance(first, torch.Tensor) else first


def _fvp_symmetry(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, bool]:
    """uᵀ(F v) = vᵀ(F u) and vᵀ F v ≥ 0: F is symmetric positive semi-definite."""
    u, v = inputs["u"], inputs["v"]
    fu = fn(policy=inputs["policy"], obs=inputs["obs"], vector=u, damping=0.0)
    fv = fn(policy=inputs["policy"], obs=inputs["obs"], vector=v, damping=0.0)
    if not isinstance(fu, torch.Tensor) or not isinstance(fv, torch.Tensor) or fu.shape != u.shape:
        return {"returns a (P,) tensor": False}
    sym = math.isclose(float(u @ fv), float(v @ fu), rel_tol=1e-4, abs_tol=1e-6)
    return {"returns a (P,) tensor": True, "symmetric: uᵀFv = vᵀFu": sym,
            "positive semi-definite: vᵀFv ≥ 0": float(v @ fv) >= -1e-7 and float(u @ fu) >= -1e-7,
            "nonzero": float(fv.abs().max()) > 1e-6}


def _fvp_cases() -> list[Case]:
    g = _seeded(21)
    linear = _linear_policy(3, 3, seed=5)
    obs = torch.randn(6, 3, generator=g)
    p_lin = sum(p.numel() for p in linear.parameters())
    v = torch.randn(p_lin, generator=g)
    torch.manual_seed(7)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    mlp_obs = torch.randn(10, 4, generator=g)
    p_mlp = sum(p.numel() for p in mlp.parameters())
    bias_only = BiasOnlyPolicy(torch.log(torch.tensor([0.7, 0.3])))
    four_states = torch.zeros(4, 1)
    one_state = torch.randn(1, 3, generator=g)
    v_one = torch.randn(p_lin, generator=g)
    never = BiasOnlyPolicy(torch.tensor([0.0, 0.0, _NEVER]))  # p = (0.5, 0.5, 0)
    hint_detach = ("build kl = mean KL(π_old ‖ π) with the old side DETACHED (categorical_kl does it), "
                   "take g = grad(kl, params, create_graph=True), then F v = grad(g · v, params).")
    return [
        Case("the lesson's example: p = (0.7, 0.3), bias-only, v = (1, 0), damping 0.1",
             {"policy": bias_only, "obs": four_states, "vector": torch.tensor([1.0, 0.0]), "damping": 0.1},
             expected=torch.tensor([0.31, -0.21]),
             hint="F = [[0.21, -0.21], [-0.21, 0.21]], so (F + 0.1 I) v = (0.31, -0.21). " + hint_detach),
        Case("the null direction v = (1, 1): only the damping term is left",
             {"policy": bias_only, "obs": four_states, "vector": torch.tensor([1.0, 1.0]), "damping": 0.1},
             expected=torch.tensor([0.1, 0.1]),
             hint="adding the same constant to every logit changes nothing, F v = 0; add damping * vector."),
        Case("linear-softmax policy: analytic Fisher mean_s Jᵀ(diag p − p pᵀ)J v, plus damping",
             {"policy": linear, "obs": obs, "vector": v, "damping": 0.1},
             expected=_analytic_linear_fisher(linear, obs, v) + 0.1 * v, atol=1e-6, rtol=1e-5,
             hint="average the KL over states (mean, not sum). " + hint_detach),
        Case("linear-softmax policy without damping: F v alone, which must not be 0",
             {"policy": linear, "obs": obs, "vector": v, "damping": 0.0},
             expected=_analytic_linear_fisher(linear, obs, v), atol=1e-6, rtol=1e-5,
             hint=hint_detach),
        Case("a batch of one state (B = 1), linear-softmax policy",
             {"policy": linear, "obs": one_state, "vector": v_one, "damping": 0.1},
             expected=_analytic_linear_fisher(linear, one_state, v_one) + 0.1 * v_one, atol=1e-6, rtol=1e-5,
             hint="keep the batch dimension: no .squeeze() of the logits (it turns (1, A) into (A,)); reduce "
                  "with dim=-1 over actions and take the mean over states."),
        Case("a policy that never takes one action (p = (0.5, 0.5, 0)): F v is finite, not NaN",
             {"policy": never, "obs": four_states, "vector": torch.tensor([1.0, 0.0, 1.0]), "damping": 0.1},
             expected=torch.tensor([0.35, -0.25, 0.1]),
             hint="F = diag(p) − p pᵀ = [[0.25, -0.25, 0], [-0.25, 0.25, 0], [0, 0, 0]]. Write the KL with "
                  "F.log_softmax on both sides: log(softmax) gives 0 · (−inf) = NaN in the value and in both "
                  "backward passes."),
        Case("a small MLP policy (4 → 8 → 2)", {"policy": mlp, "obs": mlp_obs,
             "vector": torch.randn(p_mlp, generator=g), "damping": 0.05},
             hint="flatten the gradients of all parameters in the order of policy.parameters()."),
        Case("called twice, the same answer (nothing accumulates in .grad)",
             {"policy": mlp, "obs": mlp_obs, "vector": torch.randn(p_mlp, generator=g), "damping": 0.1},
             observe=_fvp_twice,
             hint="use torch.autograd.grad, not .backward(), which adds into p.grad on every call."),
        Case("F is symmetric positive semi-definite and nonzero",
             {"policy": mlp, "obs": mlp_obs, "u": torch.randn(p_mlp, generator=g),
              "v": torch.randn(p_mlp, generator=g)}, observe=_fvp_symmetry,
             expected={"returns a (P,) tensor": True, "symmetric: uᵀFv = vᵀFu": True,
                       "positive semi-definite: vᵀFv ≥ 0": True, "nonzero": True},
             hint="differentiate the KL (not the surrogate) twice; " + hint_detach),
    ]


# ---------------------------------------------------------------------------------------------
# 02.3 conjugate_gradient
# ---------------------------------------------------------------------------------------------


def _cg_product_count(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The solution, and whether CG used at most one product per iteration."""
    matvec = MatVec(inputs["matrix"])
    x = fn(matvec=matvec, b=inputs["b"], iterations=inputs["iterations"])
    return {"x": x, "products used ≤ iterations": matvec.calls <= inputs["iterations"]}


def _cg_cases() -> list[Case]:
    a2 = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b2 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    a6, a5, a8 = _random_spd(6, 22), _random_spd(5, 23, torch.float32), _random_spd(8, 24)
    b6 = torch.randn(6, generator=_seeded(25), dtype=torch.float64)
    b5 = torch.randn(5, generator=_seeded(26))
    b8 = torch.randn(8, generator=_seeded(27), dtype=torch.float64)
    hint_loop = ("x0 = 0, r0 = b, p0 = r0; each step α = rᵀr / pᵀAp, x += α p, r −= α A p, "
                 "β = r_newᵀr_new / r_oldᵀr_old, p = r + β p.")
    tight = {"atol": 1e-8, "rtol": 1e-7}
    return [
        Case("one iteration on A = [[4, 1], [1, 3]], b = [1, 2]",
             {"matvec": MatVec(a2), "b": b2, "iterations": 1}, expected=torch.tensor([0.25, 0.5], dtype=torch.float64),
             hint="start at x0 = 0 with r0 = b (if x0 ≠ 0, r0 must be b − A x0). " + hint_loop, **tight),
        Case("two iterations solve the 2×2 system exactly",
             {"matvec": MatVec(a2), "b": b2, "iterations": 2},
             expected=torch.tensor([1 / 11, 7 / 11], dtype=torch.float64), hint=hint_loop, **tight),
        Case("ten iterations on the 2×2 system: stop early once rᵀr < tol",
             {"matvec": MatVec(a2), "b": b2, "iterations": 10},
             expected=torch.tensor([1 / 11, 7 / 11], dtype=torch.float64),
             hint="after 2 iterations r = 0 and β = 0/0; break as soon as rᵀr < tol.", **tight),
        Case("random 6×6 SPD system, 6 iterations, equals torch.linalg.solve",
             {"matvec": MatVec(a6), "b": b6, "iterations": 6}, expected=torch.linalg.solve(a6, b6),
             hint="the residual must shrink: r_new = r − α A p, not r + α A p. " + hint_loop,
             atol=1e-7, rtol=1e-6),
        Case("float32 5×5 system: the result keeps the dtype of b",
             {"matvec": MatVec(a5), "b": b5, "iterations": 20}, expected=torch.linalg.solve(a5, b5),
             hint="build x with torch.zeros_like(b)."),
        Case("b = 0 gives x = 0, not NaN", {"matvec": MatVec(a2), "b": torch.zeros(2, dtype=torch.float64),
             "iterations": 10}, expected=torch.zeros(2, dtype=torch.float64),
             hint="test rᵀr < tol before dividing by pᵀAp (with b = 0 both are 0)."),
        Case("only products with A are used, one per iteration (A is never built)",
             {"matrix": a8, "b": b8, "iterations": 5}, observe=_cg_product_count,
             hint="call matvec(p) once per iteration and reuse the result for α and for r."),
    ]


# ---------------------------------------------------------------------------------------------
# 02.4 natural_gradient_step
# ---------------------------------------------------------------------------------------------


def _step_profile(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The step, its quadratic KL ½ sᵀAs and whether it points uphill (gᵀs > 0)."""
    matvec = MatVec(inputs["matrix"])
    step = fn(grad=inputs["grad"], matvec=matvec, max_kl=inputs["max_kl"], solver=trpo.conjugate_gradient)
    if not isinstance(step, torch.Tensor) or step.shape != inputs["grad"].shape:
        return {"step": step}
    return {"points uphill: gᵀs > 0": bool(inputs["grad"] @ step > 0),
            "quadratic KL ½ sᵀ(F + λI)s": float(0.5 * step @ (inputs["matrix"] @ step)), "step": step}


def _step_cases() -> list[Case]:
    f = torch.tensor([[0.21, -0.21], [-0.21, 0.21]])
    a6 = _random_spd(6, 28)
    g6 = torch.randn(6, generator=_seeded(29), dtype=torch.float64)
    hint = "x = solver(matvec, grad), then s = sqrt(2 δ / (x · matvec(x))) · x."
    return [
        Case("the lesson's example: F = [[0.21, -0.21], [-0.21, 0.21]] + 0.1 I, g = (0.21, -0.21), δ = 0.01",
             {"grad": torch.tensor([0.21, -0.21]), "matvec": MatVec(f + 0.1 * torch.eye(2)), "max_kl": 0.01,
              "solver": trpo.conjugate_gradient}, expected=torch.tensor([0.13868, -0.13868]),
             hint="x = (0.40385, -0.40385) and the scale is sqrt(2 · 0.01 / xᵀ(F + λI)x). " + hint),
        Case("random 6×6 damped Fisher, δ = 0.01: ½ sᵀ(F + λI)s = δ and gᵀs > 0",
             {"matrix": a6, "grad": g6, "max_kl": 0.01}, observe=_step_profile,
             hint="the step goes along +x (uphill on the surrogate), scaled so the quadratic KL model "
                  "is exactly δ. " + hint),
        Case("the same with δ = 0.05: the step grows like sqrt(δ)",
             {"matrix": a6, "grad": g6, "max_kl": 0.05}, observe=_step_profile, hint=hint),
    ]


# ---------------------------------------------------------------------------------------------
# 02.5 line_search
# ---------------------------------------------------------------------------------------------


class _Point(nn.Module):
    """A 'policy' whose parameters are one point θ ``(2,)``, to test a line search exactly."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())


class _ToyEvaluate:
    """``evaluate()`` of a toy search: (L(θ), KL(θ) = ½‖θ − θ_old‖²) at the point's current θ.

    The surrogate is linear, L = θ·(1, 0.5), or concave, L = θ₀ − θ₀². The object holds the point it
    evaluates, so the deep copy the checker makes of a case's inputs evaluates the copied point.
    """

    def __init__(self, point: _Point, surrogate: str) -> None:
        self.point = point
        self.theta_old = point.theta.detach().clone()
        self.surrogate = surrogate

    def __call__(self) -> tuple[float, float]:
        with torch.no_grad():
            theta = self.point.theta
            if self.surrogate == "concave":
                value = theta[0] - theta[0] ** 2
            else:
                value = theta @ torch.tensor([1.0, 0.5])
            return float(value), float(0.5 * ((theta - self.theta_old) ** 2).sum())

    def __eq__(self, other: object) -> bool:  # the checker compares inputs before and after a call
        return (isinstance(other, _ToyEvaluate) and other.surrogate == self.surrogate
                and torch.equal(other.theta_old, self.theta_old))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        surrogate = "θ₀ − θ₀²" if self.surrogate == "concave" else "θ·(1, 0.5)"
        return f"(L = {surrogate}, KL = ½‖θ − θ_old‖²) at θ_old = {[round(x, 5) for x in self.theta_old.tolist()]}"


def _toy(theta_old: list[float], full_step: list[float], max_kl: float, surrogate: str = "linear",
         shrink: float = 0.8, max_backtracks: int = 10) -> dict[str, Any]:
    """The inputs of a toy search: a :class:`_Point` policy at θ_old and its ``evaluate``."""
    point = _Point(torch.tensor(theta_old))
    return {"policy": point, "full_step": torch.tensor(full_step), "evaluate": _ToyEvaluate(point, surrogate),
            "max_kl": max_kl, "shrink": shrink, "max_backtracks": max_backtracks}


_SEARCH_KEYS = ("accepted", "backtracks", "surrogate_improvement", "kl")


def _search_outcome(policy: nn.Module, result: Any) -> dict[str, Any] | Problem:
    """Where the search left the policy, whether it can still be trained, and every diagnostic returned."""
    if not isinstance(result, Mapping):
        return Problem(f"expected a dict with the keys {list(_SEARCH_KEYS)}, got {type(result).__name__}")
    missing = [key for key in _SEARCH_KEYS if key not in result]
    if missing:
        return Problem(f"the returned dict is missing the key(s) {missing}")
    params = list(policy.parameters())
    return {"parameters after the search": parameters_to_vector(params).detach().clone(),
            "parameters still require grad": all(p.requires_grad for p in params),
            **{key: result[key] for key in _SEARCH_KEYS}}


def _kept(theta: list[float], accepted: bool, backtracks: int, improvement: float, kl: float) -> dict[str, Any]:
    """The expected outcome of a toy search (see :func:`_search_outcome`)."""
    return {"parameters after the search": torch.tensor(theta), "parameters still require grad": True,
            "accepted": accepted, "backtracks": backtracks, "surrogate_improvement": improvement, "kl": kl}


def _search_in_place(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any] | Problem:
    """The search run on the policy given as an input, which it must move (the case's ``may_modify``)."""
    return _search_outcome(inputs["policy"], fn(**inputs))


def _policy_search(fn: Callable[..., Any], inputs: dict[str, Any]) -> dict[str, Any] | Problem:
    """A real linear-softmax policy and batch; the full step is TRPO's step for δ = 0.01."""
    g = _seeded(inputs["seed"])
    policy = _linear_policy(4, 3, seed=inputs["seed"])
    obs = torch.randn(32, 4, generator=g)
    actions = torch.randint(0, 3, (32,), generator=g)
    advantages = torch.randn(32, generator=g)
    params = list(policy.parameters())
    with torch.no_grad():
        old_logits = policy(obs)
    logp_old = torch.log_softmax(old_logits, -1).gather(-1, actions[:, None]).squeeze(-1)
    logp = torch.log_softmax(policy(obs), -1).gather(-1, actions[:, None]).squeeze(-1)
    grad = trpo.flat_grad(trpo.surrogate_objective(logp, logp_old, advantages), params)
    step = trpo.natural_gradient_step(grad, lambda v: trpo.fisher_vector_product(policy, obs, v, 0.1), 0.01)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            logits = policy(obs)
            new_logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
            return (float(trpo.surrogate_objective(new_logp, logp_old, advantages)),
                    float(trpo.categorical_kl(old_logits, logits).mean()))

    result = fn(policy=policy, full_step=step.detach(), evaluate=evaluate, max_kl=inputs["max_kl"],
                shrink=0.8, max_backtracks=10)
    return _search_outcome(policy, result)


def _search_cases() -> list[Case]:
    hint = ("for j in 0..max_backtracks−1 set θ = θ_old + shrink**j · full_step and accept when "
            "KL ≤ max_kl AND the surrogate beats its value at θ_old.")
    rollback = "when no step passes, write θ_old back into the policy before returning."
    in_place = {"observe": _search_in_place, "may_modify": ("policy",)}
    return [
        Case("the full step passes both checks: keep it (0 backtracks)", _toy([0.5, -0.2], [0.1, 0.05], 0.01),
             expected=_kept([0.6, -0.15], True, 0, 0.125, 0.00625),
             hint="move from θ_old (not from 0): θ = θ_old + full_step, and leave the parameters trainable "
                  "(requires_grad stays True). " + hint, **in_place),
        Case("the full step breaks the trust region: shrink 4 times (0.8⁴ · 0.3 = 0.12288)",
             _toy([0.5, -0.2], [0.3, 0.0], 0.01), expected=_kept([0.62288, -0.2], True, 4, 0.12288, 0.0075497472),
             hint="backtracks is the j of the accepted step, and surrogate_improvement = L(θ_j) − L(θ_old) and kl "
                  "are those of that step, not of the full step. Leave full_step as it is (no `full_step *= "
                  "shrink`). " + hint, **in_place),
        Case("the surrogate falls for long steps (θ₀ − θ₀², step 1.5): shrink until it improves",
             _toy([0.0, 0.0], [1.5, 0.0], 10.0, "concave"), expected=_kept([0.96, 0.0], True, 2, 0.0384, 0.4608),
             hint="check the improvement too, not only the KL: L(θ_j) > L(θ_old). " + hint, **in_place),
        Case("shrink 0.5 and 3 tries (baselines' settings): the last try, θ_old + 0.5² · full_step, is kept",
             _toy([0.5, -0.2], [0.3, 0.0], 0.01, shrink=0.5, max_backtracks=3),
             expected=_kept([0.575, -0.2], True, 2, 0.075, 0.0028125),
             hint="use the shrink and max_backtracks arguments, not 0.8 and 10. " + hint, **in_place),
        Case("no step improves the surrogate (a descent direction): roll back",
             _toy([0.5, -0.2], [-0.1, 0.0], 1.0), atol=0.0, rtol=0.0, expected=_kept([0.5, -0.2], False, 10, 0.0, 0.0),
             hint=rollback + " A step that lowers L must never be kept. After a rollback report "
                  "surrogate_improvement = kl = 0.0 (those of θ_old), not those of the last step tried.", **in_place),
        Case("a real policy with max_kl = 1e-12: every step fails, parameters unchanged bit for bit",
             {"seed": 0, "max_kl": 1e-12}, observe=_policy_search, atol=0.0, rtol=0.0,
             hint=rollback + " Save θ_old = parameters_to_vector(...).clone() first."),
        Case("a real policy with max_kl = 0.01: the TRPO step is accepted",
             {"seed": 1, "max_kl": 0.01}, observe=_policy_search, hint=hint),
    ]


EXERCISES = [
    Exercise("02.1", "categorical_kl", "analytic KL(π_old ‖ π_new) of categorical policies, old side detached",
             trpo.categorical_kl, _kl_cases),
    Exercise("02.2", "fisher_vector_product", "(F + λI)·v by double backprop through the mean KL",
             trpo.fisher_vector_product, _fvp_cases),
    Exercise("02.3", "conjugate_gradient", "solve A x = b from matrix-vector products",
             trpo.conjugate_gradient, _cg_cases),
    Exercise("02.4", "natural_gradient_step", "the natural-gradient step scaled to the trust region",
             trpo.natural_gradient_step, _step_cases),
    Exercise("02.5", "line_search", "backtracking line search with a KL check, an improvement check and rollback",
             trpo.line_search, _search_cases),
]
