"""The judge stage against a loopback OpenAI-compatible server: cache, retries, re-asks, order swap."""

from __future__ import annotations

import json
import re
import time

import pytest

from kick_core.errors import ConfigError
from kick_core.judge import (
    JudgeCache,
    JudgeConfig,
    JudgeFailureError,
    OpenAIJudge,
    build_records,
    judge_records,
    legacy_table,
    noise_floor_from_items,
    read_jsonl,
    strict_table,
)

REF, CAND = "REFERENCE ANSWER TEXT", "CANDIDATE ANSWER TEXT"


def _records(n: int = 3) -> list[dict]:
    return [{"question_id": i, "question": f"Question number {i}?", "reference": f"{REF} {i}",
             "answer": f"{CAND} {i}", "category": "generic"} for i in range(n)]


def _biased_json(body: dict) -> str:
    """Reference 9, candidate 6, plus a +1 bonus for whoever is Assistant 1 (position bias)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    a1 = user.split("[The Start of Assistant 1's Answer]\n", 1)[1]
    ref_first = a1.startswith(REF)
    a1_score, a2_score = (10, 6) if ref_first else (7, 9)
    return f'Both are fine.\n{{"assistant_1": {a1_score}, "assistant_2": {a2_score}}}'


def _judge(fake, cfg=None, cache=None, tmp_path=None, records=None, **kw):
    cfg = cfg or JudgeConfig(**{"requests_per_second": 1000.0, **kw})  # the rate limit has its own test
    backend = OpenAIJudge("gpt-4-0613", fake.url, max_retries=cfg.max_retries, timeout_s=10)
    return judge_records(records if records is not None else _records(), cfg, backend=backend,
                         cache=cache if cache is not None else JudgeCache(tmp_path / "cache.sqlite"),
                         progress=False)


def test_both_orders_are_requested_and_averaged(fake_openai, tmp_path):
    fake_openai.reply = _biased_json
    run = _judge(fake_openai, tmp_path=tmp_path)
    assert fake_openai.n == 6  # 3 records x 2 orders
    firsts = [u.split("[The Start of Assistant 1's Answer]\n", 1)[1][:len(REF)] for u in fake_openai.user_messages()]
    assert sorted(firsts) == sorted([REF] * 3 + [CAND[:len(REF)]] * 3)
    for item in run.items:
        assert [o["order"] for o in item["orders"]] == ["reference_first", "candidate_first"]
        assert item["score"] == {"score": 6.5}  # (6 + 7) / 2: the position bonus cancels
        assert item["reference_score"] == {"score": 9.5}
    assert strict_table(run.items)["all"]["score"].mean == pytest.approx(6.5)


def test_second_run_makes_zero_requests(fake_openai, tmp_path):
    fake_openai.reply = _biased_json
    cache = JudgeCache(tmp_path / "cache.sqlite")
    first = _judge(fake_openai, cache=cache)
    n = fake_openai.n
    second = _judge(fake_openai, cache=JudgeCache(tmp_path / "cache.sqlite"))  # reopened from disk
    assert n == 6 and fake_openai.n == n
    assert second.usage["requests"] == 0 and second.usage["cache_hits"] == 6
    assert [i["score"] for i in second.items] == [i["score"] for i in first.items]
    assert all(o["cached"] for i in second.items for o in i["orders"])


def test_identical_question_and_answers_are_judged_once(fake_openai, tmp_path):
    fake_openai.reply = _biased_json
    same = [dict(_records(1)[0], question_id=q) for q in ("a", "b", "c")]
    run = _judge(fake_openai, tmp_path=tmp_path, records=same)
    assert fake_openai.n == 2  # one per order, shared by the three records
    assert len(run.items) == 3 and all(i["score"] == {"score": 6.5} for i in run.items)


def test_retries_on_429_and_500_then_succeeds(fake_openai, tmp_path):
    fake_openai.reply = lambda body: "8 6\nok"
    fake_openai.fail = [429, 500]
    run = _judge(fake_openai, tmp_path=tmp_path, records=_records(1), protocol="legacy", max_retries=3)
    assert fake_openai.n == 3
    assert [h.get("x-stainless-retry-count") for h in fake_openai.headers] == ["0", "1", "2"]
    assert run.items[0]["score"] == {"score": 6.0} and run.items[0]["legacy_score"] == [8.0, 6.0]
    assert run.usage["http_retries"] == 2 and run.usage["requests"] == 1


def test_api_failure_after_retries_is_a_recorded_failure_and_not_cached(fake_openai, tmp_path):
    fake_openai.reply = lambda body: "8 6\nok"
    fake_openai.fail = [503] * 4
    cache = JudgeCache(tmp_path / "cache.sqlite")
    run = _judge(fake_openai, cache=cache, records=_records(1), protocol="legacy", max_retries=1)
    item = run.items[0]
    assert item["score"] is None and "503" in item["orders"][0]["error"]
    assert item["legacy_score"] == [-1, -1]  # the original stored "error" and parsed it to [-1, -1]
    assert len(cache) == 0
    fake_openai.fail = []
    again = _judge(fake_openai, cache=cache, records=_records(1), protocol="legacy", max_retries=1)
    assert again.items[0]["score"] == {"score": 6.0}


def test_strict_reasks_when_a_reply_does_not_parse(fake_openai, tmp_path):
    def reply(body):
        return '{"assistant_1": 9, "assistant_2": 5}' if len(body["messages"]) > 2 else "Assistant 1 is better."

    fake_openai.reply = reply
    run = _judge(fake_openai, tmp_path=tmp_path, records=_records(1))
    assert fake_openai.n == 4  # 2 orders x (first try + one re-ask)
    reask = fake_openai.requests[-1]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2]["content"] == "Assistant 1 is better."
    item = run.items[0]
    assert item["score"] is not None and run.usage["reasks"] == 2
    assert item["orders"][0]["attempt_texts"] == ["Assistant 1 is better."]


def test_strict_parse_failures_are_recorded_counted_and_fail_the_run(fake_openai, tmp_path):
    fake_openai.reply = lambda body: "I cannot decide."
    cfg = JudgeConfig(max_parse_retries=1, max_failure_rate=0.5, requests_per_second=1000.0)
    with pytest.raises(JudgeFailureError) as err:
        _judge(fake_openai, cfg=cfg, tmp_path=tmp_path)
    run = err.value.run
    assert fake_openai.n == 3 * 2 * 2  # records x orders x (try + re-ask)
    assert run.n_failed == 3 and run.failure_rate == 1.0
    assert all(i["score"] is None for i in run.items)  # failures are None, never 0
    failure = run.failures()[0]
    assert failure["replies"][0]["raw_text"] == "I cannot decide."
    assert "no JSON object" in failure["replies"][0]["error"]
    score = strict_table(run.items)["all"]["score"]
    assert score.mean is None and score.n_failed == 3 and score.failures[0]["replies"][1]["raw_text"]


def test_legacy_stage_reproduces_the_original_judge_on_shipped_data(fake_openai, tmp_path, fixtures):
    """The original's prompt choice, temperature, single order and parser, fed the shipped GPT-4 replies."""
    d = fixtures / "vicuna80"
    questions = read_jsonl(d / "questions.jsonl")
    shipped = {r["question_id"]: r for r in read_jsonl(d / "vicuna7b_dense_gpt4_judgments.jsonl")}
    records = build_records(questions, read_jsonl(d / "vicuna7b_dense_answers.jsonl"),
                            read_jsonl(d / "gpt35_reference_answers.jsonl"))
    by_question = {q["text"]: q["question_id"] for q in questions}

    def reply(body):
        user = body["messages"][1]["content"]
        qtext = user.split("[Question]\n", 1)[1].split("\n\n[The Start of Assistant 1's Answer]", 1)[0]
        return shipped[by_question[qtext]]["text"]

    fake_openai.reply = reply
    run = _judge(fake_openai, tmp_path=tmp_path, records=records, task="instruction", protocol="legacy")
    assert fake_openai.n == len(records) == 14
    assert {r["temperature"] for r in fake_openai.requests} == {0.2}
    for item in run.items:
        assert len(item["orders"]) == 1
        assert item["legacy_score"] == shipped[item["question_id"]]["score"]
        assert item["reviewer_id"] == shipped[item["question_id"]]["reviewer_id"]
    math = [i for i in run.items if i["category"] == "math"]
    assert math and all(i["score"] is None and i["orders"][0]["raw_text"] for i in math)
    table = legacy_table(run.items, score_key="legacy_score")["all"]["score"]
    assert table.n == sum(i["score"] is not None for i in run.items)


