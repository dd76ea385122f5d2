"""The generic evaluation loop: load -> prompts -> batched engine requests -> score -> aggregate.

``evaluate`` is the only orchestrator: tasks build prompts and score outputs, the engine runs the
model. Every prompt becomes one per-example record (``examples.jsonl``: id, prompt hash, prompt,
output, per-choice scores, reference, per-metric scores, flags), appended and flushed as each
engine batch finishes. Re-running on the same ``out_dir`` resumes: records already there are kept
(after checking that their prompt hash matches the prompt rebuilt now) and only the rest is
computed. At the end the file is rewritten in input order, so a finished run's file does not
depend on how often it was interrupted.

After a round has run, ``task.followups(prompts, done, cfg, tokenizer, context_len)`` builds the
next turn's prompts from that round's records (the model's own answers; multi-turn tasks such as
MT-Bench), and the loop runs again until it returns none (at once for single-turn tasks). Each turn
is its own record.

Judged tasks (``task.judge_task`` set: summarisation, instruction following) are then scored by the
judge stage (:mod:`kick_core.judge.records`): verdicts, raw replies and parse failures go into each
record, ``examples.jsonl`` is rewritten with them, and ``meta["judge"]`` says which judge ran or that
none was configured (judge metrics missing, never 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kick_core.config import RunConfig
from kick_core.engine import ScoreRequest, Window, generate, loglikelihood, window_nll
from kick_core.engine.generation import Sampling
from kick_core.errors import KickError
from kick_core.judge.records import check_failures, judge_examples
from kick_core.log import StageTimes, timed
from kick_core.results import atomic_write_text, crash_point
from kick_core.tasks import get_task
from kick_core.tasks.base import Prompt, Task

log = logging.getLogger(__name__)
EXAMPLES = "examples.jsonl"


@dataclass(frozen=True)
class TaskResult:
    """Metrics (each ``{"value", "ci_low", "ci_high", "n", "higher_is_better"}``), records and run facts."""

    task: str
    protocol: str
    metrics: dict[str, dict]
    n_examples: int
    examples: list[dict] = field(repr=False)
    meta: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Everything but the per-example records (those live in ``examples.jsonl``)."""
        return {"task": self.task, "protocol": self.protocol, "metrics": self.metrics,
                "n_examples": self.n_examples, "meta": self.meta}


