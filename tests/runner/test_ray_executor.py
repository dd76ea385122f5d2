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
        assert rec["paths"]["ray_node"] == ray.get_runtime_context().get_node_id()  # the one node of this cluster
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


def test_the_ray_node_of_a_run_is_none_outside_ray(monkeypatch):
    from kick_core.runner import ray_executor

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert ray_executor.ray_node_id() is None


CRASH = """\
import os, signal
from kick_core.config import RunConfig
from kick_core.results import run_dir, write_run

cfg = RunConfig.from_flat(**{k: v for k, v in dict(globals()).items() if k in RunConfig().to_flat()})
with open(os.environ["KICK_TEST_COUNTER"] + ".crashes", "a+") as f:
    f.write(cfg.run_id + "\\n")
    f.seek(0)
    if f.read().split().count(cfg.run_id) <= cfg.seed:  # seed = how many executions of this run crash
        f.close()
        os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker running this notebook (the kernel's parent)
        os._exit(1)"""


def crash_notebook(path: Path) -> Path:
    """Like count.ipynb (same parameters and record), but it kills its Ray worker ``seed`` times first."""
    import importlib.util

    import nbformat

    maker = Path(__file__).parents[1] / "fixtures" / "notebooks" / "make_notebooks.py"
    spec = importlib.util.spec_from_file_location("make_notebooks", maker)
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    build = make.build
    nb = build.notebook([build.code("from typing import Optional"),
                         build.code(build.parameters_source({"n_examples": 2}), "parameters"),
                         build.code(CRASH), build.code(make.WRITE)])
    nbformat.write(nb, str(path))
    return path


def test_a_crashed_ray_worker_is_retried_by_ray_then_recorded_as_failed(ray_counter, tmp_path):
    """A run whose worker process dies once is re-run by Ray (max_retries); one that keeps dying fails."""
    import yaml

    notebook = crash_notebook(tmp_path / "crash.ipynb")
    params = tmp_path / "c.yaml"
    params.write_text(yaml.safe_dump({"study": "c", "notebook": str(notebook), "base": {"model": "tiny"},
                                      "sweep": [{"method": ["dense"], "seed": [1, 5]}]}))
    summary = run_study(params, results_dir=tmp_path / "res", executor="ray", report=False, progress=False)
    assert len(summary.ok) == 1 and "__s1__" in summary.ok[0] and len(summary.failed) == 1
    failed = read_record(tmp_path / "res" / "c" / summary.failed[0])
    assert failed["error"]["ename"] == "WorkerCrashedError" and failed["attempts"] == 1
    crashes = Path(f"{ray_counter}.crashes").read_text().split()
    # max_retries=1 (no --retries): two executions of each run, the second of seed 1 succeeds
    assert sorted(crashes) == sorted([*summary.ok, *summary.ok, *summary.failed, *summary.failed])
