"""The judge step of evaluate() on the judged tasks, against the loopback OpenAI-compatible server."""

import json

import pytest

from kick_core.config import RunConfig
from kick_core.evaluate import evaluate
from kick_core.judge import JudgeFailureError
from kick_core.judge.records import noise_floor_examples
from kick_core.tasks import TASKS


@pytest.fixture(scope="module")
def tiny():
    from kick_core.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return tiny_model("llama", vocab_size=len(tok)), tok


def _cfg(url, **flat):
    """Each test names its own judge_model: the judge cache is per session and keyed on the model."""
    base = dict(task="instruction", dataset="vicuna80", n_examples=2, max_new_tokens=4, n_bootstrap=50,
                judge="openai", judge_base_url=url, judge_model="judge-test")
    return RunConfig.from_flat(**{**base, **flat})


def test_strict_instruction_is_judged_in_both_orders_and_records_keep_raw_replies(tiny, fake_openai, tmp_path):
    fake_openai.reply = lambda body: 'Fine.\n{"assistant_1": 8, "assistant_2": 6}'
    res = evaluate(*tiny, _cfg(fake_openai.url), out_dir=tmp_path, progress=False)
    assert fake_openai.n == 4 and res.metrics["judge_score"]["value"] == pytest.approx(7.0)  # (6 + 8) / 2
    text = (tmp_path / "examples.jsonl").read_text()
    rec = json.loads(text.splitlines()[0])
    assert [o["raw_text"] for o in rec["judge"]["orders"]] == ['Fine.\n{"assistant_1": 8, "assistant_2": 6}'] * 2
    assert rec["judge"]["reference_score"] == {"score": 7.0} and "sk-test-secret-key" not in text
    assert res.meta["judge"]["usage"]["requests"] == 4 and res.meta["judge"]["judge_model"] == "judge-test"
    again = evaluate(*tiny, _cfg(fake_openai.url), out_dir=tmp_path, progress=False)
    assert fake_openai.n == 4 and again.meta["judge"]["n_reused"] == 2


def test_legacy_instruction_uses_the_original_prompt_and_parser(tiny, fake_openai):
    fake_openai.reply = lambda body: "9 5\nAssistant 1 is better."
    res = evaluate(*tiny, _cfg(fake_openai.url, protocol="legacy", judge_model="judge-legacy"), progress=False)
    assert fake_openai.n == 2 and res.metrics["judge_score"]["value"] == 5.0
    assert any("[The Start of Assistant 1's Answer]\nHere are some tips" in m for m in fake_openai.user_messages())


def test_strict_parse_failures_are_recorded_then_fail_the_run(tiny, fake_openai, tmp_path):
    fake_openai.reply = lambda body: "I cannot decide."
    with pytest.raises(JudgeFailureError, match="did not parse"):
        evaluate(*tiny, _cfg(fake_openai.url, judge_model="judge-fail"), out_dir=tmp_path, progress=False)
    rec = json.loads((tmp_path / "examples.jsonl").read_text().splitlines()[0])
    assert rec["scores"]["judge_score"] is None and rec["judge"]["orders"][0]["raw_text"] == "I cannot decide."
    assert rec["judge"]["orders"][0]["error"].startswith("parse")


def test_summarisation_single_mode_uses_the_structured_single_answer_prompt(tiny, fake_openai, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.story").write_text("Rain fell.\n\n@highlight\n\nIt rained\n")
    fake_openai.reply = lambda body: '{"coherence": 7, "consistency": 8, "fluency": 9, "relevance": 6}'
    cfg = _cfg(fake_openai.url, task="summarisation", dataset=str(tmp_path / "data"), judge_mode="single")
    res = evaluate(*tiny, cfg, progress=False)
    assert fake_openai.n == 1 and res.metrics["judge_relevance"]["value"] == 6.0
    assert res.metrics["judge_fluency_small"]["value"] == 9.0 and "rougeL" in res.metrics


def test_noise_floor_rejudges_the_same_answers_k_times(tiny, fake_openai):
    replies = iter(['{"assistant_1": 8, "assistant_2": %d}' % s for s in (6, 6, 7, 7, 6, 8)])
    fake_openai.reply = lambda body: next(replies)
    cfg = _cfg(fake_openai.url, judge_mode="pairwise", judge_model="judge-noise")
    res = evaluate(*tiny, cfg.__class__.from_flat(**{**cfg.to_flat(), "judge": "none"}), progress=False)
    floor = noise_floor_examples(TASKS["instruction"], res.examples[:1], cfg, k=3, progress=False)
    assert len(floor.means) == 3 and fake_openai.n == 6


def test_judge_settings_are_validated_with_the_config():
    from kick_core.errors import ConfigError

    with pytest.raises(ConfigError, match="only has rules for the embedded world"):
        RunConfig.from_flat(task="summarisation", dataset="llm-kick", protocol="legacy", judge="rubric")
    with pytest.raises(ConfigError, match="judge_mode 'single' has no legacy prompt"):
        RunConfig.from_flat(task="instruction", protocol="legacy", judge_mode="single")
    with pytest.raises(ConfigError, match="judge="):
        RunConfig.from_flat(task="instruction", judge="gpt4")


def test_a_local_hf_judge_is_selected_by_config_and_its_unparsed_replies_are_kept(tiny, tiny_model_dir):
    cfg = RunConfig.from_flat(task="instruction", dataset="vicuna80", protocol="legacy", n_examples=1,
                              max_new_tokens=3, n_bootstrap=20, judge="hf", judge_model=str(tiny_model_dir))
    res = evaluate(*tiny, cfg, progress=False)  # a random tiny model never writes "a b" on its first line
    rec = res.examples[0]
    assert res.meta["judge"]["backend"] == "hf" and res.meta["judge"]["n_failed"] == 1
    assert rec["scores"]["judge_score"] is None and isinstance(rec["judge"]["orders"][0]["raw_text"], str)
    assert "judge_score" not in res.metrics  # legacy drops failures silently; meta counts them
