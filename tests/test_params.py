"""Params files, notebooks and the config cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from kick_core.paramsfile import load_params
from kick_core.config import flat_fields

REPO = Path(__file__).resolve().parent.parent
PARAMS = sorted((REPO / "params").rglob("*.yaml"))
EXPERIMENTS = sorted((REPO / "notebooks").glob("exp_*.ipynb"))
REPORTS = sorted((REPO / "notebooks").glob("report_*.ipynb"))
EXTRA = {"out_dir"}  # the run folder the runner injects; not a config field


def test_every_study_has_a_smoke_twin():
    studies = {p.name for p in PARAMS if p.parent.name == "params"}
    smoke = {p.name for p in PARAMS if p.parent.name == "smoke"}
    assert studies and studies == smoke


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: str(p.relative_to(REPO)))
def test_params_file_expands_into_validated_runs(path):
    study = load_params(path)
    assert study.runs and len({r.run_id for r in study.runs}) == len(study.runs)


def test_demo_covers_the_brief_grid():
    runs = load_params(REPO / "params" / "demo.yaml").runs
    assert {r.model.model for r in runs} == {"kick-world"} and {r.task.dataset for r in runs} == {"world"}
    from kick_core.config import TASKS

    assert {r.task.task for r in runs} == set(TASKS)  # all five world tasks + perplexity
    assert {r.compress.slug for r in runs} >= {"dense", "wanda-0.50", "sparsegpt-2of4", "magnitude-0.70",
                                              "rtn-w8g32", "rtn-w4g32"}
    for task in TASKS:  # every task has dense, pruned and quantised points
        methods = {r.compress.method for r in runs if r.task.task == task}
        assert {"dense", "magnitude", "wanda", "sparsegpt", "rtn"} <= methods, task


def test_vicuna_pruning_grid_is_the_studys():
    runs = load_params(REPO / "params" / "vicuna7b_pruning.yaml").runs
    levels = {r.compress.target_sparsity for r in runs if r.compress.structure == "unstructured"}
    assert levels == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}
    assert {r.compress.structure for r in runs} == {"unstructured", "2:4", "4:8"}
    assert {r.task.protocol for r in runs} == {"legacy", "strict"}
    assert {(r.compress.calib_dataset, r.compress.n_calib, r.compress.calib_seqlen) for r in runs} == {("c4", 128, 2048)}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_notebook_parameters_equal_the_flat_config_fields(path):
    assert set(papermill.inspect_notebook(str(path))) == set(flat_fields()) | EXTRA


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_report_notebook_takes_only_a_results_dir(path):
    # and, where it draws figures, the folder their PNG + SVG copies go to (the runner sets it)
    assert set(papermill.inspect_notebook(str(path))) - {"figures_dir"} == {"results_dir"}


def test_every_task_has_an_experiment_notebook():
    from kick_core.config import TASKS

    assert {p.stem for p in EXPERIMENTS} == {f"exp_{t}" for t in TASKS} | {"exp_compress"}


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")) + sorted(
    (REPO / "tests" / "fixtures" / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_stay_thin(path):
    import ast

    nb = nbformat.read(str(path), as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    banned = (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.Try, ast.AsyncFunctionDef)
    assert not [type(n).__name__ for n in ast.walk(ast.parse(source)) if isinstance(n, banned)]


def test_committed_notebooks_are_what_the_builder_writes(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_build", REPO / "notebooks" / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setattr(build, "HERE", tmp_path)
    build.main()
    for path in tmp_path.glob("*.ipynb"):
        assert path.read_text() == (REPO / "notebooks" / path.name).read_text(), f"rerun notebooks/_build.py ({path.name})"
