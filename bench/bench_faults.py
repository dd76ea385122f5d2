"""Fault benchmark: SIGKILL a smoke sweep at each of its most harmful moments, rerun it, count what was lost.

Run: ``.venv/bin/python bench/bench_faults.py [--quick]`` (writes ``bench/out/faults.json``)

The sweep is ``kick run params/smoke/demo.yaml`` on a tiny saved Llama, four runs (factoid_qa dense;
factoid_qa, mcq and perplexity with wanda 50 %, one compression group) plus the report notebooks,
started as a subprocess in a session of its own. For each kill point it starts from empty results
and an empty compression cache, lets ``$KICK_CRASH_AT`` (:func:`kick_core.results.crash_point`)
SIGKILL the driver and its kernel at that point, reruns the sweep, and counts:

- runs lost: runs finished before the kill that the rerun did not keep byte for byte, plus runs not
  finished after the rerun (must be 0);
- examples recomputed: example lines an interrupted run had written whole that its rerun computed
  again (must be 0; a torn last line is not a record and is computed again);
- half-written files taken: a record.json that does not parse, or an ok record whose examples.jsonl
  does not hold its n_prompts lines (must be 0);
- whether every record's metrics and examples.jsonl equal those of an uninterrupted sweep;
- the rerun's wall time next to the uninterrupted sweep's.

Measured on one machine, back to back; the times are what a rerun costs, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke" / "demo.yaml"
OUT = REPO / "bench" / "out" / "faults.json"
ONLY = ("factoid_qa-*__dense*", "factoid_qa-*__wanda-0.50*", "mcq-*__wanda-0.50*", "perplexity-*__wanda-0.50*")
W = "__wanda-0.50__"
POINTS = (  # (KICK_CRASH_AT, phase); jobs=1 runs the dense run, then the wanda leader, then its followers
    ("cache:1", "compression: wanda entry complete in its temp folder, not renamed"),
    (f"examples:2:factoid_qa-:{W}", "mid-run: the leader's 2nd example line appended"),
    (f"examples-torn:3:mcq-:{W}", "mid-run: torn in the middle of the mcq run's 3rd example line"),
    (f"examples:1:perplexity-:{W}", "mid-run: the last run's 1st example line appended"),
    (f"write:1:mcq-:{W}:examples.jsonl", "examples.jsonl rewritten in input order, not yet in place"),
    ("write:1:__dense__:record.json", "record.json of the first run written, not yet in place"),
    (f"write:1:mcq-:{W}:record.json", "record.json of a follower written, not yet in place"),
    ("write:1:report_figures.html", "report: the first report's HTML being written"),
    ("write:1:report_explorer.html", "report: the last report's HTML being written"),
)
QUICK = (POINTS[0], POINTS[2], POINTS[6], POINTS[7])


def kick_run(results: Path, model: Path, cache: Path, crash: str | None = None) -> tuple[subprocess.CompletedProcess,
                                                                                           float]:
    env = {**os.environ, "KICK_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("KICK_CRASH_AT", None)
    env.pop("JPY_PARENT_PID", None)
    results.mkdir(parents=True, exist_ok=True)
    env["KICK_CRASH_LOG"] = str(results / "crash.log")  # the kill point, once reached
    if crash:
        env["KICK_CRASH_AT"] = crash
    cmd = [sys.executable, "-m", "kick_core.cli", "run", str(SMOKE), "--results", str(results),
           "--set", f"model={model}", *[a for glob in ONLY for a in ("--only", glob)]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, start_new_session=True, capture_output=True, text=True, timeout=3600)
    return proc, time.perf_counter() - start


def summary(proc: subprocess.CompletedProcess) -> dict:
    if proc.returncode != 0:
        raise RuntimeError(f"kick run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def ok_records(study: Path) -> dict[str, bytes]:
    from kick_core.results import read_record

    return {p.parent.name: p.read_bytes() for p in sorted(study.glob("*/record.json"))
            if (read_record(p) or {}).get("status") == "ok"}


def whole_lines(path: Path) -> int:
    """Example lines a resume can take: up to the last newline, each one JSON (else -1: a broken file)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    try:
        return sum(1 for line in data[:data.rfind(b"\n") + 1].splitlines() if json.loads(line) is not None)
    except json.JSONDecodeError:
        return -1


def half_taken(study: Path) -> int:
    """Files a reader would take as finished although they are not."""
    bad = 0
    for path in study.glob("*/record.json"):
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError:
            bad += 1
            continue
        if rec.get("status") == "ok" and whole_lines(path.parent / "examples.jsonl") != rec["meta"].get("n_prompts", 0):
            bad += 1
    return bad


