"""The ``kick`` command: run a study, build its report, list what kick knows.

Examples::

    kick run params/demo.yaml                       # the embedded demo (trains the world model once)
    kick run params/smoke/demo.yaml --set model=/tmp/tiny --jobs 2
    kick run params/vicuna7b_pruning.yaml --executor ray --ray-address auto --only 'mcq-*'
    kick report results/demo
    kick ls methods
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kick_core.errors import KickError

log = logging.getLogger(__name__)

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
LISTS = ("methods", "tasks", "models", "studies")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kick", description="LLM-KICK study runner.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study from a params file (finished runs are skipped)")
    run.add_argument("params", help="params YAML file, e.g. params/demo.yaml")
    run.add_argument("--results", default="results", help="results root (default: results/)")
    run.add_argument("--executor", default="local", help="local (default) or ray")
    run.add_argument("--jobs", type=int, default=None, help="runs at once (local default 1; ray: what fits)")
    run.add_argument("--threads", type=int, default=None, help="torch threads per run (default cores // jobs)")
    run.add_argument("--retries", type=int, default=0, help="extra attempts for a failed run")
    run.add_argument("--only", action="append", default=[], metavar="GLOB", help="only run ids matching GLOB")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                     help="override a base value before expansion, e.g. --set model=/tmp/tiny")
    run.add_argument("--notebooks", default=None, help="folder of exp_<task>.ipynb (default: notebooks/)")
    run.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    run.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    run.add_argument("--reuse-kernels", action="store_true",
                     help="local executor: one kernel per job, reset between runs (saves the imports of each run)")
    run.add_argument("--no-report", action="store_true", help="skip the report notebooks at the end")
    run.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")

    rep = sub.add_parser("report", help="execute the report notebooks on a results folder")
    rep.add_argument("results_dir", help="a study folder, e.g. results/demo")
    rep.add_argument("--out", default=None, help="output folder (default: <results_dir>/report)")

    ls = sub.add_parser("ls", help="list methods, tasks, models or studies")
    ls.add_argument("what", nargs="?", default="studies", choices=LISTS)
    return p


def _dry_run(args: argparse.Namespace) -> int:
    from kick_core.runner import group_by_compression, is_finished, load_study, parse_overrides, plan_runs

    study = load_study(args.params, parse_overrides(args.overrides))
    plan = plan_runs(study, args.results, only=args.only, notebooks_dir=args.notebooks)
    from kick_core.sources import check_sources

    if study.notebook is None:  # as run_study: kick's own notebooks load cfg.model
        check_sources(p.cfg for p in plan if not is_finished(p.folder, p.cfg))
    groups = group_by_compression(plan)
    sys.stdout.write(f"study {study.name}: {len(plan)} runs, {len(groups)} compressions\n")
    for group in groups:
        for run in group:
            state = "done" if is_finished(run.folder, run.cfg) else "todo"
            sys.stdout.write(f"  [{state}] {run.run_id}  ({run.notebook.name})\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    from kick_core.runner import parse_overrides, run_study

    if args.dry_run:
        return _dry_run(args)
    summary = run_study(args.params, results_dir=args.results, executor=args.executor, jobs=args.jobs,
                        threads=args.threads, retries=args.retries, only=args.only,
                        overrides=parse_overrides(args.overrides), notebooks_dir=args.notebooks,
                        ray_address=args.ray_address, timeout=args.timeout, report=not args.no_report,
                        reuse_kernels=args.reuse_kernels)
    sys.stdout.write(json.dumps({k: v for k, v in summary.as_dict().items() if k != "run_seconds"}, indent=2) + "\n")
    return 1 if summary.failed else 0


def _report(args: argparse.Namespace) -> int:
    from kick_core.runner import run_reports

    written = run_reports(args.results_dir, args.out)
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0 if written else 1


def _ls(what: str) -> list[str]:
    from kick_core import config
    from kick_core.paramsfile import load_params

    if what == "methods":
        from kick_core import methods

        width = max(map(len, methods.METHODS))
        lines = [f"{m.name:<{width}}  {m.family:<9}  {m.description}" for m in methods.METHODS.values()]
        return lines + [f"preset {name}: {', '.join(f'{k}={v}' for k, v in values.items())}"
                        for name, values in config.PRESETS.items()]
    if what == "tasks":
        from kick_core.tasks import TASKS

        return [f"{name}  ({(type(task).__doc__ or '').strip().splitlines()[0].replace(' (see the module docstring).', '')})"
                for name, task in TASKS.items()]
    if what == "models":
        from kick_core.packaged import PACKAGED

        described = {config.EMBEDDED_MODEL: "embedded default: synthetic-world Llama, trained on the CPU once",
                     **{name: f"{p.description} ({p.license}; pip {p.requirement}, ~{p.size_mb} MB, fetched on first use)"
                        for name, p in PACKAGED.items()}}
        models = set(described)
        for path in PARAMS_DIR.glob("*.yaml"):
            models |= {r.model.model for r in load_params(path).runs}
        width = max(map(len, models))
        return [f"{m:<{width}}  {described.get(m, '')}".rstrip() for m in sorted(models)]
    lines = []
    for path in sorted(PARAMS_DIR.rglob("*.yaml")):
        study = load_params(path)
        lines.append(f"{path.relative_to(PARAMS_DIR.parent)}: {study.name}, {len(study.runs)} runs"
                     f"{' - ' + study.description if study.description else ''}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kick``; returns the exit status (1 when a run failed, 2 on a usage error)."""
    from kick_core.log import setup_logging

    args = _parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args)
        sys.stdout.write("\n".join(_ls(args.what)) + "\n")
        return 0
    except KickError as err:
        sys.stderr.write(f"kick: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("kick: interrupted; rerun the same command to resume (finished runs are kept)\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
