"""The real-model studies' smoke twins (``params/smoke/real.yaml``, ``real_full.yaml``) end to end on a tiny saved model.

The same runner, notebooks, real data (geofacts closed and open book, shipped MMLU and CNN/DM, MMLU-val
calibration) and report as ``make real``; only the model is tiny. The default selection runs the part
that answers the open-book question (ICR-QA dense and pruned, factoid dense) and renders the report; the
whole twins are ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kick_core.config import BF16_IF_NATIVE
from kick_core.paramsfile import load_params
from kick_core.results import read_record
from kick_core.runner.sweep import run_study

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "params" / "smoke" / "real.yaml"
SMOKE_FULL = REPO / "params" / "smoke" / "real_full.yaml"


def _check(summary, n_runs: int) -> None:
    assert not summary.failed and len(summary.ok) == n_runs
    for run_id in summary.ok:
        rec = read_record(summary.study_dir / run_id)
        assert rec["status"] == "ok" and rec["config"]["model"]["dtype"] == BF16_IF_NATIVE
        assert rec["compression"]["size"]["dtype"] in ("bfloat16", "float32")  # resolved for this CPU
        assert rec["provenance"]["hardware"]["cpu_capability"]
    figures = summary.study_dir / "report" / "report_figures.html"
    assert (summary.study_dir / "report" / "report_explorer.html").is_file()
    assert f"ran with dtype {BF16_IF_NATIVE}" in figures.read_text()  # the report says what the dtype resolved to


def test_the_real_studys_open_book_part_runs_and_reports_on_a_tiny_model(tiny_model_dir, tmp_path):
    only = ["icr_qa-*__dense__*", "icr_qa-*__wanda-0.50__*", "factoid_qa-*__dense__*"]
    summary = run_study(SMOKE, results_dir=tmp_path / "res", overrides={"model": str(tiny_model_dir)}, only=only,
                        jobs=1, reuse_kernels=True, progress=False)
    _check(summary, 3)
    rec = read_record(next(summary.study_dir.glob("icr_qa-*__dense__*")))
    assert {"contains_open", "contains_closed"} <= set(rec["metrics"])


@pytest.mark.slow
@pytest.mark.parametrize("params", [SMOKE, SMOKE_FULL], ids=lambda p: p.stem)
def test_the_whole_real_smoke_twin_runs_on_a_tiny_model(params, tiny_model_dir, tmp_path):
    summary = run_study(params, results_dir=tmp_path / "res", overrides={"model": str(tiny_model_dir)}, jobs=2,
                        reuse_kernels=True, progress=False)
    _check(summary, len(load_params(params).runs))
