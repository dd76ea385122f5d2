"""The Ray executor on a local 2-CPU cluster: records shipped back, finished runs skipped, failures kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from kick_core.results import read_record
from kick_core.runner import run_study

ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")


@pytest.fixture(scope="module")
def ray_counter(tmp_path_factory):
    """A local 2-CPU cluster; its workers get the counter path at start (they never see later env changes)."""
    import os

    path = tmp_path_factory.mktemp("ray") / "counter.txt"
    path.touch()
    os.environ["KICK_TEST_COUNTER"] = str(path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield path
    ray.shutdown()
    os.environ.pop("KICK_TEST_COUNTER", None)


def test_ray_runs_ship_records_back_and_resume(ray_counter, make_params, tmp_path):
    params = make_params([{"method": ["dense"], "seed": [0, 13]}, {"method": ["magnitude"], "sparsity": [0.5]}])
    results = tmp_path / "res"
    first = run_study(params, results_dir=results, executor="ray", report=False, progress=False)
    assert len(first.ok) == 2 and len(first.failed) == 1
    for run_id in first.ok:
        rec = read_record(results / "t" / run_id)
        assert rec["status"] == "ok" and Path(rec["paths"]["run_dir"]) == (results / "t" / run_id).resolve()
        assert (results / "t" / run_id / "examples.jsonl").exists() and (results / "t" / run_id / "run.ipynb").exists()
    assert read_record(results / "t" / first.failed[0])["error"]["ename"] == "RuntimeError"
    second = run_study(params, results_dir=results, executor="ray", report=False, progress=False)
    assert sorted(second.skipped) == sorted(first.ok) and second.failed == first.failed
    # the counter lives on this machine, and Ray workers here share it: 3 + 1 (the failed one again)
    assert len(ray_counter.read_text().splitlines()) == 4


def test_a_run_asks_ray_for_a_gpu_only_when_it_can_use_one():
    from kick_core.config import RunConfig
    from kick_core.runner.ray_executor import gpus_for

    assert gpus_for(RunConfig.from_flat(device="cuda"), 0) == 1
    assert gpus_for(RunConfig.from_flat(device="auto"), 4) == 1
    assert gpus_for(RunConfig.from_flat(device="auto"), 0) == 0
    assert gpus_for(RunConfig.from_flat(device="cpu"), 4) == 0
