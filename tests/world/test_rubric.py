"""The rule-based rubric judge."""

from __future__ import annotations

import pytest

from kick_core.world.rubric import count_sentences, rubric_score

Q = {"question_id": 1, "category": "world_instruction", "turns": ["t1", "t2"],
     "constraints": [[{"type": "bullets", "n": 3}, {"type": "mention", "text": "Zorvak"}],
                     [{"type": "sentences", "n": 1}, {"type": "max_words", "n": 10}]]}


def test_all_constraints_met_scores_ten():
    res = rubric_score(Q, ["- a Zorvak\n- b\n- c", "One short sentence."])
    assert res["score"] == 10 and res["passed"] == res["total"] == 4


def test_nothing_met_scores_one():
    assert rubric_score(Q, ["no bullets", "One. Two. " + "word " * 20])["score"] == 1


def test_missing_turn_fails_its_constraints():
    res = rubric_score(Q, ["- a Zorvak\n- b\n- c"])
    assert res["passed"] == 2 and not any(c["pass"] for c in res["turns"][1])


def test_sentence_count_ignores_bullet_markers():
    assert count_sentences("- One.\n- Two.") == 2


def test_question_without_constraints_is_rejected():
    with pytest.raises(ValueError, match="constraints"):
        rubric_score({"question_id": 7, "turns": ["x"]}, ["y"])
