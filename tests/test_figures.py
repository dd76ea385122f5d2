"""The report figures: their tables (ratios, labels, band, pairing, verdicts), the drawn figures and the saved files."""

from __future__ import annotations

import json
import math
import os
import stat

import matplotlib
import numpy as np
import pandas as pd
import pytest

from kick_core import figures as F
from kick_core.figures import labels as L
from kick_core.results import _COLUMNS, atomic_write_json, atomic_write_text

matplotlib.use("Agg")

# (task, metric, higher_is_better, primary): a headline metric per task, ICR-QA closed book beside open
METRICS = [("factoid_qa", "contains", True, True), ("icr_qa", "exact_match_open", True, True),
           ("icr_qa", "exact_match_closed", True, False), ("mcq", "accuracy", True, True),
           ("perplexity", "perplexity", False, True)]
# (method, structure, sparsity, bits, group_size, slug)
COMPRESSIONS = [("dense", "unstructured", 0.0, None, None, "dense"),
                ("wanda", "unstructured", 0.3, None, None, "wanda-0.30"),
                ("wanda", "unstructured", 0.5, None, None, "wanda-0.50"),
                ("wanda", "2:4", 0.5, None, None, "wanda-2of4"),
                ("sparsegpt", "unstructured", 0.5, None, None, "sparsegpt-0.50"),
                ("rtn", "unstructured", 0.0, 4, 32, "rtn-w4g32")]
DENSE = {"contains": 0.9, "exact_match_open": 1.0, "exact_match_closed": 0.6, "accuracy": 0.8, "perplexity": 10.0}
KEPT = {"dense": 1.0, "wanda-0.30": 0.99, "wanda-0.50": 0.8, "wanda-2of4": 0.5, "sparsegpt-0.50": 0.96, "rtn-w4g32": 1.0}
"""The fraction of dense each compression keeps, on every metric (perplexity: dense / compressed)."""


def make_runs() -> pd.DataFrame:
    rows = []
    for method, structure, sparsity, bits, group, slug in COMPRESSIONS:
        for task, metric, hib, primary in METRICS:
            kept = KEPT[slug]
            value = DENSE[metric] * kept if hib else DENSE[metric] / kept
            rows.append({"run_id": f"{task}-{slug}", "study": "t", "task": task, "protocol": "strict", "model": "m",
                         "method": method, "structure": structure, "sparsity": sparsity, "bits": bits,
                         "group_size": group, "slug": slug, "seed": 0, "metric": metric, "primary": primary,
                         "value": value, "ci_low": value * 0.9, "ci_high": value * 1.1, "n": 100,
                         "higher_is_better": hib, "realised_sparsity": sparsity, "run_dir": f"/nowhere/{task}-{slug}"})
    return pd.DataFrame(rows, columns=list(_COLUMNS))


@pytest.fixture
def runs() -> pd.DataFrame:
    return make_runs()


def _row(df: pd.DataFrame, metric: str, slug: str) -> pd.Series:
    return df[(df["metric"] == metric) & (df["slug"] == slug)].iloc[0]


# -- the fraction-of-dense table ----------------------------------------------------------------------
def test_ratio_is_compressed_over_dense_and_dense_over_compressed_for_perplexity(runs):
    rel = F.relative_frame(runs)
    for metric in DENSE:
        assert _row(rel, metric, "wanda-0.50")["ratio"] == pytest.approx(0.8)  # down is worse for every metric
    ppl = _row(rel, "perplexity", "wanda-0.50")
    assert ppl["value"] == pytest.approx(12.5) and ppl["dense_value"] == 10.0
    # the CI goes through the same map: perplexity's upper bound gives the ratio's lower one
    assert ppl["ratio_low"] == pytest.approx(10 / (12.5 * 1.1)) and ppl["ratio_high"] == pytest.approx(10 / (12.5 * 0.9))
    acc = _row(rel, "accuracy", "wanda-0.50")
    assert acc["ratio_low"] == pytest.approx(0.72) and acc["ratio_high"] == pytest.approx(0.88)
    dense = _row(rel, "accuracy", "dense")
    assert dense["ratio"] == 1 and math.isnan(dense["ratio_low"])  # dense is the reference, no CI of itself


