"""Lesson 02's checkers accept the reference and reject the TRPO bugs of algorithms.md §4 and §11."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from course_lib.grading import exercises
from course_lib.grading.checker import run_exercise
from course_lib.rl import trpo


def _result(name, fn):
    return run_exercise(exercises.by_name(name), fn)


def test_lesson02_exercises_are_registered_in_order():
    assert [(e.id, e.name) for e in exercises.for_lesson("02")] == [
        ("02.1", "categorical_kl"), ("02.2", "fisher_vector_product"), ("02.3", "conjugate_gradient"),
        ("02.4", "natural_gradient_step"), ("02.5", "line_search")]


@pytest.mark.parametrize("exercise", exercises.for_lesson("02"), ids=lambda e: e.name)
def test_reference_passes(exercise):
    result = run_exercise(exercise, exercise.reference)
    assert result.passed, result.message


# --- 02.1 categorical_kl ---------------------------------------------------------------------------


def kl_reversed(old_logits, new_logits):  # KL(new ‖ old)
    old_logp, new_logp = F.log_softmax(old_logits.detach(), -1), F.log_softmax(new_logits, -1)
    return (new_logp.exp() * (new_logp - old_logp)).sum(-1)


def kl_neither_detached(old_logits, new_logits):  # published bug: KL(π ‖ π) ≡ 0, Hessian 0
    old_logp, new_logp = F.log_softmax(old_logits, -1), F.log_softmax(new_logits, -1)
    return (old_logp.exp() * (old_logp - new_logp)).sum(-1)


def kl_log_of_softmax(old_logits, new_logits):  # 0 * log 0 = NaN
    p_old, p_new = torch.softmax(old_logits.detach(), -1), torch.softmax(new_logits, -1)
    return (p_old * (torch.log(p_old) - torch.log(p_new))).sum(-1)


def kl_mean_over_states(old_logits, new_logits):  # averages too early: one number, not one per state
    return trpo.categorical_kl(old_logits, new_logits).mean()


@pytest.mark.parametrize("bug", [kl_reversed, kl_neither_detached, kl_log_of_softmax, kl_mean_over_states])
def test_categorical_kl_rejects(bug):
    result = _result("categorical_kl", bug)
    assert result.status == "failed", bug.__name__


def test_categorical_kl_neither_detached_fails_on_curvature():
    result = _result("categorical_kl", kl_neither_detached)
    assert "gradient flows into the old logits" in result.message or "Hessian" in result.message


# --- 02.2 fisher_vector_product ----------------------------------------------------------------------


def _flat_grad(out, params, create_graph=False):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, params, create_graph=create_graph)])


def fvp_undamped(policy, obs, vector, damping):
    return trpo.fisher_vector_product(policy, obs, vector, 0.0)


def fvp_neither_detached(policy, obs, vector, damping):  # F·v = λv: fixed-length gradient steps
    params = list(policy.parameters())
    logp = F.log_softmax(policy(obs), -1)
    kl = (logp.exp() * (logp - logp)).sum(-1).mean()
    grad = torch.autograd.grad(kl, params, create_graph=True, allow_unused=True)
    if any(g is None or not g.requires_grad for g in grad):
        return damping * vector
    flat = torch.cat([g.reshape(-1) for g in grad])
    return _flat_grad((flat * vector).sum(), params) + damping * vector


def fvp_sum_over_states(policy, obs, vector, damping):
    params = list(policy.parameters())
    logits = policy(obs)
    kl = trpo.categorical_kl(logits, logits).sum()
    flat = _flat_grad(kl, params, create_graph=True)
    return _flat_grad((flat * vector).sum(), params) + damping * vector


def fvp_hessian_of_surrogate(policy, obs, vector, damping):  # not PSD: curvature of the wrong function
    params = list(policy.parameters())
    logits = policy(obs)
    objective = (F.log_softmax(logits, -1)[:, 0] * torch.linspace(-1, 1, obs.shape[0])).mean() + 0 * logits.sum()
    flat = _flat_grad(objective, params, create_graph=True)
    return _flat_grad((flat * vector).sum(), params) + damping * vector


def fvp_backward_accumulates(policy, obs, vector, damping):
    params = list(policy.parameters())
    logits = policy(obs)
    flat = _flat_grad(trpo.categorical_kl(logits, logits).mean(), params, create_graph=True)
    (flat * vector).sum().backward()
    return torch.cat([p.grad.reshape(-1) for p in params]) + damping * vector


@pytest.mark.parametrize("bug", [fvp_undamped, fvp_neither_detached, fvp_sum_over_states,
                                 fvp_hessian_of_surrogate, fvp_backward_accumulates])
def test_fisher_vector_product_rejects(bug):
    result = _result("fisher_vector_product", bug)
    assert result.status == "failed", bug.__name__


# --- 02.3 conjugate_gradient ---------------------------------------------------------------------------


def _cg(matvec, b, iterations, tol, *, sign=-1.0, x0_scale=0.0, early_stop=True, beta_from_b=False):
    x = x0_scale * torch.ones_like(b)
    r, p = b.clone(), b.clone()  # r0 = b even when x0 ≠ 0 (a bug when x0_scale ≠ 0)
    rr = r @ r
    for _ in range(iterations):
        if early_stop and rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r + sign * alpha * ap
        rr_new = r @ r
        p = r + (rr_new / (b @ b if beta_from_b else rr)) * p
        rr = rr_new
    return x


def cg_residual_grows(matvec, b, iterations=10, tol=1e-10):
    return _cg(matvec, b, iterations, tol, sign=+1.0)


def cg_nonzero_start(matvec, b, iterations=10, tol=1e-10):
    return _cg(matvec, b, iterations, tol, x0_scale=1e-4)


def cg_no_early_stop(matvec, b, iterations=10, tol=1e-10):
    return _cg(matvec, b, iterations, tol, early_stop=False)


def cg_wrong_beta(matvec, b, iterations=10, tol=1e-10):
    return _cg(matvec, b, iterations, tol, beta_from_b=True)


def cg_builds_the_matrix(matvec, b, iterations=10, tol=1e-10):
    matrix = torch.stack([matvec(e) for e in torch.eye(b.shape[0], dtype=b.dtype)], dim=1)
    return torch.linalg.solve(matrix, b)


@pytest.mark.parametrize("bug", [cg_residual_grows, cg_nonzero_start, cg_no_early_stop, cg_wrong_beta,
                                 cg_builds_the_matrix])
def test_conjugate_gradient_rejects(bug):
    result = _result("conjugate_gradient", bug)
    assert result.status == "failed", bug.__name__


# --- 02.4 natural_gradient_step ------------------------------------------------------------------------


def step_wrong_sign(grad, matvec, max_kl, solver=trpo.conjugate_gradient):
    return -trpo.natural_gradient_step(grad, matvec, max_kl, solver)


def step_missing_two(grad, matvec, max_kl, solver=trpo.conjugate_gradient):
    x = solver(matvec, grad)
    return torch.sqrt(max_kl / (x @ matvec(x))) * x


def step_unscaled(grad, matvec, max_kl, solver=trpo.conjugate_gradient):
    return solver(matvec, grad)


def step_normalized_gradient(grad, matvec, max_kl, solver=trpo.conjugate_gradient):  # what a broken KL produces
    return (2 * max_kl) ** 0.5 * grad / grad.norm()


def step_scaled_with_gradient(grad, matvec, max_kl, solver=trpo.conjugate_gradient):  # gᵀAg instead of xᵀAx
    x = solver(matvec, grad)
    return torch.sqrt(2 * max_kl / (grad @ matvec(grad))) * x


@pytest.mark.parametrize("bug", [step_wrong_sign, step_missing_two, step_unscaled, step_normalized_gradient,
                                 step_scaled_with_gradient])
def test_natural_gradient_step_rejects(bug):
    result = _result("natural_gradient_step", bug)
    assert result.status == "failed", bug.__name__


# --- 02.5 line_search ------------------------------------------------------------------------------------


def _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, *, check_kl=True,
            check_improvement=True, rollback=True, from_zero=False):
    params = list(policy.parameters())
    old = parameters_to_vector(params).detach().clone()
    base = torch.zeros_like(old) if from_zero else old
    surrogate_old, _ = evaluate()
    for j in range(max_backtracks):
        vector_to_parameters(base + shrink**j * full_step, params)
        surrogate, kl = evaluate()
        if (not check_kl or kl <= max_kl) and (not check_improvement or surrogate > surrogate_old):
            return {"accepted": True, "backtracks": j}
    if rollback:
        vector_to_parameters(old, params)
    return {"accepted": False, "backtracks": max_backtracks}


def search_kl_only(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    return _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, check_improvement=False)


def search_improvement_only(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    return _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, check_kl=False)


def search_no_rollback(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    return _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, rollback=False)


def search_from_zero(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    return _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, from_zero=True)


def search_always_full_step(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    # modular_rl's slip: run the search, then set θ = θ_old + full step anyway
    params = list(policy.parameters())
    old = parameters_to_vector(params).detach().clone()
    result = trpo.line_search(policy, full_step, evaluate, max_kl, shrink, max_backtracks)
    vector_to_parameters(old + full_step, params)
    return result


@pytest.mark.parametrize("bug", [search_kl_only, search_improvement_only, search_no_rollback, search_from_zero,
                                 search_always_full_step])
def test_line_search_rejects(bug):
    result = _result("line_search", bug)
    assert result.status == "failed", bug.__name__


def test_line_search_no_rollback_message_names_the_rollback():
    result = _result("line_search", search_no_rollback)
    assert "roll back" in result.message or "θ_old" in result.message
