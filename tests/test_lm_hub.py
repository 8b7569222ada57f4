"""course_lib.lm.hub: offline, loading a hub model fails with an error that says the hub is needed."""

from __future__ import annotations

import pytest

from course_lib.lm import hub


def test_offline_load_says_that_the_model_hub_is_needed(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without a network, without waiting
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(RuntimeError, match="model hub could not be reached"):
        hub.load_pretrained("Qwen/Qwen2.5-0.5B-Instruct", device="cpu")


def test_a_bad_name_is_named():
    with pytest.raises(ValueError, match="model id"):
        hub.load_pretrained("")
