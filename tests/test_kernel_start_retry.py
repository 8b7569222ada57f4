"""The root conftest.py starts a notebook kernel again when it dies while starting (and only then)."""

from __future__ import annotations

import nbval.kernel
import pytest

import conftest


def test_a_kernel_that_dies_while_starting_is_started_again(monkeypatch):
    calls = []

    def dies_twice(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return "manager", "client"

    monkeypatch.setattr(conftest, "_start_new_kernel", dies_twice)
    assert nbval.kernel.start_new_kernel(startup_timeout=5) == ("manager", "client")
    assert calls == [{"startup_timeout": 5}] * 3


def test_a_kernel_that_never_starts_still_fails(monkeypatch):
    def always_dies(*args, **kwargs):
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(conftest, "_start_new_kernel", always_dies)
    with pytest.raises(RuntimeError, match="Kernel died"):
        nbval.kernel.start_new_kernel()
