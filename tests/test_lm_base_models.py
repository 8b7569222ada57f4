"""course_lib.lm.base_models: the on-disk cache of SFT base models (key, atomic build, checks, lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.lm import base_models
from course_lib.lm.sft import SFTConfig

TINY = base_models.BaseModelSpec(
    task="addition", task_settings=(("num_digits", 1), ("num_train", 60), ("num_test", 10)),
    n_layer=1, n_head=2, n_embd=16, n_positions=16,
    sft=SFTConfig(max_steps=4, batch_size=8, warmup_steps=1, eval_every=2, eval_examples=5))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    return tmp_path / "base-models"


def _parameters(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_cache_folder_is_the_override_or_the_user_cache_never_the_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    assert base_models.cache_dir() == tmp_path / "base-models"
    monkeypatch.delenv("COURSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform != "win32":
        assert base_models.cache_dir() == tmp_path / "xdg" / "policy-optimization-course" / "base-models"
    repo = Path(__file__).resolve().parents[1]
    assert repo not in base_models.cache_dir().parents


def test_first_call_builds_second_loads_the_same_weights(cache):
    first = base_models.load_base_model(TINY, progress=False)
    assert first.built and first.path.parent == cache
    assert first.record["sft_steps"] == 4 and 0.0 <= first.record["eval_accuracy"] <= 1.0
    second = base_models.load_base_model(TINY, progress=False)
    assert not second.built and second.path == first.path
    for a, b in zip(_parameters(first.model), _parameters(second.model), strict=True):
        assert torch.equal(a, b)
    assert second.tokenizer("3+4=")["input_ids"] == first.tokenizer("3+4=")["input_ids"]
    assert not second.model.training


def test_key_changes_with_every_part_of_the_recipe():
    keys = {TINY.key(),
            base_models.BaseModelSpec(**{**TINY.__dict__, "seed": 1}).key(),
            base_models.BaseModelSpec(**{**TINY.__dict__, "n_embd": 32}).key(),
            base_models.BaseModelSpec(**{**TINY.__dict__, "sft": SFTConfig(max_steps=5)}).key(),
            base_models.BaseModelSpec(**{**TINY.__dict__, "task_settings": (("num_digits", 1),)}).key()}
    assert len(keys) == 5


@pytest.mark.parametrize("damage", ["flip a byte of the weights", "delete the manifest", "delete the weights",
                                    "garble the manifest", "manifest of another key"])
def test_a_damaged_cache_entry_is_detected_and_rebuilt_never_loaded(cache, damage):
    built = base_models.load_base_model(TINY, progress=False)
    before = _parameters(built.model)  # copied now: loaded weights may be memory-mapped from the file
    weights, manifest = built.path / "model.safetensors", built.path / "manifest.json"
    if damage == "flip a byte of the weights":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "delete the manifest":
        manifest.unlink()
    elif damage == "delete the weights":
        weights.unlink()
    elif damage == "garble the manifest":
        manifest.write_text("{not json")
    else:
        record = json.loads(manifest.read_text())
        record["key"] = "0" * 16
        manifest.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="not usable"):
        again = base_models.load_base_model(TINY, progress=False)
    assert again.built
    for a, b in zip(before, _parameters(again.model), strict=True):
        assert torch.equal(a, b)  # the same recipe and seed rebuild the same weights
    assert base_models._problem_with(again.path, TINY.key()) is None


def test_an_interrupted_build_leaves_no_entry_behind(cache, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(base_models, "train_sft", fail)
    with pytest.raises(KeyboardInterrupt):
        base_models.load_base_model(TINY, progress=False)
    leftovers = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


_CHILD = """
import json, sys
from course_lib.lm import base_models
from course_lib.lm.sft import SFTConfig
spec = base_models.BaseModelSpec(**json.loads(sys.argv[1]))
print("BUILT" if base_models.load_base_model(spec, progress=False).built else "LOADED")
"""


def test_two_processes_building_at_once_build_once_and_both_load_it(cache):
    spec = {"task": "addition", "task_settings": [["num_digits", 1], ["num_train", 60], ["num_test", 10]],
            "n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 16, "seed": 3}
    child = _CHILD.replace("spec = base_models.BaseModelSpec(**json.loads(sys.argv[1]))",
                           "raw = json.loads(sys.argv[1]); raw['task_settings'] = tuple(map(tuple, raw['task_settings']))\n"
                           "spec = base_models.BaseModelSpec(**raw, sft=SFTConfig(max_steps=40, batch_size=8, eval_every=20,"
                           " eval_examples=5))")
    env = {**os.environ, "COURSE_CACHE_DIR": str(cache.parent)}
    runs = [subprocess.Popen([sys.executable, "-c", child, json.dumps(spec)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    said = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert said == ["BUILT", "LOADED"], outputs
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1 and base_models._problem_with(entries[0], entries[0].name.split("-")[-1]) is None


def test_unknown_name_and_bad_spec_are_named():
    with pytest.raises(ValueError, match="no base model named 'subtraction'"):
        base_models.load_base_model("subtraction")
    with pytest.raises(ValueError, match="BaseModelSpec"):
        base_models.load_base_model(42)