def context_length(model: torch.nn.Module, default: int = 2048) -> int:
    """The model's maximum sequence length (``max_position_embeddings`` / ``n_positions``), else ``default``."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def _read_existing(path: Path) -> dict[str, dict]:
    """Records of an interrupted run; a torn last line (killed mid-write) is dropped, from the file too.

    Each record is written with its newline in one call, so bytes after the last newline are a torn
    write, even when they happen to parse or end inside a UTF-8 character. They are cut off the
    file: the records appended next must start a line of their own, or the next resume finds a
    broken line in the middle of the file.
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.warning("dropping a torn last line of %s (the run was interrupted mid-write)", path)
        os.truncate(path, end)
    out = {}
    for n, line in enumerate(data[:end].decode("utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise KickError(f"{path} line {n + 1} is not JSON; delete the file to start this run afresh.") from None
        out[str(rec["id"])] = rec
    return out


def _check_resume(existing: Mapping[str, dict], prompts: Sequence[Prompt], path: Path | None) -> dict[str, dict]:
    """The recorded examples among ``prompts``; a record whose prompt hash differs is an error."""
    kept = {}
    for p in prompts:
        rec = existing.get(p.id)
        if rec is None:
            continue
        if rec.get("prompt_hash") != p.hash:
            raise KickError(
                f"{path} holds example {p.id!r} with prompt hash {rec.get('prompt_hash')!r}, but this config builds "
                f"hash {p.hash!r}: the file belongs to a different config or data. Fix: use a fresh out_dir or "
                "delete the file."
            )
        kept[p.id] = rec
    return kept


def _atomic_write(path: Path, lines: Sequence[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in lines))


def _row_seed(seed: int, prompt_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{prompt_id}".encode()).digest()[:6], "little")


def evaluate(model: torch.nn.Module, tokenizer: Any, cfg: RunConfig, *, out_dir: Path | None = None,
             progress: bool = True) -> TaskResult:
    """Evaluate ``model`` on ``cfg.task`` and return metrics with bootstrap CIs plus per-example records.

    The steps, in order: load the examples and build the prompts; :func:`_resume` (what an earlier run
    recorded); :func:`_run_rounds` (the engine, round after round); :func:`_collect` (the records in
    input order); :func:`_judge` (judged tasks only); :func:`_aggregate` (metrics and run facts).

    Args:
        model: any Hugging Face causal LM (device taken from the model; ``device_map='auto'`` works).
        tokenizer: its tokenizer.
        cfg: the run config (task, protocol, data, evaluation settings, seed).
        out_dir: if given, ``out_dir/examples.jsonl`` is appended per batch and resumed from on rerun.
        progress: show progress bars.

    Raises:
        UnknownNameError: the task is not registered.
        KickError: ``out_dir`` holds records built from different prompts.
    """
    task = get_task(cfg.task.task)
    torch.manual_seed(cfg.seed)
    times = StageTimes()
    with timed("evaluate/load", into=times):
        examples = task.load(cfg.task, cfg.seed, world_seed=cfg.model.world_seed)
    ctx = context_length(model, cfg.eval.seqlen)
    with timed("evaluate/prompts", into=times):
        prompts = task.prompts(examples, cfg, tokenizer, ctx)
    path = Path(out_dir) / EXAMPLES if out_dir is not None else None
    existing = _resume(path)
    rounds = _run_rounds(task, model, tokenizer, cfg, prompts, existing, path, context_len=ctx,
                         n_examples=len(examples), times=times, progress=progress)
    records = _collect(rounds, existing, path)
    judge_meta = _judge(task, records, cfg, path, times=times, progress=progress)
    metrics, meta = _aggregate(task, records, cfg, rounds, context_len=ctx, judge_meta=judge_meta, times=times)
    return TaskResult(task=task.name, protocol=cfg.task.protocol, metrics=metrics, n_examples=len(examples),
                      examples=records, meta=meta)


def _resume(path: Path | None) -> dict[str, dict]:
    """Resume: the records an earlier (perhaps interrupted) run left in ``path``, by id; none without a path."""
    if path is None:
        return {}
    path.parent.mkdir(parents=True, exist_ok=True)
    return _read_existing(path)


@dataclass
class _Rounds:
    """What the rounds produced: every prompt in run order, its record by id, and how many were resumed."""

    prompts: list[Prompt] = field(default_factory=list)
    done: dict[str, dict] = field(default_factory=dict)
    n_resumed: int = 0


def _run_rounds(task: Task, model: torch.nn.Module, tokenizer: Any, cfg: RunConfig, prompts: Sequence[Prompt],
                existing: Mapping[str, dict], path: Path | None, *, context_len: int, n_examples: int,
                times: StageTimes, progress: bool) -> _Rounds:
    """Rounds: score every prompt not already recorded, then each follow-up turn, until there is none.

    Multi-turn tasks (MT-Bench) build the next turn's prompts from the records of the turn before
    (``task.followups``), so the model answers its own first answer's follow-up; single-turn tasks
    run one round. Each record is appended to ``path`` as its engine batch finishes; a run that
    resumes nothing starts the file afresh.
    """
    out = _Rounds()
    writer = None

    def emit(prompt: Prompt, output: Any, n_prompt: int, n_new: int) -> None:
        rec = task.score(prompt, output, cfg, tokenizer)
        rec.setdefault("n_prompt_tokens", n_prompt)
        rec.setdefault("n_new_tokens", n_new)
        out.done[prompt.id] = rec
        if writer is not None:
            writer.write(json.dumps(rec, ensure_ascii=False) + "\n")
            writer.flush()
            crash_point("examples", path)

    n_round = 0
    round_prompts: Sequence[Prompt] = prompts
    try:
        while round_prompts:
            kept = _check_resume(existing, round_prompts, path)
            out.done.update(kept)
            out.n_resumed += len(kept)
            pending = [p for p in round_prompts if p.id not in out.done]
            if not out.prompts:
                log.info("%s/%s: %d examples (%d prompts), %d already recorded, %d to run", task.name,
                         cfg.task.protocol, n_examples, len(round_prompts), out.n_resumed, len(pending))
                if path is not None:
                    writer = path.open("a", encoding="utf-8")
                    if out.n_resumed == 0:
                        writer.truncate(0)  # drop stale lines of another run
            out.prompts += round_prompts
            if len({p.id for p in out.prompts}) != len(out.prompts):
                raise KickError(f"task {task.name!r} built duplicate example ids; the dataset has repeated ids.")
            n_round += 1
            with timed("evaluate/run" if n_round == 1 else f"evaluate/run{n_round}", into=times):
                _run(model, tokenizer, cfg, pending, emit, progress)
            round_prompts = task.followups(round_prompts, out.done, cfg, tokenizer, context_len)
    finally:
        if writer is not None:
            writer.close()
    return out


def _collect(rounds: _Rounds, existing: Mapping[str, dict], path: Path | None) -> list[dict]:
    """The records in prompt order, and ``path`` rewritten in that order (records not of this run dropped)."""
    dropped = len(set(existing) - {p.id for p in rounds.prompts})
    if dropped:
        log.warning("%s: %d recorded examples are not part of this run and were dropped", path, dropped)
    records = [rounds.done[p.id] for p in rounds.prompts]
    if path is not None:
        _atomic_write(path, records)
    return records


def _judge(task: Task, records: list[dict], cfg: RunConfig, path: Path | None, *, times: StageTimes,
           progress: bool) -> dict[str, Any] | None:
    """Judging: verdicts into each record of a judged task (``path`` rewritten); its ``meta["judge"]``, else None.

    Strict runs with too many unparsed verdicts raise after the records are written.
    """
    if not task.judge_task:
        return None
    with timed("evaluate/judge", into=times):
        judge_meta = judge_examples(task, records, cfg, progress=progress)
    if path is not None:
        _atomic_write(path, records)
    check_failures(judge_meta, cfg, len(records))
    return judge_meta


def _aggregate(task: Task, records: Sequence[dict], cfg: RunConfig, rounds: _Rounds, *, context_len: int,
               judge_meta: dict[str, Any] | None, times: StageTimes) -> tuple[dict[str, dict], dict[str, Any]]:
    """Aggregation: the task's metrics, and the run facts recorded beside them (``meta``, timings last)."""
    with timed("evaluate/aggregate", into=times):
        metrics, task_meta = task.aggregate(records, cfg)
    meta = {"primary_metric": task.primary_metric(cfg.task), "task_version": task.version,
            "n_prompts": len(rounds.prompts), "n_resumed": rounds.n_resumed, "context_length": context_len,
            "prompt_tokens": sum(int(r.get("n_prompt_tokens") or 0) for r in records),
            "generated_tokens": sum(int(r.get("n_new_tokens") or 0) for r in records),
            **({"judge": judge_meta} if judge_meta is not None else {}), **task_meta, "timings": times.as_dict()}
    primary = metrics.get(meta["primary_metric"], {})
    log.info("%s/%s: %s = %s (95%% CI %s-%s, n=%s)", task.name, cfg.task.protocol, meta["primary_metric"],
             primary.get("value"), primary.get("ci_low"), primary.get("ci_high"), primary.get("n"))
    return metrics, meta


def _run(model, tokenizer, cfg: RunConfig, pending: Sequence[Prompt], emit, progress: bool) -> None:
    """Send pending prompts to the engine, grouped by request kind (and stop strings for generation)."""
    batch_tokens = cfg.eval.batch_tokens
    gen = [p for p in pending if p.kind == "generate"]
    for stop in dict.fromkeys(p.stop for p in gen):
        sub = [p for p in gen if p.stop == stop]
        sampling = Sampling(cfg.eval.temperature, cfg.eval.top_p, cfg.seed) if cfg.eval.decoding == "sample" else None
        generate(model, tokenizer, [p.text for p in sub], max_new_tokens=[p.max_new_tokens or 32 for p in sub],
                 stop=stop, batch_tokens=batch_tokens, sampling=sampling, progress=progress,
                 row_seeds=[_row_seed(cfg.seed, p.id) for p in sub],
                 on_result=lambda i, g: emit(sub[i], g, len(g.prompt_ids), len(g.token_ids)))
    ll = [p for p in pending if p.kind == "loglikelihood"]
    if ll:
        requests = [ScoreRequest(p.text, p.continuations, p.group) for p in ll]
        loglikelihood(model, tokenizer, requests, batch_tokens=batch_tokens, progress=progress,
                      on_result=lambda i, r: emit(ll[i], r, r.n_context_tokens, 0))
    ppl = [p for p in pending if p.kind == "perplexity"]
    if ppl:
        stream: list[int] = []
        windows = []
        for p in ppl:
            windows.append(Window(len(stream), len(stream) + len(p.tokens), len(stream) + p.score_from))
            stream.extend(p.tokens)
        width = max(len(p.tokens) for p in ppl)
        window_nll(model, stream, windows, batch_size=max(1, batch_tokens // width), progress=progress,
                   on_result=lambda k, nll, n: emit(ppl[k], (nll, n), len(ppl[k].tokens), 0))
