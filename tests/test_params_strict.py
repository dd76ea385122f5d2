"""Hostile params caught before any heavy work: empty files, repeated keys, models that cannot load."""

from __future__ import annotations

import logging
import time

import pytest

from kick_core.config import ModelConfig
from kick_core.paramsfile import load_params
from kick_core.errors import ConfigError
from kick_core.runner import run_study
from kick_core.sources import check_model_source


def _params(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n"])
def test_an_empty_params_file_is_refused_instead_of_running_all_defaults(tmp_path, text):
    with pytest.raises(ConfigError, match=r"is empty \(or only comments\).*params/demo.yaml"):
        load_params(_params(tmp_path, text))


def test_a_key_repeated_in_a_sweep_block_names_both_lines(tmp_path):
    path = _params(tmp_path, "study: s\nsweep:\n  - {task: [factoid_qa], method: [dense],\n     task: [mcq]}\n")
    with pytest.raises(ConfigError, match=r"key 'task' appears twice in one mapping \(lines 3 and 4\).*separate sweep"):
        load_params(path)
    top = _params(tmp_path, "study: a\nbase: {n_examples: 4}\nstudy: b\n", "top.yaml")
    with pytest.raises(ConfigError, match=r"key 'study' appears twice.*lines 1 and 3"):
        load_params(top)


def test_the_same_key_in_different_blocks_is_fine(tmp_path):
    study = load_params(_params(tmp_path, "sweep:\n  - {task: [factoid_qa], method: [dense]}\n"
                                          "  - {task: [mcq], method: [dense]}\n"))
    assert sorted(r.task.task for r in study.runs) == ["factoid_qa", "mcq"]


def test_identical_sweep_blocks_give_one_run_and_say_so(tmp_path, caplog):
    path = _params(tmp_path, "sweep:\n  - {task: [factoid_qa], method: [dense]}\n"
                             "  - {task: [factoid_qa], method: [dense]}\n")
    with caplog.at_level(logging.INFO, logger="kick_core.paramsfile"):
        study = load_params(path)
    assert len(study.runs) == 1
    assert "1 sweep point(s) repeat a run already in the study" in caplog.text


@pytest.mark.parametrize("model, message", [
    ("./models/no-such-llama", "looks like a local path but does not exist"),
    ("no-such-org/no-such-model-xyz", "not in the local Hugging Face cache while HF_HUB_OFFLINE is set"),
    ("smollm2-135m-instruc", "Did you mean: smollm2-135m-instruct"),
])
def test_a_model_that_cannot_load_fails_the_sweep_before_any_kernel(tmp_path, monkeypatch, model, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _params(tmp_path, f"base: {{model: {model}, n_examples: 2}}\nsweep:\n"
                             "  - {task: [factoid_qa, mcq], method: [dense]}\n"
                             "  - {task: [factoid_qa, mcq], method: [magnitude], sparsity: [0.5]}\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        run_study(path, results_dir=tmp_path / "res", report=False, progress=False)
    assert time.perf_counter() - start < 10  # no kernel was started (one costs ~6 s)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("record.json"))


def test_model_sources_that_can_load_pass_without_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_model_source(ModelConfig(model="kick-world"))
    check_model_source(ModelConfig(model="smollm2-135m-instruct"))  # fetched on first use, not here
    folder = tmp_path / "llama"
    folder.mkdir()
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        check_model_source(ModelConfig(model=str(folder)))
    (folder / "config.json").write_text("{}")
    check_model_source(ModelConfig(model=str(folder)))
    with pytest.raises(ConfigError, match="gguf_file='m.gguf' is not in model="):
        check_model_source(ModelConfig(model=str(folder), gguf_file="m.gguf"))
    (folder / "m.gguf").write_bytes(b"GGUF")
    check_model_source(ModelConfig(model=str(folder), gguf_file="m.gguf"))
    check_model_source(ModelConfig(model=str(folder / "m.gguf")))
    # a hub id already in the local Hugging Face cache loads offline
    cache = tmp_path / "hub"
    snap = cache / "models--some-org--cached-model" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--some-org--cached-model" / "refs").mkdir()
    (cache / "models--some-org--cached-model" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    check_model_source(ModelConfig(model="some-org/cached-model"))
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        check_model_source(ModelConfig(model="some-org/other-model"))
