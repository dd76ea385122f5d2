"""Turn judge replies into scores: the original parsers (legacy, bug for bug) and strict ones.

Legacy parsers reproduce ``parse_score`` of the study's two ``gpt4_judge.py`` scripts exactly,
including what they get wrong: the instruction parser reads only the first line and needs exactly
two space-separated tokens (so every math judgment, which ends with a Python tuple, fails), and
failures come back as ``[-1, -1]`` rather than an error. Aggregation (``aggregate.py``) then drops
them silently, as the original did.

Strict parsers raise :class:`kick_core.errors.JudgeParseError` carrying the raw reply; the stage
records it (never a zero) and may re-ask.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kick_core.errors import JudgeParseError
from kick_core.judge.prompts import JudgePrompt

log = logging.getLogger(__name__)

SCORE_RANGE = (1.0, 10.0)
LEGACY_SUMMARY_KEYS = ("coherence", "consistent", "fluency", "relevance")
"""The original's key names (note 'consistent'); strict code says 'consistency'."""


@dataclass(frozen=True)
class Verdict:
    """Parsed scores: one ``{criterion: score}`` per judged answer, in prompt order (Assistant 1 first)."""

    scores: tuple[Mapping[str, float], ...]

    def to_json(self) -> list[dict[str, float]]:
        return [dict(s) for s in self.scores]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, float]]) -> Verdict:
        return cls(tuple(dict(s) for s in data))


# -- legacy (exactly as the original) -------------------------------------------------------------
def parse_legacy_instruction(review: Any) -> list[float]:
    """The original Vicuna-80 parser: first line, commas to spaces, split on ' ', exactly 2 tokens.

    Returns ``[a1, a2]`` or ``[-1, -1]`` on any failure, as the original did.
    """
    try:
        score_pair = review.split("\n")[0]
        score_pair = score_pair.replace(",", " ")
        sp = score_pair.split(" ")
        if len(sp) == 2:
            return [float(sp[0]), float(sp[1])]
        raise ValueError("Invalid score pair.")
    except Exception as e:  # noqa: BLE001 - the original caught everything; legacy keeps it
        log.debug("legacy parse failed (%s) for %r", e, str(review)[:80])
        return [-1, -1]


def parse_legacy_summary(review: Any) -> dict[str, list[float]] | list[int]:
    """The original summarisation parser: lines 0-3, each split on ' ', tokens 0 and 1 as floats.

    Returns ``{coherence, consistent, fluency, relevance: [a1, a2]}`` or ``[-1, -1]`` on any failure.
    """
    try:
        lines = review.split("\n")
        score = {}
        for key, line in zip(LEGACY_SUMMARY_KEYS, (lines[0], lines[1], lines[2], lines[3])):
            parts = line.split(" ")
            score[key] = [float(parts[0]), float(parts[1])]
        return score
    except Exception as e:  # noqa: BLE001 - as the original
        log.debug("legacy parse failed (%s) for %r", e, str(review)[:80])
        return [-1, -1]


def legacy_failed(score: Any) -> bool:
    """Whether an original-parser output is the failure marker (the original's test: any -1)."""
    if isinstance(score, Mapping):
        return False
    return score[0] == -1 or score[1] == -1


def legacy_to_verdict(score: Any, criteria: Sequence[str]) -> Verdict | None:
    """An original-parser output as a :class:`Verdict`, or None for the failure marker."""
    if legacy_failed(score):
        return None
    if isinstance(score, Mapping):
        pairs = [score[k] for k in LEGACY_SUMMARY_KEYS]
    else:
        pairs = [score]
    return Verdict(tuple({c: float(p[i]) for c, p in zip(criteria, pairs)} for i in range(2)))


# -- strict ---------------------------------------------------------------------------------------
_ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # FastChat llm_judge one_score_pattern
_ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def _check_score(value: Any, where: str, text: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JudgeParseError(f"{where} must be a number, got {value!r}", text)
    lo, hi = SCORE_RANGE
    if not lo <= value <= hi:
        raise JudgeParseError(f"{where}={value} is outside the {lo:g}-{hi:g} scale", text)
    return float(value)


def _last_json_object(text: str) -> dict:
    """The last top-level JSON object in `text` (code fences and prose around it are ignored)."""
    decoder = json.JSONDecoder()
    found, pos = None, text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            end = pos + 1
        else:
            if isinstance(obj, dict):
                found = obj
        pos = text.find("{", end)
    if found is None:
        raise JudgeParseError("no JSON object in the reply", text)
    return found


def _criteria_scores(obj: Any, criteria: Sequence[str], where: str, text: str) -> dict[str, float]:
    if len(criteria) == 1 and not isinstance(obj, Mapping):
        return {criteria[0]: _check_score(obj, where, text)}
    if not isinstance(obj, Mapping):
        raise JudgeParseError(f"{where} must be an object with {', '.join(criteria)}", text)
    missing = [c for c in criteria if c not in obj]
    if missing:
        raise JudgeParseError(f"{where} lacks {', '.join(missing)}", text)
    return {c: _check_score(obj[c], f"{where}.{c}", text) for c in criteria}


def parse_json_verdict(text: str, criteria: Sequence[str], n_answers: int) -> Verdict:
    """A strict JSON verdict: ``{"assistant_1": .., "assistant_2": ..}`` (pairwise) or criteria (single)."""
    obj = _last_json_object(text)
    if n_answers == 1:
        if len(criteria) == 1 and criteria[0] not in obj:
            raise JudgeParseError(f"JSON verdict lacks {criteria[0]!r}", text)
        return Verdict((_criteria_scores(obj, criteria, "verdict", text),))
    names = [f"assistant_{i + 1}" for i in range(n_answers)]
    missing = [n for n in names if n not in obj]
    if missing:
        raise JudgeParseError(f"JSON verdict lacks {', '.join(missing)}", text)
    return Verdict(tuple(_criteria_scores(obj[n], criteria, n, text) for n in names))


def parse_rating(text: str) -> float:
    """MT-Bench single-answer grading: the first ``[[r]]`` (FastChat's backup ``[r]`` if none), in 1-10."""
    match = _ONE_SCORE.search(text) or _ONE_SCORE_BACKUP.search(text)
    if match is None:
        raise JudgeParseError('no "[[rating]]" in the reply', text)
    return _check_score(float(match.group(1)), "rating", text)


def parse_verdict(text: str, prompt: JudgePrompt) -> Verdict:
    """Parse a reply to `prompt` into a Verdict, or raise JudgeParseError(raw_text) — any format."""
    if not isinstance(text, str) or not text.strip():
        raise JudgeParseError("empty reply", text if isinstance(text, str) else repr(text))
    fmt = prompt.output_format
    if fmt == "legacy_pair":
        verdict = legacy_to_verdict(parse_legacy_instruction(text), prompt.criteria)
    elif fmt == "legacy_summary":
        verdict = legacy_to_verdict(parse_legacy_summary(text), prompt.criteria)
    elif fmt in ("json_pair", "json_single"):
        return parse_json_verdict(text, prompt.criteria, prompt.n_answers)
    elif fmt == "rating":
        return Verdict(({prompt.criteria[0]: parse_rating(text)},))
    else:
        raise ValueError(f"unknown output_format {fmt!r}")
    if verdict is None:
        raise JudgeParseError("the original parser could not read the score line(s)", text)
    return verdict


def legacy_score(text: str, prompt: JudgePrompt) -> Any:
    """What the original script would have stored as ``score`` for this reply."""
    if prompt.output_format == "legacy_summary":
        return parse_legacy_summary(text)
    return parse_legacy_instruction(text)
