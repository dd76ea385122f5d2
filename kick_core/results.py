"""Run records on disk: ``record.json`` + ``examples.jsonl`` per run, written atomically, read as tables.

Layout of one study (the runner's output, one folder per expanded run)::

    results/<study>/<run_id>/run.ipynb        executed notebook (papermill)
    results/<study>/<run_id>/record.json      status, resolved config, metrics with CIs, provenance, ...
    results/<study>/<run_id>/examples.jsonl   one line per evaluated example (written by evaluate)
    results/<study>/report/                   executed report notebooks + their HTML

Every write goes to a temporary file in the target folder and is moved into place with
``os.replace``, so a crash while writing leaves the previous file (or none), never half a record.
Report notebooks only read: :func:`load_runs` (one row per run and metric) and :func:`load_examples`.

:func:`crash_point` marks the moments a kill is most harmful (a temp file written but not yet moved,
an example line appended, a cache entry not yet renamed); the fault tests set ``$KICK_CRASH_AT`` to
SIGKILL the sweep at one of them (``tests/runner/test_kill_anywhere.py``, ``bench/bench_faults.py``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kick_core.config import RunConfig

log = logging.getLogger(__name__)

RECORD = "record.json"
EXAMPLES = "examples.jsonl"
NOTEBOOK = "run.ipynb"
STATUSES = ("ok", "failed")


# -- fault injection -------------------------------------------------------------------------------
CRASH_ENV = "KICK_CRASH_AT"
CRASH_LOG_ENV = "KICK_CRASH_LOG"
_crash_hits: dict[str, int] = {}


def crash_point(point: str, path: str | Path = "") -> None:
    """Test hook: SIGKILL the sweep here when ``$KICK_CRASH_AT`` names this point; a no-op when unset.

    ``KICK_CRASH_AT=<point>:<n>[:<text>...]`` kills at the ``n``-th hit of ``point`` in this process
    whose ``path`` contains every ``text``. Each run has a kernel process of its own, so
    ``examples:3:mcq-`` is the third example line of an mcq run and ``write:1:__s1__:record.json``
    the record of the seed-1 run. Points: ``write`` (:func:`atomic_write_bytes`: the temp file is
    complete, ``path`` not yet replaced), ``examples`` (an example line appended to ``path`` and
    flushed), ``cache`` (a compressed-model cache entry complete in its temp folder, not yet renamed
    to ``path``). ``examples-torn`` first cuts the file in the middle of its last line, as if the
    kill came during that line's write.

    Before the kill, the point and path are appended to ``$KICK_CRASH_LOG`` when set (stderr alone
    is not enough: a kernel forwards its fd 2 from a thread, which the kill may beat). The kill takes
    this process group and, in a kernel, its parent's (the sweep driver, ``$JPY_PARENT_PID``), as
    ``kill -9`` of the whole job would; start the sweep in a session of its own
    (``start_new_session=True``), or the kill takes its caller too.
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, n, *texts = spec.split(":")
    torn = name == f"{point}-torn"
    if not (name == point or torn) or not all(t in str(path) for t in texts):
        return
    _crash_hits[spec] = _crash_hits.get(spec, 0) + 1
    if _crash_hits[spec] != int(n):
        return
    if torn:
        data = Path(path).read_bytes()
        last = data.rstrip(b"\n").rfind(b"\n") + 1  # start of the last line
        os.truncate(path, last + (len(data) - last) // 2)
    message = f"kick: {CRASH_ENV}={spec} reached at {path}: SIGKILL\n"
    if os.environ.get(CRASH_LOG_ENV):
        with open(os.environ[CRASH_LOG_ENV], "a") as f:
            f.write(message)
    os.write(2, message.encode())
    parent = int(os.environ.get("JPY_PARENT_PID") or 0)
    if parent > 1:
        try:
            os.killpg(os.getpgid(parent), signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(0, signal.SIGKILL)


# -- atomic writes ---------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic across threads, so last resort)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder + ``os.replace`` (all or nothing).

    The file gets the mode a plain ``open(path, 'w')`` would (0o666 minus the umask: 0644 by default),
    not ``mkstemp``'s private 0600, so a report copied to a shared server stays readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        crash_point("write", path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically, with the user's normal file mode (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """JSON-encode ``obj`` (indent 2, non-JSON values via ``str``) and write it atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# -- writing a run ---------------------------------------------------------------------------------
def run_dir(cfg: RunConfig, out_dir: str | Path | None = None, *, results_root: str | Path = "results") -> Path:
    """The run's folder: ``out_dir`` when given (the runner passes it), else ``results/<study>/<run_id>``."""
    return Path(out_dir) if out_dir else Path(results_root) / cfg.study / cfg.run_id


def _as_mapping(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if hasattr(obj, "as_dict"):
        return dict(obj.as_dict())
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"expected a mapping or an object with as_dict(), got {type(obj).__name__}")


def write_run(out_dir: str | Path, cfg: RunConfig, result: Any, report: Any = None, *,
              times: Any = None, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``record.json`` (status ok) for a finished run and return its path.

    Args:
        out_dir: the run folder (``examples.jsonl`` is already there when ``evaluate`` wrote it;
            otherwise the result's ``examples`` are written here).
        cfg: the run's resolved config.
        result: a ``TaskResult`` (or its ``as_dict()``): task, protocol, metrics, examples, meta.
        report: the compression report (or its ``as_dict()``); None for no compression step.
        times: a ``kick_core.log.StageTimes`` (or dict stage -> {seconds, peak_rss_mb, peak_gpu_mb}).
        provenance: defaults to ``kick_core.provenance.collect_provenance(cfg)``.
    """
    out = Path(out_dir)
    res = _as_mapping(result)
    examples = res.pop("examples", None) or []
    if not (out / EXAMPLES).exists():
        atomic_write_text(out / EXAMPLES, "".join(json.dumps(e, default=_jsonable) + "\n" for e in examples))
    stages = _as_mapping(times)
    if provenance is None:
        from kick_core.provenance import collect_provenance

        provenance = collect_provenance(cfg)
    meta = dict(res.get("meta") or {})
    metrics = dict(res.get("metrics") or {})
    peaks = [s.get("peak_rss_mb") for s in stages.values() if s.get("peak_rss_mb") is not None]
    gpu_peaks = [s.get("peak_gpu_mb") for s in stages.values() if s.get("peak_gpu_mb") is not None]
    record = {
        "run_id": cfg.run_id,
        "study": cfg.study,
        "status": "ok",
        "config_hash": cfg.config_hash(),
        "config": cfg.to_dict(),
        "flat": cfg.to_flat(),
        "task": res.get("task", cfg.task.task),
        "protocol": res.get("protocol", cfg.task.protocol),
        "primary_metric": meta.get("primary_metric") or next(iter(metrics), None),
        "metrics": metrics,
        "n_examples": res.get("n_examples"),
        "compression": _as_mapping(report),
        "timings": stages,
        "peak_memory": {"rss_mb": max(peaks, default=None), "gpu_mb": max(gpu_peaks, default=None)},
        "tokens": {k: v for k, v in meta.items() if "token" in k},
        "meta": meta,
        "provenance": dict(provenance),
        "paths": {"run_dir": str(out.resolve()), "record": RECORD, "examples": EXAMPLES, "notebook": NOTEBOOK},
    }
    path = atomic_write_json(out / RECORD, record)
    log.info("wrote %s (%s)", path, ", ".join(f"{k}={v.get('value')}" for k, v in metrics.items()))
    return path


# -- reading ---------------------------------------------------------------------------------------
def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record in a run folder (or at a record.json path); None if missing or unreadable."""
    path = Path(path)
    path = path / RECORD if path.is_dir() else path
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def iter_records(results_dir: str | Path, *, status: str | None = "ok") -> Iterable[dict[str, Any]]:
    """Every record.json under ``results_dir`` (any depth), optionally only those with ``status``."""
    for path in sorted(Path(results_dir).rglob(RECORD)):
        rec = read_record(path)
        if rec is not None and (status is None or rec.get("status") == status):
            rec.setdefault("paths", {})["run_dir"] = str(path.parent)
            yield rec


def load_examples(run: str | Path | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-example records of a run (a run folder, a record.json path or a loaded record)."""
    if isinstance(run, Mapping):
        folder = Path(run["paths"]["run_dir"])
    else:
        folder = Path(run) if Path(run).is_dir() else Path(run).parent
    path = folder / EXAMPLES
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_COLUMNS = ("run_id", "study", "task", "protocol", "model", "method", "structure", "sparsity", "bits",
            "group_size", "slug", "seed", "metric", "primary", "value", "ci_low", "ci_high", "n",
            "higher_is_better", "realised_sparsity", "variant", "run_dir")
VARIANT_FIELDS = ("dataset", "formulation", "prompt_format", "book", "length", "n_shots")
"""Task settings that, when they differ between runs of one task, make different experiments: such runs
are told apart by ``variant`` (e.g. MMLU 'letter' vs 'cloze') and only paired within it."""


def load_runs(results_dir: str | Path, *, status: str | None = "ok"):
    """All finished runs under ``results_dir`` as a pandas DataFrame, one row per run and metric.

    Columns: run_id, study, task, protocol, model, method, structure, sparsity (the target: N/M for
    N:M), bits, group_size, slug, seed, metric, primary (the task's headline metric), value, ci_low,
    ci_high, n, higher_is_better, realised_sparsity (from the compression report), variant (the
    :data:`VARIANT_FIELDS` values that differ between runs of the same task, e.g. 'cloze'; '' when
    none do), run_dir.
    """
    import pandas as pd

    from kick_core.config import CompressConfig

    rows = []
    for rec in iter_records(results_dir, status=status):
        cfg = rec["config"]
        comp = CompressConfig(**cfg["compress"])
        realised = (rec.get("compression") or {}).get("sparsity")
        if isinstance(realised, Mapping):
            realised = realised.get("overall")
        for name, m in (rec.get("metrics") or {}).items():
            rows.append({
                "run_id": rec["run_id"], "study": rec.get("study"), "task": rec.get("task"),
                "protocol": rec.get("protocol"), "model": cfg["model"]["model"], "method": comp.method,
                "structure": comp.structure, "sparsity": comp.target_sparsity, "bits": comp.bits,
                "group_size": comp.group_size, "slug": comp.slug, "seed": cfg.get("seed"), "metric": name,
                "primary": name == rec.get("primary_metric"), "value": m.get("value"),
                "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"), "n": m.get("n"),
                "higher_is_better": m.get("higher_is_better"), "realised_sparsity": realised,
                "variant": {k: cfg.get("task", {}).get(k) for k in VARIANT_FIELDS},
                "run_dir": rec["paths"]["run_dir"],
            })
    by_task: dict[str, dict[str, set]] = {}
    for r in rows:
        for k, v in r["variant"].items():
            by_task.setdefault(r["task"], {}).setdefault(k, set()).add(str(v))
    for r in rows:
        varying = [k for k, vals in by_task[r["task"]].items() if len(vals) > 1]
        r["variant"] = ", ".join(str(r["variant"][k]) for k in varying)
    return pd.DataFrame(rows, columns=list(_COLUMNS))
