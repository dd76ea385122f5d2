"""Real data shipped inside kick, read by name offline: 'mmlu' (mcq), 'cnn_dm' (summarisation, perplexity)."""

import logging
import math
from collections import Counter
from pathlib import Path

import pytest
from task_helpers import FIXTURES, make_cfg

import kick_core
from kick_core.errors import ConfigError, UnknownNameError
from kick_core.tasks import TASKS
from kick_core.tasks.base import SHIPPED_DATASETS, resolve_source, shipped_path
from kick_core.tasks.mcq import read_mmlu_dir, select_questions, stratified_take

DATA = Path(kick_core.__file__).resolve().parent / "data"


# -- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, name, folder", [("mcq", "mmlu", "mmlu"), ("summarisation", "cnn_dm", "cnn_dm"),
                                                ("perplexity", "cnn_dm", "cnn_dm")])
def test_each_name_resolves_to_the_shipped_folder(task, name, folder):
    src = resolve_source(make_cfg(task=task, dataset=name).task, "unused")
    assert src.kind == "local" and src.path == DATA / folder and src.path.is_dir()
    assert shipped_path(name) == DATA / folder


def test_hub_ids_with_a_slash_are_not_shipped_names():
    assert resolve_source(make_cfg(task="mcq", dataset="cais/mmlu").task, "mmlu").kind == "hub"
    assert set(SHIPPED_DATASETS) == {"mmlu", "cnn_dm"}


def test_the_shipped_name_wins_over_a_local_folder_of_that_name(tmp_path, monkeypatch, caplog):
    (tmp_path / "mmlu").mkdir()
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        src = resolve_source(make_cfg(task="mcq", dataset="mmlu").task, "mmlu")
    assert src.path == DATA / "mmlu" and "./mmlu" in caplog.text
    assert resolve_source(make_cfg(task="mcq", dataset="./mmlu").task, "mmlu").path == Path("mmlu")


@pytest.mark.parametrize("name, close", [("MMLU", "mmlu"), ("cnn-dm", "cnn_dm"), ("CnnDM", "cnn_dm")])
def test_near_misses_say_did_you_mean(name, close, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownNameError, match=f"Did you mean: {close}"):
        resolve_source(make_cfg(task="mcq", dataset=name).task, "mmlu")


def test_a_shipped_name_with_the_wrong_task_is_an_error():
    with pytest.raises(ConfigError, match="task mcq"):
        resolve_source(make_cfg(task="factoid_qa", dataset="mmlu").task, "factoid")
    with pytest.raises(ConfigError, match="summarisation or perplexity"):
        resolve_source(make_cfg(task="mcq", dataset="cnn_dm").task, "mmlu")


# -- mcq on the shipped MMLU ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def mmlu():
    return TASKS["mcq"].load(make_cfg(task="mcq", dataset="mmlu").task, seed=0)


def test_mcq_reads_the_full_shipped_mmlu(mmlu):
    per_subject = Counter(e.meta["subject"] for e in mmlu)
    assert len(mmlu) == 14042 and len(per_subject) == 57
    assert all(len(e.meta["shots"]) == 5 for e in mmlu)
    assert all(len(e.choices) == 4 and e.answers[0] in "ABCD" for e in mmlu)
    val, _ = read_mmlu_dir(DATA / "mmlu", "val", legacy=False)
    assert len(val) == 1531


def test_stratified_subset_is_deterministic_covers_every_subject_and_has_the_size(mmlu):
    a = stratified_take(mmlu, 570, seed=0, min_per_subject=10)
    assert [e.id for e in a] == [e.id for e in stratified_take(mmlu, 570, seed=0, min_per_subject=10)]
    assert len(a) == 570 and set(Counter(e.meta["subject"] for e in a).values()) == {10}
    assert [e.id for e in a] == [e.id for e in mmlu if e.id in {x.id for x in a}]  # file order kept
    b = stratified_take(mmlu, 570, seed=1, min_per_subject=10)
    assert {e.id for e in a} != {e.id for e in b}
    prop = stratified_take(mmlu, 1000, seed=0)  # min 1, the rest proportional to subject size
    counts = Counter(e.meta["subject"] for e in prop)
    assert len(prop) == 1000 and len(counts) == 57
    sizes = Counter(e.meta["subject"] for e in mmlu)
    assert all(abs(counts[s] - 1 - 943 * (sizes[s] - 1) / (14042 - 57)) < 1 for s in sizes)


