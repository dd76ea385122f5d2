"""Ray executor: one Ray task per run, results shipped back to the driver (no shared filesystem).

Each task receives the notebook as JSON and the run's partial ``examples.jsonl`` (if an earlier
attempt left one), executes the notebook in a temporary folder on whichever node Ray picks, and
returns ``record.json``, ``examples.jsonl`` and the executed notebook as bytes; the driver writes
them atomically into ``results/<study>/<run_id>/``. The driver skips finished runs exactly as the
local executor does, and a failed run ships its partial examples back so the next attempt resumes.

Ray is optional: it is imported only here, with an install hint when missing. See docs/ray.md.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from kick_core.config import RunConfig
from kick_core.errors import MissingDependencyError
from kick_core.results import EXAMPLES, NOTEBOOK, RECORD, atomic_write_bytes, atomic_write_json
from kick_core.runner.plan import PlannedRun

log = logging.getLogger(__name__)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "Ray is not installed (needed for --executor ray). Install it with `pip install -e '.[ray]'` "
            "(or `pip install 'ray[default]'`), or use --executor local."
        ) from None
    return ray


def run_remote(flat: dict[str, Any], notebook_json: str, examples: bytes | None, attempts: int,
               threads: int, timeout: float | None) -> dict[str, Any]:
    """Body of the Ray task: execute one run in a temp folder and return its files as bytes.

    Bytes, not text: a partial ``examples.jsonl`` may end inside a multi-byte character (a killed
    attempt); evaluation's resume reads it as bytes up to the last newline and cuts the rest."""
    import nbformat

    from kick_core.runner.execute import execute_run, kernel_env

    cfg = RunConfig.from_flat(**flat)
    with tempfile.TemporaryDirectory(prefix="kick-ray-") as tmp:
        folder = Path(tmp) / cfg.run_id
        folder.mkdir()
        if examples:
            (folder / EXAMPLES).write_bytes(examples)
        notebook = nbformat.reads(notebook_json, as_version=4)
        with kernel_env(threads):
            outcome = execute_run(cfg, notebook, folder, attempts=attempts, timeout=timeout)
        outcome["files"] = {n: (folder / n).read_bytes() for n in (RECORD, EXAMPLES, NOTEBOOK) if (folder / n).exists()}
    outcome["node"] = socket.gethostname()
    outcome["ray_node"] = ray_node_id()
    return outcome


def ray_node_id() -> str | None:
    """The Ray node id of the calling worker (several nodes may share a hostname); None outside Ray."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None


def gpus_for(cfg: RunConfig, cluster_gpus: float) -> int:
    """GPUs a run asks Ray for: 1 for cuda devices, and for 'auto' when the cluster has GPUs; else 0."""
    device = cfg.model.device
    if device.startswith("cuda"):
        return 1
    return 1 if device == "auto" and cluster_gpus > 0 else 0


class RayExecutor:
    """Submits runs as Ray tasks (``num_cpus`` = threads, ``num_gpus`` from the config's device)."""

    def __init__(self, *, address: str | None = None, jobs: int | None = None, threads: int | None = None,
                 timeout: float | None = None, max_retries: int = 1):
        ray = _import_ray()
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address)
            else:
                ray.init(include_dashboard=False)
        resources = ray.cluster_resources()
        self.threads = threads or 1
        self.cluster_gpus = float(resources.get("GPU", 0))
        fit = int(resources.get("CPU", 1) // self.threads)
        if self.cluster_gpus:
            fit = min(fit, int(self.cluster_gpus))
        self.slots = jobs or max(1, fit)
        self.timeout = timeout
        self.max_retries = max_retries
        self._task = ray.remote(run_remote)
        self._ray = ray
        log.info("ray executor: cluster %s, %d run(s) at a time, %d CPU each", dict(resources), self.slots,
                 self.threads)

    def submit(self, run: PlannedRun, attempts: int) -> Future:
        partial = run.folder / EXAMPLES
        ref = self._task.options(
            num_cpus=self.threads,
            num_gpus=gpus_for(run.cfg, self.cluster_gpus),
            max_retries=self.max_retries,  # retries when a worker process or node dies
            name=f"kick:{run.run_id}",
        ).remote(run.cfg.to_flat(), Path(run.notebook).read_text(), partial.read_bytes() if partial.exists() else None,
                 attempts, self.threads, self.timeout)
        return ref.future()

    def collect(self, run: PlannedRun, result: dict[str, Any]) -> dict[str, Any]:
        """Land the shipped files in the run folder (record last, so it only appears when all is there)."""
        files = result.pop("files", {})
        for name in (EXAMPLES, NOTEBOOK):
            if name in files:
                atomic_write_bytes(run.folder / name, files[name])
        if RECORD in files:
            import json

            record = json.loads(files[RECORD])
            record.setdefault("paths", {}).update(run_dir=str(run.folder.resolve()), node=result.get("node"),
                                                  ray_node=result.get("ray_node"))
            atomic_write_json(run.folder / RECORD, record)
        return result

    def close(self) -> None:
        """Leave Ray running: the caller (or the process exit) owns the cluster connection."""
