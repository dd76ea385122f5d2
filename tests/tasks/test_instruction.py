"""Instruction following: Vicuna-80 and MT-Bench loaders, two-turn generation, repetition metrics, judge wiring."""

import json

import pytest
from task_helpers import FIXTURES, make_cfg

from kick_core import metrics as M
from kick_core.engine import Generation
from kick_core.evaluate import evaluate
from kick_core.tasks import TASKS
from kick_core.tasks.instruction import parse_question, read_questions, render_conversation, vicuna80

TASK = TASKS["instruction"]
MT_BENCH = str(FIXTURES / "instruction" / "mt_bench_question.jsonl")
VICUNA_FILE = str(FIXTURES / "judge" / "vicuna80" / "questions.jsonl")


def test_vicuna80_is_80_single_turn_questions_in_9_categories_with_gpt35_references():
    ex = vicuna80()
    assert len(ex) == 80 and all(len(e.meta["turns"]) == 1 for e in ex)
    assert len({e.meta["category"] for e in ex}) == 9 and ex[0].input == "How can I improve my time management skills?"
    assert ex[0].meta["references"][0].startswith("Here are some tips to improve your time management skills")


def test_fastchat_vicuna_file_and_mt_bench_rows_parse():
    assert read_questions(FIXTURES / "judge" / "vicuna80" / "questions.jsonl")[60].meta["category"] == "coding"
    (w, r, m) = read_questions(FIXTURES / "instruction" / "mt_bench_question.jsonl")
    assert len(w.meta["turns"]) == 2 and w.meta["references"] is None
    assert r.meta["references"] == ["You are in second place.", "Uncertain."] and m.meta["category"] == "math"
    hub_row = parse_question({"prompt_id": 7, "prompt": ["a", "b"], "category": "math", "reference": ["1", "2"]})
    assert hub_row.id == "7" and hub_row.meta["turns"] == ["a", "b"]


def test_distinct_n_and_repetition_on_literal_tokens():
    assert M.distinct_n([1, 2, 3, 4], 1) == 1.0 and M.distinct_n([7, 7, 7, 7], 1) == 0.25
    assert M.distinct_n("a b a b".split(), 2) == pytest.approx(2 / 3) and M.distinct_n([1], 2) is None
    assert M.repetition_rate([1, 2, 3, 4, 1, 2, 3, 4], 4) == pytest.approx(1 - 4 / 5)


def test_rouge_on_literal_strings():
    s = M.rouge("the cat sat on the mat", "the cat was on the mat")
    assert s["rouge1"] == pytest.approx(5 / 6) and s["rouge2"] == pytest.approx(0.6)
    assert M.rouge("", "the cat")["rougeL"] == 0.0 and M.within_words("word " * 151) == 0.0


def test_golden_first_turn_prompt_and_repetition_scores(tok):
    cfg = make_cfg(task="instruction", dataset=VICUNA_FILE, n_examples=1, protocol="legacy")
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)
    assert p.id == "1/t1" and p.text == ("A chat between a curious user and an artificial intelligence assistant. The "
                                         "assistant gives helpful, detailed, and polite answers to the user's questions. "
                                         "USER: How can I improve my time management skills? ASSISTANT:")
    rec = TASK.score(p, Generation(" plan plan plan", (), (9, 9, 9, tok.eos_token_id), "eos"), cfg, tok)
    assert rec["scores"]["unique_tokens"] == 1 and rec["scores"]["distinct_1"] == pytest.approx(1 / 3)
    assert rec["category"] == "generic" and rec["judge_question"] == "How can I improve my time management skills?"
    assert "rougeL" not in rec["scores"]  # this file's question has no reference answer


def test_answers_are_scored_by_rouge_against_the_vicuna80_reference(tok):
    cfg = make_cfg(task="instruction", dataset="vicuna80", n_examples=2)
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[0]
    reference = p.example.meta["references"][0]
    same = TASK.score(p, Generation(reference, (), (5, 6), "eos"), cfg, tok)
    assert same["scores"]["rougeL"] == pytest.approx(1.0) and same["reference"] == reference
    other = TASK.score(p, Generation("Bananas are yellow.", (), (5, 6), "eos"), cfg, tok)
    assert other["scores"]["rouge1"] < 0.1


def test_second_turn_follows_the_models_own_first_answer(tok):
    cfg = make_cfg(task="instruction", dataset=MT_BENCH)
    first = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)
    done = {p.id: {"output": f"answer to {p.id}"} for p in first}
    second = TASK.followups(first, done, cfg, tok, 2048)
    assert [p.id for p in second] == [p.id.replace("/t1", "/t2") for p in first]
    assert "ASSISTANT: answer to 81/t1</s>USER: Rewrite your previous response." in second[0].text
    assert second[0].meta["judge_question"] == render_conversation(first[0].example.meta["turns"], ["answer to 81/t1"])
    assert TASK.followups(second, done, cfg, tok, 2048) == []
    legacy = make_cfg(task="instruction", dataset=MT_BENCH, protocol="legacy")
    assert TASK.followups(first, done, legacy, tok, 2048) == []  # the study: first turn only


def test_mt_bench_end_to_end_two_turns_per_category_and_judge_missing(llama, tok, tmp_path):
    cfg = make_cfg(task="instruction", dataset=MT_BENCH, max_new_tokens=5)
    res = evaluate(llama, tok, cfg, out_dir=tmp_path, progress=False)
    assert [r["id"] for r in res.examples] == ["81/t1", "101/t1", "111/t1", "81/t2", "101/t2", "111/t2"]
    assert res.meta["benchmark"] == "mt_bench" and res.meta["n_turns"] == 2 and res.meta["judge"]["status"] == "missing"
    assert "distinct_2" in res.metrics and "judge_score" not in res.metrics
    again = evaluate(llama, tok, cfg, out_dir=tmp_path, progress=False)
    assert again.meta["n_resumed"] == 6 and [r["output"] for r in again.examples] == [r["output"] for r in res.examples]


def test_world_questions_are_judged_by_the_rubric_with_constraints(llama, tok, tmp_path):
    cfg = make_cfg(task="instruction", dataset="world", n_examples=2, max_new_tokens=5)
    res = evaluate(llama, tok, cfg, out_dir=tmp_path, progress=False)
    assert res.meta["benchmark"] == "world" and res.meta["judge"]["backend"] == "rubric"
    assert {"judge_score", "judge_score_turn1", "judge_score_world_instruction", "constraint_pass"} <= set(res.metrics)
    rec = json.loads((tmp_path / "examples.jsonl").read_text().splitlines()[0])
    assert rec["constraints"] and 1 <= rec["scores"]["judge_score"] <= 10
    assert {o["order"] for o in rec["judge"]["orders"]} == {"reference_first", "candidate_first"}


def test_sampling_is_seeded_and_differs_from_greedy(llama, tok):
    base = dict(task="instruction", dataset=VICUNA_FILE, n_examples=3, max_new_tokens=6, judge="none")
    greedy = evaluate(llama, tok, make_cfg(**base), progress=False)
    s1 = evaluate(llama, tok, make_cfg(**base, decoding="sample", temperature=0.7), progress=False)
    s2 = evaluate(llama, tok, make_cfg(**base, decoding="sample", temperature=0.7), progress=False)
    outs = lambda r: [x["output"] for x in r.examples]  # noqa: E731
    assert outs(s1) == outs(s2) and outs(s1) != outs(greedy)
