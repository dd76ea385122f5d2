"""Training speed step by step, with the counters that tell a slower machine from slower work.

Per step :class:`StepClock` keeps the wall time, the process's CPU time, its involuntary context
switches (the kernel took a core from one of its threads) and the machine's steal time (the
hypervisor ran another guest). CPU time alone cannot tell the causes apart: when another process
takes a core, torch's OpenMP threads spin at their barriers waiting for the preempted one, so CPU time
per step grows with the wall time (measured: 0.22 -> 0.44 s per step while a background job ran;
:mod:`kick_core.openmp` bounds that spinning).
Preemptions and steal can: they grow only when the machine is shared. The clock warns once when a
window of steps runs at less than half the speed of the fastest earlier one and names the likelier
cause, and summarises the first and last windows for the build record and the bench.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass, field

from kick_core.openmp import spinning

logger = logging.getLogger(__name__)

_FIELDS = ("wall", "cpu", "preempted", "steal")


def _steal_seconds() -> float:
    """Machine-wide hypervisor steal time in seconds (Linux ``/proc/stat``; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            cpu = f.readline().split()
        return int(cpu[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _now() -> tuple[float, float, float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), time.process_time(), float(usage.ru_nivcsw), _steal_seconds()


@dataclass
class StepClock:
    """Per-step counters of a training loop (call :meth:`start`, then :meth:`tick` after each step)."""

    window: int = 200
    """Steps per window of the summary and of the slowdown check."""
    slowdown: float = 2.0
    """Warn when a window's seconds per step exceed the fastest earlier window's by this factor."""
    steps: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in _FIELDS})
    _last: tuple[float, ...] | None = None
    _warned: bool = False

    def start(self) -> None:
        """(Re)start timing: what happens between this and the next :meth:`tick` is one step."""
        self._last = _now()

    def tick(self) -> None:
        if self._last is None:
            raise RuntimeError("StepClock.tick() before start()")
        now = _now()
        for name, a, b in zip(_FIELDS, self._last, now):
            self.steps[name].append(b - a)
        self._last = now
        if len(self.steps["wall"]) % self.window == 0:
            self._check()

    def _mean(self, name: str, lo: int, hi: int) -> float:
        values = self.steps[name][lo:hi]
        return sum(values) / len(values)

    def _window(self, i: int) -> dict[str, float]:
        """Per-step means of every counter over the `i`-th full window."""
        return {k: self._mean(k, i * self.window, (i + 1) * self.window) for k in _FIELDS}

    def _check(self) -> None:
        done = len(self.steps["wall"]) // self.window
        if done < 2 or self._warned:
            return
        windows = [self._window(i) for i in range(done)]
        fast, last = min(windows[:-1], key=lambda w: w["wall"]), windows[-1]
        if last["wall"] <= self.slowdown * fast["wall"]:
            return
        self._warned = True
        shared = (last["preempted"] > 2 * fast["preempted"] + 1) or (last["steal"] > 0.1 * last["wall"])
        waiting = spinning()
        advice = ("" if waiting != "default" else "; torch was loaded before kick_core, so its threads spin "
                  "300,000 times before sleeping: set GOMP_SPINCOUNT=10000 before Python starts (kick_core/openmp.py)")
        cause = ("the machine is shared: the kernel preempted this process's threads or the hypervisor "
                 "stole time (another process, a CPU quota, burst credits); its OpenMP threads then wait "
                 f"for each other at every parallel region (OpenMP waiting: {waiting}){advice}" if shared else
                 "the work per step grew with no sign of a shared machine (subnormal floats? bigger shapes?)")
        logger.warning(
            "training slowed from %.3f to %.3f s per step by step %d (per step: CPU %.3f -> %.3f s, "
            "involuntary context switches %.1f -> %.1f, steal %.3f -> %.3f s); likely cause: %s",
            fast["wall"], last["wall"], len(self.steps["wall"]), fast["cpu"], last["cpu"],
            fast["preempted"], last["preempted"], fast["steal"], last["steal"], cause)

    def summary(self, phase_start: int = 0) -> dict[str, float]:
        """Steps per second, CPU seconds, preemptions and steal per step over the first and last
        windows (of at most :attr:`window` steps), and steps per second in all.

        With `phase_start` (the step where the training data changes, e.g. after a warm-up phase), also
        the window that starts there: it holds the same kind of batches as the last window, so the two
        compare the machine's speed on equal work, where first vs last also compares two mixes."""
        n_steps = len(self.steps["wall"])
        if not n_steps:
            return {}
        n = min(self.window, n_steps)
        first = {k: self._mean(k, 0, n) for k in _FIELDS}
        last = {k: self._mean(k, n_steps - n, n_steps) for k in _FIELDS}
        return {"window_steps": n,
                "first_steps_per_s": round(1 / first["wall"], 3), "last_steps_per_s": round(1 / last["wall"], 3),
                "last_over_first": round(first["wall"] / last["wall"], 3),
                "first_cpu_s_per_step": round(first["cpu"], 4), "last_cpu_s_per_step": round(last["cpu"], 4),
                "first_preempted_per_step": round(first["preempted"], 2),
                "last_preempted_per_step": round(last["preempted"], 2),
                "first_steal_s_per_step": round(first["steal"], 4), "last_steal_s_per_step": round(last["steal"], 4),
                "steps_per_s": round(n_steps / sum(self.steps["wall"]), 3), "openmp_waiting": spinning(),
                **self._phase(phase_start, n, last)}

    def _phase(self, lo: int, n: int, last: dict[str, float]) -> dict[str, float]:
        if lo <= 0 or lo + n > len(self.steps["wall"]) - n:  # no full window between the phase and the end
            return {}
        phase = {k: self._mean(k, lo, lo + n) for k in _FIELDS}
        return {"phase_start": lo, "phase_first_steps_per_s": round(1 / phase["wall"], 3),
                "phase_first_cpu_s_per_step": round(phase["cpu"], 4),
                "last_over_phase_first": round(phase["wall"] / last["wall"], 3)}
