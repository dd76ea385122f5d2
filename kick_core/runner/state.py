"""Run state on disk: is a run finished, and the record of a failed run.

A run is *finished* when its ``record.json`` says ``status: ok`` and carries the same config hash
as the run about to start; anything else (no record, a failed record, a stale hash) runs again.
A rerun reuses the folder, so ``evaluate`` resumes from the ``examples.jsonl`` already there.
"""

from __future__ import annotations

import datetime as _dt
import traceback as _tb
from pathlib import Path
from typing import Any

from kick_core.config import RunConfig
from kick_core.results import EXAMPLES, NOTEBOOK, RECORD, atomic_write_json, read_record


def is_finished(folder: str | Path, cfg: RunConfig) -> bool:
    """True if ``folder/record.json`` is an ok record of exactly this config."""
    rec = read_record(Path(folder))
    return bool(rec) and rec.get("status") == "ok" and rec.get("config_hash") == cfg.config_hash()


def previous_attempts(folder: str | Path) -> int:
    """How many times this run has failed before (0 when there is no failed record)."""
    rec = read_record(Path(folder))
    return int(rec.get("attempts", 0)) if rec and rec.get("status") == "failed" else 0


def describe_error(err: BaseException) -> dict[str, Any]:
    """The error of a run as plain data: type, message, traceback and, for notebook errors, the cell."""
    info: dict[str, Any] = {"ename": type(err).__name__, "evalue": str(err)}
    ename = getattr(err, "ename", None)  # papermill.PapermillExecutionError
    if ename is not None:
        info.update(ename=ename, evalue=getattr(err, "evalue", ""), cell_index=getattr(err, "cell_index", None),
                    exec_count=getattr(err, "exec_count", None), source=getattr(err, "source", None),
                    traceback=list(getattr(err, "traceback", []) or []))
    else:
        info["traceback"] = _tb.format_exception(type(err), err, err.__traceback__)
    return info


def failure_record(cfg: RunConfig, folder: str | Path, error: dict[str, Any], *, attempts: int = 1,
                   seconds: float | None = None) -> dict[str, Any]:
    """The record.json of a failed run: config, error (traceback, cell) and attempt count."""
    return {
        "run_id": cfg.run_id,
        "study": cfg.study,
        "status": "failed",
        "config_hash": cfg.config_hash(),
        "config": cfg.to_dict(),
        "flat": cfg.to_flat(),
        "task": cfg.task.task,
        "protocol": cfg.task.protocol,
        "error": error,
        "attempts": attempts,
        "failed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "timings": {"run": {"seconds": seconds}} if seconds is not None else {},
        "paths": {"run_dir": str(Path(folder).resolve()), "record": RECORD, "examples": EXAMPLES,
                  "notebook": NOTEBOOK},
    }


def write_failure(cfg: RunConfig, folder: str | Path, error: dict[str, Any], **kwargs: Any) -> Path:
    """Write (atomically) the failed record of a run; returns its path."""
    return atomic_write_json(Path(folder) / RECORD, failure_record(cfg, folder, error, **kwargs))
