"""Trust Region Policy Optimization for categorical policies (lesson 02).

The pieces a learner writes in lesson 02, and a reference :func:`train` that uses them:

* :func:`surrogate_objective`: L(θ) = mean(ratio · Â), ratio = exp(logp − sg(logp_old)).
* :func:`categorical_kl`: the analytic KL(π_old ‖ π_θ) per state, with the old side detached.
* :func:`fisher_vector_product`: (F + λI)·v by double backprop through the mean KL; F is its Hessian.
* :func:`conjugate_gradient`: solves (F + λI) x = g from products alone (F is never built).
* :func:`natural_gradient_step`: s = sqrt(2δ / xᵀ(F + λI)x) · x, so the quadratic KL model equals δ.
* :func:`line_search`: backtracking on s with a KL check and an improvement check, and a rollback
  to θ_old when no step passes.

Sources: Schulman et al. 2015; Spinning Up ``spinup/algos/tf1/trpo/trpo.py`` (CG, damping, 0.8^j
backtracking); SB3-contrib ``sb3_contrib/trpo/trpo.py`` (Hessian-vector product reused across CG
iterations, critic fitted after the policy step). The advantages come from
:func:`course_lib.estimators.gae`, derived in lesson 03.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from course_lib import distributions, estimators, training
from course_lib.rl import onpolicy, rollouts

__all__ = ["surrogate_objective", "categorical_kl", "flat_grad", "fisher_vector_product",
           "conjugate_gradient", "natural_gradient_step", "line_search", "fit_value",
           "TRPOConfig", "make_value_optimizer", "train"]

MatVec = Callable[[torch.Tensor], torch.Tensor]


def surrogate_objective(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """L(θ) = mean(π_θ(a|s)/π_old(a|s) · Â), to be *maximised*. Shapes: all ``(B,)`` → scalar.

    The ratio is computed in log space, exp(logp − logp_old), with the old log-probs and the
    advantages detached: at θ = θ_old the ratio is exactly 1 and ∇L is the policy gradient.
    """
    if logp.shape != logp_old.shape or logp.shape != advantages.shape or logp.numel() == 0:
        raise ValueError(f"logp, logp_old and advantages must be non-empty and of one shape, got "
                         f"{tuple(logp.shape)}, {tuple(logp_old.shape)}, {tuple(advantages.shape)}")
    ratio = torch.exp(logp - logp_old.detach())
    return (ratio * advantages.detach()).mean()


def categorical_kl(old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    """KL(π_old ‖ π_new) = Σ_a p_old(a) (log p_old(a) − log p_new(a)) for each state, analytically.

    Shapes: both ``(..., A)`` → ``(...)``. The old side is detached, so that
    ``categorical_kl(logits, logits)`` is 0 with gradient 0 but with the Fisher matrix as its
    Hessian (with neither side detached it would be identically 0 and so would its Hessian).
    """
    if old_logits.shape != new_logits.shape or old_logits.dim() < 1:
        raise ValueError(f"old_logits and new_logits must have one shape (..., A), got "
                         f"{tuple(old_logits.shape)} and {tuple(new_logits.shape)}")
    old_logp = F.log_softmax(old_logits.detach(), dim=-1)  # (..., A)
    new_logp = F.log_softmax(new_logits, dim=-1)
    return (old_logp.exp() * (old_logp - new_logp)).sum(dim=-1)


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False) -> torch.Tensor:
    """∂output/∂params as one flat vector ``(P,)``, in the order of ``parameters_to_vector``."""
    grads = torch.autograd.grad(output, list(params), create_graph=create_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)])


def fisher_vector_product(policy: nn.Module, obs: torch.Tensor, vector: torch.Tensor,
                          damping: float) -> torch.Tensor:
    """(F + λI)·v for the policy at its current parameters, by double backprop (no P×P matrix).

    Shapes: obs ``(B, D)``, vector ``(P,)`` → ``(P,)``. kl = mean_s KL(sg(π(·|s)) ‖ π(·|s)) is 0
    with zero gradient, but its Hessian is the Fisher matrix F. With gk = ∇kl (``create_graph``),
    F·v = ∇(gk·v). Damping λ fills F's null directions (adding a constant to every logit).
    """
    params = list(policy.parameters())
    if vector.shape != (sum(p.numel() for p in params),):
        raise ValueError(f"vector must have shape (P,) = ({sum(p.numel() for p in params)},), got {tuple(vector.shape)}")
    logits = policy(obs)  # (B, A)
    kl = categorical_kl(logits, logits).mean()
    kl_grad = flat_grad(kl, params, create_graph=True)  # (P,)
    return flat_grad((kl_grad * vector.detach()).sum(), params) + damping * vector


def conjugate_gradient(matvec: MatVec, b: torch.Tensor, iterations: int = 10, tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for a symmetric positive-definite A known only through A·v.

    Shapes: b ``(P,)`` → x ``(P,)``. Starts from x₀ = 0, so r₀ = b − A x₀ = b and p₀ = r₀; stops
    after ``iterations`` products or as soon as rᵀr < ``tol`` (Spinning Up, baselines: 10
    iterations; SB3: 15). Each iteration costs one product ``matvec(p)``.
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iterations):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def natural_gradient_step(grad: torch.Tensor, matvec: MatVec, max_kl: float,
                          solver: Callable[[MatVec, torch.Tensor], torch.Tensor] = conjugate_gradient) -> torch.Tensor:
    """The full TRPO step s = sqrt(2δ / xᵀAx) · x with x = solver(A, g) ≈ A⁻¹g and A = F + λI (damped).

    Shapes: grad ``(P,)`` → ``(P,)``. The quadratic model of the KL then equals δ exactly:
    ½ sᵀAs = δ. gᵀs > 0 because A is positive definite, so s points uphill on the surrogate.
    ``solver(matvec, b)`` is passed in (conjugate gradient) so the step takes what it uses.
    """
    if not max_kl > 0:
        raise ValueError(f"max_kl must be > 0, got {max_kl!r}")
    x = solver(matvec, grad)  # (P,)
    x_ax = x @ matvec(x)
    return torch.sqrt(2.0 * max_kl / x_ax) * x


def line_search(policy: nn.Module, full_step: torch.Tensor, evaluate: Callable[[], tuple[float, float]],
                max_kl: float, shrink: float = 0.8, max_backtracks: int = 10) -> dict[str, float | int | bool]:
    """Try θ_old + shrink^j · s for j = 0..max_backtracks−1 and keep the first step that passes.

    ``evaluate()`` returns (surrogate L, mean KL(π_old ‖ π)) at the policy's *current* parameters.
    A step passes when KL ≤ ``max_kl`` **and** L > L(θ_old). When none passes, the parameters are
    restored to θ_old exactly. Returns accepted (bool), backtracks (j of the accepted step, or
    ``max_backtracks``), surrogate_improvement and kl of the step kept.
    """
    params = list(policy.parameters())
    old = parameters_to_vector(params).detach().clone()  # (P,)
    surrogate_old, _ = evaluate()
    for j in range(max_backtracks):
        vector_to_parameters(old + shrink**j * full_step, params)
        surrogate, kl = evaluate()
        if kl <= max_kl and surrogate > surrogate_old:
            return {"accepted": True, "backtracks": j,
                    "surrogate_improvement": float(surrogate - surrogate_old), "kl": float(kl)}
    vector_to_parameters(old, params)  # rollback: no step passed both checks
    return {"accepted": False, "backtracks": max_backtracks, "surrogate_improvement": 0.0, "kl": 0.0}


def fit_value(value: nn.Module, optimizer: torch.optim.Optimizer, obs: torch.Tensor, targets: torch.Tensor,
              epochs: int, minibatch_size: int, generator: torch.Generator) -> float:
    """Regress V(s) on fixed targets with shuffled minibatches; return the last epoch's mean loss.

    Shapes: obs ``(B, D)``, targets ``(B,)``. Runs *after* the policy step and only touches the
    value network's parameters (its own optimizer), so the trust region stays intact.
    """
    losses: list[float] = []
    for _ in range(epochs):
        losses = []
        for idx in torch.randperm(obs.shape[0], generator=generator).split(minibatch_size):
            loss = ((value(obs[idx]) - targets[idx]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def _surrogate_and_kl(policy: nn.Module, obs: torch.Tensor, actions: torch.Tensor, logp_old: torch.Tensor,
                      advantages: torch.Tensor, old_logits: torch.Tensor) -> tuple[float, float]:
    """(L, mean KL(π_old ‖ π)) at the policy's current parameters: what the line search tests."""
    new_logits = policy(obs)  # (B, A)
    new_logp = distributions.log_prob_of_actions(new_logits, actions)
    return (surrogate_objective(new_logp, logp_old, advantages).item(),
            categorical_kl(old_logits, new_logits).mean().item())


