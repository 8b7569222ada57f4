"""Lesson 02's checkers accept the reference and reject the TRPO bugs of algorithms.md §4 and §11.

Each wrong version is paired with the case that must catch it (the first failing case named in the
message). The ones marked "audit" were accepted by the checks before the audit, which added: a single state
and a batch of one, gradients (detached, leaking into the old side, NaN where a probability is 0),
every line-search diagnostic, and inputs changed in place (only the line search may move its policy).
"""

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


def _caught(name, wrong, caught_by):
    """Run the checker on a wrong version; it must fail, first on the case whose label starts with ``caught_by``."""
    result = _result(name, wrong)
    assert result.status == "failed", wrong.__name__
    assert f"case '{caught_by}" in result.message, result.message
    return result


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


def kl_loops_over_states(old_logits, new_logits):  # audit: fine for (B, A) and (B, T, A), wrong for one state (A,)
    rows = []
    for old_row, new_row in zip(old_logits, new_logits, strict=True):
        old_logp, new_logp = F.log_softmax(old_row.detach(), -1), F.log_softmax(new_row, -1)
        rows.append((old_logp.exp() * (old_logp - new_logp)).sum(-1))
    return torch.stack(rows)


def kl_masked_log_of_softmax(old_logits, new_logits):  # audit: value fixed by torch.where, gradient NaN at p = 0
    p_old, p_new = torch.softmax(old_logits.detach(), -1), torch.softmax(new_logits, -1)
    terms = p_old * (torch.log(p_old) - torch.log(p_new))
    return torch.where(p_old > 0, terms, torch.zeros_like(terms)).sum(-1)


def kl_nansum(old_logits, new_logits):  # audit: nansum hides the NaN value, not the NaN gradient
    p_old, p_new = torch.softmax(old_logits.detach(), -1), torch.softmax(new_logits, -1)
    return (p_old * (torch.log(p_old) - torch.log(p_new))).nansum(-1)


def kl_no_grad(old_logits, new_logits):  # "the KL is only a number for the line search"
    with torch.no_grad():
        return trpo.categorical_kl(old_logits, new_logits)


def kl_wrong_side_detached(old_logits, new_logits):  # KL(z ‖ z) still has the Fisher Hessian, via the old side
    old_logp, new_logp = F.log_softmax(old_logits, -1), F.log_softmax(new_logits.detach(), -1)
    return (old_logp.exp() * (old_logp - new_logp)).sum(-1)


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (kl_reversed, "hand-computed"),
    (kl_neither_detached, "the gradient reaches the new logits, and no gradient flows into the old logits"),
    (kl_log_of_softmax, "an action the old policy never takes"),
    (kl_mean_over_states, "hand-computed"),
    (kl_loops_over_states, "a single state, shape (A,)"),
    (kl_masked_log_of_softmax, "an action neither policy takes (probability 0)"),
    (kl_nansum, "an action neither policy takes (probability 0)"),
    (kl_no_grad, "the gradient reaches the new logits"),
    (kl_wrong_side_detached, "the gradient reaches the new logits"),
])
def test_categorical_kl_rejects(wrong, caught_by):
    _caught("categorical_kl", wrong, caught_by)


def test_categorical_kl_gradient_messages_say_what_is_wrong():
    assert "must be 0: `old_logits` is a constant" in _result("categorical_kl", kl_neither_detached).message
    assert "no gradient reaches `new_logits`" in _result("categorical_kl", kl_no_grad).message
    assert "got NaN" in _result("categorical_kl", kl_masked_log_of_softmax).message


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


def _hessian_of(kl, policy, vector):
    params = list(policy.parameters())
    flat = _flat_grad(kl, params, create_graph=True)
    return _flat_grad((flat * vector.detach()).sum(), params)


def fvp_squeezed_logits(policy, obs, vector, damping):  # audit: (1, A) squeezed to (A,), then dim=1 fails
    logits = policy(obs).squeeze()
    old_logp, new_logp = F.log_softmax(logits.detach(), dim=1), F.log_softmax(logits, dim=1)
    kl = (old_logp.exp() * (old_logp - new_logp)).sum(1).mean()
    return _hessian_of(kl, policy, vector) + damping * vector


def fvp_log_of_softmax(policy, obs, vector, damping):  # audit: 0 · (−inf) = NaN where a probability is 0
    probs = torch.softmax(policy(obs), -1)
    old = probs.detach()
    kl = (old * (torch.log(old) - torch.log(probs))).sum(-1).mean()
    return _hessian_of(kl, policy, vector) + damping * vector


def fvp_switches_to_eval(policy, obs, vector, damping):  # "no dropout in the KL", but the policy stays in eval mode
    policy.eval()
    return trpo.fisher_vector_product(policy, obs, vector, damping)