def test_usage_is_recorded_and_the_key_never_is(fake_openai, tmp_path):
    fake_openai.reply = _biased_json
    run = _judge(fake_openai, tmp_path=tmp_path)
    expected = sum(sum(len(m["content"].split()) for m in r["messages"]) for r in fake_openai.requests)
    assert run.usage["prompt_tokens"] == expected and run.usage["total_tokens"] > expected
    blob = json.dumps(run.to_dict())
    assert "sk-test-secret-key" not in blob
    assert run.config["model"] == "gpt-4-0613" and run.config["temperature"] == 0.0
    assert run.config["judge_model_reported"] == ["gpt-4-0613"]
    assert all(r["temperature"] == 0.0 and r["model"] == "gpt-4-0613" for r in fake_openai.requests)


def test_requests_are_rate_limited(fake_openai, tmp_path):
    fake_openai.reply = _biased_json
    start = time.perf_counter()
    _judge(fake_openai, tmp_path=tmp_path, records=_records(3), requests_per_second=25.0)
    assert fake_openai.n == 6 and time.perf_counter() - start >= 5 / 25.0


def test_single_answer_grading_needs_no_reference(fake_openai, tmp_path):
    fake_openai.reply = lambda body: "Helpful and correct.\nRating: [[7]]"
    records = [{k: v for k, v in r.items() if k != "reference"} for r in _records(2)]
    run = _judge(fake_openai, tmp_path=tmp_path, records=records, mode="single")
    assert fake_openai.n == 2 and all(i["score"] == {"score": 7.0} for i in run.items)
    assert 'strictly following this format: "[[rating]]"' in fake_openai.user_messages()[0]
    assert REF not in "".join(fake_openai.user_messages())


