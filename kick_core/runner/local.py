"""Local executor: Papermill kernels on this machine, ``jobs`` at a time, each with its own thread budget."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kick_core.runner.execute import execute_run, kernel_env
from kick_core.runner.plan import PlannedRun

log = logging.getLogger(__name__)


class LocalExecutor:
    """Runs notebooks in local kernels; threads only wait on kernels, the work happens in the kernels.

    Kernels inherit the environment set here: ``KICK_PROGRESS=plain`` and ``OMP_NUM_THREADS`` (etc.)
    = ``threads`` (default: cores // jobs), so ``jobs`` kernels together use the machine's cores.
    """

    def __init__(self, *, jobs: int = 1, threads: int | None = None, timeout: float | None = None):
        from kick_core.runner.sweep import default_threads

        self.slots = jobs
        self.threads = threads or default_threads(jobs)
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kick-run")
        self._env = kernel_env(self.threads)
        self._env.__enter__()
        log.info("local executor: %d job(s) x %d thread(s)", jobs, self.threads)

    def submit(self, run: PlannedRun, attempts: int) -> Future:
        return self._pool.submit(execute_run, run.cfg, run.notebook, run.folder, attempts=attempts,
                                 timeout=self.timeout)

    def collect(self, run: PlannedRun, result: Any) -> dict[str, Any]:
        return result  # the kernel already wrote into run.folder

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._env.__exit__(None, None, None)
