"""Scheduling order, retries and atomic writes, without kernels (a fake executor)."""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path

import pytest

from kick_core.config import RunConfig
from kick_core.results import atomic_write_json, read_record
from kick_core.runner import PlannedRun, group_by_compression, is_finished, schedule


class FakeExecutor:
    """Completes futures by hand so the test controls completion order; logs starts and finishes."""

    def __init__(self, slots: int, fail: dict[str, int] | None = None):
        self.slots, self.events, self.inflight, self.fail = slots, [], 0, dict(fail or {})
        self.max_inflight = 0

    def submit(self, run, attempts):
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.events.append(("start", run.run_id))
        fut: Future = Future()
        failing = self.fail.get(run.run_id, 0) >= attempts
        fut.set_result({"run_id": run.run_id, "status": "failed" if failing else "ok", "seconds": 0.0})
        return fut

    def collect(self, run, result):
        self.inflight -= 1
        self.events.append(("done", run.run_id))
        return result


def _plan(tmp_path: Path) -> list[PlannedRun]:
    cfgs = [RunConfig.from_flat(task=t, method=m, sparsity=s) for m, s in (("dense", None), ("wanda", 0.5))
            for t in ("factoid_qa", "mcq", "perplexity")]
    return [PlannedRun(c, tmp_path / "nb.ipynb", tmp_path / c.run_id) for c in cfgs]


def test_runs_sharing_a_compression_are_grouped_leader_first(tmp_path):
    groups = group_by_compression(_plan(tmp_path))
    assert [len(g) for g in groups] == [3, 3]
    assert {r.cfg.compress.method for r in groups[1]} == {"wanda"}


def test_followers_start_only_after_their_group_leader_finished(tmp_path):
    ex = FakeExecutor(slots=2)
    done = []
    schedule(group_by_compression(_plan(tmp_path)), ex, on_done=lambda r, o: done.append(r.run_id))
    assert len(done) == 6 and ex.max_inflight <= 2
    for group in group_by_compression(_plan(tmp_path)):
        leader_done = ex.events.index(("done", group[0].run_id))
        assert all(ex.events.index(("start", f.run_id)) > leader_done for f in group[1:])


def test_a_failed_run_is_resubmitted_up_to_retries_times(tmp_path):
    plan = _plan(tmp_path)
    ex = FakeExecutor(slots=1, fail={plan[0].run_id: 5})
    outcomes = {}
    schedule(group_by_compression(plan), ex, retries=2, on_done=lambda r, o: outcomes.setdefault(r.run_id, o))
    assert ex.events.count(("start", plan[0].run_id)) == 3 and outcomes[plan[0].run_id]["status"] == "failed"
    assert all(o["status"] == "ok" for k, o in outcomes.items() if k != plan[0].run_id)


def test_a_crash_while_writing_a_record_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "record.json"

    def crash(fd):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write_json(path, {"status": "ok", "big": "x" * 100_000})
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_a_crash_while_replacing_a_record_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    atomic_write_json(path, {"status": "failed"})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"status": "ok"})
    assert read_record(path) == {"status": "failed"} and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_run_is_finished_only_with_an_ok_record_of_the_same_config(tmp_path):
    cfg = RunConfig.from_flat(method="dense")
    assert not is_finished(tmp_path, cfg)
    atomic_write_json(tmp_path / "record.json", {"status": "ok", "config_hash": "stale"})
    assert not is_finished(tmp_path, cfg)
    atomic_write_json(tmp_path / "record.json", {"status": "failed", "config_hash": cfg.config_hash()})
    assert not is_finished(tmp_path, cfg)
    atomic_write_json(tmp_path / "record.json", {"status": "ok", "config_hash": cfg.config_hash()})
    assert is_finished(tmp_path, cfg)
