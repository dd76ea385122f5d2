"""Legacy protocol on the shipped files: the original parsers, prompt choice and the paper's numbers."""

from __future__ import annotations

import pytest

from kick_core.judge import (
    CRITERIA,
    legacy_aggregate,
    legacy_prompt,
    legacy_table,
    parse_legacy_instruction,
    parse_legacy_summary,
    read_jsonl,
)
from kick_core.judge.parse import legacy_to_verdict


@pytest.fixture
def vicuna80(fixtures):
    return read_jsonl(fixtures / "vicuna80" / "vicuna7b_dense_gpt4_judgments.jsonl")


@pytest.fixture
def summaries(fixtures):
    return read_jsonl(fixtures / "summarisation" / "vicuna7b_dense_gpt4_judgments.jsonl")


def test_instruction_parser_gives_every_recorded_score(vicuna80):
    assert len(vicuna80) == 80  # the trailer line "ChatGpt score: ..." is not a judgment
    for row in vicuna80:
        assert parse_legacy_instruction(row["text"]) == row["score"], row["question_id"]


def test_summary_parser_gives_every_recorded_score(summaries):
    assert len(summaries) == 90
    for row in summaries:
        assert parse_legacy_summary(row["text"]) == row["score"], row["question_id"]


def test_paper_instruction_following_dense_score_is_7_763_over_74_items(vicuna80, fixtures):
    score = legacy_table(vicuna80)["all"]["score"]
    assert (score.n, score.n_items) == (74, 80)
    assert score.mean * score.n == 574.5  # exact: 574.5 / 74 = 7.76351...
    assert int(score.mean * 1000) / 1000 == 7.763  # the paper's Table 3 shows it cut to three decimals
    assert round(score.reference_mean, 4) == 9.0676
    # The trailer the original wrote into this (magnitude) file agrees.
    trailer = (fixtures / "vicuna80" / "vicuna7b_dense_gpt4_judgments.jsonl").read_text().strip().splitlines()[-1]
    assert trailer == f"ChatGpt score: {score.reference_mean:.4f}\t Ours: {score.mean:.4f}"


def test_paper_large_story_coherence_is_5_883(summaries, fixtures):
    categories = {q["question_id"]: q["category"] for q in read_jsonl(fixtures / "summarisation" / "questions.jsonl")}
    table = legacy_table(summaries, CRITERIA["summarisation"], categories)
    assert round(table["large"]["coherence"].mean, 3) == 5.883
    assert table["large"]["coherence"].n == 30
    assert round(table["small"]["coherence"].mean, 2) == 7.78  # PROTOCOL.md noise-floor table, first run
    assert table["all"]["consistency"].n == 90  # 'consistency' reads the original's 'consistent' key


def test_unparsed_items_are_the_three_math_and_three_coding(vicuna80, fixtures):
    categories = {q["question_id"]: q["category"] for q in read_jsonl(fixtures / "vicuna80" / "questions.jsonl")}
    failed = sorted(categories[r["question_id"]] for r in vicuna80 if r["score"] == [-1, -1])
    assert failed == ["coding"] * 3 + ["math"] * 3


@pytest.mark.parametrize(("text", "expected"), [
    ("8 7\nBoth good", [8.0, 7.0]),
    ("8,7\nx", [8.0, 7.0]),            # commas become spaces
    ("8, 7\nx", [-1, -1]),             # ... so "8, 7" has three tokens and fails
    ("8.5/10 9/10\nx", [-1, -1]),       # the coding judge's habit
    ("First, solve it.\n(8, 9)", [-1, -1]),  # the math prompt's tuple comes last
    ("8  7", [-1, -1]),                # split on a single space: an empty token
    ("error", [-1, -1]),               # what the original stored after failed API calls
])
def test_instruction_parser_edge_cases(text, expected):
    assert parse_legacy_instruction(text) == expected


def test_summary_parser_uses_only_tokens_0_and_1_and_fails_short_replies():
    assert parse_legacy_summary("8 7 extra\n8 7\n9 8\n7 7\nwhy")["coherence"] == [8.0, 7.0]
    assert parse_legacy_summary("8 7\n8 7\n9 8") == [-1, -1]
    assert parse_legacy_summary("Coherence: 8 7\n8 7\n9 8\n7 7") == [-1, -1]


def test_legacy_aggregation_excludes_failures_silently():
    score = legacy_aggregate([[9.0, 8.0], [-1, -1], [7.0, 6.0]])
    assert (score.mean, score.reference_mean, score.n, score.n_items) == (7.0, 8.0, 2, 3)
    assert legacy_to_verdict([-1, -1], ("score",)) is None


@pytest.mark.parametrize(("category", "reviewer_id", "name"), [
    ("coding", 2, "coding"), ("math", 3, "math"), ("generic", 1, "general"), ("writing", 1, "general"),
    ("common-sense", 1, "general"),
])
def test_instruction_prompt_is_chosen_by_category_with_general_fallback(category, reviewer_id, name):
    prompt = legacy_prompt("instruction", category)
    assert prompt.reviewer_id == reviewer_id and prompt.name.endswith(name)


def test_legacy_prompts_render_the_original_template():
    p = legacy_prompt("instruction", "generic")
    text = p.render("Q?", ["ONE", "TWO"])
    assert text.startswith("[Question]\nQ?\n\n[The Start of Assistant 1's Answer]\nONE\n\n[The End of Assistant 1's")
    assert text.endswith("does not affect your judgment.\n\n")
    assert p.system == "You are a helpful and precise assistant for checking the quality of the answer."
    s = legacy_prompt("summarisation", "large")
    assert s.reviewer_id == 3
    assert "[The Start of Assistant 2's Answer]\nTWO\n\n[The End of Assistant 2's Summary]" in s.render("S", ["1", "TWO"])
