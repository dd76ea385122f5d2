"""From a params file to a validated, ordered plan: runs, their notebooks and their folders.

Everything here is cheap (no torch): the whole study is expanded and checked, notebooks included,
before the first kernel starts, so a typo fails in a second rather than after a model has loaded.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kick_core.config import RunConfig, flat_fields
from kick_core.errors import ConfigError, did_you_mean
from kick_core.paramsfile import Study, expand_params, parse_value, read_params_file

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"
"""The repository's notebooks/ folder (kick is installed editable from a checkout)."""
EXTRA_PARAMETERS = ("out_dir",)
"""Notebook parameters that are not run-config fields: the runner injects the run folder."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: its config, the notebook that executes it and its output folder."""

    cfg: RunConfig
    notebook: Path
    folder: Path

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    @property
    def compression_key(self) -> str:
        """Runs with the same key share one cached compressed model (same model + compression)."""
        c = self.cfg.to_dict()
        return json.dumps({"model": c["model"], "compress": c["compress"]}, sort_keys=True)


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """['model=/tmp/x', 'n_examples=5'] -> {'model': '/tmp/x', 'n_examples': 5} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    known = flat_fields()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r} must look like name=value, e.g. --set model=/path/to/model.")
        if key not in known:
            raise ConfigError(f"--set {key}: unknown parameter.{did_you_mean(key, known)}")
        out[key] = parse_value(value, f"--set {pair}") if value.strip() else None
    return out


def load_study(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Study:
    """Read and expand a params file, applying ``overrides`` to its base before the sweep expands."""
    path = Path(path)
    raw = read_params_file(path)
    if overrides and isinstance(raw, dict):
        raw = {**raw, "base": {**(raw.get("base") or {}), **overrides}}
    where = str(path) + (f" with --set {', '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else "")
    return expand_params(raw, where=where, default_name=path.stem, path=path)


def resolve_notebook(cfg: RunConfig, study: Study, notebooks_dir: Path | None = None) -> Path:
    """The notebook of a run: the params file's ``notebook`` (a name or a path), else ``exp_<task>``."""
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    name = study.notebook or f"exp_{cfg.task.task}"
    candidates = [Path(name)]
    if study.path is not None:
        candidates.insert(0, study.path.parent / name)
    candidates.append(nb_dir / name)
    for c in candidates:
        for p in (c, c.with_name(c.name + ".ipynb")):
            if p.is_file():
                return p.resolve()
    available = sorted(p.stem for p in nb_dir.glob("*.ipynb"))
    raise ConfigError(f"notebook {name!r} for task {cfg.task.task!r} not found (looked next to the params file "
                      f"and in {nb_dir}).{did_you_mean(Path(name).stem, available)} Available: {', '.join(available)}. "
                      "Fix: name one of those or an existing .ipynb path, or leave notebook out (exp_<task> is used).")


def check_notebook(path: Path) -> None:
    """A notebook must have a ``parameters`` cell whose names are run-config fields (or out_dir)."""
    import nbformat
    import papermill

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as err:  # noqa: BLE001 - nbformat fails on a non-notebook in many ways (JSON, schema, encoding)
        raise ConfigError(f"notebook {str(path)!r} is not a Jupyter notebook ({type(err).__name__}: {str(err)[:80]}). "
                          "Fix: set notebook: to an .ipynb file (or a name in notebooks/), or leave it out.") from None
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ConfigError(f"notebook {path} has no cell tagged 'parameters'; the runner cannot inject the config. "
                          "Fix: tag the cell that sets the defaults 'parameters' (as papermill expects).")
    known = set(flat_fields()) | set(EXTRA_PARAMETERS)
    unknown = sorted(set(papermill.inspect_notebook(str(path))) - known)
    if unknown:
        raise ConfigError(f"notebook {path} has parameters that are not run-config fields: {', '.join(unknown)} "
                          f"(they would silently keep their defaults). Fix: rename them or add config fields.")


def plan_runs(study: Study, results_dir: str | Path, *, only: Sequence[str] = (),
              notebooks_dir: Path | None = None) -> list[PlannedRun]:
    """The study's runs (filtered by ``only`` globs on run ids), each with its notebook and folder."""
    runs = [r for r in study.runs if not only or any(fnmatch.fnmatch(r.run_id, g) for g in only)]
    if not runs:
        raise ConfigError(f"--only {' '.join(only)} matches none of the {len(study.runs)} runs of "
                          f"study {study.name!r}; run ids look like {study.runs[0].run_id!r}.")
    base = Path(results_dir) / study.name
    plan = [PlannedRun(cfg, resolve_notebook(cfg, study, notebooks_dir), base / cfg.run_id) for cfg in runs]
    for nb in sorted({p.notebook for p in plan}):
        check_notebook(nb)
    return plan


def group_by_compression(plan: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """Runs grouped by compression key, in first-appearance order: each group compresses once."""
    groups: dict[str, list[PlannedRun]] = {}
    for run in plan:
        groups.setdefault(run.compression_key, []).append(run)
    return list(groups.values())
