"""A deterministic rubric judge for the world's instruction questions (one more judge backend).

Each question carries, per turn, constraints checkable by rule::

    {"type": "bullets", "n": 3}      exactly n lines starting with '-', '*' or '•'
    {"type": "sentences", "n": 1}    exactly n sentences
    {"type": "max_words", "n": 15}   fewer than n words
    {"type": "mention", "text": X}   X appears (case-insensitive)

The score is 1 + 9 x (fraction of constraints passed), rounded to an integer 1-10.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_BULLET = re.compile(r"^\s*[-*\u2022]\s+\S")
_SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")


def count_sentences(text: str) -> int:
    """Number of sentences: runs of text ended by '.', '!' or '?' (a trailing fragment counts as one)."""
    text = " ".join(line.lstrip("-*\u2022 ") for line in text.strip().splitlines())
    parts = [p for p in _SENTENCE_END.split(text) if p.strip()]
    return len(parts)


def check(constraint: Mapping[str, Any], answer: str) -> bool:
    """Whether `answer` satisfies one constraint.

    Raises:
        ValueError: for an unknown constraint type (use bullets, sentences, max_words or mention).
    """
    kind, n = constraint.get("type"), constraint.get("n")
    if kind == "bullets":
        return sum(bool(_BULLET.match(line)) for line in answer.splitlines()) == n
    if kind == "sentences":
        return count_sentences(answer) == n
    if kind == "max_words":
        return len(answer.split()) < n
    if kind == "mention":
        return str(constraint["text"]).lower() in answer.lower()
    raise ValueError(f"rubric: unknown constraint type {kind!r}; use bullets, sentences, max_words or mention.")


def rubric_score(question: Mapping[str, Any], answers: Sequence[str]) -> dict[str, Any]:
    """Score a model's answers to one MT-Bench-format question that carries ``constraints``.

    Args:
        question: ``{"question_id", "category", "turns": [...], "constraints": [[...], [...]]}``.
        answers: the model's answer to each turn (missing turns fail all their constraints).

    Returns:
        ``{"score": 1-10, "passed": int, "total": int, "turns": [[{"type", ..., "pass": bool}, ...], ...]}``.

    Raises:
        ValueError: if the question has no ``constraints`` (it is not a world question).
    """
    if "constraints" not in question:
        raise ValueError(f"rubric: question {question.get('question_id')!r} has no 'constraints'; the rubric judge "
                         "only scores the world's instruction questions (kick_core.world.export).")
    per_turn = []
    for i, cons in enumerate(question["constraints"]):
        answer = answers[i] if i < len(answers) else None
        per_turn.append([{**c, "pass": answer is not None and check(c, answer)} for c in cons])
    flat = [c["pass"] for t in per_turn for c in t]
    passed, total = sum(flat), len(flat)
    score = round(1 + 9 * passed / total) if total else 1
    return {"score": score, "passed": passed, "total": total, "turns": per_turn}
