"""The report notebooks, executed by Papermill on the committed fixture runs (never loading a model)."""

from __future__ import annotations

import importlib.util
import os
import stat

import pytest

from kick_core.runner import run_reports

HAS_STATS = importlib.util.find_spec("kick_core.stats") is not None


def test_explorer_report_executes_and_exports_self_contained_html(fixture_runs):
    written = run_reports(fixture_runs, reports=["report_explorer"])
    assert [p.name for p in written] == ["report_explorer.ipynb", "report_explorer.html"]
    html = written[1].read_text()
    assert "magnitude-0.30" in html and "agreement" in html  # the flips overview table is in the page


@pytest.mark.skipif(not HAS_STATS, reason="kick_core.stats.paired_analysis (matching table) not merged yet")
def test_figures_report_executes_with_embedded_images(fixture_runs):
    old = os.umask(0o022)
    try:
        written = run_reports(fixture_runs, reports=["report_figures"])
    finally:
        os.umask(old)
    assert [p.name for p in written] == ["report_figures.ipynb", "report_figures.html"]
    assert written[1].read_text().count("data:image/png;base64") >= 5
    saved = sorted(p.name for p in (written[1].parent / "figures").iterdir())
    assert saved == [f"{n}.{ext}" for n in ("1_headline", "2_vs_sparsity", "3_vs_bits", "4_nm_vs_unstructured",
                                            "5_matching") for ext in ("png", "svg")]
    assert stat.S_IMODE(written[1].stat().st_mode) == 0o644  # readable when copied to a shared server


def test_a_results_folder_without_runs_gives_no_report(tmp_path):
    assert run_reports(tmp_path) == []
