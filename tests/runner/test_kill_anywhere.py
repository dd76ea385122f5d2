"""Kill anywhere: SIGKILL a sweep at its most harmful moments, rerun it, and lose nothing.

The kills come from :func:`kick_core.results.crash_point`: ``$KICK_CRASH_AT`` makes the process that
reaches a named write (a temp file not yet moved into place, an example line, a cache entry not yet
renamed) SIGKILL the sweep's driver and its own kernel, like ``kill -9`` of the whole job. After each
kill the test checks what a rerun must find: no half-written file taken as finished, every finished
run kept as it was, an interrupted run resuming from the examples it had written; at the end, records
equal to those of a sweep that was never interrupted.

The default selection runs the counting fixture notebook and ``evaluate`` in process (seconds); the
``slow`` test drives the real notebooks of ``params/smoke/demo.yaml`` on a tiny model through five
kills in a row (minutes). ``bench/bench_faults.py`` measures the same on more kill points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import kick_core.evaluate as ev
import kick_core.results as results
from kick_core.config import RunConfig
from kick_core.results import CRASH_ENV, CRASH_LOG_ENV, EXAMPLES, RECORD, crash_point, read_record

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SMOKE = REPO / "params" / "smoke" / "demo.yaml"


def kick_run(params: Path, results_dir: Path, *args: str, crash: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``kick run`` in a session of its own, optionally killed at ``crash`` ($KICK_CRASH_AT).

    A kill point reached is logged to ``<results_dir>/crash.log``.
    """
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop(CRASH_ENV, None)
    full_env.pop("JPY_PARENT_PID", None)  # the driver is nobody's kernel: the kill must not reach pytest
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "crash.log").unlink(missing_ok=True)
    full_env[CRASH_LOG_ENV] = str(results_dir / "crash.log")
    if crash:
        full_env[CRASH_ENV] = crash
    return subprocess.run([sys.executable, "-m", "kick_core.cli", "run", str(params), "--results", str(results_dir),
                           *args], env=full_env, start_new_session=True, capture_output=True, text=True,
                          timeout=1800)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def killed(proc: subprocess.CompletedProcess, results_dir: Path, crash: str) -> bool:
    """The sweep died by SIGKILL, and at ``crash``."""
    log = results_dir / "crash.log"
    return proc.returncode == -signal.SIGKILL and log.exists() and f"{CRASH_ENV}={crash} " in log.read_text()


def ok_records(study_dir: Path) -> dict[str, bytes]:
    """Run id -> record.json bytes of every run whose record says ok."""
    return {p.parent.name: p.read_bytes() for p in sorted(study_dir.glob(f"*/{RECORD}"))
            if (read_record(p) or {}).get("status") == "ok"}


