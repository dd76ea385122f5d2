"""Studies from params files: expand, validate, execute each run's notebook, then the reports.

``kick run params/demo.yaml`` (see :mod:`kick_core.cli`) calls :func:`run_study`. Each expanded
run executes its notebook (``exp_<task>.ipynb`` or the params file's ``notebook``) with Papermill
into ``results/<study>/<run_id>/``; finished runs are skipped, failed ones recorded and retried,
and the report notebooks run into ``results/<study>/report/`` at the end.
"""

from kick_core.runner.execute import execute_run
from kick_core.runner.plan import PlannedRun, group_by_compression, load_study, parse_overrides, plan_runs
from kick_core.runner.report_notebooks import export_html, run_reports
from kick_core.runner.state import is_finished
from kick_core.runner.sweep import EXECUTORS, SweepSummary, run_study, schedule

__all__ = [
    "EXECUTORS",
    "PlannedRun",
    "SweepSummary",
    "execute_run",
    "export_html",
    "group_by_compression",
    "is_finished",
    "load_study",
    "parse_overrides",
    "plan_runs",
    "run_reports",
    "run_study",
    "schedule",
]
