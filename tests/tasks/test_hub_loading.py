"""Hub loaders against the real datasets (needs the network; deselected by default)."""

import pytest
from task_helpers import make_cfg

from kick_core.tasks import TASKS

pytestmark = pytest.mark.network


@pytest.mark.parametrize("flat", [
    dict(task="factoid_qa", protocol="strict", dataset="freebase_qa", n_examples=2),
    dict(task="mcq", protocol="strict", dataset="cais/mmlu", n_examples=2),
    dict(task="icr_qa", protocol="legacy", dataset="trivia_qa", dataset_config="rc", n_examples=2),
    dict(task="perplexity", protocol="legacy", dataset="wikitext", dataset_config="wikitext-2-raw-v1"),
    dict(task="summarisation", protocol="strict", dataset="abisee/cnn_dailymail", n_examples=2),
    dict(task="instruction", protocol="strict", dataset="HuggingFaceH4/mt_bench_prompts", n_examples=2),
])
def test_hub_dataset_loads_into_examples(flat):
    cfg = make_cfg(**flat)
    examples = TASKS[flat["task"]].load(cfg.task, seed=0)
    assert examples and all(e.input for e in examples)
