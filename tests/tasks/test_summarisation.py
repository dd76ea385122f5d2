"""Summarisation: .story / shipped-prompt loaders, bucket boundaries, context exclusion, metrics, end to end."""

import json
import logging
import shutil

import pytest
from task_helpers import FIXTURES, make_cfg

from kick_core.engine import Generation
from kick_core.errors import ConfigError
from kick_core.evaluate import evaluate
from kick_core.tasks import TASKS
from kick_core.tasks.summarisation import (
    STRICT_INSTRUCTION,
    length_bucket,
    legacy_story_text,
    parse_story,
    read_question_file,
    reference_summary,
    summary_rubric,
)

TASK = TASKS["summarisation"]
STORIES = str(FIXTURES / "cnn_dm")


@pytest.fixture(scope="module")
def long_llama(tok):
    """The tiny Llama with a 4096-token context: byte-level prompts of whole stories exceed its 512."""
    from kick_core.testing import tiny_model

    model = tiny_model("llama", vocab_size=len(tok))
    model.config.max_position_embeddings = 4096  # RoPE: positions are computed, not learnt
    return model


def _gen(text):
    return Generation(text=text, prompt_ids=(), token_ids=(5, 1), stop_reason="eos")


@pytest.mark.parametrize(("words", "bucket"), [(1, "small"), (470, "small"), (471, "mid"), (789, "mid"),
                                               (790, "large"), (5000, "large")])
def test_paper_word_buckets_are_disjoint_at_their_boundaries(words, bucket):
    assert length_bucket(words) == bucket


def test_story_file_splits_article_paragraphs_from_highlights():
    raw = "First para.\n\nSecond para.\n\n@highlight\n\nOne point\n\n@highlight\n\nTwo points .\n"
    assert parse_story(raw) == (["First para.", "Second para."], ["One point", "Two points ."])
    assert legacy_story_text(raw) == "First para.Second para.@highlightOne point@highlightTwo points ."
    assert reference_summary(["One point", "Two points ."]) == "One point. Two points."


def test_strict_buckets_by_article_words_and_drops_duplicate_stories():
    ex = TASK.load(make_cfg(task="summarisation", dataset=STORIES).task, seed=0)
    buckets = {e.id: e.meta["bucket"] for e in ex}
    assert len(ex) == 4 and len({"0002b", "0002b_copy"} & set(buckets)) == 1  # the byte-identical copy is dropped
    assert buckets["0001a"] == "small" and buckets["0003c"] == "mid" and buckets["0004d"] == "large"
    first = next(e for e in ex if e.id == "0001a")
    assert "@highlight" not in first.input and "\n\n" in first.input
    assert first.answers[0] == "Council discusses a new bridge"


def test_length_selects_one_bucket_and_n_examples_counts_per_bucket():
    ex = TASK.load(make_cfg(task="summarisation", dataset=STORIES, length="small", n_examples=1).task, seed=0)
    assert len(ex) == 1 and ex[0].meta["bucket"] == "small"


def test_legacy_glues_lines_keeps_highlights_and_uses_story_folders():
    ex = TASK.load(make_cfg(task="summarisation", protocol="legacy", dataset=STORIES).task, seed=0)
    by_id = {e.id: e for e in ex}
    assert by_id["0002b_copy"].meta["bucket"] == "mid"  # the folder, as the study's selected_stories/
    assert by_id["0001a"].input.startswith("Summarize the given story in less than 150 words")
    assert by_id["0003c"].input.startswith("Summarize the given news") and "@highlight" in by_id["0003c"].input


def test_shipped_legacy_set_has_90_prompts_30_per_bucket_with_leaked_highlights():
    ex = read_question_file()
    assert len(ex) == 90 and [sum(e.meta["bucket"] == b for e in ex) for b in ("small", "mid", "large")] == [30] * 3
    assert ex[0].id == "1" and "@highlight" in ex[0].input
    assert ex[0].answers[0] == "The incident occurred around 6 a.m., Xinhua News Agency says"
    big = TASK.load(make_cfg(task="summarisation", protocol="legacy", dataset="llm-kick", length="large",
                             n_examples=2).task, seed=0)
    assert [e.meta["bucket"] for e in big] == ["large", "large"]


def test_shipped_format_file_loads_like_the_packaged_set():
    path = FIXTURES / "judge" / "summarisation" / "questions.jsonl"
    ex = TASK.load(make_cfg(task="summarisation", protocol="legacy", dataset=str(path), n_examples=3).task, seed=0)
    assert len(ex) == 9 and ex[0].input.startswith("Summarize the given story")


def test_strict_refuses_the_glued_shipped_prompts():
    with pytest.raises(ConfigError, match="protocol: legacy"):
        TASK.load(make_cfg(task="summarisation", dataset="llm-kick").task, seed=0)


def test_golden_strict_prompt_uses_the_vicuna_template(tok):
    cfg = make_cfg(task="summarisation", dataset=STORIES, length="small", n_examples=1)
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 4096)
    assert p.text.startswith("A chat between a curious user") and p.text.endswith(" ASSISTANT:")
    assert f"USER: {STRICT_INSTRUCTION}The city council" in p.text and p.max_new_tokens == 320


