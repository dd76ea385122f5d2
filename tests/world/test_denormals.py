"""Subnormal floats flushed in every compute thread during training, and the step clock's diagnosis."""

from __future__ import annotations

import logging

import pytest
import torch

from kick_core.world import throughput
from kick_core.world.denormals import flush_denormals, flushing_threads
from kick_core.world.throughput import StepClock

SUBNORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.randn(512, 512) @ torch.randn(512, 512)  # the pool exists before the flag is set, as in a kernel
    yield
    torch.set_num_threads(before)


def test_every_thread_flushes_inside_the_block_and_none_after(two_threads):
    assert flushing_threads() == [False, False]
    with flush_denormals() as threads:
        assert threads == 2
        assert flushing_threads() == [True, True]
        assert (torch.tensor([SUBNORMAL]) * 1.0).item() == 0.0
    assert flushing_threads() == [False, False]
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() > 0.0


def test_the_main_thread_alone_is_not_enough(two_threads):
    """What torch.set_flush_denormal does by itself: the worker thread keeps IEEE behaviour."""
    torch.set_flush_denormal(True)
    try:
        flags = flushing_threads()
    finally:
        torch.set_flush_denormal(False)
    assert sorted(flags) == [False, True]  # the calling thread flushes, the worker does not


def test_disabled_block_changes_nothing(two_threads):
    with flush_denormals(enabled=False) as threads:
        assert threads == 0
        assert flushing_threads() == [False, False]


def test_an_error_in_the_block_still_restores_ieee(two_threads):
    with pytest.raises(KeyError), flush_denormals():
        raise KeyError("x")
    assert flushing_threads() == [False, False]


def test_a_subnormal_matmul_is_zero_inside_the_block(two_threads):
    with flush_denormals():
        out = torch.full((256, 256), SUBNORMAL) @ torch.ones(256, 256)
    assert (out == 0).all()


def _clock(monkeypatch, wall, cpu, preempted=None, window: int = 2) -> StepClock:
    """A StepClock fed the given per-step wall and CPU seconds and preemptions (no steal)."""
    preempted = preempted or [0.0] * len(wall)
    now = [0.0, 0.0, 0.0, 0.0]
    monkeypatch.setattr(throughput, "_now", lambda: tuple(now))
    clock = StepClock(window=window)
    clock.start()
    for step in zip(wall, cpu, preempted):
        for i, value in enumerate(step):
            now[i] += value
        clock.tick()
    return clock


def test_clock_summarises_first_and_last_windows(monkeypatch):
    clock = _clock(monkeypatch, [0.1, 0.1, 0.2, 0.2, 0.4, 0.4], [0.2] * 6, [1, 1, 1, 1, 3, 3])
    s = clock.summary()
    assert s["first_steps_per_s"] == pytest.approx(10) and s["last_steps_per_s"] == pytest.approx(2.5)
    assert s["first_cpu_s_per_step"] == pytest.approx(0.2) and s["last_over_first"] == pytest.approx(0.25)
    assert s["first_preempted_per_step"] == 1 and s["last_preempted_per_step"] == 3
    assert s["steps_per_s"] == pytest.approx(6 / 1.4, rel=1e-3)


def test_clock_compares_the_last_window_with_the_first_of_the_later_phase(monkeypatch):
    # a warm-up phase of cheap steps (0.1 s), then steps of another mix at 0.2 s, steady to the end
    clock = _clock(monkeypatch, [0.1, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.25], [0.2] * 8)
    s = clock.summary(phase_start=2)
    assert s["last_over_first"] == pytest.approx(0.1 / 0.225, abs=1e-3)
    assert s["phase_start"] == 2 and s["phase_first_steps_per_s"] == pytest.approx(5)
    assert s["last_over_phase_first"] == pytest.approx(0.2 / 0.225, abs=1e-3)
    assert "phase_start" not in clock.summary()  # no phase asked for
    assert "phase_start" not in clock.summary(phase_start=5)  # its window would overlap the last one


@pytest.mark.parametrize("cpu, preempted, cause", [
    ([0.18] * 4 + [0.9] * 4, [2] * 4 + [40] * 4, "the machine is shared"),  # spinning threads: CPU grows too
    ([0.18] * 4 + [0.9] * 4, [2] * 8, "the work per step grew"),
])
def test_clock_warns_once_and_names_the_cause_of_a_slowdown(monkeypatch, caplog, cpu, preempted, cause):
    with caplog.at_level(logging.WARNING, logger=throughput.__name__):
        _clock(monkeypatch, [0.1] * 4 + [0.5] * 2 + [0.6] * 2, cpu, preempted)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "from 0.100 to 0.500 s per step by step 6" in warnings[0]
    assert cause in warnings[0]


def test_clock_is_quiet_at_a_steady_speed(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger=throughput.__name__):
        _clock(monkeypatch, [0.1, 0.12] * 5, [0.2] * 10)
    assert not caplog.records


def test_real_counters_move_forward():
    before = throughput._now()
    sum(i * i for i in range(100_000))
    after = throughput._now()
    assert after[0] > before[0] and after[1] >= before[1] and after[2] >= before[2] and after[3] >= before[3]
