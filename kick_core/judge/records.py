"""The judge step of ``evaluate``: score the generated outputs of a judged task, record by record.

A task that declares ``judge_task`` (``"summarisation"`` or ``"instruction"``) is judged right after
generation, inside :func:`kick_core.evaluate.evaluate`, so a notebook only calls ``evaluate``:

1. **Which judge** comes from the run config (:func:`judge_backend_name`): ``judge: auto`` is the
   task's deterministic rubric on ``dataset: world`` (the offline demo) and *no judge* elsewhere;
   ``rubric`` / ``openai`` / ``hf`` are explicit; ``none`` skips. ``judge_model`` and
   ``judge_base_url`` override ``$KICK_JUDGE_MODEL`` / ``$KICK_JUDGE_BASE_URL``; the API key is only
   ever read from the environment by the backend.
2. **What is judged**: ``task.judge_inputs(records, cfg)`` gives one judge-stage record per example
   record (question, candidate answer, reference answer when the data has one, category).
   ``judge_mode: auto`` is pairwise against the reference where every input has one, else MT-Bench
   single-answer grading. The judge protocol follows the task protocol (legacy: the original
   FastChat prompts, reference first; strict: JSON verdicts, both orders).
3. **Where verdicts go**: each record gets ``record["judge"]`` (the stage item: score, reference
   score, each order's verdict, raw reply, parse error, attempts) and
   ``record["scores"]["judge_<criterion>"]`` (``None`` for a parse failure, never 0), so the task's
   ``aggregate`` gives them bootstrap CIs like any other metric.
4. **No judge**: reference metrics still run; judge metrics are absent and
   ``meta["judge"]["status"] == "missing"``, with a log line saying how to configure one.
5. **Resume**: a record already holding a parsed verdict from the same judge (``judge["key"]``) is
   not sent again; the stage's SQLite cache makes re-sending the others cheap anyway.
6. **Strict failures**: after the records are written, more than ``max_failure_rate`` unparsed
   items raises :class:`~kick_core.judge.aggregate.JudgeFailureError`.

:func:`noise_floor_examples` re-judges (dense) answers k times and reports the judge-noise band.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kick_core.errors import ConfigError
from kick_core.judge.aggregate import JudgeFailureError, NoiseFloor, noise_floor_from_items
from kick_core.judge.backends import JudgeBackend
from kick_core.judge.config import JudgeConfig
from kick_core.judge.prompts import CRITERIA
from kick_core.judge.stage import judge_records, make_backend

if TYPE_CHECKING:
    from kick_core.tasks.base import Task

log = logging.getLogger(__name__)


def judge_backend_name(cfg: Any) -> str:
    """The backend ``cfg.eval.judge`` selects: auto -> 'rubric' on dataset 'world', else 'none'."""
    name = cfg.eval.judge
    if name == "auto":
        return "rubric" if cfg.task.dataset == "world" else "none"
    return name


def judge_config(cfg: Any, judge_task: str, *, pairwise: bool, n_repeats: int = 1,
                 backend: str | None = None) -> JudgeConfig:
    """The :class:`JudgeConfig` of a run: backend, model and URL from ``cfg.eval``, protocol from ``cfg.task``."""
    backend = backend or judge_backend_name(cfg)
    return JudgeConfig(task=judge_task, protocol=cfg.task.protocol, mode="pairwise" if pairwise else "single",
                       backend=backend, model=cfg.eval.judge_model, base_url=cfg.eval.judge_base_url,
                       seed=cfg.seed, n_repeats=n_repeats)


def _pairwise(cfg: Any, inputs: Sequence[Mapping[str, Any]]) -> bool:
    mode = cfg.eval.judge_mode
    if mode != "auto":
        return mode == "pairwise"
    return bool(inputs) and all(isinstance(x.get("reference"), str) for x in inputs)


def _key(jcfg: JudgeConfig, backend: JudgeBackend) -> str:
    rec = {**jcfg.to_record(), "model": backend.model_id}
    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _backend(task: Task, jcfg: JudgeConfig, records: Sequence[Mapping[str, Any]], cfg: Any) -> JudgeBackend:
    if jcfg.backend == "rubric":
        rubric = task.rubric(records, cfg)
        if rubric is None:
            raise ConfigError(
                f"judge 'rubric' has no rules for task {task.name!r} on dataset {cfg.task.dataset!r}: only the "
                "embedded world's data carries them. Use judge: openai|hf, or judge: none.")
        return rubric
    return make_backend(jcfg)


def judge_examples(task: Task, records: list[dict[str, Any]], cfg: Any, *, progress: bool = True) -> dict[str, Any]:
    """Judge ``records`` in place (``record["judge"]``, ``scores["judge_*"]``); returns ``meta["judge"]``.

    Args:
        task: a judged task (``judge_task`` set; its ``judge_inputs`` and ``rubric`` are used).
        records: evaluate's per-example records, in order.
        cfg: the run config.
        progress: show the judge progress bar.

    Returns:
        ``{"status": "ok" | "missing" | "empty", "backend", "config", "usage", "n_judged", "n_reused", "n_failed"}``.
    """
    name = judge_backend_name(cfg)
    if name == "none":
        log.warning("%s: no judge configured for dataset %r, so the judge metrics are MISSING (not 0); the "
                    "reference metrics are reported. Set judge: openai (KICK_JUDGE_BASE_URL / KICK_JUDGE_MODEL, "
                    "key in KICK_JUDGE_API_KEY) or judge: hf with judge_model.", task.name, cfg.task.dataset)
        return {"status": "missing", "backend": None, "reason": "no judge configured (judge: none / auto on real data)"}
    if not records:
        log.warning("%s: no records to judge (every prompt was excluded?)", task.name)
        return {"status": "empty", "backend": name, "n_judged": 0, "n_reused": 0, "n_failed": 0}
    inputs = task.judge_inputs(records, cfg)
    jcfg = judge_config(cfg, task.judge_task, pairwise=_pairwise(cfg, inputs))
    backend = _backend(task, jcfg, records, cfg)
    key = _key(jcfg, backend)
    by_id = {r["id"]: r for r in records}
    todo = [x for x in inputs if not _reusable(by_id[x["question_id"]], key)]
    criteria = CRITERIA[task.judge_task]
    usage: dict[str, Any] = {}
    judged_config = jcfg.to_record()
    if todo:
        run = judge_records(todo, jcfg, backend=backend, progress=progress, check=False)
        usage, judged_config = run.usage, run.config
        for item in run.items:
            rec = by_id[item["question_id"]]
            rec["judge"] = {"key": key, **{k: v for k, v in item.items() if k not in ("question_id", "category")}}
    for rec in records:
        verdict = (rec.get("judge") or {}).get("score")
        for c in criteria:
            rec["scores"][f"judge_{c}"] = verdict[c] if verdict else None
    failed = [r["id"] for r in records if r.get("judge") and r["judge"].get("score") is None]
    meta = {"status": "ok", "backend": jcfg.backend, "judge_model": backend.model_id,
            "config": judged_config, "usage": usage, "n_judged": len(todo), "n_reused": len(inputs) - len(todo),
            "n_failed": len(failed), "failed_ids": failed[:50]}
    if failed:
        log.warning("%s: %d of %d judge verdicts did not parse (recorded with their raw replies as score None, "
                    "not 0): %s", task.name, len(failed), len(records), ", ".join(failed[:10]))
    return meta


def check_failures(meta: Mapping[str, Any], cfg: Any, n_records: int) -> None:
    """Strict protocol: raise JudgeFailureError when too many verdicts failed to parse (legacy never does)."""
    if meta.get("status") != "ok" or cfg.task.protocol != "strict" or not n_records:
        return
    limit = JudgeConfig().max_failure_rate
    rate = meta["n_failed"] / n_records
    if rate > limit:
        raise JudgeFailureError(
            f"{meta['n_failed']} of {n_records} judge verdicts ({rate:.1%}) did not parse, above the strict "
            f"limit {limit}. The records (with raw replies) are in examples.jsonl; rerun to re-ask those items, "
            "or use a stronger judge.")


_KINDS = {"RubricJudge": "rubric", "HFJudge": "hf", "OpenAIJudge": "openai"}


def _reusable(rec: Mapping[str, Any], key: str) -> bool:
    judged = rec.get("judge")
    return bool(judged) and judged.get("key") == key and judged.get("score") is not None


def noise_floor_examples(task: Task, records: Sequence[Mapping[str, Any]], cfg: Any, *, k: int = 3,
                         criterion: str | None = None, backend: JudgeBackend | None = None,
                         progress: bool = True) -> NoiseFloor:
    """Judge the same (typically dense) answers ``k`` times and measure how much the judge alone moves.

    Each repeat is a separate, separately cached judge call (``n_repeats``), so with a sampling judge
    (legacy temperatures, or a hosted model that is not deterministic at temperature 0) the spread is
    the noise band to put beside every compressed-vs-dense difference
    (:func:`kick_core.judge.compare`). A deterministic rubric gives a zero band.
    """
    if k < 2:
        raise ValueError(f"a noise floor needs k >= 2 repeats, got {k}")
    inputs = task.judge_inputs(list(records), cfg)
    kind = None if backend is None else _KINDS.get(type(backend).__name__, "openai")
    if kind is None and judge_backend_name(cfg) == "none":
        raise ConfigError("a noise floor needs a judge: set judge: rubric|openai|hf, or pass backend=.")
    jcfg = judge_config(cfg, task.judge_task, pairwise=_pairwise(cfg, inputs), n_repeats=k, backend=kind)
    if backend is None:
        backend = _backend(task, jcfg, records, cfg)
    run = judge_records(inputs, jcfg, backend=backend, progress=progress, check=False)
    return noise_floor_from_items(run.items, criterion or CRITERIA[task.judge_task][0])
