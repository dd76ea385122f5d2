"""exp_summarisation and exp_instruction executed by the runner (papermill) on the world, judged by the rubric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kick_core.results import load_examples, read_record
from kick_core.runner import run_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def long_tiny_model(tmp_path_factory) -> Path:
    """A tiny saved Llama whose config allows 4096 positions (byte-level story prompts exceed 512)."""
    from kick_core.testing import save_tiny_model

    path = save_tiny_model(tmp_path_factory.mktemp("tiny-long"), "llama")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    return path


@pytest.mark.parametrize("task", ["summarisation", "instruction"])
def test_judged_notebook_runs_on_the_world_with_the_rubric_judge(task, long_tiny_model, tmp_path):
    params = tmp_path / "smoke_judged.yaml"
    params.write_text(yaml.safe_dump({
        "study": "smoke_judged",
        "base": {"model": str(long_tiny_model), "dataset": "world", "task": task, "method": "dense",
                 "n_examples": 1, "n_bootstrap": 20, "max_new_tokens": 4},
    }))
    summary = run_study(params, results_dir=tmp_path, report=False, progress=False)
    assert summary.ok and not summary.failed, summary
    run = summary.study_dir / summary.ok[0]
    rec = read_record(run)
    assert rec["status"] == "ok" and rec["metrics"]["judge_" + ("coherence" if task == "summarisation" else "score")]
    examples = load_examples(run)
    assert examples and all(ex["judge"]["score"] for ex in examples)
