"""The judge stage: score already-generated answers with an LLM judge, separately from generation.

Input is a list of records (plain dicts), one per question::

    {"question_id": 7, "question": "...", "reference": "<GPT-3.5 answer>", "answer": "<candidate>",
     "category": "coding"}

(``reference`` is not needed for single-answer grading.) For every record, repeat and answer order
the stage renders the prompt, looks the reply up in the cache, asks the backend on a miss (rate
limited, concurrently for remote APIs, HTTP retries inside the backend), parses it, and in strict
mode re-asks up to ``max_parse_retries`` times with the failed reply kept in the chat. Legacy mode
never re-asks and puts the reference first, as the original did.

The output :class:`JudgeRun` holds one item dict per (record, repeat) with the candidate's score,
the reference's score, each order's parsed verdict and raw text, and the token usage of the run.
Failures are items with ``score=None`` and their raw replies; strict runs raise
:class:`JudgeFailureError` (carrying the run) when their share exceeds ``max_failure_rate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kick_core.errors import ConfigError, JudgeParseError, lookup
from kick_core.judge.aggregate import JudgeFailureError
from kick_core.judge.backends import HFJudge, JudgeAPIError, JudgeBackend, JudgeRequest, OpenAIJudge
from kick_core.judge.reply_cache import JudgeCache, cache_key
from kick_core.judge.config import JudgeConfig
from kick_core.judge.parse import Verdict, legacy_score, parse_verdict
from kick_core.judge.prompts import REASK, JudgePrompt, select_prompt
from kick_core.judge.ratelimit import RateLimiter
from kick_core.log import progress as progress_bar

log = logging.getLogger(__name__)

ORDERS = {"reference_first": (0, 1), "candidate_first": (1, 0)}
"""Where (reference, candidate) sit in the prompt: reference_first is the original's only order."""


@dataclass
class JudgeRun:
    """The judged items of one stage call, the resolved judge config and the run's token usage."""

    config: dict[str, Any]
    items: list[dict[str, Any]]
    usage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        return sum(1 for it in self.items if it["score"] is None)

    @property
    def failure_rate(self) -> float:
        return self.n_failed / len(self.items) if self.items else 0.0

    def failures(self) -> list[dict[str, Any]]:
        """The failed items: question id, repeat, and every raw reply and error per order."""
        return [{"question_id": it["question_id"], "repeat": it["repeat"],
                 "replies": [{"order": o["order"], "raw_text": o["raw_text"], "error": o["error"]}
                             for o in it["orders"]]}
                for it in self.items if it["score"] is None]

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "usage": self.usage, "seconds": self.seconds,
                "n_items": len(self.items), "n_failed": self.n_failed, "items": self.items}


def _no_rubric() -> Any:
    raise ConfigError("backend='rubric' needs the callable: judge_records(..., backend=RubricJudge(fn)).")


def make_backend(cfg: JudgeConfig) -> JudgeBackend:
    """The backend `cfg` names (openai or hf); a rubric judge is passed in as an object instead."""
    factories = {
        "openai": lambda: OpenAIJudge(cfg.resolved_model, cfg.resolved_base_url, max_retries=cfg.max_retries,
                                      timeout_s=cfg.timeout_s),
        "hf": lambda: HFJudge(cfg.resolved_model),
        "rubric": _no_rubric,
    }
    return lookup(factories, cfg.backend, "judge backend")()


def _check_records(records: Sequence[Mapping[str, Any]], pairwise: bool) -> None:
    need = ("question_id", "question", "answer", "category") + (("reference",) if pairwise else ())
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ConfigError(f"judge record {i} must be a dict, got {type(rec).__name__}.")
        missing = [k for k in need if k not in rec]
        if missing:
            raise ConfigError(f"judge record {i} (question_id={rec.get('question_id')!r}) lacks "
                              f"{', '.join(missing)}; every record needs {', '.join(need)}.")
        bad = [k for k in need[1:] if not isinstance(rec[k], str)]
        if bad:
            raise ConfigError(f"judge record {i}: {', '.join(bad)} must be strings (use '' for an empty answer).")


@dataclass(frozen=True)
class _Call:
    prompt: JudgePrompt
    question: str
    answers: tuple[str, ...]
    repeat: int


