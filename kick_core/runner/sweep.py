"""The sweep driver: plan a study, skip finished runs, execute the rest grouped by compression, report.

Order matters for cost: runs that share a compression config (same model + method + level) form a
group; its first run compresses (and caches) the model, the others start only after it, so every
compression happens once, even with several jobs in parallel.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kick_core.config import EMBEDDED_MODEL
from kick_core.errors import ConfigError
from kick_core.log import progress as progress_bar
from kick_core.runner.plan import PlannedRun, group_by_compression, load_study, plan_runs
from kick_core.runner.state import describe_error, is_finished, previous_attempts, write_failure
from kick_core.sources import check_sources

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Starts runs (``submit`` returns a future of an outcome dict) and lands their files (``collect``)."""

    slots: int

    def submit(self, run: PlannedRun, attempts: int) -> Future: ...

    def collect(self, run: PlannedRun, result: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: run ids that finished now, failed, or were already done; where the report is."""

    study: str
    study_dir: Path
    ok: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=dict)
    reports: tuple[Path, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"study": self.study, "study_dir": str(self.study_dir), "ok": list(self.ok),
                "failed": list(self.failed), "skipped": list(self.skipped), "seconds": self.seconds,
                "run_seconds": dict(self.run_seconds), "reports": [str(p) for p in self.reports]}


def schedule(groups: Sequence[Sequence[PlannedRun]], executor: Executor, *, retries: int = 0,
             on_done: Callable[[PlannedRun, dict[str, Any]], None] = lambda run, outcome: None) -> None:
    """Run every group's leader first, then its followers; at most ``executor.slots`` at once.

    A failed run is retried up to ``retries`` more times (it resumes from its examples.jsonl);
    a run's final outcome is passed to ``on_done``.
    """
    leaders = deque(groups)
    ready: deque[PlannedRun] = deque()
    attempts: dict[str, int] = {}
    inflight: dict[Future, tuple[PlannedRun, Sequence[PlannedRun]]] = {}

    def start(run: PlannedRun, followers: Sequence[PlannedRun]) -> None:
        attempts[run.run_id] = attempts.get(run.run_id, previous_attempts(run.folder)) + 1
        inflight[executor.submit(run, attempts[run.run_id])] = (run, followers)

    while leaders or ready or inflight:
        while len(inflight) < executor.slots and (ready or leaders):
            if ready:  # finish started groups first: their compressed model is cached and warm on disk
                start(ready.popleft(), ())
            else:
                group = leaders.popleft()
                start(group[0], group[1:])
        done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
        for fut in done:
            run, followers = inflight.pop(fut)
            try:
                outcome = executor.collect(run, fut.result())
            except Exception as err:  # noqa: BLE001 - e.g. a Ray worker that died past its retries
                error = describe_error(err)
                write_failure(run.cfg, run.folder, error, attempts=attempts[run.run_id])
                outcome = {"run_id": run.run_id, "status": "failed", "seconds": None, "error": error}
            if outcome["status"] != "ok" and attempts[run.run_id] <= retries:
                log.info("retrying %s (attempt %d of %d)", run.run_id, attempts[run.run_id] + 1, retries + 1)
                start(run, followers)
                continue
            ready.extend(followers)
            on_done(run, outcome)


def prepare_world(plan: Sequence[PlannedRun]) -> None:
    """Train/cache the embedded world once in the driver, so parallel kernels never race to build it."""
    seeds = sorted({p.cfg.model.world_seed for p in plan if p.cfg.model.model == EMBEDDED_MODEL})
    data_seeds = sorted({p.cfg.model.world_seed for p in plan if p.cfg.task.dataset == "world"})
    if not seeds and not data_seeds:
        return
    from kick_core import world

    for seed in seeds:
        world.ensure_world(seed)
    for seed in set(data_seeds) - set(seeds):
        world.ensure_world_data(seed)


def make_executor(name: str, *, jobs: int | None = None, threads: int | None = None, ray_address: str | None = None,
                  timeout: float | None = None, max_retries: int = 1, reuse_kernels: bool = False) -> Executor:
    """The executor called ``name`` ('local' or 'ray')."""
    if name == "local":
        from kick_core.runner.local import LocalExecutor

        return LocalExecutor(jobs=jobs or 1, threads=threads, timeout=timeout, reuse_kernels=reuse_kernels)
    if name == "ray":
        from kick_core.runner.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, jobs=jobs, threads=threads, timeout=timeout, max_retries=max_retries)
    from kick_core.errors import lookup

    return lookup(dict.fromkeys(EXECUTORS), name, "executor")


def run_study(params: str | Path, *, results_dir: str | Path = "results", executor: str = "local", jobs: int | None = None,
              threads: int | None = None, retries: int = 0, only: Sequence[str] = (),
              overrides: Mapping[str, Any] | None = None, notebooks_dir: str | Path | None = None,
              ray_address: str | None = None, timeout: float | None = None, report: bool = True,
              progress: bool = True, reuse_kernels: bool = False) -> SweepSummary:
    """Run a study: validate every run, execute the unfinished ones, then the report notebooks.

    Args:
        params: the params YAML file (``params/<study>.yaml``).
        results_dir: root folder; runs land in ``<results_dir>/<study>/<run_id>/``.
        executor: 'local' (Papermill kernels on this machine) or 'ray' (one Ray task per run).
        jobs: runs executed at the same time (local default 1; Ray default: as many as the cluster
            fits); threads: torch threads per run (default cores // jobs locally, 1 CPU on Ray).
        retries: extra attempts for a failed run within this sweep.
        only: glob patterns on run ids; only matching runs are considered.
        overrides: flat values applied to the params file's base before expansion (``--set``).
        report: run the report notebooks into ``<study>/report/`` at the end.
        reuse_kernels: local executor only: keep one kernel per job and reset it between runs
            instead of starting one per run (:mod:`kick_core.runner.kernels`); saves the 5-10 s of
            imports per run that dominate sweeps of small models.
    """
    if executor not in EXECUTORS:
        make_executor(executor)  # raises the did-you-mean error
    if (jobs is not None and jobs < 1) or retries < 0:
        raise ConfigError(f"jobs={jobs} must be >= 1 and retries={retries} >= 0.")
    if reuse_kernels and executor != "local":
        raise ConfigError(f"reuse_kernels applies to the local executor, not executor={executor!r}: Ray runs every "
                          f"notebook in a new kernel of a worker. Fix: drop --reuse-kernels, or use --executor local.")
    start = time.perf_counter()
    study = load_study(params, overrides)
    plan = plan_runs(study, results_dir, only=only, notebooks_dir=Path(notebooks_dir) if notebooks_dir else None)
    study_dir = Path(results_dir) / study.name
    skipped = tuple(p.run_id for p in plan if is_finished(p.folder, p.cfg))
    todo = [p for p in plan if p.run_id not in skipped]
    if study.notebook is None:  # kick's notebooks load cfg.model; a study's own notebook decides what it means
        check_sources(p.cfg for p in todo)  # a typo in model: or dataset: fails here, not inside every run's kernel
    log.info("study %s: %d runs, %d already finished, %d to run (executor=%s, jobs=%s)",
             study.name, len(plan), len(skipped), len(todo), executor, jobs or "auto")
    ok: list[str] = []
    failed: list[str] = []
    run_seconds: dict[str, float] = {}
    if todo:
        if executor == "local":
            prepare_world(todo)
        ex = make_executor(executor, jobs=jobs, threads=threads, ray_address=ray_address, timeout=timeout,
                           max_retries=max(1, retries), reuse_kernels=reuse_kernels)
        bar = progress_bar(total=len(plan), initial=len(skipped), enabled=progress, desc=f"study {study.name}",
                           unit="run")

        def done(run: PlannedRun, outcome: dict[str, Any]) -> None:
            (ok if outcome["status"] == "ok" else failed).append(run.run_id)
            if outcome.get("seconds") is not None:
                run_seconds[run.run_id] = outcome["seconds"]
            bar.update(1)
            bar.set_postfix(failed=len(failed))

        try:
            schedule(group_by_compression(todo), ex, retries=retries, on_done=done)
        finally:
            bar.close()
            ex.close()
    reports: tuple[Path, ...] = ()
    if report:
        from kick_core.runner.report_notebooks import run_reports

        reports = tuple(run_reports(study_dir))
    summary = SweepSummary(study.name, study_dir, tuple(ok), tuple(failed), skipped,
                           round(time.perf_counter() - start, 2), run_seconds, reports)
    log.info("study %s done in %.1f s: %d ok, %d failed, %d skipped", study.name, summary.seconds,
             len(ok), len(failed), len(skipped))
    return summary
