"""Each experiment notebook executed by the runner with its smoke params on a tiny saved model.

One notebook runs in the default selection, the others are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kick_core.results import read_record
from kick_core.runner import run_study

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "params" / "smoke" / "demo.yaml"


def _run(task: str, method: str, tiny_model_dir: Path, tmp_path: Path, notebook: str | None = None, **extra):
    sets = {"model": str(tiny_model_dir), **extra}
    only = [f"{task}-*__{method}*"]
    if notebook:  # compression-only notebook on the smoke grid's first run of this method
        import yaml

        raw = yaml.safe_load(SMOKE.read_text())
        raw["notebook"] = str(REPO / "notebooks" / f"{notebook}.ipynb")
        params = tmp_path / "smoke.yaml"
        params.write_text(yaml.safe_dump(raw))
    else:
        params = SMOKE
    summary = run_study(params, results_dir=tmp_path, overrides=sets, only=only, report=False, progress=False)
    assert summary.ok and not summary.failed, summary
    return read_record(summary.study_dir / summary.ok[0])


def test_exp_factoid_qa_writes_a_record_with_realised_sparsity(tiny_model_dir, tmp_path):
    rec = _run("factoid_qa", "wanda-0.50", tiny_model_dir, tmp_path)
    assert {"metrics", "compression", "timings", "provenance", "tokens", "config"} <= set(rec)
    assert rec["metrics"] and all({"value", "ci_low", "ci_high", "n"} <= set(m) for m in rec["metrics"].values())
    overall = rec["compression"].get("sparsity")
    overall = overall.get("overall") if isinstance(overall, dict) else overall
    assert overall == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mcq", "icr_qa", "perplexity"])  # judged tasks: test_judged_notebooks.py
def test_exp_notebook_runs_on_the_smoke_config(task, tiny_model_dir, tmp_path):
    rec = _run(task, "dense", tiny_model_dir, tmp_path)
    assert rec["status"] == "ok" and rec["metrics"]


@pytest.mark.slow
def test_exp_compress_records_the_compression_report(tiny_model_dir, tmp_path):
    rec = _run("factoid_qa", "magnitude-0.50", tiny_model_dir, tmp_path, notebook="exp_compress")
    assert rec["status"] == "ok" and rec["compression"]
