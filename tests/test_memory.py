"""course_lib.memory: exact byte counts of parameters, gradients and optimizer state; a step's measured peak."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib import memory

MB = 1024 * 1024


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 3))  # 220 + 63 = 283 parameters


def test_parameter_and_gradient_bytes_are_exact_and_count_shared_tensors_once():
    model = _model()
    assert memory.parameter_bytes(model) == 283 * 4
    assert memory.parameter_bytes(model, model) == 283 * 4  # the same model twice
    tied = nn.Sequential(nn.Embedding(7, 5), nn.Linear(5, 7, bias=False))
    tied[1].weight = tied[0].weight
    assert memory.parameter_bytes(tied) == 35 * 4
    assert memory.parameter_bytes(model.double()) == 283 * 8
    assert memory.gradient_bytes(model) == 0
    model(torch.randn(4, 10, dtype=torch.float64)).sum().backward()
    assert memory.gradient_bytes(model) == 283 * 8
    with pytest.raises(ValueError, match=r"models\[1\]"):
        memory.parameter_bytes(model, "not a model")


def test_adam_state_is_two_copies_of_the_parameters_plus_one_step_scalar_per_tensor():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    assert memory.optimizer_state_bytes(optimizer) == 0  # created lazily
    model(torch.randn(4, 10)).sum().backward()
    optimizer.step()
    num_tensors = len(list(model.parameters()))
    step_bytes = optimizer.state[next(model.parameters())]["step"].element_size()
    assert memory.optimizer_state_bytes(optimizer) == 2 * memory.parameter_bytes(model) + num_tensors * step_bytes
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sgd.step()
    assert memory.optimizer_state_bytes(sgd) == 0  # plain SGD keeps no state
    with pytest.raises(ValueError, match="optimizer"):
        memory.optimizer_state_bytes(model)


def test_the_cpu_peak_of_a_step_that_allocates_64_mb_is_at_least_64_mb_and_not_much_more():
    kept = []

    def step() -> None:
        big = torch.ones(16 * MB)  # 64 MiB of float32
        kept.append(big.sum())

    report = memory.peak_training_memory(step, device="cpu")
    assert report.device == "cpu" and report.start_bytes is None
    assert 64 * MB <= report.peak_bytes < 64 * MB + 1 * MB
    assert 0 <= report.retained_bytes < 1024  # only the scalar sum is kept


def test_the_peak_sees_two_tensors_alive_together_but_not_two_in_sequence():
    def together() -> None:
        a = torch.ones(4 * MB)
        b = torch.ones(4 * MB)
        del a, b

    def in_sequence() -> None:
        for _ in range(2):
            a = torch.ones(4 * MB)
            del a

    assert memory.peak_training_memory(together, "cpu").peak_bytes >= 32 * MB
    assert 16 * MB <= memory.peak_training_memory(in_sequence, "cpu").peak_bytes < 17 * MB


def test_a_training_step_peak_covers_its_new_gradients_and_adam_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 512))
    optimizer = torch.optim.Adam(model.parameters())
    inputs = torch.randn(256, 512)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(inputs).pow(2).mean().backward()
        optimizer.step()

    first = memory.peak_training_memory(step, "cpu")
    params = memory.parameter_bytes(model)
    # the first step creates the gradients and both Adam moments, and keeps them
    assert first.retained_bytes >= 3 * params
    assert first.peak_bytes >= first.retained_bytes
    second = memory.peak_training_memory(step, "cpu")
    assert abs(second.retained_bytes) < 0.01 * params  # a later step keeps nothing new


def test_errors_and_the_table():
    with pytest.raises(ValueError, match="step_fn"):
        memory.peak_training_memory(42, "cpu")
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        memory.peak_training_memory(lambda: None, "meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            memory.peak_training_memory(lambda: None, "cuda")
    assert memory.format_bytes(12) == "12 B" and memory.format_bytes(1536) == "1.50 KiB"
    assert memory.format_bytes(3 * MB) == "3.00 MiB"
    table = memory.memory_table({"parameters": 1536, "peak": 3 * MB, "start": None})
    lines = table.splitlines()
    assert len(lines) == 5 and len({len(line) for line in lines}) == 1
    assert "1.50 KiB" in lines[2] and "3.00 MiB" in lines[3] and "n/a" in lines[4]
    with pytest.raises(ValueError, match="entries"):
        memory.memory_table({})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_peak_of_a_step_that_allocates_64_mb():
    kept = []

    def step() -> None:
        big = torch.ones(16 * MB, device="cuda")
        kept.append(big.sum())

    report = memory.peak_training_memory(step, "cuda")
    assert report.device.startswith("cuda:") and report.start_bytes is not None
    assert 64 * MB <= report.peak_bytes < 64 * MB + 1 * MB
    assert 0 <= report.retained_bytes <= 1024
