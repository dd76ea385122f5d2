"""Judge faults from a loopback server: each is retried or recorded, never dropped, scored as a tie or cached."""

from __future__ import annotations

import pytest

from kick_core.judge import JudgeCache, JudgeConfig, OpenAIJudge, judge_records

REPLY = '{"assistant_1": 9, "assistant_2": 5}'


def _records(n=1):
    return [{"question_id": i, "question": f"Question {i}?", "reference": f"REFERENCE {i}", "answer": f"ANSWER {i}",
             "category": "generic"} for i in range(n)]


def _judge(fake, cache, *, max_retries=2, timeout_s=10.0, records=None, **kw):
    cfg = JudgeConfig(requests_per_second=1000.0, max_retries=max_retries, max_failure_rate=1.0, **kw)
    backend = OpenAIJudge("gpt-4-0613", fake.url, max_retries=cfg.max_retries, timeout_s=timeout_s)
    return judge_records(records or _records(), cfg, backend=backend, cache=cache, progress=False)


def test_retry_after_is_honoured(fake_openai, tmp_path):
    fake_openai.reply = lambda body: REPLY
    fake_openai.fail = ["retry-after"]
    run = _judge(fake_openai, JudgeCache(tmp_path / "c.sqlite"), records=_records(1))
    assert run.items[0]["score"] is not None and run.usage["http_retries"] == 1
    assert fake_openai.n == 3  # two orders, one of them retried
    # the refused request's retry came after the server's 1 s, not the client's default backoff
    assert fake_openai.times[2] - fake_openai.times[0] >= 0.9


@pytest.mark.parametrize("fault", ["truncated", "no-choices", "hang"])
def test_a_broken_answer_is_retried_then_scored(fake_openai, tmp_path, fault):
    fake_openai.reply = lambda body: REPLY
    fake_openai.hang_s = 2.0
    fake_openai.fail = [fault]
    cache = JudgeCache(tmp_path / "c.sqlite")
    run = _judge(fake_openai, cache, timeout_s=0.5)
    item = run.items[0]
    assert item["score"] is not None, item
    assert run.n_failed == 0 and run.usage["http_retries"] >= 1  # the fault is counted, not hidden


@pytest.mark.parametrize("fault", ["truncated", "no-choices", "hang", 500])
def test_a_fault_that_persists_is_a_recorded_failure_never_a_tie_and_never_cached(fake_openai, tmp_path, fault):
    fake_openai.reply = lambda body: REPLY
    fake_openai.hang_s = 1.0
    fake_openai.fail = [fault] * 20
    cache = JudgeCache(tmp_path / "c.sqlite")
    run = _judge(fake_openai, cache, max_retries=1, timeout_s=0.3, records=_records(2))
    assert run.n_failed == 2 and all(i["score"] is None for i in run.items)
    assert all(o.get("error") for i in run.items for o in i["orders"])
    assert len(cache) == 0
    fake_openai.fail = []
    again = _judge(fake_openai, cache, records=_records(2))
    assert again.n_failed == 0 and all(i["score"] is not None for i in again.items)


@pytest.mark.parametrize("first", ["Both are good, I think.", ""])
def test_an_unparseable_or_empty_verdict_is_reasked_and_counted(fake_openai, tmp_path, first):
    fake_openai.reply = lambda body: REPLY if len(body["messages"]) > 2 else first
    run = _judge(fake_openai, JudgeCache(tmp_path / "c.sqlite"))
    assert run.items[0]["score"] is not None and run.usage["reasks"] == 2


@pytest.mark.slow
def test_the_api_key_is_in_no_file_a_judged_sweep_writes(fake_openai, tiny_model_dir, tmp_path):
    """A judged sweep through the notebooks (key in the environment only): grep every file it wrote."""
    import os
    from pathlib import Path

    from kick_core.runner import run_study

    fake_openai.reply = lambda body: 'Fine.\n{"assistant_1": 8, "assistant_2": 6}'
    fake_openai.fail = ["retry-after", 500]  # error paths write logs too
    params = tmp_path / "judged.yaml"
    params.write_text(f"study: judged\nbase: {{model: {tiny_model_dir}, task: instruction, dataset: vicuna80, "
                      f"n_examples: 2, max_new_tokens: 4, n_bootstrap: 20, judge: openai, "
                      f"judge_base_url: '{fake_openai.url}', judge_model: judge-key-test}}\n"
                      "sweep: [{method: [dense]}]\n")
    summary = run_study(params, results_dir=tmp_path / "res", progress=False)
    assert len(summary.ok) == 1 and fake_openai.n >= 4
    key = os.environ["KICK_JUDGE_API_KEY"].encode()
    trees = [tmp_path / "res", Path(os.environ["KICK_CACHE"])]
    files = [p for t in trees for p in t.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ipynb" for p in files) and any(p.name == "record.json" for p in files)
    leaked = [str(p) for p in files if key in p.read_bytes()]
    assert not leaked, leaked
