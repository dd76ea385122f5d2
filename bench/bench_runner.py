"""Runner benchmark: a sweep of small runs with a new kernel per run vs warm kernels (``--reuse-kernels``).

Run: ``.venv/bin/python bench/bench_runner.py [--jobs 2] [--quick]``

The smoke study (``params/smoke/demo.yaml``: 6 tasks, dense, pruned and 4-bit runs) on a tiny saved
Llama, executed twice into fresh results folders with the same compression cache: once with a new
kernel per run (the default), once with one kernel per job reset between runs. Prints the wall
time of each sweep, the ratio, and whether every run's metrics and per-example records are
identical (they must be). With a model this small a run is almost all kernel start-up and imports
(torch, transformers, kick), which is what warm kernels save; with a 7B model the load and the
evaluation dominate and the two modes differ by the same few seconds per run.

Measured (2-core AVX2 EPYC, ``--jobs 2``): the embedded demo's 72 runs took 3.5 min with warm kernels
instead of 10.7 min; the smoke sweep here shows the same ratio, about 3x.

Ratios are measured in one process, back to back; they are not timed tests.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke" / "demo.yaml"


def sweep(results: Path, model: Path, jobs: int, only: list[str], reuse: bool) -> tuple[float, object]:
    from kick_core.runner import run_study

    start = time.perf_counter()
    summary = run_study(SMOKE, results_dir=results, jobs=jobs, overrides={"model": str(model)}, only=only,
                        report=False, progress=False, reuse_kernels=reuse)
    return time.perf_counter() - start, summary


def same_records(a: Path, b: Path, run_ids: list[str]) -> bool:
    from kick_core.results import read_record

    return all(read_record(a / r)["metrics"] == read_record(b / r)["metrics"]
               and (a / r / "examples.jsonl").read_text() == (b / r / "examples.jsonl").read_text()
               for r in run_ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (kernels kept with --reuse-kernels)")
    ap.add_argument("--quick", action="store_true", help="factoid_qa and mcq runs only")
    args = ap.parse_args()

    from kick_core.testing import save_tiny_model

    only = ["factoid_qa-*", "mcq-*"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["KICK_CACHE"] = str(tmp / "cache")
        model = save_tiny_model(tmp / "tiny")
        sweep(tmp / "warmup", model, args.jobs, only, reuse=True)  # fills the compression and world caches
        fresh_s, fresh = sweep(tmp / "fresh", model, args.jobs, only, reuse=False)
        warm_s, warm = sweep(tmp / "warm", model, args.jobs, only, reuse=True)
        ok = sorted(fresh.ok) == sorted(warm.ok) and not fresh.failed and not warm.failed
        identical = ok and same_records(fresh.study_dir, warm.study_dir, list(fresh.ok))
    n = len(fresh.ok) + len(fresh.failed)
    out = {"runs": n, "jobs": args.jobs, "new_kernel_per_run_s": round(fresh_s, 1), "warm_kernels_s": round(warm_s, 1),
           "speedup": round(fresh_s / warm_s, 2), "all_ok": ok, "records_identical": identical}
    print(f"{n} runs, {args.jobs} jobs: new kernel per run {fresh_s:.1f} s, warm kernels {warm_s:.1f} s "
          f"-> {fresh_s / warm_s:.2f}x; all ok: {ok}; records identical: {identical}")
    (REPO / "bench" / "out").mkdir(exist_ok=True)
    (REPO / "bench" / "out" / "runner.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
