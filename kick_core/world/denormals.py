"""Subnormal ("denormal") floats flushed to zero in every thread that computes, for the length of a block.

A float32 below 1.18e-38 is subnormal, and x86 cores compute on it through a microcode assist that
costs tens to hundreds of cycles per operation: on the 2-core Xeon these notes were measured on, a
512x512 matmul whose right operand is subnormal takes 150-160 ms instead of 0.8 ms (190x), and an
element-wise multiply 10x. A model in late training can feed such values through every step.

``torch.set_flush_denormal(True)`` sets the FTZ and DAZ bits of the *calling* thread's MXCSR only,
while torch's matrix products run on its OpenMP thread pool, whose threads keep their own MXCSR: set
after the pool exists, it leaves a 2-thread matmul as slow as before (measured). :func:`flush_denormals`
therefore also sets it inside every thread of the pool, by running one OpenMP parallel region through
the GNU OpenMP entry point ``GOMP_parallel`` (libgomp, which torch's Linux wheels ship, and LLVM's
libomp both provide it), and puts it back when the block ends. Results stay deterministic: the same
operations round the same way on every run; only values below 1.18e-38 become 0.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

logger = logging.getLogger(__name__)

_OPENMP_LIBS = ("libgomp", "libomp", "libiomp5")
_REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
T = TypeVar("T")


def _openmp_runtime():
    """The OpenMP runtime torch has loaded (a ctypes library), or None where none can be found."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if any(lib in line for lib in _OPENMP_LIBS)}
    except OSError:  # not Linux
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel.argtypes = [_REGION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def _in_every_thread(fn: Callable[[], T]) -> list[T] | None:
    """`fn()` run once in each thread of torch's intra-op pool, this thread included (as an OpenMP
    parallel region of ``torch.get_num_threads()`` threads); None where no OpenMP runtime is found."""
    import torch

    lib = _openmp_runtime()
    if lib is None:
        return None
    results: list[T] = []

    def region(_data) -> None:  # ctypes takes the GIL for each thread's call
        results.append(fn())

    callback = _REGION(region)
    lib.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return results


def _flushes() -> bool:
    """Whether the calling thread reads subnormals as zero (DAZ): a double multiply of the smallest
    subnormal, done by CPython in this thread with the MXCSR the thread has."""
    return _TINY[0] * _ONE[0] == 0.0


_TINY, _ONE = [5e-324], [1.0]  # in lists, so the compiler cannot fold the product


def flushing_threads() -> list[bool]:
    """For this thread and each worker of torch's intra-op pool, whether it flushes subnormals
    (this thread alone where no OpenMP runtime is found)."""
    return _in_every_thread(_flushes) or [_flushes()]


def set_flush_denormal_all_threads(on: bool) -> int:
    """Set (or clear) FTZ/DAZ on this thread and on every thread of torch's intra-op pool.

    Returns how many threads were set: ``torch.get_num_threads()`` when the pool was reached, 1 when
    only this thread was (no OpenMP runtime found), 0 when the CPU has no FTZ/DAZ (nothing set).
    """
    import torch

    if not torch.set_flush_denormal(on):
        return 0
    if torch.get_num_threads() == 1:
        return 1
    reached = _in_every_thread(lambda: torch.set_flush_denormal(on))
    if reached is None:
        logger.warning("no OpenMP runtime found: subnormal floats are flushed on the main thread only")
        return 1
    return len(reached)


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[int]:
    """Within the block, subnormal floats are read and written as zero in every compute thread.

    Yields the number of threads set (see :func:`set_flush_denormal_all_threads`). On exit the
    threads are put back to IEEE behaviour (torch's default; torch offers no way to read the
    previous setting). With ``enabled=False`` the block runs unchanged and yields 0.
    """
    if not enabled:
        yield 0
        return
    threads = set_flush_denormal_all_threads(True)
    try:
        yield threads
    finally:
        set_flush_denormal_all_threads(False)
