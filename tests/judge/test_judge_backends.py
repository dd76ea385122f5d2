"""Local Hugging Face judge, rubric judge, and the cache."""

from __future__ import annotations

import threading

import pytest

from kick_core.judge import (
    HFJudge,
    JudgeCache,
    JudgeConfig,
    RubricJudge,
    Verdict,
    cache_key,
    judge_records,
    strict_table,
)

RECORDS = [{"question_id": i, "question": f"What is {i} + {i}?", "reference": f"It is {2 * i}.",
            "answer": f"{2 * i}", "category": "math"} for i in range(2)]


def test_local_hf_judge_garbage_is_recorded_as_parse_failures(tiny_model_dir, tmp_path):
    from kick_core.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    cfg = JudgeConfig(backend="hf", max_tokens=8, max_parse_retries=1)
    run = judge_records(RECORDS, cfg, backend=HFJudge(model, tokenizer), cache=tmp_path / "c.sqlite",
                        progress=False, check=False)
    assert run.n_failed == 2 and run.failure_rate == 1.0
    assert run.config["model"] == str(tiny_model_dir)  # the judge actually used, not the API default
    for item in run.items:
        assert item["score"] is None  # never 0
        for order in item["orders"]:
            assert isinstance(order["raw_text"], str) and order["error"].startswith("parse:")
            assert order["n_attempts"] == 2  # the strict re-ask happened
    assert run.usage["requests"] == 2 * 2 * 2 and run.usage["completion_tokens"] > 0
    assert strict_table(run.items)["all"]["score"].n_failed == 2
    again = judge_records(RECORDS, cfg, backend=HFJudge(model, tokenizer), cache=tmp_path / "c.sqlite",
                          progress=False, check=False)
    assert again.usage["requests"] == 0  # the local judge is cached too


def test_rubric_judge_plugs_in_without_text_parsing(tmp_path):
    seen = []

    def rubric(question, answers):
        seen.append((question, tuple(answers)))
        return [10.0 if a.startswith("It is") else 4.0 for a in answers]

    run = judge_records(RECORDS, JudgeConfig(backend="rubric"), backend=RubricJudge(rubric),
                        cache=tmp_path / "c.sqlite", progress=False)
    assert len(seen) == 4  # two records, both orders
    judge_records(RECORDS, JudgeConfig(backend="rubric"), backend=RubricJudge(rubric),
                  cache=tmp_path / "c.sqlite", progress=False)
    assert len(seen) == 8  # a rubric is never cached: a changed rubric must not serve stale verdicts
    assert all(item["score"] == {"score": 4.0} and item["reference_score"] == {"score": 10.0} for item in run.items)


def test_rubric_judge_may_return_a_verdict_for_summaries(tmp_path):
    crit = {"coherence": 6.0, "consistency": 7.0, "fluency": 8.0, "relevance": 9.0}
    judge = RubricJudge(lambda q, a: Verdict((crit,)), criteria=tuple(crit))
    records = [{k: v for k, v in r.items() if k != "reference"} for r in RECORDS]
    run = judge_records(records, JudgeConfig(task="summarisation", mode="single", backend="rubric"),
                        backend=judge, cache=tmp_path / "c.sqlite", progress=False)
    assert run.items[0]["score"] == crit


def test_rubric_judge_returning_the_wrong_shape_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="2 scores"):
        judge_records(RECORDS[:1], JudgeConfig(backend="rubric"), backend=RubricJudge(lambda q, a: 5.0),
                      cache=tmp_path / "c.sqlite", progress=False)


def test_cache_key_ignores_argument_order_but_not_content():
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1)
    assert cache_key(a=1, b=[1, 2]) != cache_key(a=1, b=[2, 1])


def test_cache_persists_and_is_safe_across_threads(tmp_path):
    cache = JudgeCache(tmp_path / "judge.sqlite")

    def write(start):
        for i in range(start, start + 50):
            cache.put(f"k{i}", {"text": str(i)})

    threads = [threading.Thread(target=write, args=(s,)) for s in (0, 50, 100, 150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    reopened = JudgeCache(tmp_path / "judge.sqlite")
    assert len(reopened) == 200 and reopened.get("k123") == {"text": "123"} and reopened.get("nope") is None


def test_default_cache_lives_under_kick_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KICK_CACHE", str(tmp_path))
    assert JudgeCache().path == tmp_path / "judge" / "judge_cache.sqlite"