def test_prompts_that_do_not_fit_the_context_are_excluded_and_counted(tok):
    cfg = make_cfg(task="summarisation", dataset=STORIES, max_new_tokens=16)
    ex = TASK.load(cfg.task, seed=0)
    sizes = sorted(p.meta["n_prompt_tokens"] for p in TASK.prompts(ex, cfg, tok, 10**6))
    limit = sizes[1] + 16  # the two shortest prompts and their 16 new tokens fit exactly
    prompts = TASK.prompts(ex, cfg, tok, limit)
    assert len(prompts) == 2 and sum(TASK._excluded.values()) == 2
    _, meta = TASK.aggregate([TASK.score(p, _gen("x."), cfg, tok) for p in prompts], cfg)
    assert meta["n_excluded_context"] == 2 and sum(meta["excluded_per_bucket"].values()) == 2


def test_legacy_overflow_keeps_the_item_with_an_empty_answer(tok):
    cfg = make_cfg(task="summarisation", protocol="legacy", dataset=STORIES, length="large")
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 512)
    assert p.max_new_tokens == 0 and p.meta["overflow"]


def test_scores_rouge_length_and_leave_judge_to_the_judge_stage(tok):
    cfg = make_cfg(task="summarisation", dataset=STORIES, length="small", n_examples=1)
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 4096)
    rec = TASK.score(p, _gen(" Council discusses a new bridge. Work to start in spring."), cfg, tok)
    assert rec["scores"]["rouge1"] == pytest.approx(1.0) and rec["scores"]["length_ok"] == 1.0
    assert rec["reference"] == "Council discusses a new bridge. Work to start in spring."
    assert not any(k.startswith("judge_") for k in rec["scores"])
    assert TASK.score(p, _gen(""), cfg, tok)["scores"]["length_ok"] == 0.0


def test_summary_rubric_rewards_key_facts_and_penalises_loops():
    story = "Ann Lee was born in Oslo in 1950. Ann Lee works for Acme."
    facts = ["Ann Lee", "Oslo", "1950", "Acme"]
    good = summary_rubric(story, "Ann Lee was born in Oslo in 1950. Ann Lee works for Acme.", facts)
    loop = summary_rubric(story, "Ann Ann Ann Ann Ann Ann", facts)
    assert good["coherence"] == good["consistency"] == good["relevance"] == 10.0 and good["fluency"] > 9
    assert loop["relevance"] == 1.0 and loop["fluency"] < 3 and loop["coherence"] == 1.0


def test_end_to_end_on_story_files_without_a_judge_reports_judge_metrics_missing(long_llama, tok, tmp_path, caplog):
    (tmp_path / "data").mkdir()
    shutil.copy(FIXTURES / "cnn_dm" / "small" / "0001a.story", tmp_path / "data")
    cfg = make_cfg(task="summarisation", dataset=str(tmp_path / "data"), max_new_tokens=6)
    with caplog.at_level(logging.WARNING):
        res = evaluate(long_llama, tok, cfg, out_dir=tmp_path / "run", progress=False)
    assert "rougeL" in res.metrics and "rougeL_small" in res.metrics
    assert not any(k.startswith("judge_") for k in res.metrics)  # missing, not 0
    assert res.meta["judge"]["status"] == "missing" and "MISSING" in caplog.text


def test_end_to_end_on_the_world_with_the_rubric_judge_and_resume(long_llama, tok, tmp_path):
    cfg = make_cfg(task="summarisation", dataset="world", n_examples=1, max_new_tokens=6)
    res = evaluate(long_llama, tok, cfg, out_dir=tmp_path, progress=False)
    assert res.meta["judge"]["status"] == "ok" and res.meta["judge"]["backend"] == "rubric"
    assert {"judge_coherence", "judge_relevance_large", "key_fact_recall"} <= set(res.metrics)
    lines = [json.loads(x) for x in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(r["judge"]["orders"] and r["judge"]["score"] for r in lines)
    again = evaluate(long_llama, tok, cfg, out_dir=tmp_path, progress=False)
    assert again.meta["n_resumed"] == 3 and again.meta["judge"]["n_reused"] == 3
    assert again.metrics["judge_coherence"] == res.metrics["judge_coherence"]


def test_when_every_story_is_excluded_the_run_reports_it_instead_of_failing(tok):
    from kick_core.testing import tiny_model

    short = tiny_model("llama", vocab_size=len(tok))
    short.config.max_position_embeddings = 512  # the context the length check reads
    cfg = make_cfg(task="summarisation", dataset="world", n_examples=1, max_new_tokens=8)
    res = evaluate(short, tok, cfg, progress=False)  # byte-level prompts of ~550 tokens > 512
    assert res.metrics == {} and res.meta["n_excluded_context"] == 3 and res.meta["judge"]["status"] == "empty"


def test_hub_rows_in_the_cnn_dailymail_schema_become_stories(monkeypatch):
    import kick_core.tasks.summarisation as S

    calls = []
    rows = [{"id": "abc", "article": "Short news.", "highlights": "Point one .\nPoint two"},
            {"id": "def", "article": " ".join(["word"] * 800), "highlights": "Long"}]
    monkeypatch.setattr(S, "load_hub", lambda *args: calls.append(args) or rows)
    ex = TASK.load(make_cfg(task="summarisation", dataset="abisee/cnn_dailymail").task, seed=0)
    assert calls == [("abisee/cnn_dailymail", "3.0.0", "test")]
    assert [(e.id, e.meta["bucket"]) for e in ex] == [("abc", "small"), ("def", "large")]
    assert ex[0].answers == ("Point one .", "Point two") and reference_summary(ex[0].answers) == "Point one. Point two."