def test_stratified_subset_depends_only_on_seed_and_ids(mmlu):
    first = stratified_take(mmlu, 114, seed=3, min_per_subject=2)
    shuffled = stratified_take(list(reversed(mmlu)), 114, seed=3, min_per_subject=2)
    assert sorted(e.id for e in first) == sorted(e.id for e in shuffled)  # the input order does not matter
    assert stratified_take(mmlu, None, seed=0) == mmlu and len(stratified_take(mmlu, 20000, seed=0)) == 14042
    with pytest.raises(ConfigError, match="too few"):
        stratified_take(mmlu, 100, seed=0, min_per_subject=2)


def test_select_questions_is_unchanged_without_min_per_subject(mmlu):
    from kick_core.tasks.base import take

    cfg = make_cfg(task="mcq", dataset="mmlu", n_examples=50).task
    assert select_questions(mmlu, cfg, 0) == take(mmlu, 50, seed=0)
    stratified = make_cfg(task="mcq", dataset="mmlu", n_examples=114, min_per_subject=2).task
    picked = select_questions(mmlu, stratified, 0)
    assert Counter(e.meta["subject"] for e in picked) == dict.fromkeys({e.meta["subject"] for e in mmlu}, 2)


def test_min_per_subject_is_checked_and_leaves_existing_run_ids_alone():
    base = make_cfg(task="mcq", dataset="mmlu", n_examples=114)
    assert base.run_id == make_cfg(task="mcq", dataset="mmlu", n_examples=114, min_per_subject=None).run_id
    assert make_cfg(task="mcq", dataset="mmlu", n_examples=114, min_per_subject=2).run_id != base.run_id
    with pytest.raises(ConfigError, match="min_per_subject=2 with task='factoid_qa'.*remove min_per_subject"):
        make_cfg(task="factoid_qa", min_per_subject=2)
    with pytest.raises(ConfigError, match="min_per_subject=2 without n_examples.*set n_examples"):
        make_cfg(task="mcq", dataset="mmlu", min_per_subject=2)
    with pytest.raises(ConfigError, match="min_per_subject"):
        make_cfg(task="mcq", dataset="mmlu", n_examples=10, min_per_subject=0)


# -- summarisation on the shipped stories --------------------------------------------------------
def test_summarisation_reads_the_shipped_stories_with_their_buckets():
    task = TASKS["summarisation"]
    legacy = task.load(make_cfg(task="summarisation", protocol="legacy", dataset="cnn_dm").task, seed=0)
    assert Counter(e.meta["bucket"] for e in legacy) == {"small": 30, "mid": 30, "large": 30}
    assert all(e.answers for e in legacy)  # highlights are the references
    strict = task.load(make_cfg(task="summarisation", protocol="strict", dataset="cnn_dm").task, seed=0)
    # strict: 18 'mid' copies of 'small' stories dropped, buckets by article words (PROTOCOL §9.2)
    assert len(strict) == 72 and Counter(e.meta["bucket"] for e in strict) == {"small": 31, "mid": 11, "large": 30}
    assert all("@highlight" not in e.input for e in strict)


# -- perplexity on the shipped stories -----------------------------------------------------------
def test_perplexity_reads_the_story_folder_without_highlights():
    (corpus,) = TASKS["perplexity"].load(make_cfg(task="perplexity", protocol="legacy", dataset="cnn_dm").task, seed=0)
    assert "@highlight" not in corpus.input
    assert corpus.meta["n_docs"] == 72 and corpus.meta["n_dropped"] == 18
    assert corpus.input.startswith("New York (CNN) -- Decades ago")  # large/00ca16...story comes first


def test_perplexity_story_folder_matches_parse_story(tmp_path):
    from kick_core.tasks.summarisation import parse_story

    (corpus,) = TASKS["perplexity"].load(make_cfg(task="perplexity", dataset=str(FIXTURES / "cnn_dm")).task, seed=0)
    files = sorted((FIXTURES / "cnn_dm").rglob("*.story"))
    articles = ["\n\n".join(parse_story(f.read_text())[0]) for f in files]
    want = "\n\n".join(dict.fromkeys(articles))  # mid/0002b_copy.story repeats small/0002b.story
    assert corpus.input == want and "@highlight" not in corpus.input


def test_perplexity_on_the_shipped_stories_is_finite(llama, tok, tmp_path):
    from kick_core.evaluate import evaluate

    cfg = make_cfg(task="perplexity", protocol="strict", dataset="cnn_dm", seqlen=64, n_examples=4)
    res = evaluate(llama, tok, cfg, out_dir=tmp_path, progress=False)
    assert res.metrics["perplexity"]["n"] == 4 and math.isfinite(res.metrics["perplexity"]["value"])