def complete_lines(path: Path) -> int:
    """Example records in ``path`` that a resume can take: whole lines (newline written) that parse."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    n = 0
    for line in data[:data.rfind(b"\n") + 1].splitlines():
        json.loads(line)  # a broken line before the last is a bug: the next resume would refuse the file
        n += 1
    return n


# -- the hook itself -------------------------------------------------------------------------------
def test_crash_point_does_nothing_unless_its_point_and_path_match(monkeypatch):
    monkeypatch.setattr(results, "_crash_hits", {})
    monkeypatch.delenv(CRASH_ENV, raising=False)
    crash_point("write", "/x/record.json")  # unset: returns at once
    monkeypatch.setenv(CRASH_ENV, "examples:1")
    crash_point("write", "/x/record.json")  # another point
    monkeypatch.setenv(CRASH_ENV, "write:1:__s1__:record.json")
    crash_point("write", "/x/run__s1__/examples.jsonl")  # the path lacks one of the texts
    crash_point("write", "/x/run__s2__/record.json")
    monkeypatch.setenv(CRASH_ENV, "write:2")
    crash_point("write", "/x/record.json")  # the first of two hits
    assert results._crash_hits == {"write:2": 1}


def test_a_kill_while_a_record_is_written_leaves_the_previous_record(tmp_path):
    script = ("from kick_core.results import atomic_write_json\n"
              f"atomic_write_json({str(tmp_path / RECORD)!r}, {{'status': 'failed', 'attempts': 1}})\n"
              f"atomic_write_json({str(tmp_path / RECORD)!r}, {{'status': 'ok'}})\n")
    env = {**os.environ, CRASH_ENV: "write:2:record.json"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, start_new_session=True, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert read_record(tmp_path) == {"status": "failed", "attempts": 1}
    assert [p.name for p in tmp_path.glob(".record.json.*.tmp")]  # the new record never took the name
    assert list(results.iter_records(tmp_path, status=None)) == [{"status": "failed", "attempts": 1,
                                                                  "paths": {"run_dir": str(tmp_path)}}]


# -- evaluate: a torn example line ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from kick_core.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return tiny_model("llama", vocab_size=len(tok)), tok


@pytest.mark.parametrize("tail", [
    pytest.param(lambda line: line[:len(line) // 2], id="half-a-line"),
    pytest.param(lambda line: b'{"id": "x", "output": "caf\xc3', id="inside-a-utf8-character"),
    pytest.param(lambda line: line, id="whole-record-but-no-newline"),
])
def test_a_run_killed_twice_mid_line_still_resumes(tiny, tmp_path, monkeypatch, tail):
    """Regression: the resumed run appended after the torn bytes, so the second resume found a broken
    line mid-file and refused the run for good (or failed to decode a torn UTF-8 character)."""
    model, tok = tiny
    cfg = RunConfig.from_flat(task="factoid_qa", protocol="strict", dataset=str(FIXTURES / "freebase"),
                              n_bootstrap=50)
    full = ev.evaluate(model, tok, cfg, out_dir=tmp_path / "full", progress=False)
    lines = (tmp_path / "full" / EXAMPLES).read_bytes().splitlines(keepends=True)
    path = tmp_path / "part" / EXAMPLES
    path.parent.mkdir()
    path.write_bytes(b"".join(lines[:2]) + tail(lines[2].rstrip(b"\n")))  # killed during the third write

    class Killed(Exception):
        pass

    real = ev.generate

    def killed_after_one_record(m, t, prompts, *, on_result, **kw):
        def once(i, g):
            on_result(i, g)
            raise Killed

        return real(m, t, prompts, on_result=once, **kw)

    monkeypatch.setattr(ev, "generate", killed_after_one_record)
    with pytest.raises(Killed):
        ev.evaluate(model, tok, cfg, out_dir=path.parent, progress=False)
    assert complete_lines(path) == 3 and path.read_bytes().endswith(b"\n")
    monkeypatch.setattr(ev, "generate", real)
    resumed = ev.evaluate(model, tok, cfg, out_dir=path.parent, progress=False)
    assert resumed.meta["n_resumed"] == 3
    assert resumed.examples == full.examples and resumed.metrics == full.metrics
    assert path.read_bytes() == (tmp_path / "full" / EXAMPLES).read_bytes()


# -- a sweep of the counting notebook ---------------------------------------------------------------
def test_a_sweep_killed_while_writing_a_record_keeps_finished_runs(make_params, counter, tmp_path):
    params = make_params([{"method": ["dense"], "seed": [0, 1, 2]}])
    res = tmp_path / "res"
    first = kick_run(params, res, "--no-report", crash="write:1:__s1__:record.json")
    assert killed(first, res, "write:1:__s1__:record.json"), first.stderr[-3000:]
    study = res / "t"
    before = ok_records(study)
    (s0,) = before
    (s1,) = [p.name for p in study.iterdir() if "__s1__" in p.name]
    assert "__s0__" in s0 and read_record(study / s1) is None  # the half-made record took no name
    assert list((study / s1).glob(".record.json.*.tmp"))
    summary = summary_of(kick_run(params, res, "--no-report"))
    assert summary["skipped"] == [s0] and sorted(summary["ok"]) == sorted(p.name for p in study.iterdir()
                                                                         if p.name != s0)
    assert ok_records(study)[s0] == before[s0]  # kept byte for byte
    runs = counter.read_text().splitlines()
    assert runs.count(s0) == 1 and runs.count(s1) == 2 and len(runs) == 4
    assert not list(study.glob("*/.*.tmp"))  # a rerun clears the temp files its killed attempt left


# -- the real notebooks: five kills in a row --------------------------------------------------------
ONLY = ("factoid_qa-*__dense*", "factoid_qa-*__wanda-0.50*", "mcq-*__wanda-0.50*", "perplexity-*__wanda-0.50*")
WANDA = "__wanda-0.50__"
KILLS = (  # (KICK_CRASH_AT, what it interrupts); jobs=1 runs dense first, then the wanda group's leader
    ("cache:1", "compression: the wanda entry written, not yet renamed into the cache"),
    (f"examples:2:factoid_qa-:{WANDA}", "the leader's second example line"),
    (f"examples-torn:2:mcq-:{WANDA}", "mid-way through the mcq run's second example line"),
    (f"write:1:mcq-:{WANDA}:{RECORD}", "the mcq run's record.json, written but not yet in place"),
    ("write:1:report_figures.html", "the report: its first notebook ran, its HTML is being written"),
)


def smoke_args(model_dir: Path) -> list[str]:
    return ["--set", f"model={model_dir}", *[a for glob in ONLY for a in ("--only", glob)]]


@pytest.mark.slow
def test_smoke_sweep_killed_five_times_ends_as_if_never_killed(tiny_model_dir, tmp_path):
    args = smoke_args(tiny_model_dir)
    base = summary_of(kick_run(SMOKE, tmp_path / "base", *args, env={"KICK_CACHE": str(tmp_path / "cache-base")}))
    assert len(base["ok"]) == 4 and not base["failed"]
    env = {"KICK_CACHE": str(tmp_path / "cache")}
    res = tmp_path / "res"
    study = res / "smoke_demo"
    resumable: dict[str, int] = {}  # run -> example lines its folder held when its last attempt started
    for crash, what in KILLS:
        kept = ok_records(study) if study.exists() else {}
        if study.exists():
            resumable = {p.name: complete_lines(p / EXAMPLES) for p in study.iterdir()
                         if p.is_dir() and p.name != "report" and p.name not in kept}
        proc = kick_run(SMOKE, res, *args, crash=crash, env=env)
        assert killed(proc, res, crash), f"{what}: {proc.stderr[-3000:]}"
        now = ok_records(study)
        assert all(now[r] == kept[r] for r in kept), what  # finished runs kept, not recomputed
        for run in set(now) - set(kept):
            rec = json.loads(now[run])
            assert rec["meta"]["n_resumed"] == resumable.get(run, 0), f"{what}: {run} recomputed examples"
            assert complete_lines(study / run / EXAMPLES) == rec["meta"]["n_prompts"]
        if crash.startswith("cache"):
            entries = list((tmp_path / "cache" / "compressed").iterdir())
            assert entries and all(p.name.startswith(".") for p in entries)  # only the temp folder: no entry
        if crash.startswith("write:1:mcq"):
            (mcq,) = [r for r in study.iterdir() if r.name.startswith("mcq-")]
            assert read_record(mcq) is None and complete_lines(mcq / EXAMPLES) == 4
    kept = ok_records(study)
    last = summary_of(kick_run(SMOKE, res, *args, env=env))
    assert sorted(last["skipped"]) == sorted(base["ok"]) == sorted(kept) and not last["ok"]
    assert ok_records(study) == kept
    assert {Path(p).name for p in last["reports"]} >= {"report_figures.html", "report_explorer.html"}
    for run in base["ok"]:
        a, b = read_record(tmp_path / "base" / "smoke_demo" / run), read_record(study / run)
        assert a["metrics"] == b["metrics"], run
        assert (study / run / EXAMPLES).read_text() == (tmp_path / "base" / "smoke_demo" / run / EXAMPLES).read_text()