def fvp_scales_vector_in_place(policy, obs, vector, damping):  # right value, but the caller's v is now λv
    hvp = trpo.fisher_vector_product(policy, obs, vector, 0.0)
    vector *= damping
    return hvp + vector


_FVP_FIRST = "the lesson's example: p = (0.7, 0.3)"


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (fvp_undamped, _FVP_FIRST),
    (fvp_neither_detached, _FVP_FIRST),
    (fvp_sum_over_states, _FVP_FIRST),
    (fvp_hessian_of_surrogate, _FVP_FIRST),
    (fvp_backward_accumulates, _FVP_FIRST),
    (fvp_squeezed_logits, "a batch of one state (B = 1)"),
    (fvp_log_of_softmax, "a policy that never takes one action"),
    (fvp_switches_to_eval, _FVP_FIRST),
    (fvp_scales_vector_in_place, _FVP_FIRST),
])
def test_fisher_vector_product_rejects(wrong, caught_by):
    _caught("fisher_vector_product", wrong, caught_by)


@pytest.mark.parametrize(("wrong", "says"), [
    (fvp_backward_accumulates, "left gradients in `policy`'s parameters (.grad)"),
    (fvp_switches_to_eval, "changed the model `policy` in place (expected the model in training mode"),
    (fvp_scales_vector_in_place, "changed its input `vector` in place"),
    (fvp_log_of_softmax, "got NaN"),
])
def test_fisher_vector_product_messages_say_what_is_wrong(wrong, says):
    assert says in _result("fisher_vector_product", wrong).message


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


def cg_aliases_b(matvec, b, iterations=10, tol=1e-10):  # r = b without a copy: `r -= α A p` overwrites b
    x, r, p = torch.zeros_like(b), b, b.clone()
    rr = r @ r
    for _ in range(iterations):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (cg_residual_grows, "two iterations"),
    (cg_nonzero_start, "one iteration"),
    (cg_no_early_stop, "ten iterations"),
    (cg_wrong_beta, "random 6×6"),
    (cg_builds_the_matrix, "one iteration"),
    (cg_aliases_b, "one iteration"),
])
def test_conjugate_gradient_rejects(wrong, caught_by):
    _caught("conjugate_gradient", wrong, caught_by)


def test_conjugate_gradient_in_place_message_names_b():
    assert "changed its input `b` in place" in _result("conjugate_gradient", cg_aliases_b).message


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


def step_normalizes_grad_in_place(grad, matvec, max_kl, solver=trpo.conjugate_gradient):
    grad /= grad.norm()  # the step is scale-invariant in g, so its value is right; the caller's g is not
    return trpo.natural_gradient_step(grad, matvec, max_kl, solver)


@pytest.mark.parametrize("wrong", [step_wrong_sign, step_missing_two, step_unscaled, step_normalized_gradient,
                                   step_scaled_with_gradient, step_normalizes_grad_in_place])
def test_natural_gradient_step_rejects(wrong):
    _caught("natural_gradient_step", wrong, "the lesson's example")


def test_natural_gradient_step_in_place_message_names_grad():
    assert "changed its input `grad` in place" in _result("natural_gradient_step", step_normalizes_grad_in_place).message


# --- 02.5 line_search ------------------------------------------------------------------------------------


def _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, *, check_kl=True, check_improvement=True,
            rollback=True, from_zero=False, stale_on_rollback=False, kl_of_full_step=False, freeze=False,
            step_in_place=False, fixed_settings=False):
    """The reference line search, with one switch per bug; by default it returns every diagnostic right."""
    if fixed_settings:  # Spinning Up's numbers instead of the arguments
        shrink, max_backtracks = 0.8, 10
    if freeze:  # "evaluate() needs no gradients", and they are never switched back on
        policy.requires_grad_(False)
    params = list(policy.parameters())
    old = parameters_to_vector(params).detach().clone()
    base = torch.zeros_like(old) if from_zero else old
    surrogate_old, _ = evaluate()
    step, kl_full, surrogate, kl = full_step, None, surrogate_old, 0.0
    for j in range(max_backtracks):
        vector_to_parameters(base + (step if step_in_place else shrink**j * full_step), params)
        surrogate, kl = evaluate()
        kl_full = kl if kl_full is None else kl_full
        if (not check_kl or kl <= max_kl) and (not check_improvement or surrogate > surrogate_old):
            return {"accepted": True, "backtracks": j, "surrogate_improvement": surrogate - surrogate_old,
                    "kl": kl_full if kl_of_full_step else kl}
        if step_in_place:
            step *= shrink  # shrinks the caller's full_step too
    if rollback:
        vector_to_parameters(old, params)
    if stale_on_rollback:  # the last failed try's numbers, though the policy is back at θ_old
        return {"accepted": False, "backtracks": max_backtracks, "surrogate_improvement": surrogate - surrogate_old,
                "kl": kl}
    return {"accepted": False, "backtracks": max_backtracks, "surrogate_improvement": 0.0, "kl": 0.0}


