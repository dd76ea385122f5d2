"""Execute one run: its notebook through Papermill into the run folder, failures recorded, never raised.

Each run gets a new kernel, or with ``kernels`` (:class:`~kick_core.runner.kernels.WarmKernels`)
its worker's warm kernel, reset first; up to ``jobs`` run side by side, each with ``threads``
torch/BLAS threads. Kernel start-up + imports cost 5-10 s per new kernel on a 2-core CPU.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kick_core.config import RunConfig
from kick_core.results import NOTEBOOK, RECORD, read_record
from kick_core.runner.kernels import WarmKernels
from kick_core.runner.state import describe_error, write_failure

log = logging.getLogger(__name__)

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def ipc_kernel_manager() -> type:
    """A kernel manager that talks to its kernel over local IPC sockets instead of loopback TCP.

    The kernel is a child of this process on this machine, so TCP buys nothing, and recent
    ipykernel versions warn on every unencrypted TCP kernel start (one line per run of a sweep).
    Each manager gets its own socket-name prefix in the Jupyter runtime directory: the default
    prefix is shared, so kernels started side by side (``--jobs``, Ray workers) would collide.
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            return str(runtime / f"kick-{uuid.uuid4().hex[:12]}")

    return IPCKernelManager


@contextmanager
def kernel_env(threads: int | None = None, extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Environment that kernels started inside inherit: plain-text progress bars, ``threads`` threads."""
    values = {"KICK_PROGRESS": "plain", "TOKENIZERS_PARALLELISM": "false", **(extra or {})}
    if threads:
        values.update({v: str(threads) for v in _THREAD_VARS})
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_threads(jobs: int) -> int:
    """Torch threads per kernel: the machine's cores shared evenly between ``jobs`` kernels."""
    return max(1, (os.cpu_count() or 1) // jobs)


def notebook_parameters(cfg: RunConfig, folder: Path) -> dict[str, Any]:
    """What Papermill injects: every resolved flat config value, plus the run folder as ``out_dir``."""
    return {**cfg.to_flat(), "out_dir": str(Path(folder).resolve())}


def execute_run(cfg: RunConfig, notebook: Any, folder: str | Path, *, attempts: int = 1,
                timeout: float | None = None, kernel_name: str = "python3",
                kernels: WarmKernels | None = None) -> dict[str, Any]:
    """Run ``notebook`` (a path or nbformat node) for ``cfg`` into ``folder``; return an outcome dict.

    With `kernels`, the run executes in this thread's warm kernel (reset first), which is shut
    down if the run fails; without, in a new kernel that ends with the run.

    The outcome is ``{"run_id", "status": "ok"|"failed", "seconds", "error"}``. On failure a record
    with the error (type, message, traceback and failing cell) is written to ``folder/record.json``.
    """
    import papermill

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # left by an attempt killed mid-write (results.atomic_write_bytes)
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    error: dict[str, Any] | None = None
    try:
        km = {"km": kernels.acquire()} if kernels is not None else {}
        papermill.execute_notebook(
            notebook if not isinstance(notebook, (str, Path)) else str(notebook),
            str(folder / NOTEBOOK),
            parameters=notebook_parameters(cfg, folder),
            kernel_name=kernel_name,
            progress_bar=False,
            execution_timeout=timeout,
            kernel_manager_class=ipc_kernel_manager(),
            **km,
        )
    except Exception as err:  # noqa: BLE001 - any failure of one run is recorded, the sweep goes on
        error = describe_error(err)
    finally:
        if kernels is not None:
            kernels.release()
    seconds = round(time.perf_counter() - start, 3)
    if error is None:
        rec = read_record(folder / RECORD)
        if not rec or rec.get("status") != "ok" or rec.get("config_hash") != cfg.config_hash():
            error = {"ename": "MissingRecord", "evalue": "the notebook finished without writing an ok record.json "
                     "for this config (does it call write_run with out_dir?)", "traceback": []}
    if error is not None:
        if kernels is not None:
            kernels.discard()
        write_failure(cfg, folder, error, attempts=attempts, seconds=seconds)
        log.warning("run %s failed (%s: %s) after %.1f s", cfg.run_id, error["ename"],
                    str(error["evalue"]).splitlines()[0] if error["evalue"] else "", seconds)
        return {"run_id": cfg.run_id, "status": "failed", "seconds": seconds, "error": error}
    log.info("run %s ok in %.1f s", cfg.run_id, seconds)
    return {"run_id": cfg.run_id, "status": "ok", "seconds": seconds, "error": None}
