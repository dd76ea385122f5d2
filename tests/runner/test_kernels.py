"""Warm kernels (``kick run --reuse-kernels``): one kernel per job, reset between runs, replaced after a failure."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from kick_core.errors import ConfigError
from kick_core.log import peak_rss_mb, reset_peak_rss
from kick_core.results import read_record
from kick_core.runner import run_study

REPO = Path(__file__).resolve().parents[2]
COUNT_NB = REPO / "tests" / "fixtures" / "notebooks" / "count.ipynb"

PROBE = """import json as _json, os as _os
with open(_os.environ["KICK_TEST_COUNTER"] + ".probe", "a") as _f:
    _f.write(_json.dumps({"pid": _os.getpid(), "names": sorted(k for k in dict(globals()) if not k.startswith("_")),
                          "count": get_ipython().execution_count}) + "\\n")
leftover = "from an earlier run"
"""


@pytest.fixture
def probe_params(tmp_path: Path):
    """Params over count.ipynb with a first cell that logs the kernel's pid, its user names and the
    execution count, then leaves a variable behind."""
    nb = nbformat.read(COUNT_NB, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)

    def make(sweep: list[dict]) -> Path:
        params = tmp_path / "probe.yaml"
        params.write_text(yaml.safe_dump({"study": "p", "notebook": str(path),
                                          "base": {"model": "tiny", "n_examples": 2}, "sweep": sweep}))
        return params

    return make


def probes(counter: Path) -> list[dict]:
    return [json.loads(line) for line in Path(str(counter) + ".probe").read_text().splitlines()]


def test_one_warm_kernel_runs_every_run_from_a_clean_namespace(probe_params, counter, tmp_path):
    params = probe_params([{"method": ["dense"], "seed": [0, 1, 2]}])
    summary = run_study(params, results_dir=tmp_path / "res", reuse_kernels=True, report=False, progress=False)
    assert len(summary.ok) == 3 and not summary.failed
    seen = probes(counter)
    assert len({p["pid"] for p in seen}) == 1  # one kernel for the three runs
    assert all(p["names"] == seen[0]["names"] for p in seen) and "leftover" not in seen[0]["names"]
    assert all(p["count"] == seen[0]["count"] for p in seen)  # cells are numbered from 1 in every run


def test_without_reuse_every_run_gets_a_new_kernel(probe_params, counter, tmp_path):
    params = probe_params([{"method": ["dense"], "seed": [0, 1]}])
    run_study(params, results_dir=tmp_path / "res", report=False, progress=False)
    seen = probes(counter)
    assert len({p["pid"] for p in seen}) == 2
    # ... and a reset warm kernel looks the same to a notebook as a new one
    run_study(params, results_dir=tmp_path / "res2", reuse_kernels=True, report=False, progress=False)
    warm = probes(counter)[2:]
    assert [p["names"] for p in warm] == [p["names"] for p in seen]
    assert [p["count"] for p in warm] == [p["count"] for p in seen]


def test_a_failed_run_retires_its_kernel_and_the_next_run_gets_a_new_one(probe_params, counter, tmp_path):
    params = probe_params([{"method": ["dense"], "seed": [0, 13, 1]}])  # seed 13 raises in count.ipynb
    summary = run_study(params, results_dir=tmp_path / "res", reuse_kernels=True, report=False, progress=False)
    assert len(summary.ok) == 2 and len(summary.failed) == 1
    rec = read_record(tmp_path / "res" / "p" / summary.failed[0])
    assert "broken on purpose" in rec["error"]["evalue"]
    pids = [p["pid"] for p in probes(counter)]
    assert pids[0] == pids[1] != pids[2]


def test_warm_kernels_leave_no_open_connections_behind(probe_params, counter, tmp_path):
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to count file descriptors")
    params = probe_params([{"method": ["dense"], "seed": list(range(6))}])
    before = len(os.listdir("/proc/self/fd"))
    summary = run_study(params, results_dir=tmp_path / "res", jobs=2, reuse_kernels=True, report=False,
                        progress=False)
    assert len(summary.ok) == 6
    # each run's kernel clients hold a ZMQ context (a dozen descriptors); six runs leaked ~100 before the fix
    assert len(os.listdir("/proc/self/fd")) - before < 10


def test_reuse_kernels_is_refused_for_ray_before_anything_runs(probe_params, counter, tmp_path):
    params = probe_params([{"method": ["dense"]}])
    with pytest.raises(ConfigError, match="reuse_kernels applies to the local executor.*--reuse-kernels"):
        run_study(params, results_dir=tmp_path / "res", executor="ray", reuse_kernels=True, report=False,
                  progress=False)
    assert not counter.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS can be reset on Linux only")
def test_the_peak_rss_counter_restarts_so_each_warm_run_records_its_own_peak():
    if not reset_peak_rss():
        pytest.skip("this kernel ignores /proc/self/clear_refs (reset_peak_rss read back no reset)")
    block = bytearray(400 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    high = peak_rss_mb()
    del block
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 300


def test_a_reset_the_kernel_accepts_but_ignores_is_reported_as_failed(monkeypatch, tmp_path):
    import kick_core.log as log

    status = tmp_path / "status"
    status.write_text("VmHWM:\t 1075847 kB\nVmRSS:\t  641000 kB\n")  # what a sandbox shows after the write
    monkeypatch.setattr(log, "_STATUS", str(status))
    assert log.peak_rss_mb() == pytest.approx(1075847 / 1024)
    if os.access("/proc/self/clear_refs", os.W_OK):
        assert log.reset_peak_rss() is False
    status.write_text("VmHWM:\t 641100 kB\nVmRSS:\t  641000 kB\n")
    if os.access("/proc/self/clear_refs", os.W_OK):
        assert log.reset_peak_rss() is True


@pytest.mark.slow
def test_real_notebooks_give_the_same_records_in_warm_and_new_kernels(tiny_model_dir, tmp_path):
    sets = {"model": str(tiny_model_dir)}
    only = ["factoid_qa-*__dense*", "factoid_qa-*__magnitude*", "mcq-*__dense*", "perplexity-*__wanda*"]
    smoke = REPO / "params" / "smoke" / "demo.yaml"
    fresh = run_study(smoke, results_dir=tmp_path / "fresh", overrides=sets, only=only, report=False, progress=False)
    warm = run_study(smoke, results_dir=tmp_path / "warm", overrides=sets, only=only, reuse_kernels=True,
                     report=False, progress=False)
    assert len(fresh.ok) == len(warm.ok) == 4 and not warm.failed
    for run_id in fresh.ok:
        a, b = (read_record(s.study_dir / run_id) for s in (fresh, warm))
        assert a["metrics"] == b["metrics"]
        assert (fresh.study_dir / run_id / "examples.jsonl").read_text() == \
            (warm.study_dir / run_id / "examples.jsonl").read_text()


def test_a_run_that_times_out_does_not_leave_its_busy_kernel_to_the_next(probe_params, counter, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("KICK_TEST_SLEEP", "30")
    params = probe_params([{"method": ["dense"], "seed": [0, 1]}])
    summary = run_study(params, results_dir=tmp_path / "res", reuse_kernels=True, timeout=3, report=False,
                        progress=False)
    assert len(summary.failed) == 2
    pids = [p["pid"] for p in probes(counter)]
    assert len(pids) == 2 and pids[0] != pids[1]  # the second run did not queue behind the first's sleep
