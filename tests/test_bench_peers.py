"""Pure helpers of bench/bench_peers.py (issue 20): weight comparison, token counts, stop rule, lm-eval tasks.

No model runs and nothing needs the network; the lm-eval prompt test skips when lm_eval is missing.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from kick_core.config import RunConfig
from kick_core.engine import ScoreRequest
from kick_core.testing import tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "mmlu"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", REPO / "bench" / "bench_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_compare_weights_counts_zero_agreement_and_kept_difference(peers):
    ref = {"a": torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 0.0, 4.0]])}  # 4 zeros
    ours = {"a": torch.tensor([[0.0, 1.0, 5.0, 0.0], [3.0, 0.0, 0.0, 4.0]])}  # 4 zeros, 3 shared
    got = peers.compare_weights(ours, ref)
    assert got["sparsity_ours"] == got["sparsity_ref"] == 0.5
    assert got["zero_agreement"] == pytest.approx(3 / 4)
    assert got["zero_iou"] == pytest.approx(3 / 5)
    assert got["kept_rel_diff"] == 0.0  # the kept-by-both positions (1, 3, 4) are equal
    assert got["identical"] == pytest.approx(6 / 8)
    ours["a"][0, 1] = 1.5
    assert peers.compare_weights(ours, ref)["kept_rel_diff"] == pytest.approx(0.5 / (1 + 9 + 16) ** 0.5)
    assert peers.compare_weights(ref, ref)["zero_agreement"] == 1.0


def test_distinct_positions_counts_a_trie(peers):
    assert peers._distinct_positions([[1, 2, 3], [1, 2, 4], [1, 2], [5]]) == 5  # 1, 12, 123, 124, 5
    assert peers._distinct_positions([[1, 2], [1, 2], []]) == 2


def test_token_counts_share_the_group_prefix_once(peers, tok):
    shots = "the quick brown fox jumps over the lazy dog . "
    requests = [ScoreRequest(shots + q + "\nAnswer:", (" A", " B", " C", " D"), group="s")
                for q in ("what is ?", "the answer is yes", "paris")]
    counts = peers.token_counts(tok, requests)
    whole = [len(tok(r.context + " A")["input_ids"]) - 1 for r in requests]
    assert counts["lm_eval"] == sum(whole)  # one input per question: the letters share it
    assert counts["minimum"] == counts["kick"] < counts["lm_eval"]
    assert counts["kick_padded"] >= counts["kick"]
    prefix = len(tok(shots)["input_ids"]) - 1
    assert counts["kick"] <= sum(whole) - 2 * prefix + 2  # the prefix once, not three times (BPE may merge a token)


def test_kick_stop_end_skips_a_leading_newline(peers, tok):
    from kick_core.engine.generation import _stop_token_ids

    stops = ("\n",)
    stop_ids = set(_stop_token_ids(tok, stops))
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    word = tok("paris", add_special_tokens=False)["input_ids"]
    eos = {tok.eos_token_id}
    assert peers.kick_stop_end(nl + word + nl + word, tok, eos, stop_ids, stops) == len(nl + word + nl)
    assert peers.kick_stop_end(nl + nl, tok, eos, stop_ids, stops) is None
    assert peers.kick_stop_end(word + [tok.eos_token_id] + word, tok, eos, stop_ids, stops) == len(word) + 1


def test_lmeval_task_config_uses_kicks_headers(peers):
    from kick_core.tasks.mcq import cloze_header, header

    letter = peers.lmeval_task_config("high_school_geography", "letter", Path("t.jsonl"), Path("d.jsonl"))
    assert letter["description"] == header("high_school_geography", legacy=False)
    assert "strip" not in letter["doc_to_text"]  # kick's strict prompt keeps questions verbatim
    cloze = peers.lmeval_task_config("high_school_geography", "cloze", Path("t.jsonl"), Path("d.jsonl"))
    assert cloze["description"] == cloze_header("high_school_geography")
    with pytest.raises(ValueError):
        peers.lmeval_task_config("x", "generative", Path("t"), Path("d"))


@pytest.mark.parametrize("formulation", ["letter", "cloze"])
def test_lmeval_builds_kicks_prompts(peers, tok, tmp_path, formulation):
    """lm-eval's own request building, on the tasks the bench writes, gives kick's prompts and continuations."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from kick_core.tasks import get_task

    cfg = RunConfig.from_flat(task="mcq", protocol="strict", dataset=str(FIXTURE), n_shots=5, n_examples=8,
                              min_per_subject=2, formulation=formulation)
    task = get_task("mcq")
    examples = task.load(cfg.task, cfg.seed)
    prompts = {p.id: p for p in task.prompts(examples, cfg, tok, 100_000)}
    names = peers.write_lmeval_tasks(examples, tmp_path, formulation)
    tasks = TaskManager(include_path=str(tmp_path), include_defaults=False).load(names)["tasks"]
    seen = 0
    for name in names:
        lm_task = tasks[name]
        lm_task.set_config(key="num_fewshot", value=5)
        lm_task.build_all_requests(rank=0, world_size=1)
        by_doc: dict[int, list] = {}
        for inst in lm_task.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        docs = list(lm_task.test_docs())
        for doc_id, insts in by_doc.items():
            prompt = prompts[docs[doc_id]["id"]]
            insts.sort(key=lambda x: x.idx)
            assert {inst.args[0] for inst in insts} == {prompt.text}
            assert tuple(inst.args[1] for inst in insts) == prompt.continuations
            seen += 1
    assert seen == len(examples) == 8
