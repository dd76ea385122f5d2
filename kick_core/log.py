"""The package logger, stage timing and progress bars.

Progress bars come from `tqdm.auto`, so they render as widgets in JupyterLab. Under Papermill
widgets do not render, so the runner sets ``KICK_PROGRESS=plain`` and bars degrade to plain text
lines written at most every ``KICK_PROGRESS_INTERVAL`` seconds (default 30).
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger("kick_core")  # the parent of every module logger (`__name__`)
logger.addHandler(logging.NullHandler())


def setup_logging(level: int | str = logging.INFO) -> None:
    """Send kick's log lines to stderr (idempotent); notebooks and the CLI call this once."""
    if not any(getattr(h, "_kick", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._kick = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def progress(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kwargs: Any) -> Iterator[T]:
    """A tqdm progress bar: a widget in Jupyter, plain lines under Papermill (KICK_PROGRESS=plain)."""
    if os.environ.get("KICK_PROGRESS", "auto") == "plain":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", float(os.environ.get("KICK_PROGRESS_INTERVAL", "30")))
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("file", sys.stdout)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, disable=not enabled, **kwargs)


_STATUS = "/proc/self/status"


def peak_rss_mb() -> float:
    """Peak resident set size of this process since it started or since :func:`reset_peak_rss`, in MiB."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 2**20


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart the peak-RSS counter at the current RSS (Linux >= 4.0); False where the OS cannot.

    A warm kernel (``kick run --reuse-kernels``) calls this between runs, so each run records its
    own peak; elsewhere the peak is the process's since it started. Some kernels (sandboxes such
    as gVisor) accept the write to ``clear_refs`` and ignore it, so success is read back: the
    peak must have come down to the current RSS.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 4096  # 4 MiB: pages touched in between


def _cuda_peak_mb() -> float | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return None
    if not torch.cuda.is_available():
        return None
    return max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count())) / 2**20


def _cuda_reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        for d in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(d)


@dataclass
class StageTimes:
    """Wall time and peak memory per named stage; goes into the run record as a dict."""

    stages: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        return {k: dict(v) for k, v in self.stages.items()}


@contextmanager
def timed(stage: str, into: StageTimes | None = None) -> Iterator[dict[str, float | None]]:
    """Time a stage: logs wall seconds, peak RSS and peak GPU memory, and stores them in `into`."""
    _cuda_reset_peak()
    info: dict[str, float | None] = {}
    start = time.perf_counter()
    try:
        yield info
    finally:
        info.update(
            seconds=round(time.perf_counter() - start, 4),
            peak_rss_mb=round(peak_rss_mb(), 1),
            peak_gpu_mb=_cuda_peak_mb(),
        )
        if into is not None:
            into.stages[stage] = info
        gpu = f", peak GPU {info['peak_gpu_mb']:.0f} MiB" if info["peak_gpu_mb"] is not None else ""
        logger.info("%s: %.2f s, peak RSS %.0f MiB%s", stage, info["seconds"], info["peak_rss_mb"], gpu)
