"""The runner on the counting fixture notebook: skip finished runs, isolate failures, resume, validate first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kick_core.errors import ConfigError
from kick_core.results import read_record
from kick_core.runner import load_study, run_study



def executions(counter: Path) -> list[str]:
    return [ln for ln in counter.read_text().splitlines() if ln]

THREE = [{"method": ["dense"]}, {"method": ["magnitude"], "sparsity": [0.3, 0.5]}]


def test_second_run_of_a_study_recomputes_nothing(make_params, counter, tmp_path):
    params = make_params(THREE)
    first = run_study(params, results_dir=tmp_path / "res", report=False, progress=False)
    assert len(first.ok) == 3 and not first.failed
    second = run_study(params, results_dir=tmp_path / "res", report=False, progress=False)
    assert sorted(second.skipped) == sorted(first.ok) and not second.ok
    assert len(executions(counter)) == 3


def test_each_run_writes_an_ok_record_with_config_and_its_notebook(make_params, counter, tmp_path):
    params = make_params(THREE)
    summary = run_study(params, results_dir=tmp_path / "res", jobs=2, report=False, progress=False)
    folder = tmp_path / "res" / "t" / summary.ok[0]
    rec = read_record(folder)
    assert rec["status"] == "ok" and rec["run_id"] == summary.ok[0]
    assert rec["config"]["task"]["task"] == "factoid_qa" and rec["flat"]["study"] == "t"
    assert (folder / "run.ipynb").exists() and (folder / "examples.jsonl").read_text().count("\n") == 2
    # kernels get plain progress bars and cores // jobs threads
    assert rec["meta"]["progress"] == "plain" and rec["meta"]["threads"] == str(max(1, (os.cpu_count() or 1) // 2))


def test_a_failing_run_is_recorded_and_the_others_finish(make_params, counter, tmp_path):
    params = make_params([{"method": ["dense"], "seed": [0, 13, 1]}])
    summary = run_study(params, results_dir=tmp_path / "res", report=False, progress=False)
    assert len(summary.ok) == 2 and len(summary.failed) == 1
    rec = read_record(tmp_path / "res" / "t" / summary.failed[0])
    assert rec["status"] == "failed" and rec["error"]["ename"] == "RuntimeError"
    assert "broken on purpose" in rec["error"]["evalue"] and "raise RuntimeError" in rec["error"]["source"]
    assert rec["error"]["traceback"] and rec["attempts"] == 1


def test_a_failed_run_is_retried_and_counts_its_attempts(make_params, counter, tmp_path):
    params = make_params([{"method": ["dense"], "seed": [13]}])
    summary = run_study(params, results_dir=tmp_path / "res", retries=1, report=False, progress=False)
    assert len(summary.failed) == 1 and len(executions(counter)) == 2
    assert read_record(tmp_path / "res" / "t" / summary.failed[0])["attempts"] == 2


def test_an_interrupted_sweep_resumes_without_recomputing_finished_runs(make_params, counter, tmp_path):
    params = make_params([{"method": ["dense"], "seed": [0, 1, 2, 3]}])
    results = tmp_path / "res"
    env = {**os.environ, "KICK_TEST_SLEEP": "1.0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kick_core.cli", "run", str(params), "--results", str(results),
                             "--no-report"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(results.glob("t/*/record.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep dies: driver and kernel
    proc.wait()
    done_before = {p.parent.name for p in results.glob("t/*/record.json") if read_record(p)["status"] == "ok"}
    assert 1 <= len(done_before) < 4
    summary = run_study(params, results_dir=results, report=False, progress=False)
    assert set(summary.skipped) == done_before and len(summary.ok) == 4 - len(done_before)
    counts = Counter(executions(counter))
    assert all(counts[r] == 1 for r in done_before)  # finished runs never ran again
    assert len(list(results.glob("t/*/.*.tmp"))) == 0


def test_every_run_is_validated_before_any_notebook_starts(make_params, counter, tmp_path):
    params = make_params([{"method": ["dense"]}, {"method": ["wanda"], "sparsity": [1.5]}])
    with pytest.raises(ConfigError, match="sparsity=1.5"):
        run_study(params, results_dir=tmp_path / "res", report=False, progress=False)
    assert executions(counter) == []


def test_set_overrides_apply_to_base_before_expansion_and_are_validated(make_params, tmp_path):
    params = make_params(THREE)
    study = load_study(params, {"model": "/tmp/elsewhere", "n_examples": 7})
    assert {r.model.model for r in study.runs} == {"/tmp/elsewhere"} and study.runs[0].task.n_examples == 7
    from kick_core.runner import parse_overrides

    with pytest.raises(ConfigError, match="Did you mean: sparsity"):
        parse_overrides(["sparsty=0.5"])


def test_only_globs_select_runs_and_a_glob_matching_nothing_fails(make_params, counter, tmp_path):
    params = make_params(THREE)
    summary = run_study(params, results_dir=tmp_path / "res", only=["*magnitude-0.50*"], report=False,
                        progress=False)
    assert len(summary.ok) == 1 and "magnitude-0.50" in summary.ok[0]
    with pytest.raises(ConfigError, match="matches none"):
        run_study(params, results_dir=tmp_path / "res", only=["*nothing*"], report=False, progress=False)


def test_a_notebook_parameter_unknown_to_the_config_is_rejected(tmp_path, make_params):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("sparsty: float = 0.5")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "drift.ipynb"))
    params = make_params(THREE)
    params.write_text(params.read_text().replace(str(Path(__file__).parents[1] / "fixtures/notebooks/count.ipynb"),
                                                 str(tmp_path / "drift.ipynb")))
    with pytest.raises(ConfigError, match="sparsty"):
        run_study(params, results_dir=tmp_path / "res", report=False, progress=False)


def test_cli_dry_run_lists_runs_grouped_by_compression(make_params, tmp_path, capsys):
    from kick_core.cli import main

    params = make_params([{"task": ["mcq", "factoid_qa"], "method": ["dense"]},
                          {"task": ["mcq", "factoid_qa"], "method": ["magnitude"], "sparsity": [0.5]}])
    assert main(["run", str(params), "--results", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study t: 4 runs, 2 compressions"
    todo = [ln.split()[1] for ln in lines[1:]]
    assert [r.split("__")[2] for r in todo] == ["dense", "dense", "magnitude-0.50", "magnitude-0.50"]


def test_cli_reports_config_errors_with_exit_status_2(make_params, tmp_path, capsys):
    from kick_core.cli import main

    params = make_params(THREE)
    assert main(["run", str(params), "--set", "methd=wanda", "--results", str(tmp_path)]) == 2
    assert "Did you mean: method" in capsys.readouterr().err


def test_records_of_runs_are_plain_json(make_params, counter, tmp_path):
    params = make_params([{"method": ["dense"]}])
    summary = run_study(params, results_dir=tmp_path / "res", report=False, progress=False)
    json.loads((tmp_path / "res" / "t" / summary.ok[0] / "record.json").read_text())
