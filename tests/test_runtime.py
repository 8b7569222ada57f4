"""course_lib.runtime: device choice, seeding, the thread policy, training budgets, setup()."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import course_lib
from course_lib import runtime


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Each test starts with none of the course's variables set, and torch's thread count restored."""
    for name in (runtime.DEVICE_ENV, runtime.THREADS_ENV, runtime.BUDGET_ENV):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --- device -----------------------------------------------------------------------------------


def test_default_device_follows_what_torch_sees():
    device, reason = runtime.choose_device()
    if torch.cuda.is_available():
        assert device.type == "cuda" and "CUDA" in reason
    elif runtime._mps_available():
        assert device.type == "mps"
    else:
        assert device == torch.device("cpu") and reason == "no CUDA or MPS found"


def test_course_device_overrides_and_says_so(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", " cpu ")
    assert runtime.choose_device() == (torch.device("cpu"), "set by COURSE_DEVICE")
    # an explicit argument wins over the environment variable
    monkeypatch.setenv("COURSE_DEVICE", "not-a-device")
    assert runtime.choose_device("cpu") == (torch.device("cpu"), "requested")


@pytest.mark.parametrize("bad", ["banana", "gpu0", "cuda:x"])
def test_course_device_that_is_not_a_device_name_is_an_error(monkeypatch, bad):
    monkeypatch.setenv("COURSE_DEVICE", bad)
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        runtime.choose_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        runtime.choose_device()


# --- seeding ----------------------------------------------------------------------------------


def _draws(seed: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    gen = runtime.seed_everything(seed)
    return random.random(), float(np.random.rand()), torch.rand(4), torch.rand(4, generator=gen)


def test_same_seed_gives_the_same_numbers_everywhere():
    a, b = _draws(7), _draws(7)
    assert a[0] == b[0] and a[1] == b[1]
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


def test_different_seeds_give_different_numbers():
    a, b = _draws(0), _draws(1)
    assert a[0] != b[0] and a[1] != b[1] and not torch.equal(a[2], b[2])


def test_returned_generator_is_seeded_like_torch_manual_seed():
    gen = runtime.seed_everything(123)
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(123)))


def test_large_seed_is_accepted():
    runtime.seed_everything(2**40)  # NumPy's limit is 2**32 - 1; the seed is reduced for it


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_seeds_are_rejected(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        runtime.seed_everything(bad)


# --- threads ----------------------------------------------------------------------------------


def test_thread_policy_defaults_to_one():
    torch.set_num_threads(2)
    assert runtime.set_torch_threads() == 1
    assert torch.get_num_threads() == 1


def test_course_threads_and_the_argument_override(monkeypatch):
    monkeypatch.setenv("COURSE_THREADS", "2")
    assert runtime.set_torch_threads() == 2
    assert runtime.set_torch_threads(1) == 1  # the argument wins


@pytest.mark.parametrize("bad", ["two", "1.5", "0", "-3"])
def test_bad_course_threads_are_rejected(monkeypatch, bad):
    monkeypatch.setenv("COURSE_THREADS", bad)
    with pytest.raises(ValueError, match="COURSE_THREADS|num_threads"):
        runtime.set_torch_threads()


def test_zero_threads_argument_is_rejected():
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        runtime.set_torch_threads(0)


# --- budget -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "mode"), [(None, "full"), ("", "full"), ("full", "full"),
                                           ("quick", "quick"), (" QUICK ", "quick")])
def test_budget_mode(monkeypatch, raw, mode):
    if raw is not None:
        monkeypatch.setenv("COURSE_BUDGET", raw)
    assert runtime.budget_mode() == mode
    assert runtime.training_budget(full=1000, quick=10) == (10 if mode == "quick" else 1000)


@pytest.mark.parametrize("bad", ["fast", "small", "0"])
def test_bad_course_budget_is_rejected(monkeypatch, bad):
    monkeypatch.setenv("COURSE_BUDGET", bad)
    with pytest.raises(ValueError, match="COURSE_BUDGET must be 'full' or 'quick'"):
        runtime.budget_mode()
    with pytest.raises(ValueError):
        runtime.training_budget(1, 2)


# --- progress and setup ---------------------------------------------------------------------------


def test_progress_yields_every_item_and_is_silent_in_ci(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    bar = runtime.progress(range(5), desc="x")
    assert list(bar) == [0, 1, 2, 3, 4]
    assert bar.disable
    assert capsys.readouterr().err == ""


def test_setup_applies_everything_and_prints_one_line(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    monkeypatch.setenv("COURSE_BUDGET", "quick")
    torch.set_num_threads(2)
    device = course_lib.setup(seed=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert device == torch.device("cpu")
    assert len(lines) == 1
    for part in (f"course_lib {course_lib.__version__}", "device cpu (set by COURSE_DEVICE)",
                 "1 torch thread |", "seed 3", "budget quick"):
        assert part in lines[0]
    assert torch.get_num_threads() == 1
    # setup seeded torch: the next draw is the one after manual_seed(3)
    expected = torch.rand(2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.rand(2), expected)