def same_as(base: Path, study: Path, runs: list[str]) -> bool:
    from kick_core.results import read_record

    return all(read_record(base / r)["metrics"] == read_record(study / r)["metrics"]
               and (base / r / "examples.jsonl").read_bytes() == (study / r / "examples.jsonl").read_bytes()
               for r in runs)


def scenario(tmp: Path, n: int, model: Path, crash: str, phase: str, base_study: Path, base_runs: list[str]) -> dict:
    results, cache = tmp / f"res-{n}", tmp / "cache"
    shutil.rmtree(cache / "compressed", ignore_errors=True)  # compress again: the compression kill needs it
    killed, kill_s = kick_run(results, model, cache, crash)
    log = results / "crash.log"
    reached = killed.returncode == -signal.SIGKILL and log.exists() and f"KICK_CRASH_AT={crash} " in log.read_text()
    study = results / "smoke_demo"
    kept = ok_records(study) if study.exists() else {}
    lines = {p.name: whole_lines(p / "examples.jsonl") for p in (study.iterdir() if study.exists() else [])
             if p.is_dir() and p.name != "report" and p.name not in kept}
    half = half_taken(study) if study.exists() else 0
    tmp_files = len(list(study.glob("*/.*.tmp"))) if study.exists() else 0
    rerun, rerun_s = kick_run(results, model, cache)
    done = summary(rerun)
    after = ok_records(study)
    lost = sum(1 for r in kept if after.get(r) != kept[r] or r not in done["skipped"])
    lost += sum(1 for r in base_runs if r not in after)
    recomputed = 0
    for r in set(after) - set(kept):
        resumed = json.loads(after[r])["meta"]["n_resumed"]
        if resumed > max(lines.get(r, 0), 0):
            half += 1  # took more examples than were whole: a torn line passed as a record
        recomputed += max(lines.get(r, 0), 0) - min(resumed, max(lines.get(r, 0), 0))
    return {"kill_point": crash, "phase": phase, "reached": reached, "kill_seconds": round(kill_s, 1),
            "finished_before_kill": len(kept), "whole_example_lines_before": sum(v for v in lines.values() if v > 0),
            "broken_examples_files": sum(1 for v in lines.values() if v < 0), "temp_files_left_by_kill": tmp_files,
            "runs_lost": lost, "examples_recomputed": recomputed, "half_written_taken": half,
            "rerun_ok": len(done["ok"]), "rerun_skipped": len(done["skipped"]), "rerun_seconds": round(rerun_s, 1),
            "reports": len(done["reports"]), "records_equal_uninterrupted": same_as(base_study, study, base_runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{len(QUICK)} kill points instead of {len(POINTS)}")
    args = ap.parse_args()

    from kick_core.testing import save_tiny_model

    points = QUICK if args.quick else POINTS
    with tempfile.TemporaryDirectory(prefix="kick-faults-") as tmp:
        tmp = Path(tmp)
        os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp / "jupyter")
        model = save_tiny_model(tmp / "kick-tiny-llama")
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        base, base_s = kick_run(tmp / "base", model, tmp / "cache")
        base_runs = summary(base)["ok"]
        print(f"uninterrupted sweep: {len(base_runs)} runs + report in {base_s:.1f} s")
        rows = []
        for n, (crash, phase) in enumerate(points):
            row = scenario(tmp, n, model, crash, phase, tmp / "base" / "smoke_demo", base_runs)
            rows.append(row)
            print(f"{crash:40s} reached={row['reached']!s:5s} kept={row['finished_before_kill']} "
                  f"lost={row['runs_lost']} recomputed_examples={row['examples_recomputed']} "
                  f"half_taken={row['half_written_taken']} equal={row['records_equal_uninterrupted']} "
                  f"rerun {row['rerun_seconds']:.1f} s vs {base_s:.1f} s", flush=True)
    totals = {"kill_points_tried": len(rows), "kill_points_reached": sum(r["reached"] for r in rows),
              "runs_lost": sum(r["runs_lost"] for r in rows),
              "examples_recomputed": sum(r["examples_recomputed"] for r in rows),
              "half_written_taken": sum(r["half_written_taken"] for r in rows),
              "all_records_equal_uninterrupted": all(r["records_equal_uninterrupted"] for r in rows),
              "uninterrupted_seconds": round(base_s, 1),
              "mean_rerun_seconds": round(sum(r["rerun_seconds"] for r in rows) / len(rows), 1)}
    print(json.dumps(totals, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"study": str(SMOKE.relative_to(REPO)), "only": ONLY, "totals": totals,
                               "points": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")
    if totals["runs_lost"] or totals["examples_recomputed"] or totals["half_written_taken"] \
            or not totals["all_records_equal_uninterrupted"] or totals["kill_points_reached"] != len(rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