def test_noise_floor_repeats_bypass_the_cache(fake_openai, tmp_path):
    counter = iter(range(1000))

    def reply(body):  # a noisy judge: candidate score cycles 6, 7, 6, 7, ...
        return f'{{"assistant_1": 9, "assistant_2": {6 + next(counter) % 2}}}'

    fake_openai.reply = reply
    run = _judge(fake_openai, tmp_path=tmp_path, records=_records(4), n_repeats=3, both_orders=False)
    assert fake_openai.n == 12 and len(run.items) == 12
    floor = noise_floor_from_items(run.items)
    assert len(floor.means) == 3 and floor.n_items == 4
    assert floor.n_changed == sum(len({i["score"]["score"] for i in run.items if i["question_id"] == q}) > 1
                                  for q in range(4))
    assert floor.spread == max(floor.means) - min(floor.means)


def test_missing_api_key_fails_before_any_request(monkeypatch):
    for name in ("KICK_JUDGE_API_KEY", "OPENAI_API_KEY", "KICK_JUDGE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="KICK_JUDGE_API_KEY"):
        judge_records(_records(1), JudgeConfig(), progress=False)


def test_environment_picks_endpoint_and_model(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("KICK_JUDGE_BASE_URL", fake_openai.url)
    monkeypatch.setenv("KICK_JUDGE_MODEL", "my-judge-2025-01-01")
    fake_openai.reply = _biased_json
    run = judge_records(_records(1), JudgeConfig(requests_per_second=1000.0), cache=tmp_path / "c.sqlite", progress=False)
    assert fake_openai.requests[0]["model"] == "my-judge-2025-01-01"
    assert run.config["base_url"] == fake_openai.url and "sk-test" not in json.dumps(run.config)


def test_malformed_record_is_rejected_before_any_request(fake_openai, tmp_path):
    bad = [{"question_id": 1, "question": "q", "answer": "a", "category": "generic"}]  # no reference
    with pytest.raises(ConfigError, match="lacks reference"):
        _judge(fake_openai, tmp_path=tmp_path, records=bad)
    assert fake_openai.n == 0


def test_summarisation_strict_scores_four_criteria(fake_openai, tmp_path):
    crit = '{"coherence": %d, "consistency": 8, "fluency": 9, "relevance": 7}'
    fake_openai.reply = lambda body: '{"assistant_1": %s, "assistant_2": %s}' % (crit % 9, crit % 5)
    records = [dict(r, category="large") for r in _records(2)]
    run = _judge(fake_openai, tmp_path=tmp_path, records=records, task="summarisation")
    # requests run concurrently, so they may arrive in any order
    assert any(re.search(r"\[Story\]\nQuestion number 0\?", m) for m in fake_openai.user_messages())
    item = run.items[0]
    assert item["score"] == {"coherence": 7.0, "consistency": 8.0, "fluency": 9.0, "relevance": 7.0}
    assert strict_table(run.items, ("coherence",))["large"]["coherence"].n == 2
