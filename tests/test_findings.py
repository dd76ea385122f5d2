"""The paper's four questions answered from per-example records (kick_core.findings), on records written here."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from kick_core import findings as F
from kick_core.explorer import rouge_vs_dense

N = 100


def _write(tmp_path, name, records):
    d = tmp_path / name
    d.mkdir()
    (d / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(d)


def _factoid(n_right):
    return [{"id": f"q{i}", "scores": {"contains": float(i < n_right)}} for i in range(N)]


def _icr(closed_right, open_right):
    return ([{"id": f"q{i}/closed", "scores": {"contains_closed": float(i < closed_right)}} for i in range(N)]
            + [{"id": f"q{i}/open", "scores": {"contains_open": float(i < open_right)}} for i in range(N)])


def _ppl(extra_nll):
    return [{"id": f"w{i}", "nll": 2.0 + extra_nll + 0.01 * (i % 3), "n_tokens": 100 + i} for i in range(20)]


def _row(task, metric, method, slug, run_dir, *, sparsity=0.0, structure="unstructured", bits=None, primary=True):
    return {"task": task, "metric": metric, "method": method, "slug": slug, "run_dir": run_dir, "sparsity": sparsity,
            "structure": structure, "bits": bits, "primary": primary, "protocol": "strict", "model": "m", "seed": 0,
            "run_id": f"{task}-{slug}"}


@pytest.fixture()
def runs(tmp_path):
    rows = []

    def add(task, metric, method, slug, records, **kw):
        run_dir = _write(tmp_path, f"{task}-{slug}", records)
        rows.append(_row(task, metric, method, slug, run_dir, **kw))
        if task == "icr_qa":
            rows.append(_row(task, "contains_closed", method, slug, run_dir, primary=False, **kw))

    add("factoid_qa", "contains", "dense", "dense", _factoid(50))
    add("factoid_qa", "contains", "magnitude", "magnitude-0.10", _factoid(50), sparsity=0.1)
    add("factoid_qa", "contains", "magnitude", "magnitude-0.30", _factoid(25), sparsity=0.3)
    add("factoid_qa", "contains", "magnitude", "magnitude-0.50", _factoid(10), sparsity=0.5)
    add("factoid_qa", "contains", "magnitude", "magnitude-2of4", _factoid(2), sparsity=0.5, structure="2:4")
    add("factoid_qa", "contains", "gptq", "gptq-w4g128", _factoid(49), bits=4)
    add("perplexity", "perplexity", "dense", "dense", _ppl(0.0))
    add("perplexity", "perplexity", "magnitude", "magnitude-0.10", _ppl(0.0), sparsity=0.1)
    add("perplexity", "perplexity", "magnitude", "magnitude-0.30", _ppl(math.log(1.02)), sparsity=0.3)
    add("perplexity", "perplexity", "magnitude", "magnitude-0.50", _ppl(math.log(2.0)), sparsity=0.5)
    add("icr_qa", "contains_open", "dense", "dense", _icr(40, 80))
    add("icr_qa", "contains_open", "magnitude", "magnitude-0.50", _icr(10, 72), sparsity=0.5)
    return pd.DataFrame(rows)


def test_perplexity_ratio_is_dense_over_compressed_token_weighted():
    res = F.perplexity_ratio(_ppl(0.0), _ppl(math.log(2.0)), n_bootstrap=200)
    assert res["ratio"] == pytest.approx(0.5) and res["verdict"] == "not matching" and res["n"] == 20
    same = F.perplexity_ratio(_ppl(0.0), _ppl(0.0), n_bootstrap=200)
    assert same["ratio"] == pytest.approx(1.0) and same["verdict"] == "matching"
    dense = [{"id": "a", "nll": 1.0, "n_tokens": 300}, {"id": "b", "nll": 3.0, "n_tokens": 100}]
    comp = [{"id": "a", "nll": 1.0, "n_tokens": 300}, {"id": "b", "nll": 4.0, "n_tokens": 100}]
    assert F.perplexity_ratio(dense, comp, n_bootstrap=50)["ratio"] == pytest.approx(math.exp(-0.25))


def test_band_exits_put_knowledge_before_perplexity(runs):
    table = F.sparsity_table(runs, n_bootstrap=300)
    assert set(table["task"]) == {"factoid_qa", "perplexity"}
    ratio = table.set_index(["task", "sparsity"])["ratio"]
    assert ratio[("factoid_qa", 0.3)] == pytest.approx(0.5) and ratio[("perplexity", 0.3)] == pytest.approx(1 / 1.02)
    exits = F.band_exits(table).set_index("task")
    assert exits.loc["factoid_qa", "exit"] == 0.3 and exits.loc["perplexity", "exit"] == 0.5
    assert exits.loc["perplexity", "max_tested"] == 0.5


def test_open_book_keeps_more_of_dense_than_closed_book(runs):
    (row,) = F.open_vs_closed(runs, n_bootstrap=500).itertuples()
    assert row.method == "magnitude" and row.n == N
    assert row.closed == pytest.approx(0.25) and row.open == pytest.approx(0.9)
    assert row.difference == pytest.approx(0.65) and row.difference_ci[0] > 0.3


def test_nm_and_quantisation_comparisons_are_paired_differences(runs):
    nm = F.nm_vs_unstructured(runs, n_bootstrap=300)
    fact = nm[nm["task"] == "factoid_qa"].iloc[0]
    assert (fact["a"], fact["b"]) == ("magnitude-0.50", "magnitude-2of4")
    assert fact["difference"] == pytest.approx(-0.08) and fact["verdict"] == "b worse"
    q = F.quant_vs_pruning(runs, n_bootstrap=300)
    fact = q[q["task"] == "factoid_qa"].iloc[0]
    assert (fact["a"], fact["b"]) == ("magnitude-0.50", "gptq-w4g128")
    assert fact["difference"] == pytest.approx(0.39) and fact["verdict"] == "b better"


def test_answers_say_each_finding_in_words_and_name_what_was_not_run(runs):
    lines = F.answers(runs, n_bootstrap=200)
    assert len(lines) == 4
    assert "magnitude: knowledge 30%, perplexity 50%" in lines[0]
    assert "closed keeps 25%" in lines[1] and "open keeps 90%" in lines[1] and "contains" in lines[1]
    assert "b worse in" in lines[2] and "b better in" in lines[3]
    empty = F.answers(runs[runs["task"] == "perplexity"], n_bootstrap=50)
    assert "no ICR-QA runs" in empty[1] and "not run" in empty[3]


def test_rouge_vs_dense_scores_each_compressed_output_against_the_dense_one(tmp_path):
    dense = [{"id": "a", "output": "the cat sat on the mat"}, {"id": "b", "output": "dogs bark at night"}]
    same = _write(tmp_path, "same", dense)
    other = _write(tmp_path, "other", [{"id": "a", "output": "the cat sat on the mat"}, {"id": "b", "output": "zzz"}])
    d = _write(tmp_path, "dense", dense)
    runs = pd.DataFrame([_row("summarisation", "rougeL", "dense", "dense", d),
                         _row("summarisation", "rougeL", "wanda", "wanda-0.50", same, sparsity=0.5),
                         _row("summarisation", "rougeL", "magnitude", "magnitude-0.50", other, sparsity=0.5),
                         _row("factoid_qa", "contains", "dense", "dense", d)])
    table = rouge_vs_dense(runs, n_bootstrap=100).set_index("compression")
    assert list(table.index) == ["magnitude-0.50", "wanda-0.50"]
    assert table.loc["wanda-0.50", "rougeL"] == pytest.approx(1.0) and table.loc["magnitude-0.50", "rougeL"] == 0.5
    assert table.loc["magnitude-0.50", "n"] == 2


def test_runs_of_one_task_that_differ_in_a_setting_are_told_apart(tmp_path):
    from kick_core.config import RunConfig
    from kick_core.results import load_runs

    for form in ("letter", "cloze"):
        for method, extra in (("dense", {}), ("wanda", {"sparsity": 0.5})):
            cfg = RunConfig.from_flat(task="mcq", formulation=form, method=method, **extra)
            d = tmp_path / f"{form}-{method}"
            d.mkdir()
            (d / "record.json").write_text(json.dumps({
                "run_id": cfg.run_id, "status": "ok", "task": "mcq", "protocol": "strict", "config": cfg.to_dict(),
                "primary_metric": "accuracy", "metrics": {"accuracy": {"value": 0.5 if form == "letter" else 0.8}}}))
    runs = load_runs(tmp_path)
    assert sorted(set(runs["variant"])) == ["cloze", "letter"]
    from kick_core.figures.frames import relative_frame

    rel = relative_frame(runs)
    assert set(rel["ratio"].round(6)) == {1.0}  # each formulation is paired with its own dense run
    assert {p for p in rel["panel"]} == {"Multiple-choice QA (MMLU), cloze — accuracy",
                                        "Multiple-choice QA (MMLU), letter — accuracy"}


def test_the_report_says_when_dense_is_a_dequantised_gguf(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "record.json").write_text(json.dumps({
        "run_id": "r1", "config": {"model": {"model": "smollm2-135m-instruct"}},
        "provenance": {"model_source": {"quantisation": "Q4_1", "summary": "llama dequantised to bfloat16"}}}))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "record.json").write_text(json.dumps({"run_id": "r2", "config": {"model": {"model": "/m"}},
                                                   "provenance": {"model_source": None}}))
    runs = pd.DataFrame({"run_id": ["r1", "r1", "r2"], "run_dir": [str(d), str(d), str(plain)]})
    (note,) = F.model_notes(runs)
    assert note.startswith("**smollm2-135m-instruct: the dense baseline is a dequantised Q4_1 model.**")


def test_the_report_names_the_dtype_bfloat16_if_native_resolved_to_and_warns_when_runs_differ(tmp_path):
    def run(name, dtype, cpu):
        d = tmp_path / name
        d.mkdir()
        (d / "record.json").write_text(json.dumps({
            "run_id": name, "config": {"model": {"model": "m", "dtype": "bfloat16_if_native"}},
            "compression": {"size": {"dtype": dtype}}, "provenance": {"hardware": {"cpu_capability": cpu}}}))
        return str(d)

    one = pd.DataFrame({"run_id": ["a", "b"], "run_dir": [run("a", "float32", "AVX2"), run("b", "float32", "AVX2")]})
    (note,) = F.model_notes(one)
    assert "resolved per machine to: float32 (AVX2)" in note and "different dtypes" not in note
    both = pd.DataFrame({"run_id": ["a", "c"], "run_dir": [str(tmp_path / "a"), run("c", "bfloat16", "AVX512")]})
    (note,) = F.model_notes(both)
    assert "bfloat16 (AVX512); float32 (AVX2)" in note and "different dtypes" in note
