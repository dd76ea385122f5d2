"""From per-item judge scores to the numbers a table reports: legacy, strict and the noise floor.

- **Legacy** (the paper's metric): the mean Assistant-2 (candidate) score over the items the
  original parser could read. Unparsed items (``[-1, -1]``) are dropped *silently*, exactly as the
  original did, so e.g. the shipped dense Vicuna-7B judgments give 7.763 over 74 of 80 items.
- **Strict**: repeats are averaged per question, failures are counted and listed with their raw
  replies (never dropped silently, never scored 0), and more than ``max_failure_rate`` of them fails
  the aggregation.
- **Noise floor**: the same (dense) answers judged k times: the spread of the k means and how many
  per-item scores change. :func:`compare` puts it next to every compressed-vs-dense difference.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kick_core.errors import KickError
from kick_core.judge.parse import LEGACY_SUMMARY_KEYS, legacy_failed

_LEGACY_KEY = {"consistency": "consistent"}  # strict criterion name -> the original's key


class JudgeFailureError(KickError):
    """Too many judge items have no parsed verdict; ``.run`` holds the judged items when available."""

    def __init__(self, message: str, run: Any = None):
        super().__init__(message)
        self.run = run


# -- files ----------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """JSON objects, one per line; blank lines and non-JSON lines (the original's trailer) are skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


# -- legacy ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LegacyScore:
    """The original aggregation of one criterion over a set of items."""

    mean: float | None
    """Assistant-2 (candidate) mean over parsed items: the paper's number."""
    reference_mean: float | None
    """Assistant-1 (reference) mean over the same items."""
    n: int
    """Items that parsed (the silent denominator)."""
    n_items: int


def _legacy_pair(score: Any, criterion: str) -> list[float] | None:
    if legacy_failed(score):
        return None
    if isinstance(score, Mapping):
        key = _LEGACY_KEY.get(criterion, criterion)
        if key not in LEGACY_SUMMARY_KEYS:
            raise KeyError(f"criterion {criterion!r}: use one of coherence, consistency, fluency, relevance")
        return score[key]
    return score


def legacy_aggregate(scores: Sequence[Any], criterion: str = "score") -> LegacyScore:
    """Mean of the original-parser outputs `scores` for `criterion`, failures silently excluded."""
    pairs = [p for p in (_legacy_pair(s, criterion) for s in scores) if p is not None]
    n = len(pairs)
    return LegacyScore(
        mean=sum(p[1] for p in pairs) / n if n else None,
        reference_mean=sum(p[0] for p in pairs) / n if n else None,
        n=n, n_items=len(scores),
    )


def legacy_table(judgments: Sequence[Mapping[str, Any]], criteria: Sequence[str] = ("score",),
                 categories: Mapping[Any, str] | None = None, score_key: str = "score") -> dict[str, dict[str, LegacyScore]]:
    """``{group: {criterion: LegacyScore}}`` for 'all' and each category.

    `judgments` are rows of an original ``*_evaluation.jsonl`` (``score_key='score'``) or items of a
    legacy :class:`~kick_core.judge.stage.JudgeRun` (``score_key='legacy_score'``). Categories come
    from `categories` (question_id -> category) or the rows' own ``category``.
    """
    groups: dict[str, list[Any]] = defaultdict(list)
    for row in judgments:
        cat = categories[row["question_id"]] if categories is not None else row.get("category")
        groups["all"].append(row[score_key])
        if cat is not None:
            groups[cat].append(row[score_key])
    return {g: {c: legacy_aggregate(s, c) for c in criteria} for g, s in groups.items()}


# -- strict ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StrictScore:
    """Strict aggregation of one criterion: parse failures are counted and kept, never dropped silently."""

    mean: float | None
    """Candidate mean over questions with a verdict (repeats averaged per question first)."""
    reference_mean: float | None
    n: int
    """Questions with at least one parsed verdict."""
    n_items: int
    """Judged items (questions x repeats)."""
    n_failed: int
    failures: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    """Failed items: question id, repeat and the raw reply/error of every answer order."""

    @property
    def failure_rate(self) -> float:
        return self.n_failed / self.n_items if self.n_items else 0.0


def _failure(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"question_id": item["question_id"], "repeat": item.get("repeat", 0),
            "replies": [{"order": o["order"], "raw_text": o["raw_text"], "error": o["error"]}
                        for o in item.get("orders", ())]}


def strict_aggregate(items: Sequence[Mapping[str, Any]], criterion: str = "score",
                     max_failure_rate: float | None = None) -> StrictScore:
    """Aggregate stage items for `criterion`; raises JudgeFailureError above `max_failure_rate`."""
    cand: dict[Any, list[float]] = defaultdict(list)
    ref: dict[Any, list[float]] = defaultdict(list)
    failed = [it for it in items if it["score"] is None]
    for it in items:
        if it["score"] is not None:
            cand[it["question_id"]].append(it["score"][criterion])
            if it.get("reference_score"):
                ref[it["question_id"]].append(it["reference_score"][criterion])
    per_q = [statistics.fmean(v) for v in cand.values()]
    per_ref = [statistics.fmean(v) for v in ref.values()]
    out = StrictScore(
        mean=statistics.fmean(per_q) if per_q else None,
        reference_mean=statistics.fmean(per_ref) if per_ref else None,
        n=len(per_q), n_items=len(items), n_failed=len(failed), failures=tuple(_failure(it) for it in failed),
    )
    if max_failure_rate is not None and out.failure_rate > max_failure_rate:
        raise JudgeFailureError(
            f"{out.n_failed} of {out.n_items} judge items ({out.failure_rate:.1%}) have no parsed verdict, above "
            f"max_failure_rate={max_failure_rate}; see .failures for the raw replies.")
    return out


def strict_table(items: Sequence[Mapping[str, Any]], criteria: Sequence[str] = ("score",),
                 max_failure_rate: float | None = None) -> dict[str, dict[str, StrictScore]]:
    """``{group: {criterion: StrictScore}}`` for 'all' and each category; the threshold applies to 'all'."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for it in items:
        groups["all"].append(it)
        groups[it["category"]].append(it)
    return {g: {c: strict_aggregate(v, c, max_failure_rate if g == "all" else None) for c in criteria}
            for g, v in groups.items()}


# -- noise floor ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseFloor:
    """How much the judge alone moves a score: the same answers judged k times."""

    means: tuple[float, ...]
    """The mean score of each repeat (over the items that parsed in that repeat)."""
    n_items: int
    """Items that parsed in every repeat (the base of the change counts)."""
    n_changed: int
    """Of those, items whose score is not identical in all repeats."""
    mean_abs_delta: float
    """Mean |difference| of an item's score between two repeats, over all repeat pairs."""

    @property
    def mean(self) -> float:
        return statistics.fmean(self.means)

    @property
    def spread(self) -> float:
        """max - min of the repeat means: the band a real difference has to clear."""
        return max(self.means) - min(self.means)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.means) if len(self.means) > 1 else 0.0

    def __str__(self) -> str:
        return (f"{self.mean:.3f} ± {self.spread / 2:.3f} (k={len(self.means)}; {self.n_changed}/{self.n_items} "
                f"item scores change)")


