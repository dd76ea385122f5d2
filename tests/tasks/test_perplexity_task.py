"""Perplexity task: local text loading, rolling (legacy) vs strided (strict) windows, aggregation."""

import math

import pytest
from task_helpers import FIXTURES, make_cfg

from kick_core.errors import ConfigError
from kick_core.tasks import TASKS

TASK = TASKS["perplexity"]
DATA = str(FIXTURES / "corpus")


def test_loads_test_txt_from_a_folder():
    (corpus,) = TASK.load(make_cfg(task="perplexity", protocol="legacy", dataset=DATA).task, seed=0)
    assert corpus.input.startswith("The tower is 324 metres tall")


def test_legacy_windows_are_rolling_and_strict_are_strided(tok):
    legacy = make_cfg(task="perplexity", protocol="legacy", dataset=DATA, seqlen=64)
    strict = make_cfg(task="perplexity", protocol="strict", dataset=DATA, seqlen=64)
    ex = TASK.load(legacy.task, seed=0)
    n = len(tok(ex[0].input)["input_ids"])
    rolling = TASK.prompts(ex, legacy, tok, 512)
    strided = TASK.prompts(ex, strict, tok, 512)
    assert len(rolling) == n // 64 and all(p.score_from == 1 and len(p.tokens) == 64 for p in rolling)
    assert sum(len(p.tokens) - p.score_from for p in strided) == n - 1


def test_too_short_text_is_an_error(tok, tmp_path):
    (tmp_path / "test.txt").write_text("tiny")
    cfg = make_cfg(task="perplexity", protocol="legacy", dataset=str(tmp_path))
    with pytest.raises(ConfigError, match="fewer than one window"):
        TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)


def test_legacy_aggregate_is_exp_of_mean_window_nll():
    cfg = make_cfg(task="perplexity", protocol="legacy", dataset=DATA)
    recs = [{"nll": 1.0, "n_tokens": 10}, {"nll": 3.0, "n_tokens": 30}]
    metrics, _ = TASK.aggregate(recs, cfg)
    assert metrics["perplexity"]["value"] == pytest.approx(math.exp(2.0))
    assert metrics["perplexity"]["higher_is_better"] is False


def test_strict_aggregate_weights_windows_by_tokens():
    cfg = make_cfg(task="perplexity", protocol="strict", dataset=DATA)
    metrics, _ = TASK.aggregate([{"nll": 1.0, "n_tokens": 10}, {"nll": 3.0, "n_tokens": 30}], cfg)
    assert metrics["perplexity"]["value"] == pytest.approx(math.exp(2.5))