class _Executor:
    """Runs one unique judge call: cache lookup, backend request, parse, strict re-asks."""

    def __init__(self, cfg: JudgeConfig, backend: JudgeBackend, cache: JudgeCache):
        self.cfg, self.backend, self.cache = cfg, backend, cache
        self.limiter = RateLimiter(cfg.requests_per_second) if backend.remote else None
        self.reasks = cfg.max_parse_retries if cfg.protocol == "strict" else 0
        self.model = backend.model_id
        self.backend_kind = type(backend).__name__
        self.cacheable = backend.cacheable

    def key(self, call: _Call, messages: list[tuple[str, str]]) -> str:
        return cache_key(model=self.model, backend=self.backend_kind, template=call.prompt.template_hash,
                         messages=messages, temperature=self.cfg.resolved_temperature,
                         max_tokens=self.cfg.max_tokens, seed=self.cfg.seed, repeat=call.repeat)

    def __call__(self, call: _Call) -> dict[str, Any]:
        messages = [("system", call.prompt.system), ("user", call.prompt.render(call.question, call.answers))]
        attempts: list[dict[str, Any]] = []
        for _ in range(1 + self.reasks):
            key = self.key(call, messages)
            entry = self.cache.get(key) if self.cacheable else None
            cached = entry is not None
            if entry is None:
                if self.limiter is not None:
                    self.limiter.wait()
                request = JudgeRequest(tuple(messages), call.question, call.answers,
                                       self.cfg.resolved_temperature, self.cfg.max_tokens, self.cfg.seed)
                try:
                    comp = self.backend.complete(request)
                except JudgeAPIError as e:  # not cached: a later run retries it
                    attempts.append({"text": None, "error": str(e), "cached": False, "usage": {}, "retries": 0})
                    break
                entry = {"text": comp.text, "model": comp.model, "usage": dict(comp.usage),
                         "verdict": comp.verdict.to_json() if comp.verdict is not None else None}
                if self.cacheable:
                    self.cache.put(key, entry)
                retries = comp.retries
            else:
                retries = 0
            attempt = {"text": entry["text"], "error": None, "cached": cached, "usage": entry.get("usage", {}),
                       "retries": retries, "model": entry.get("model")}
            attempts.append(attempt)
            try:
                verdict = (Verdict.from_json(entry["verdict"]) if entry.get("verdict")
                           else parse_verdict(entry["text"], call.prompt))
            except JudgeParseError as e:
                attempt["error"] = f"parse: {e}"
                messages += [("assistant", entry["text"]), ("user", REASK.get(call.prompt.output_format, ""))]
                continue
            return {"verdict": verdict, "attempts": attempts}
        return {"verdict": None, "attempts": attempts}


def _orders(cfg: JudgeConfig) -> list[str]:
    if cfg.mode == "single":
        return ["single"]
    return list(ORDERS) if cfg.resolved_both_orders else ["reference_first"]


def _answers(rec: Mapping[str, Any], order: str) -> tuple[str, ...]:
    if order == "single":
        return (rec["answer"],)
    pair = (rec["reference"], rec["answer"])
    return tuple(pair[i] for i in ORDERS[order])


def _item(rec: Mapping[str, Any], repeat: int, calls: list[tuple[str, _Call]], results: Mapping[_Call, dict],
          cfg: JudgeConfig) -> dict[str, Any]:
    orders, cand, ref = [], [], []
    for order, call in calls:
        res = results[call]
        last = res["attempts"][-1] if res["attempts"] else {"text": None, "error": "no attempt"}
        verdict: Verdict | None = res["verdict"]
        entry = {"order": order, "verdict": verdict.to_json() if verdict else None, "raw_text": last["text"],
                 "error": None if verdict else last["error"], "n_attempts": len(res["attempts"]),
                 "cached": all(a["cached"] for a in res["attempts"]),
                 "attempt_texts": [a["text"] for a in res["attempts"][:-1]]}
        orders.append(entry)
        if verdict is not None:
            if order == "single":
                cand.append(verdict.scores[0])
            else:
                i_ref, i_cand = ORDERS[order]
                ref.append(verdict.scores[i_ref])
                cand.append(verdict.scores[i_cand])
    ok = len(cand) == len(calls)  # an item counts only if every order parsed, so position bias cancels
    criteria = calls[0][1].prompt.criteria

    def mean(scores: list[Mapping[str, float]]) -> dict[str, float] | None:
        return {c: sum(s[c] for s in scores) / len(scores) for c in criteria} if ok and scores else None

    item = {"question_id": rec["question_id"], "category": rec["category"], "repeat": repeat,
            "score": mean(cand), "reference_score": mean(ref), "orders": orders}
    if cfg.protocol == "legacy":
        prompt = calls[0][1].prompt
        item["reviewer_id"] = prompt.reviewer_id
        text = orders[0]["raw_text"]
        item["legacy_score"] = legacy_score(text if text is not None else "error", prompt)
    return item