def test_band_is_the_within_5_percent_rule(runs):
    assert F.match_band() == (0.95, 1.0) and F.match_band(0.1) == (0.9, 1.0)
    rel = F.relative_frame(runs)
    assert _row(rel, "contains", "sparsegpt-0.50")["matching"]  # 0.96 of dense
    assert not _row(rel, "contains", "wanda-0.50")["matching"]  # 0.80
    assert not F.relative_frame(runs, tolerance=0.03).pipe(_row, "contains", "sparsegpt-0.50")["matching"]


def test_runs_without_a_dense_twin_are_left_out(runs):
    rel = F.relative_frame(runs[~((runs["task"] == "mcq") & (runs["method"] == "dense"))])
    assert "mcq" not in set(rel["task"]) and "factoid_qa" in set(rel["task"])


# -- labels ---------------------------------------------------------------------------------------------
def test_panels_methods_and_axes_are_named_in_words():
    assert F.panel_title("factoid_qa", "contains") == "Closed-book factoid QA — answer contained"
    assert F.panel_title("icr_qa", "exact_match_open") == "In-context retrieval, open book — exact match"
    assert F.panel_title("icr_qa", "em_closed", "legacy") == \
        "In-context retrieval, closed book — lenient exact match (legacy protocol)"
    assert F.panel_title("perplexity", "perplexity") == "Perplexity"
    assert F.compression_label("rtn", bits=4, group_size=32) == "RTN 4-bit, group 32"
    assert F.compression_label("wanda", "unstructured", 0.5) == "Wanda 50%"
    assert F.compression_label("sparsegpt", "2:4", 0.5) == "SparseGPT 2:4"
    assert F.compression_label("bnb_int8", bits=8) == "LLM.int8()"
    assert F.compression_label("wanda", "unstructured", 0.5, 4, 128, slug="wanda-0.50+gptq-w4g128") == \
        "Wanda 50% + GPTQ 4-bit, group 128"
    assert L.axis_label("perplexity", np.bool_(False)) == "perplexity (lower is better)"  # numpy bools from pandas
    assert L.axis_label("contains", True) == "answer contained (higher is better)"


def test_panels_are_ordered_knowledge_first_perplexity_last(runs):
    rel = F.relative_frame(runs)
    assert list(dict.fromkeys(rel["panel"])) == [
        "Closed-book factoid QA — answer contained", "In-context retrieval, closed book — exact match",
        "Multiple-choice QA (MMLU) — accuracy", "In-context retrieval, open book — exact match", "Perplexity"]


# -- lines, N:M pairs ------------------------------------------------------------------------------------
def test_curves_start_every_method_at_dense(runs):
    c = F.curves(F.relative_frame(runs), "sparsity")
    assert list(dict.fromkeys(c["facet"])) == ["Wanda", "SparseGPT"]  # unstructured only: no 2:4, no RTN
    wanda = c[(c["facet"] == "Wanda") & (c["metric"] == "contains")]
    assert list(wanda["x"]) == [0, 30, 50] and list(wanda["ratio"]) == pytest.approx([1, 0.99, 0.8])
    bits = F.curves(F.relative_frame(runs), "bits")
    rtn = bits[(bits["facet"] == "RTN, group 32") & (bits["metric"] == "accuracy")]
    assert list(rtn["x"]) == [0, 2] and list(rtn["kind"]) == ["dense", "quantised"]  # log2(16 / 4) = 2
    with pytest.raises(ValueError, match="axis"):
        F.curves(F.relative_frame(runs), "rank")


def test_nm_frame_pairs_each_nm_run_with_the_unstructured_run_of_its_method_and_sparsity(runs):
    nm = F.nm_frame(F.relative_frame(runs))
    factoid = nm[nm["metric"] == "contains"]
    assert list(zip(factoid["group"], factoid["pattern"])) == [("Wanda", "unstructured 50%"), ("Wanda", "2:4")]
    assert list(factoid["ratio"]) == pytest.approx([0.8, 0.5])  # SparseGPT has no N:M run: not in the figure


