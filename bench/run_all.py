"""Run every benchmark in ``bench/`` one after another and keep their output (``make bench``).

Each ``bench_*.py`` is its own script (see its docstring for what it measures and its flags); they
print ratios against a baseline measured in the same run, never absolute pass/fail times. This
wrapper runs them in sequence (two torch jobs at once on a small CPU slow each other down far more
than 2x), tees each one's output to ``bench/out/<name>.log`` and prints a one-line status per
benchmark at the end.

Usage::

    python bench/run_all.py                 # every benchmark, full size (tens of minutes on 2 cores)
    python bench/run_all.py --quick         # the benchmarks that have a --quick mode, in that mode
    python bench/run_all.py --only prune engine
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK_FLAG = "--quick"


def benchmarks() -> dict[str, Path]:
    """``{"prune": bench/bench_prune.py, ...}`` for every ``bench_*.py`` next to this file."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def has_quick(script: Path) -> bool:
    return QUICK_FLAG in script.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    found = benchmarks()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to the benchmarks that support it")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(found), help="run only these benchmarks")
    args = p.parse_args(argv)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    status: list[tuple[str, int, float]] = []
    for name, script in found.items():
        if args.only and name not in args.only:
            continue
        cmd = [sys.executable, str(script)]
        if args.quick and has_quick(script):
            cmd.append(QUICK_FLAG)
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)  # noqa: T201 - a script's output
        start = time.perf_counter()
        with open(out_dir / f"{name}.log", "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
            rc = proc.wait()
        status.append((name, rc, time.perf_counter() - start))
    print("\n=== summary")  # noqa: T201
    for name, rc, seconds in status:
        print(f"{name:10s} {'ok' if rc == 0 else f'FAILED (exit {rc})':16s} {seconds:7.1f} s  bench/out/{name}.log")  # noqa: T201
    return 0 if all(rc == 0 for _, rc, _ in status) else 1


if __name__ == "__main__":
    sys.exit(main())