def judge_records(records: Iterable[Mapping[str, Any]], cfg: JudgeConfig | None = None, *,
                  backend: JudgeBackend | None = None, cache: JudgeCache | str | Path | None = None,
                  progress: bool = True, check: bool = True) -> JudgeRun:
    """Judge every record (see the module docstring); returns a :class:`JudgeRun`.

    Args:
        records: one dict per question (question_id, question, reference, answer, category).
        cfg: the judge settings; default ``JudgeConfig()`` (strict, pairwise, both orders, temperature 0).
        backend: a backend object (``OpenAIJudge``, ``HFJudge``, ``RubricJudge``); default built from cfg.
        cache: a JudgeCache or a path to one; default ``$KICK_CACHE/judge/judge_cache.sqlite``.
        progress: show a progress bar over judge calls.
        check: in strict mode, raise JudgeFailureError above ``cfg.max_failure_rate``.

    Raises:
        ConfigError: a malformed record, a missing key, or an endpoint refusing the model (before judging).
        JudgeFailureError: strict mode, too many unparsed items (``.run`` holds the results).
    """
    cfg = cfg or JudgeConfig()
    records = list(records)
    _check_records(records, pairwise=cfg.mode == "pairwise")
    backend = backend if backend is not None else make_backend(cfg)
    cache = cache if isinstance(cache, JudgeCache) else JudgeCache(cache)
    executor = _Executor(cfg, backend, cache)

    plan: list[tuple[Mapping[str, Any], int, list[tuple[str, _Call]]]] = []
    for rec in records:
        prompt = select_prompt(cfg.task, cfg.protocol, cfg.mode, rec["category"])
        for repeat in range(cfg.n_repeats):
            calls = [(o, _Call(prompt, rec["question"], _answers(rec, o), repeat)) for o in _orders(cfg)]
            plan.append((rec, repeat, calls))
    unique = list(dict.fromkeys(call for _, _, calls in plan for _, call in calls))  # identical calls run once

    start = time.perf_counter()
    results: dict[_Call, dict] = {}
    workers = cfg.max_workers if backend.concurrent else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(executor, call): call for call in unique}
        for fut in progress_bar(as_completed(futures), enabled=progress, total=len(futures), desc="judge"):
            results[futures[fut]] = fut.result()

    items = [_item(rec, repeat, calls, results, cfg) for rec, repeat, calls in plan]
    attempts = [a for r in results.values() for a in r["attempts"]]
    fresh = [a for a in attempts if not a["cached"] and a["text"] is not None]
    usage = {
        "calls": len(unique),
        "requests": len(fresh),
        "cache_hits": sum(a["cached"] for a in attempts),
        "http_retries": sum(a["retries"] for a in attempts),
        "reasks": len(attempts) - len(results),
        "api_errors": sum(a["text"] is None for a in attempts),
        **{k: sum(int(a["usage"].get(k, 0)) for a in fresh)
           for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }
    models = sorted({a["model"] for a in attempts if a.get("model")})
    # The model the backend really used (a passed-in backend wins over cfg.model), and what the server reported.
    record = {**cfg.to_record(), "model": executor.model, "judge_model_reported": models}
    run = JudgeRun(config=record, items=items, usage=usage, seconds=round(time.perf_counter() - start, 3))
    log.info("judged %d items (%d calls: %d requests, %d cache hits, %d re-asks); %d parse failures; %d tokens",
             len(items), usage["calls"], usage["requests"], usage["cache_hits"], usage["reasks"], run.n_failed,
             usage["total_tokens"])
    if check and cfg.protocol == "strict" and run.failure_rate > cfg.max_failure_rate:
        raise JudgeFailureError(
            f"{run.n_failed} of {len(items)} judge items ({run.failure_rate:.1%}) have no parsed verdict, above "
            f"max_failure_rate={cfg.max_failure_rate}. Inspect err.run.failures(); raise max_parse_retries, use a "
            "stronger judge, or raise max_failure_rate knowingly.", run)
    return run


def build_records(questions: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]],
                  references: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Judge records from FastChat-style rows (``question_id`` + ``text``; questions also ``category``).

    Questions without a candidate answer are skipped; a missing reference (pairwise) is an error.
    """
    by_answer = {a["question_id"]: a["text"] for a in answers}
    by_ref = {r["question_id"]: r["text"] for r in references} if references is not None else None
    out = []
    for q in questions:
        qid = q["question_id"]
        if qid not in by_answer:
            continue
        rec = {"question_id": qid, "question": q["text"], "answer": by_answer[qid], "category": q["category"]}
        if by_ref is not None:
            if qid not in by_ref:
                raise ConfigError(f"no reference answer for question_id={qid!r}; the reference file must cover "
                                  "every answered question.")
            rec["reference"] = by_ref[qid]
        out.append(rec)
    return out
