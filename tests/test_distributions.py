"""course_lib.distributions: hand-computed values, equivalence with naive code, LM shapes, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.distributions import categorical_entropy, log_prob_of_actions, sample_actions

# --- log_prob_of_actions --------------------------------------------------------------------------


def test_log_prob_hand_computed():
    # logits [0, ln 3]: probabilities [1/4, 3/4]
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    out = log_prob_of_actions(logits, torch.tensor([0, 1]))
    assert torch.allclose(out, torch.tensor([math.log(0.25), math.log(0.75)]))
    # uniform over A actions: log(1/A) whatever the action
    assert torch.allclose(log_prob_of_actions(torch.full((3, 5), 7.0), torch.tensor([0, 2, 4])),
                          torch.full((3,), -math.log(5.0)))


def test_log_prob_stays_finite_for_extreme_logits():
    out = log_prob_of_actions(torch.tensor([[1000.0, 0.0]]), torch.tensor([1]))
    assert torch.equal(out, torch.tensor([-1000.0]))  # log(softmax) would give -inf


def test_log_prob_gradient_is_onehot_minus_softmax():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    actions = torch.tensor([0, 2, 1, 2])
    log_prob_of_actions(logits, actions).sum().backward()
    expected = torch.nn.functional.one_hot(actions, 3) - torch.softmax(logits.detach(), -1)
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_log_prob_on_a_language_model_batch_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)  # (B, T, V)
    ids = torch.randint(0, 7, (2, 5), generator=gen)
    out = log_prob_of_actions(logits, ids)
    assert out.shape == (2, 5) and out.dtype == torch.float64
    for b in range(2):
        for t in range(5):
            row = logits[b, t]
            naive = row[ids[b, t]].item() - math.log(sum(math.exp(v) for v in row.tolist()))  # a float
            assert out[b, t].item() == pytest.approx(naive, abs=1e-12)


def test_log_prob_accepts_int32_actions_and_keeps_float32():
    out = log_prob_of_actions(torch.zeros(2, 4), torch.tensor([1, 3], dtype=torch.int32))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full((2,), -math.log(4.0)))


@pytest.mark.parametrize(("logits", "actions", "argument"), [
    ([[0.0, 1.0]], torch.tensor([0]), "logits"),  # not a tensor
    (torch.tensor([[0, 1]]), torch.tensor([0]), "logits"),  # integer logits
    (torch.tensor(1.0), torch.tensor(0), "logits"),  # no action dimension
    (torch.zeros(2, 0), torch.tensor([0, 0]), "logits"),  # zero actions
    (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), "actions"),  # float actions
    (torch.zeros(2, 3), [0, 1], "actions"),  # not a tensor
    (torch.zeros(2, 3), torch.tensor([[0], [1]]), "actions"),  # shape (2, 1), not (2,)
    (torch.zeros(2, 3), torch.tensor([0, 3]), "actions"),  # out of range
    (torch.zeros(2, 3), torch.tensor([-1, 0]), "actions"),  # negative
])
def test_log_prob_bad_inputs_name_the_argument(logits, actions, argument):
    with pytest.raises(ValueError, match=f"^{argument} must"):
        log_prob_of_actions(logits, actions)


# --- sample_actions -------------------------------------------------------------------------------


def test_samples_have_the_leading_shape_and_int64():
    out = sample_actions(torch.randn(2, 5, 7))  # (B, T, V)
    assert out.shape == (2, 5) and out.dtype == torch.int64
    assert ((out >= 0) & (out < 7)).all()
    assert sample_actions(torch.zeros(3)).shape == ()  # a single state


def test_sample_frequencies_match_the_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, float("-inf"), 0.0]])
    draws = sample_actions(logits.repeat(20_000, 1), torch.Generator().manual_seed(0)).view(20_000, 2)
    freq = torch.stack([torch.bincount(draws[:, i], minlength=3) for i in range(2)]).float() / 20_000
    assert torch.allclose(freq, torch.softmax(logits, -1), atol=0.015)
    assert freq[1, 1] == 0.0  # an action with logit -inf is never sampled


def test_sampling_is_reproducible_with_a_generator_and_leaves_the_global_stream_alone():
    logits = torch.randn(100, 4, generator=torch.Generator().manual_seed(2))
    state = torch.get_rng_state()
    a = sample_actions(logits, torch.Generator().manual_seed(5))
    b = sample_actions(logits, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_actions(logits, torch.Generator().manual_seed(6)))


def test_sampling_detaches_and_handles_half_precision():
    logits = torch.zeros(4, 2, requires_grad=True)
    out = sample_actions(logits.to(torch.bfloat16))
    assert out.dtype == torch.int64 and not out.requires_grad


def test_sample_bad_logits_name_the_argument():
    with pytest.raises(ValueError, match="^logits must"):
        sample_actions(torch.tensor([1, 2]))


# --- categorical_entropy --------------------------------------------------------------------------


def test_entropy_hand_computed():
    assert torch.allclose(categorical_entropy(torch.zeros(2, 4)), torch.full((2,), math.log(4.0)))
    # p = [1/4, 3/4]: H = -(1/4 ln 1/4 + 3/4 ln 3/4)
    h = categorical_entropy(torch.tensor([0.0, math.log(3.0)]))
    assert h.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)


def test_entropy_of_impossible_and_near_certain_actions_is_finite():
    h = categorical_entropy(torch.tensor([[0.0, 0.0, float("-inf")], [100.0, 0.0, 0.0]]))
    assert torch.isfinite(h).all()
    assert h[0].item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert h[1].item() == pytest.approx(0.0, abs=1e-6)


def test_entropy_gradient_is_finite_with_minus_inf_logits():
    logits = torch.tensor([[0.0, 1.0, float("-inf")]], requires_grad=True)
    categorical_entropy(logits).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 2] == 0.0


def test_entropy_on_a_language_model_batch_matches_torch_distributions():
    logits = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = categorical_entropy(logits)
    assert out.shape == (3, 4) and out.dtype == torch.float64
    assert torch.allclose(out, torch.distributions.Categorical(logits=logits).entropy(), atol=1e-12)
    assert (out >= 0).all() and (out <= math.log(6) + 1e-12).all()


@pytest.mark.parametrize("bad", [torch.tensor([1, 2]), torch.tensor(0.5), [0.0, 1.0]])
def test_entropy_bad_logits_name_the_argument(bad):
    with pytest.raises(ValueError, match="^logits must"):
        categorical_entropy(bad)
