"""Local executor: Papermill kernels on this machine, ``jobs`` at a time, each with its own thread budget."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kick_core.runner.execute import default_threads, execute_run, ipc_kernel_manager, kernel_env
from kick_core.runner.kernels import WarmKernels
from kick_core.runner.plan import PlannedRun

log = logging.getLogger(__name__)


class LocalExecutor:
    """Runs notebooks in local kernels; threads only wait on kernels, the work happens in the kernels.

    Kernels inherit the environment set here: ``KICK_PROGRESS=plain`` and ``OMP_NUM_THREADS`` (etc.)
    = ``threads`` (default: cores // jobs), so ``jobs`` kernels together use the machine's cores.
    With ``reuse_kernels`` each worker thread keeps its kernel from run to run
    (:mod:`kick_core.runner.kernels`).
    """

    def __init__(self, *, jobs: int = 1, threads: int | None = None, timeout: float | None = None,
                 reuse_kernels: bool = False):
        self.slots = jobs
        self.threads = threads or default_threads(jobs)
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kick-run")
        self._env = kernel_env(self.threads)
        self._env.__enter__()
        self._kernels = WarmKernels(ipc_kernel_manager()) if reuse_kernels else None
        log.info("local executor: %d job(s) x %d thread(s)%s", jobs, self.threads,
                 ", warm kernels" if reuse_kernels else "")

    def submit(self, run: PlannedRun, attempts: int) -> Future:
        return self._pool.submit(execute_run, run.cfg, run.notebook, run.folder, attempts=attempts,
                                 timeout=self.timeout, kernels=self._kernels)

    def collect(self, run: PlannedRun, result: Any) -> dict[str, Any]:
        return result  # the kernel already wrote into run.folder

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._kernels is not None:
            self._kernels.close()
        self._env.__exit__(None, None, None)