# -- the matching heat map -------------------------------------------------------------------------------
def test_heatmap_cells_carry_the_verdict_the_difference_and_its_ci(runs):
    matching = pd.DataFrame([
        {"task": "factoid_qa", "protocol": "strict", "compression": "wanda-0.50", "metric": "contains",
         "difference": -0.18, "difference_ci": (-0.25, -0.11), "verdict": "not matching"},
        {"task": "factoid_qa", "protocol": "strict", "compression": "sparsegpt-0.50", "metric": "contains",
         "difference": -0.036, "difference_ci": (-0.08, 0.0), "verdict": "inconclusive"},
        {"task": "mcq", "protocol": "strict", "compression": "rtn-w4g32", "metric": "accuracy",
         "difference": 0.0, "difference_ci": (-0.001, 0.001), "verdict": "matching"}])
    hf = F.heatmap_frame(matching, runs, perplexity=pd.DataFrame())
    cell = hf[hf["compression"] == "Wanda 50%"].iloc[0]
    assert cell["verdict"] == "not matching" and cell["text"] == "\u22120.18\n[\u22120.25, \u22120.11]"
    assert list(hf["compression"]) == ["Wanda 50%", "SparseGPT 50%", "RTN 4-bit, group 32"]
    fig = F.plot_matching_heatmap(matching, runs, perplexity=pd.DataFrame())
    image = fig.axes[0].images[0].get_array()  # rows: factoid, mcq; columns: Wanda 50%, SparseGPT 50%, RTN
    expect = {(0, 0): "not matching", (0, 1): "inconclusive", (1, 2): "matching"}
    for (i, j), verdict in expect.items():
        assert tuple(image[i, j]) == pytest.approx(matplotlib.colors.to_rgb(L.VERDICT_COLOURS[verdict]))
    assert tuple(image[1, 0]) == (1, 1, 1)  # not run: white


def _windows(nll: list[float]) -> list[dict]:
    return [{"id": f"w{i}", "nll": x, "n_tokens": 100} for i, x in enumerate(nll)]


def test_paired_perplexity_resamples_the_same_windows_in_both_runs():
    rng = np.random.default_rng(0)
    dense = list(rng.uniform(1.0, 3.0, size=30))  # windows differ a lot; the pairing removes that spread
    same = F.paired_perplexity(_windows(dense), _windows([x + 0.01 for x in dense]))
    assert same["ratio"] == pytest.approx(math.exp(-0.01)) and same["verdict"] == "matching"
    assert same["ratio_ci"][0] == pytest.approx(math.exp(-0.01), abs=1e-9)  # a constant shift has no spread
    worse = F.paired_perplexity(_windows(dense), _windows([x + 0.5 for x in dense]))
    assert worse["verdict"] == "not matching" and worse["difference"] > 0
    lo, hi = worse["difference_ci"]
    assert lo <= worse["difference"] <= hi
    assert F.paired_perplexity(_windows(dense), [{"id": "other", "nll": 1.0, "n_tokens": 1}])["n"] == 0


