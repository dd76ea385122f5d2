"""evaluate(): records, metrics with CIs, determinism and resuming an interrupted run."""

import json

import pytest
from task_helpers import FIXTURES, make_cfg

import kick_core.evaluate as ev
from kick_core.errors import KickError, UnknownNameError
from kick_core.evaluate import evaluate

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CONFIGS = {
    "factoid_qa": dict(task="factoid_qa", protocol="strict", dataset=str(FIXTURES / "freebase")),
    "mcq": dict(task="mcq", protocol="strict", dataset=str(FIXTURES / "mmlu"), n_examples=10, n_shots=2),
    "mcq_cloze": dict(task="mcq", protocol="strict", dataset=str(FIXTURES / "mmlu"), n_examples=10, n_shots=2,
                      formulation="cloze"),
    "icr_qa": dict(task="icr_qa", protocol="legacy", dataset=str(FIXTURES / "triviaqa"), max_new_tokens=4),
    "perplexity": dict(task="perplexity", protocol="legacy", dataset=str(FIXTURES / "corpus"), seqlen=64),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_task_writes_records_and_metrics(llama, tok, tmp_path, name):
    cfg = make_cfg(**CONFIGS[name])
    res = evaluate(llama, tok, cfg, out_dir=tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in res.examples]
    assert all({"id", "prompt_hash", "prompt", "output", "reference", "scores", "flags"} <= set(r) for r in lines)
    primary = res.meta["primary_metric"]
    assert primary in res.metrics and set(res.metrics[primary]) == {"value", "ci_low", "ci_high", "n", "higher_is_better"}
    assert "examples" not in res.as_dict()


def test_cloze_scores_match_the_naive_reference(llama, tok, tmp_path):
    """The cloze runner's prediction is the argmax per character of the reference log-likelihoods."""
    from kick_core.engine.scoring import ScoreRequest, loglikelihood_naive
    from kick_core.tasks import TASKS

    cfg = make_cfg(**CONFIGS["mcq_cloze"])
    res = evaluate(llama, tok, cfg, out_dir=tmp_path, progress=False)
    prompts = TASKS["mcq"].prompts(TASKS["mcq"].load(cfg.task, cfg.seed), cfg, tok, 2048)
    ref = loglikelihood_naive(llama, tok, [ScoreRequest(p.text, p.continuations) for p in prompts])
    for rec, p, r in zip(res.examples, prompts, ref):
        assert rec["choice_scores"] == pytest.approx(list(r.logprobs), abs=1e-4)
        per_char = [lp / len(c) for lp, c in zip(r.logprobs, p.example.choices)]
        assert rec["prediction"] == "ABCD"[per_char.index(max(per_char))]
    assert res.meta["primary_metric"] == "accuracy" and res.metrics["accuracy"]["n"] == 10


def test_rerun_gives_identical_records(llama, tok, tmp_path):
    cfg = make_cfg(**CONFIGS["mcq"])
    a = evaluate(llama, tok, cfg, out_dir=tmp_path / "a", progress=False)
    b = evaluate(llama, tok, cfg, out_dir=tmp_path / "b", progress=False)
    assert a.examples == b.examples and a.metrics == b.metrics


def test_resume_computes_only_missing_examples(llama, tok, tmp_path, monkeypatch):
    cfg = make_cfg(**CONFIGS["factoid_qa"])
    full = evaluate(llama, tok, cfg, out_dir=tmp_path / "full", progress=False)
    path = tmp_path / "part" / "examples.jsonl"
    path.parent.mkdir()
    lines = (tmp_path / "full" / "examples.jsonl").read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:15])  # two records, then a torn write

    seen = []
    real = ev.generate
    monkeypatch.setattr(ev, "generate", lambda m, t, prompts, **kw: (seen.extend(prompts), real(m, t, prompts, **kw))[1])
    resumed = evaluate(llama, tok, cfg, out_dir=path.parent, progress=False)
    assert len(seen) == len(lines) - 2
    assert resumed.meta["n_resumed"] == 2
    assert resumed.examples == full.examples and resumed.metrics == full.metrics
    assert path.read_text() == (tmp_path / "full" / "examples.jsonl").read_text()


def test_resume_refuses_records_built_from_other_prompts(llama, tok, tmp_path):
    evaluate(llama, tok, make_cfg(**CONFIGS["factoid_qa"]), out_dir=tmp_path, progress=False)
    other = make_cfg(**{**CONFIGS["factoid_qa"], "max_new_tokens": 5})
    with pytest.raises(KickError, match="prompt hash"):
        evaluate(llama, tok, other, out_dir=tmp_path, progress=False)


def test_unknown_task_fails_with_suggestion(llama, tok, monkeypatch):
    from kick_core.tasks import TASKS

    monkeypatch.delitem(TASKS, "summarisation")  # a config-valid task name that is not registered
    cfg = make_cfg(task="summarisation", dataset=str(FIXTURES))
    with pytest.raises(UnknownNameError, match="Available: factoid_qa"):
        evaluate(llama, tok, cfg, progress=False)


def test_world_dataset_reads_the_world_folders_in_real_formats(tmp_path, monkeypatch):
    import sys
    from types import SimpleNamespace

    from kick_core.tasks import TASKS

    for sub, src in (("factoid", "freebase"), ("mmlu", "mmlu"), ("triviaqa", "triviaqa")):
        (tmp_path / sub).symlink_to(FIXTURES / src)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "valid.txt").write_text("world corpus text")
    seeds = []
    fake = SimpleNamespace(ensure_world_data=lambda seed: seeds.append(seed) or tmp_path)
    monkeypatch.setitem(sys.modules, "kick_core.world", fake)
    cfg = make_cfg(task="factoid_qa", protocol="strict", dataset="world", world_seed=3)
    assert TASKS["factoid_qa"].load(cfg.task, 0, world_seed=3)[0].id == "FreebaseQA-eval-0" and seeds == [3]
    assert TASKS["mcq"].load(make_cfg(task="mcq", dataset="world").task, 0)[0].meta["subject"] == "abstract_algebra"
    assert TASKS["icr_qa"].load(make_cfg(task="icr_qa", dataset="world").task, 0)[0].id == "tc_1"
    corpus = TASKS["perplexity"].load(make_cfg(task="perplexity", dataset="world").task, 0)[0]
    assert corpus.input == "world corpus text"