def _search_bug(name, **switches):
    def search(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
        return _search(policy, full_step, evaluate, max_kl, shrink, max_backtracks, **switches)

    search.__name__ = search.__qualname__ = name
    return search


search_kl_only = _search_bug("search_kl_only", check_improvement=False)
search_improvement_only = _search_bug("search_improvement_only", check_kl=False)
search_no_rollback = _search_bug("search_no_rollback", rollback=False)
search_from_zero = _search_bug("search_from_zero", from_zero=True)
# audit (these four and search_returns_two_keys): the checks before compared only the parameters, `accepted`
# and `backtracks`, with the same shrink and max_backtracks in every case, and never whether the policy stays trainable
search_stale_diagnostics_on_rollback = _search_bug("search_stale_diagnostics_on_rollback", stale_on_rollback=True)
search_reports_the_full_steps_kl = _search_bug("search_reports_the_full_steps_kl", kl_of_full_step=True)
search_freezes_the_policy = _search_bug("search_freezes_the_policy", freeze=True)
search_shrinks_full_step_in_place = _search_bug("search_shrinks_full_step_in_place", step_in_place=True)
search_ignores_shrink_and_max_backtracks = _search_bug("search_ignores_shrink_and_max_backtracks",
                                                       fixed_settings=True)


def search_always_full_step(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    # modular_rl's slip: run the search, then set θ = θ_old + full step anyway
    params = list(policy.parameters())
    old = parameters_to_vector(params).detach().clone()
    result = trpo.line_search(policy, full_step, evaluate, max_kl, shrink, max_backtracks)
    vector_to_parameters(old + full_step, params)
    return result


def search_returns_two_keys(policy, full_step, evaluate, max_kl, shrink=0.8, max_backtracks=10):
    result = trpo.line_search(policy, full_step, evaluate, max_kl, shrink, max_backtracks)
    return {"accepted": result["accepted"], "backtracks": result["backtracks"]}


def test_the_bug_switches_default_to_a_correct_search():
    assert _result("line_search", _search_bug("search")).passed


@pytest.mark.parametrize(("wrong", "caught_by"), [
    (search_kl_only, "the surrogate falls for long steps"),
    (search_improvement_only, "the full step breaks the trust region"),
    (search_no_rollback, "no step improves the surrogate"),
    (search_from_zero, "the full step passes both checks"),
    (search_always_full_step, "the full step breaks the trust region"),
    (search_returns_two_keys, "the full step passes both checks"),
    (search_stale_diagnostics_on_rollback, "no step improves the surrogate"),
    (search_reports_the_full_steps_kl, "the full step breaks the trust region"),
    (search_freezes_the_policy, "the full step passes both checks"),
    (search_shrinks_full_step_in_place, "the full step breaks the trust region"),
    (search_ignores_shrink_and_max_backtracks, "shrink 0.5 and 3 tries"),
])
def test_line_search_rejects(wrong, caught_by):
    _caught("line_search", wrong, caught_by)


@pytest.mark.parametrize(("wrong", "says"), [
    (search_no_rollback, "in ['parameters after the search']"),
    (search_returns_two_keys, "missing the key(s) ['surrogate_improvement', 'kl']"),
    (search_stale_diagnostics_on_rollback, "in ['surrogate_improvement']"),
    (search_reports_the_full_steps_kl, "in ['kl']: expected 0.00754975, got 0.045"),
    (search_freezes_the_policy, "in ['parameters still require grad']: expected True, got False"),
    (search_shrinks_full_step_in_place, "changed its input `full_step` in place"),
])
def test_line_search_messages_say_what_is_wrong(wrong, says):
    assert says in _result("line_search", wrong).message


def test_line_search_no_rollback_message_names_the_rollback():
    result = _result("line_search", search_no_rollback)
    assert "roll back" in result.message or "θ_old" in result.message


# --- which inputs may change in place ----------------------------------------------------------------


def test_line_search_cases_that_pass_the_policy_declare_that_it_moves():
    cases = exercises.by_name("line_search").make_cases()
    assert sum("policy" in case.inputs for case in cases) >= 4
    for case in cases:
        assert case.may_modify == (("policy",) if "policy" in case.inputs else ()), case.label


@pytest.mark.parametrize("name", ["categorical_kl", "fisher_vector_product", "conjugate_gradient",
                                  "natural_gradient_step"])
def test_the_other_exercises_may_change_no_input(name):
    assert all(case.may_modify == () for case in exercises.by_name(name).make_cases())