# -- the open-book copy baseline ---------------------------------------------------------------------------
def test_copy_baseline_is_the_mean_over_the_runs_questions(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "validation.jsonl").write_text("")
    (data / "splits.json").write_text(json.dumps({"copy_baseline": {"q1": 0.5, "q2": 0.25, "q3": 1.0}}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "examples.jsonl").write_text("".join(json.dumps({"id": f"{q}/{b}"}) + "\n"
                                                for q in ("q1", "q2") for b in ("closed", "open")))
    record = {"config": {"task": {"task": "icr_qa", "dataset": str(data)}, "model": {"world_seed": 0}}}
    assert F.copy_baseline(record, run) == pytest.approx(0.375)  # q3 was not asked
    (data / "splits.json").unlink()
    assert F.copy_baseline(record, run) is None


# -- drawn figures ---------------------------------------------------------------------------------------
def test_headline_figure_has_a_panel_per_method_and_bits_with_the_band_shaded(runs):
    fig = F.plot_headline(runs)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["Wanda", "SparseGPT", "RTN, group 32"] and len(fig.axes) == 6  # zoomed + full range
    ax = fig.axes[0]
    bands = [p for p in ax.patches if p.get_y() == pytest.approx(0.95)]
    assert bands and bands[0].get_y() + bands[0].get_height() >= 1.0
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Perplexity" in labels and "Closed-book factoid QA — answer contained" in labels
    assert fig.axes[0].get_ylim() == pytest.approx((0.7, 1.04))
    assert F.plot_headline(runs[runs["method"] == "dense"]).axes[0].texts  # nothing compressed: says so


def test_panels_that_would_share_a_colour_get_distinct_shades_and_perplexity_stays_the_bold_line(runs):
    """MMLU letter and cloze are two panels of one task: two lines, told apart in the legend."""
    mcq = runs[runs["task"] == "mcq"]
    two = pd.concat([runs[runs["task"] != "mcq"], mcq.assign(variant="letter", run_id=mcq["run_id"] + "-l"),
                     mcq.assign(variant="cloze", run_id=mcq["run_id"] + "-c")], ignore_index=True)
    fig = F.plot_headline(two)
    assert "Multiple-choice QA (MMLU), letter — accuracy" in [t.get_text() for t in fig.legends[0].get_texts()]
    lines = {c.get_label(): c[0] for c in fig.axes[0].containers}  # each errorbar's data line, by panel
    colour = {name: matplotlib.colors.to_hex(line.get_color()) for name, line in lines.items()}
    cloze, letter = colour["Multiple-choice QA (MMLU), cloze — accuracy"], colour["Multiple-choice QA (MMLU), letter — accuracy"]
    assert cloze == L.PANEL_COLOURS[("mcq", None)] and letter != cloze  # the first by name keeps the task's colour
    assert colour["Closed-book factoid QA — answer contained"] == L.PANEL_COLOURS[("factoid_qa", None)]
    assert lines["Perplexity"].get_linewidth() > lines["Closed-book factoid QA — answer contained"].get_linewidth()
    assert len({L.shade("#9467bd", k) for k in range(5)}) == 5 and L.shade("#000000", 1) != "#000000"


def test_metric_figures_draw_chance_and_the_copy_baseline(runs):
    baselines = pd.DataFrame([{"task": "icr_qa", "metric": "exact_match_open", "protocol": "strict", "model": "m",
                               "baseline": 0.52}])
    fig = F.plot_vs_compression(runs, "sparsity", baselines=baselines)
    axes = {ax.get_title().replace("\n", " "): ax for ax in fig.axes if ax.get_title()}

    def hlines(ax):
        return sorted(round(line.get_ydata()[0], 3) for line in ax.lines if len(set(line.get_ydata())) == 1
                      and len(line.get_xdata()) == 2 and line.get_xdata()[1] == 1)

    assert 0.25 in hlines(axes["Multiple-choice QA (MMLU) — accuracy"])
    assert 0.52 in hlines(axes["In-context retrieval, open book — exact match"])
    assert 0.25 not in hlines(axes["Closed-book factoid QA — answer contained"])
    assert axes["Perplexity"].get_ylabel() == "perplexity (lower is better)"
    assert len(F.plot_nm_vs_unstructured(runs).legends[0].get_texts()) == 3  # unstructured 50%, 2:4, band


def test_save_figure_writes_png_and_svg_readable_by_others(runs, tmp_path):
    old = os.umask(0o022)
    try:
        paths = F.save_figure(F.plot_nm_vs_unstructured(runs), tmp_path / "figures", "nm")
    finally:
        os.umask(old)
    assert [p.name for p in paths] == ["nm.png", "nm.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:400]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in paths)
    assert not list((tmp_path / "figures").glob(".*"))  # no temp file left behind


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "report.html", "<html></html>")
        record = atomic_write_json(tmp_path / "record.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(text.stat().st_mode) == mode and stat.S_IMODE(record.stat().st_mode) == mode
    assert text.read_text() == "<html></html>" and json.loads(record.read_text()) == {"a": 1}