def noise_floor(repeats: Sequence[Mapping[Any, float | None]]) -> NoiseFloor:
    """The noise floor from k mappings ``question_id -> score`` (None = unparsed), one per repeat."""
    if len(repeats) < 2:
        raise ValueError(f"a noise floor needs at least 2 repeats of the same judgments, got {len(repeats)}")
    means = []
    for rep in repeats:
        vals = [v for v in rep.values() if v is not None]
        means.append(statistics.fmean(vals) if vals else float("nan"))
    joint = [q for q in repeats[0] if all(rep.get(q) is not None for rep in repeats)]
    changed = sum(1 for q in joint if len({rep[q] for rep in repeats}) > 1)
    deltas = [abs(a[q] - b[q]) for a, b in itertools.combinations(repeats, 2) for q in joint]
    return NoiseFloor(tuple(means), len(joint), changed, statistics.fmean(deltas) if deltas else 0.0)


def noise_floor_from_items(items: Iterable[Mapping[str, Any]], criterion: str = "score") -> NoiseFloor:
    """The noise floor of stage items judged with ``n_repeats >= 2`` (typically the dense answers)."""
    by_repeat: dict[int, dict[Any, float | None]] = defaultdict(dict)
    for it in items:
        by_repeat[it["repeat"]][it["question_id"]] = it["score"][criterion] if it["score"] is not None else None
    return noise_floor([by_repeat[r] for r in sorted(by_repeat)])


def compare(candidate_mean: float, dense: NoiseFloor) -> dict[str, Any]:
    """A compressed-vs-dense difference reported with the dense score's judge-noise band."""
    delta = candidate_mean - dense.mean
    return {"candidate": candidate_mean, "dense": dense.mean, "dense_noise_spread": dense.spread,
            "dense_repeats": len(dense.means), "delta": delta, "within_noise": abs(delta) <= dense.spread}