@dataclass(frozen=True)
class TRPOConfig(onpolicy.OnPolicyConfig):
    """Settings of :func:`train` (and the shared ones of :class:`~course_lib.rl.onpolicy.OnPolicyConfig`).
    Defaults are tuned for CartPole-v1 (see lesson 02).

    Measured on seeds 0-4 (greedy eval of 10 episodes every 5k env steps): a mean return ≥ 475 first
    after 10k-15k steps, and ≥ 475 at every later evaluation from 10k-50k steps on.
    """

    num_envs: int = 16
    """Parallel environments N."""
    num_steps: int = 64
    """Segment length T per env: one TRPO step per T·N transitions."""
    gae_lambda: float = 0.95
    """GAE λ (lesson 03)."""
    max_kl: float = 0.03
    """Trust-region radius δ on the mean KL(π_old ‖ π_new) (Spinning Up and SB3 use 0.01 with bigger batches)."""
    damping: float = 0.1
    """λ_d added to the Fisher matrix: CG solves (F + λ_d I) x = g."""
    cg_iters: int = 10
    """Conjugate-gradient iterations (one Fisher-vector product each)."""
    fisher_every: int = 4
    """Fisher-vector products use every k-th state of the batch (baselines uses k = 5): cheaper CG."""
    shrink: float = 0.8
    """Backtracking factor α of the line search (Spinning Up, SB3)."""
    max_backtracks: int = 10
    """Steps tried by the line search before it rolls back."""
    value_lr: float = 3e-3
    """Adam learning rate of the value network."""
    value_epochs: int = 20
    """Passes over the batch when fitting V after each policy step. A critic that tracks the returns
    closely made runs fall back less often than 5 passes at lr 1e-3 did; it does not prevent every
    dip (lesson 02's seed-0 run falls from 500 to 155 at 35k env steps and recovers)."""
    value_minibatch_size: int = 256
    """Minibatch size of the value fit (samples, not a count of minibatches)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        super().validate()
        self.require_positive_ints("cg_iters", "fisher_every", "max_backtracks", "value_epochs",
                                   "value_minibatch_size")
        self.require_in_unit_interval("gae_lambda")
        if not 0.0 < self.shrink < 1.0:
            raise ValueError(f"shrink must be in (0, 1), got {self.shrink!r}")
        self.require_positive("max_kl", "value_lr")
        if not self.damping >= 0:
            raise ValueError(f"damping must be >= 0, got {self.damping!r}")


def make_value_optimizer(value: nn.Module, config: TRPOConfig) -> torch.optim.Optimizer:
    """Adam for the value network alone (the policy moves by the natural-gradient step, not Adam)."""
    return torch.optim.Adam(value.parameters(), lr=config.value_lr)


def train(config: TRPOConfig = TRPOConfig(), seed: int = 0, callback: training.Callback | None = None,
          history: training.History | None = None) -> training.TrainResult:
    """Train a categorical policy with TRPO and a separately fitted V; return networks and history.

    Loop: collect a segment → GAE advantages, normalised over the batch → g = ∇L → CG on the
    Fisher-vector product → scaled step → line search (or rollback) → fit V → log → callback.
    Logged per iteration: env_steps, episode_return, episode_length (when episodes finished),
    wall_seconds, kl (measured after the step), backtracks, line_search_accepted,
    surrogate_improvement, step_norm, value_loss, explained_variance, entropy.
    """
    vec_env, policy, value, collector, generator = onpolicy.start_run(config, seed)
    history = training.History() if history is None else history
    value_opt = make_value_optimizer(value, config)
    solver = functools.partial(conjugate_gradient, iterations=config.cg_iters)
    start = time.perf_counter()
    with training.interruptible(history):
        for iteration in range(config.num_iterations):
            # --- collect, then advantages from GAE (constants for the update) ---
            batch = collector.collect(policy, config.num_steps, value)
            adv, rets = estimators.gae(batch.rewards, batch.values, batch.next_values, batch.terminated,
                                    batch.truncated, config.gamma, config.gae_lambda)  # (T, N)
            obs, actions = rollouts.flatten_time(batch.obs), rollouts.flatten_time(batch.actions)
            logits_old, logp_old = rollouts.flatten_time(batch.logits_old), rollouts.flatten_time(batch.logp_old)
            adv = estimators.normalize(rollouts.flatten_time(adv))  # (B,)
            rets = rollouts.flatten_time(rets)

            # --- policy gradient g and the natural-gradient step s ---
            params = list(policy.parameters())
            logits = policy(obs)  # (B, A)
            surrogate = surrogate_objective(
                distributions.log_prob_of_actions(logits, actions), logp_old, adv)
            training.ensure_finite(surrogate, "surrogate objective", f"iteration {iteration}")
            grad = flat_grad(surrogate, params)  # (P,)
            fisher_obs = obs[:: config.fisher_every]  # every k-th state: a cheaper, noisier F
            matvec = functools.partial(fisher_vector_product, policy, fisher_obs, damping=config.damping)
            step = natural_gradient_step(grad, matvec, config.max_kl, solver)
            training.ensure_finite(step, "natural-gradient step", f"iteration {iteration}")

            # --- backtracking line search on the true KL and the surrogate ---
            evaluate = functools.partial(_surrogate_and_kl, policy, obs, actions, logp_old, adv, logits_old)
            search = line_search(policy, step, evaluate, config.max_kl, config.shrink, config.max_backtracks)
            _, kl_after = evaluate()

            # --- fit V after the policy step, with its own optimizer ---
            loss_v = fit_value(value, value_opt, obs, rets, config.value_epochs,
                               config.value_minibatch_size, generator)
            training.ensure_finite(loss_v, "value loss", f"iteration {iteration}")

            # --- log ---
            row = dict(env_steps=collector.total_steps, wall_seconds=time.perf_counter() - start,
                       kl=kl_after, backtracks=search["backtracks"],
                       line_search_accepted=search["accepted"],
                       surrogate_improvement=search["surrogate_improvement"],
                       step_norm=float(step.norm()), value_loss=loss_v,
                       explained_variance=estimators.explained_variance(rollouts.flatten_time(batch.values), rets),
                       entropy=distributions.categorical_entropy(logits.detach()).mean())
            history.log(**row, **batch.episode_stats())
            if callback is not None and callback(collector.total_steps, policy):
                break
    vec_env.close()
    return training.TrainResult(policy, value, history)
