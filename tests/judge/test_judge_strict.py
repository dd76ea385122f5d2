"""Strict parsing, strict aggregation, the noise floor and the judge config."""

from __future__ import annotations

import pytest

from kick_core.errors import ConfigError, JudgeParseError
from kick_core.judge import (
    STRICT_PROMPTS,
    JudgeConfig,
    JudgeFailureError,
    compare,
    noise_floor,
    parse_rating,
    parse_verdict,
    strict_aggregate,
)

PAIR = STRICT_PROMPTS[("instruction", "pairwise")]
SUMMARY = STRICT_PROMPTS[("summarisation", "pairwise")]


def test_json_verdict_after_prose_and_in_a_code_fence():
    text = 'Assistant 2 misses a step.\n```json\n{"assistant_1": 9, "assistant_2": 6.5}\n```'
    assert parse_verdict(text, PAIR).to_json() == [{"score": 9.0}, {"score": 6.5}]


def test_nested_summary_verdict_uses_the_outer_object():
    crit = '{"coherence": 8, "consistency": 7, "fluency": 9, "relevance": 6}'
    v = parse_verdict(f'ok {{"x": 1}} then {{"assistant_1": {crit}, "assistant_2": {crit}}}', SUMMARY)
    assert v.scores[1] == {"coherence": 8, "consistency": 7, "fluency": 9, "relevance": 6}


@pytest.mark.parametrize(("text", "message"), [
    ("Assistant 1 wins.", "no JSON object"),
    ('{"assistant_1": 9}', "lacks assistant_2"),
    ('{"assistant_1": 9, "assistant_2": 11}', "outside"),
    ('{"assistant_1": 9, "assistant_2": "7"}', "must be a number"),
    ('{"assistant_1": true, "assistant_2": 7}', "must be a number"),
    ("   ", "empty reply"),
])
def test_malformed_strict_verdicts_raise_with_the_raw_text(text, message):
    with pytest.raises(JudgeParseError, match=message) as err:
        parse_verdict(text, PAIR)
    assert err.value.raw_text == text


def test_summary_verdict_needs_all_four_criteria():
    with pytest.raises(JudgeParseError, match="lacks relevance"):
        parse_verdict('{"assistant_1": {"coherence": 8, "consistency": 7, "fluency": 9}, "assistant_2": 5}', SUMMARY)


def test_mt_bench_rating_as_fastchat_reads_it():
    assert parse_rating("Good answer.\n\nRating: [[8]]") == 8.0
    assert parse_rating("Rating: [7.5]") == 7.5  # FastChat's backup pattern
    with pytest.raises(JudgeParseError):
        parse_rating("Rating: eight")
    with pytest.raises(JudgeParseError, match="outside"):
        parse_rating("[[0]]")


def test_legacy_format_through_the_strict_entry_point_raises_instead_of_minus_one():
    from kick_core.judge import legacy_prompt

    with pytest.raises(JudgeParseError) as err:
        parse_verdict("First, solve it.\n(8, 9)", legacy_prompt("instruction", "math"))
    assert err.value.raw_text.endswith("(8, 9)")


def _item(qid, score, repeat=0, ref=9.0):
    return {"question_id": qid, "repeat": repeat, "category": "generic",
            "score": None if score is None else {"score": score},
            "reference_score": None if score is None else {"score": ref},
            "orders": [{"order": "reference_first", "raw_text": "garbled" if score is None else "{}",
                        "error": "parse: no JSON object" if score is None else None}]}


def test_strict_aggregation_counts_failures_and_never_scores_them_zero():
    items = [_item(1, 8.0), _item(2, 6.0), _item(3, None)]
    score = strict_aggregate(items)
    assert score.mean == 7.0 and score.n == 2 and score.n_failed == 1 and score.n_items == 3
    assert score.failures[0]["replies"][0]["raw_text"] == "garbled"
    with pytest.raises(JudgeFailureError, match="1 of 3"):
        strict_aggregate(items, max_failure_rate=0.2)


def test_strict_aggregation_averages_repeats_per_question_first():
    items = [_item(1, 8.0, 0), _item(1, 6.0, 1), _item(2, 4.0, 0)]
    assert strict_aggregate(items).mean == pytest.approx((7.0 + 4.0) / 2)


def test_noise_floor_spread_and_changed_items():
    runs = [{1: 8.0, 2: 7.0, 3: None}, {1: 8.0, 2: 6.0, 3: 5.0}, {1: 9.0, 2: 7.0, 3: 5.0}]
    floor = noise_floor(runs)
    assert floor.means == (7.5, pytest.approx(19 / 3), pytest.approx(7.0))
    assert floor.n_items == 2 and floor.n_changed == 2  # item 3 did not parse in every repeat
    assert floor.mean_abs_delta == pytest.approx((0 + 1 + 1 + 1 + 1 + 0) / 6)
    assert floor.spread == pytest.approx(7.5 - 19 / 3)
    assert "k=3" in str(floor)
    cmp = compare(7.2, floor)
    assert cmp["within_noise"] and cmp["dense_repeats"] == 3
    assert not compare(5.0, floor)["within_noise"]
    with pytest.raises(ValueError, match="at least 2"):
        noise_floor(runs[:1])


def test_config_defaults_are_pinned_model_and_temperature_zero(monkeypatch):
    monkeypatch.delenv("KICK_JUDGE_MODEL", raising=False)
    cfg = JudgeConfig()
    assert cfg.resolved_model == "gpt-4-0613" and cfg.resolved_temperature == 0.0 and cfg.resolved_both_orders
    legacy = JudgeConfig(task="summarisation", protocol="legacy")
    assert legacy.resolved_temperature == 0.1 and not legacy.resolved_both_orders
    assert JudgeConfig(protocol="legacy").resolved_temperature == 0.2
    assert "api_key" not in cfg.to_record()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"protocol": "legacy", "both_orders": True}, "reference first"),
    ({"protocol": "legacy", "mode": "single"}, "strict"),
    ({"task": "summary"}, "Did you mean: summarisation"),
    ({"max_failure_rate": 5}, "share of items"),
    ({"backend": "vllm"}, "not allowed"),
])
def test_config_rejects_bad_values_with_the_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        JudgeConfig(**kwargs)
