"""OpenMP threads that wait briefly and then sleep, so 2-thread training keeps its speed on a shared CPU.

torch's CPU build runs its parallel regions on GNU OpenMP (``libgomp``). At the end of a region a
thread that finished its share *spins* (busy-waits) for the others, by default for 300,000
iterations (``GOMP_SPINCOUNT``) before it sleeps. A step of the world model is thousands of small
regions, so when another process takes one of the two cores, the spinning thread holds the other
core while the preempted thread waits for a time slice: every region stalls. Measured on the
2-core Xeon (the world model's shape, 2 threads, median seconds per step; ``bench/bench_world.py``
prints the same ratio on every run):

* default (300,000): 0.117 s idle, 0.71-1.00 s with a busy process on one core (6-8x slower);
* 30,000: 0.117 s idle, 0.41-0.42 s shared;
* **10,000: 0.118 s idle, 0.30-0.31 s shared**;
* ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once): 0.141 s idle, 0.24 s shared.

10,000 costs nothing on an idle machine and keeps a shared one at 2-3x the default's speed
(PASSIVE is faster still when shared but 20 % slower when not). The spin count changes no
number: trained weights are bit-identical (checked by a test). libgomp reads the variable once,
when torch loads it, so :func:`bound_spinning` must run before ``import torch``: importing
``kick_core`` does it (``kick run`` and the notebooks import kick_core first); a value the user set,
or ``OMP_WAIT_POLICY``, is left alone.
"""

from __future__ import annotations

import os
import sys

SPINCOUNT = "10000"
"""Busy-wait iterations of an idle OpenMP thread before it sleeps (libgomp's default: 300,000)."""


def bound_spinning() -> None:
    """Set ``GOMP_SPINCOUNT`` for the torch that this process will load, unless the user chose a policy."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT


def spinning() -> str:
    """How this process's OpenMP threads wait, for logs and build records: the policy in effect when
    torch was loaded, as far as the environment tells (``'default'`` if torch came before kick_core)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    if "GOMP_SPINCOUNT" in os.environ:
        return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    return "default"
