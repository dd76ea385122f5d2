"""load_runs, the report figures and the dense-vs-compressed helpers on the committed fixture runs."""

from __future__ import annotations

import sys
import types

import matplotlib
import pytest

import pandas as pd

from kick_core import explorer, figures, plots
from kick_core.config import RunConfig
from kick_core.results import load_examples, load_runs, read_record, write_run

matplotlib.use("Agg")


def test_load_runs_gives_one_row_per_run_and_metric(fixture_runs):
    runs = load_runs(fixture_runs)
    assert len(runs) == 18 and runs["run_id"].is_unique and runs["primary"].all()
    row = runs[(runs["task"] == "factoid_qa") & (runs["slug"] == "wanda-2of4")].iloc[0]
    assert row["sparsity"] == 0.5 and row["structure"] == "2:4" and row["realised_sparsity"] == 0.5
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def test_load_runs_skips_failed_runs(fixture_runs):
    rec_path = next(fixture_runs.glob("mcq*dense*/record.json"))
    rec_path.write_text(rec_path.read_text().replace('"status": "ok"', '"status": "failed"'))
    assert len(load_runs(fixture_runs)) == 17


def test_write_run_records_metrics_compression_timings_and_tokens(tmp_path):
    cfg = RunConfig.from_flat(method="wanda", sparsity=0.5, task="mcq")
    result = {"task": "mcq", "protocol": "strict", "n_examples": 1, "examples": [{"id": "q1", "scores": {"acc": 1}}],
              "metrics": {"acc": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 1, "higher_is_better": True}},
              "meta": {"prompt_tokens": 12}}
    times = {"evaluate": {"seconds": 1.5, "peak_rss_mb": 300.0, "peak_gpu_mb": None}}
    write_run(tmp_path, cfg, result, {"sparsity": {"overall": 0.5}}, times=times, provenance={"p": 1})
    rec = read_record(tmp_path)
    assert rec["status"] == "ok" and rec["config_hash"] == cfg.config_hash() and rec["primary_metric"] == "acc"
    assert rec["tokens"] == {"prompt_tokens": 12} and rec["peak_memory"]["rss_mb"] == 300.0
    assert rec["compression"]["sparsity"]["overall"] == 0.5 and load_examples(tmp_path) == [{"id": "q1", "scores": {"acc": 1}}]


def test_report_figures_draw_the_fixture_study(fixture_runs):
    runs = load_runs(fixture_runs)
    fig = figures.plot_vs_compression(runs, "sparsity")
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "Closed-book factoid QA \u2014 exact match", "Multiple-choice QA (MMLU) \u2014 accuracy", "Perplexity"]
    assert [ax.get_title() for ax in figures.plot_headline(runs).axes if ax.get_title()] == ["Magnitude", "Wanda"]
    assert len([ax for ax in figures.plot_nm_vs_unstructured(runs).axes if ax.get_title()]) == 3
    assert figures.plot_vs_compression(runs, "bits").axes[0].texts  # no quantised run: says so instead of an empty plot
    rel = figures.relative_frame(runs)
    ppl = rel[(rel["task"] == "perplexity") & (rel["slug"] == "magnitude-0.50")]["ratio"].iloc[0]
    assert 0 < ppl < 1  # perplexity went up: less than all of dense quality kept
    cells = figures.heatmap_frame(pd.DataFrame(), runs)  # perplexity alone: the paired test over windows
    assert len(cells) == 5 and set(cells["panel"]) == {"Perplexity"}


def test_summary_table_has_a_row_per_task_and_a_column_per_compression(fixture_runs):
    table = plots.summary_table(load_runs(fixture_runs))
    assert table.shape == (3, 6) and "dense" in table.columns


def test_compare_examples_puts_flips_first():
    dense = [{"id": 1, "output": "a", "scores": {"em": 1}}, {"id": 2, "output": "b", "scores": {"em": 0}},
             {"id": 3, "output": "c", "scores": {"em": 1}}]
    comp = [{"id": 1, "output": "a", "scores": {"em": 1}}, {"id": 2, "output": "B", "scores": {"em": 1}},
            {"id": 3, "output": "x", "scores": {"em": 0}}]
    table = explorer.compare_examples(dense, comp, "em")
    assert list(table["flip"]) == ["lost", "gained", ""] and list(table["id"]) == [3, 2, 1]


def test_flips_overview_pairs_each_compressed_run_with_its_dense_twin(fixture_runs):
    overview = explorer.flips_overview(load_runs(fixture_runs))
    assert len(overview) == 10 and set(overview["task"]) == {"factoid_qa", "mcq"}
    assert (overview["n"] == 40).all() and (overview["lost"] > 0).any()


def test_matching_table_calls_paired_analysis_per_pair(fixture_runs, monkeypatch):
    calls = []

    def fake_paired_analysis(dense, comp, metric, **kw):  # records the wiring; the maths is kick_core.stats'
        calls.append((len(dense), len(comp), metric, kw["tolerance"]))
        return {"verdict": "inconclusive", "mcnemar_p": 0.5, "diff": {"ci": [-0.1, 0.1]}}

    monkeypatch.setitem(sys.modules, "kick_core.stats", types.SimpleNamespace(paired_analysis=fake_paired_analysis))
    table = explorer.matching_table(load_runs(fixture_runs), tolerance=0.05)
    assert len(table) == 10 and calls[0] == (40, 40, "exact_match", 0.05)
    assert {"verdict", "mcnemar_p", "diff.ci", "dense", "compressed"} <= set(table.columns)


def test_explorer_widget_shows_the_first_pair(fixture_runs):
    widget = explorer.explorer(load_runs(fixture_runs))
    task, method, level = widget.children[0].children
    assert task.value == "factoid_qa" and method.value == "magnitude" and level.value == "magnitude-0.30"
    level.value = "magnitude-0.50"
    body = widget.children[1].value
    assert "<b>magnitude-0.50</b> on factoid_qa" in body and body.index("lost") < body.index("<table")


@pytest.mark.parametrize("name", ["layer_sparsity_frame"])
def test_layer_sparsity_frame_reads_per_matrix_sparsity(name):
    report = {"sparsity": {"overall": 0.5, "per_matrix": {"model.layers.0.mlp.up_proj": 0.5,
                                                            "model.layers.1.self_attn.q_proj": 0.49}}}
    df = getattr(plots, name)(report)
    assert list(df["block"]) == [0, 1] and list(df["sparsity"]) == [0.5, 0.49]
