"""Warm kernels: one Jupyter kernel per local worker, reused from run to run and reset in between.

Each run's notebook imports torch, transformers and kick. On a small CPU that costs 5-10 s per
kernel, more than a run on the embedded world takes, so a sweep of many small runs spends most
of its time importing. ``kick run --reuse-kernels`` keeps one kernel per ``--jobs`` slot and,
before every run, empties its namespace (:func:`reset_namespace`): the notebook then starts as in
a fresh kernel except that imported modules are already loaded. Results are identical either way
(every run seeds itself); a test checks it. A kernel whose run failed is shut down, so a crash,
a timeout or a half-finished cell never leaks into the next run.

Peak memory in run records stays per run: the reset clears the kernel's peak-RSS counter (Linux)
and the GPU peak counters are reset at every timed stage anyway.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

RESET_CODE = "__import__('kick_core.runner.kernels', fromlist=['_']).reset_namespace()"
"""Executed in a warm kernel before each run (with ``store_history=False``, leaving no name behind)."""


def reset_namespace() -> None:
    """Inside a kernel: empty the user namespace as a new kernel would have it, and free memory.

    Clears every user variable, IPython's output cache and the last exception (whose traceback
    would keep the previous run's model alive), restarts execution counts at 1, collects garbage,
    returns cached GPU memory to the driver and clears the process's peak-RSS counter.
    """
    import gc

    from IPython import get_ipython

    from kick_core.log import reset_peak_rss

    shell = get_ipython()
    if shell is not None:
        shell.reset(new_session=True)
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            setattr(sys, name, None)
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    reset_peak_rss()


class WarmKernels:
    """One kernel per thread that calls :meth:`acquire`; kernels live until :meth:`discard` or :meth:`close`.

    ``acquire`` returns a kernel manager for Papermill's ``km=`` argument: a new one (nbclient
    starts its kernel on first use) or this thread's live kernel, reset for the next run.
    ``release`` closes the clients the run opened: nbclient leaves them connected when it does
    not own the kernel, and each holds a ZMQ context (a dozen file descriptors).
    """

    def __init__(self, manager_class: type):
        self._manager_class = _tracking(manager_class)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._managers: list[Any] = []

    def acquire(self) -> Any:
        from jupyter_core.utils import run_sync

        km = getattr(self._local, "km", None)
        if km is not None and km.has_kernel:
            try:
                if not run_sync(km.is_alive)():
                    raise RuntimeError("the kernel died")
                _reset(km)
                return km
            except Exception as err:  # noqa: BLE001 - a kernel that cannot reset is replaced
                log.warning("warm kernel did not reset (%s); starting a new one", err)
                self.discard()
        km = self._manager_class()
        self._local.km = km
        with self._lock:
            self._managers.append(km)
        return km

    def release(self) -> None:
        """After a run: disconnect the clients it opened on this thread's kernel (the kernel lives on)."""
        km = getattr(self._local, "km", None)
        if km is not None:
            _close_clients(km)

    def discard(self) -> None:
        """Shut down this thread's kernel (after a failed run); the next ``acquire`` starts a new one."""
        km = getattr(self._local, "km", None)
        self._local.km = None
        if km is not None:
            _shutdown(km)
            with self._lock:
                self._managers.remove(km)

    def close(self) -> None:
        """Shut down every kernel."""
        with self._lock:
            managers, self._managers = self._managers, []
        for km in managers:
            _shutdown(km)


def _tracking(manager_class: type) -> type:
    """`manager_class` remembering the clients it creates, so that they can be closed after a run."""

    class TrackingKernelManager(manager_class):  # type: ignore[misc, valid-type]
        def client(self, **kwargs: Any) -> Any:
            kc = super().client(**kwargs)
            self.__dict__.setdefault("_kick_clients", []).append(kc)
            return kc

    return TrackingKernelManager


def _close_client(kc: Any) -> None:
    kc.stop_channels()
    if kc._created_context and not kc.context.closed:
        kc.context.destroy(linger=0)


def _close_clients(km: Any) -> None:
    for kc in km.__dict__.pop("_kick_clients", []):
        _close_client(kc)


def _reset(km: Any, timeout: float = 120.0) -> None:
    """Run :data:`RESET_CODE` in `km`'s kernel; raises if the kernel is gone or the reset fails."""
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        reply = kc.execute_interactive(RESET_CODE, store_history=False, timeout=timeout,
                                       output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            content = reply["content"]
            raise RuntimeError(f"{content.get('ename')}: {content.get('evalue')}")
    finally:
        _close_client(kc)


def _shutdown(km: Any) -> None:
    from jupyter_core.utils import run_sync

    try:
        _close_clients(km)
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
        run_sync(km.cleanup_resources)()
    except Exception as err:  # noqa: BLE001 - best effort at the end of a sweep
        log.debug("kernel shutdown: %s", err)
