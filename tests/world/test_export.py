"""Exported files: real schemas, determinism, answerability, unseen entities kept out of training."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest

from kick_core.world import corpus
from kick_core.world.examples import READ_RELATIONS, epoch_examples, is_document
from kick_core.world.export import icr_context, normalize, write_datasets
from kick_core.world.generate import generate_world


@pytest.fixture(scope="module")
def world():
    return generate_world(0)


@pytest.fixture(scope="module")
def out(world, tmp_path_factory) -> Path:
    return write_datasets(world, tmp_path_factory.mktemp("world"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_files(world, out, tmp_path):
    assert _files(write_datasets(generate_world(0), tmp_path)) == _files(out)


def test_export_is_small(out):
    assert sum(len(b) for b in _files(out).values()) < 4_000_000


def test_freebaseqa_schema_and_answers_match_facts(world, out):
    data = json.loads((out / "factoid/FreebaseQA-eval.json").read_text())
    assert data["Version"] == "1.0" and data["Questions"]
    names = {e.name.lower(): e for e in world.entities}
    for q in data["Questions"]:
        assert set(q) == {"Question-ID", "RawQuestion", "ProcessedQuestion", "Parses"}
        parse = q["Parses"][0]
        for key in ("Parse-Id", "PotentialTopicEntityMention", "TopicEntityName", "TopicEntityMid",
                    "InferentialChain", "Answers"):
            assert key in parse
        subject = names[parse["TopicEntityName"]]
        relation = parse["InferentialChain"].rsplit(".", 1)[1]
        answer = corpus.record(world, subject.id)[relation].lower()
        assert answer in parse["Answers"][0]["AnswersName"]
        assert all(a == a.lower() for a in parse["Answers"][0]["AnswersName"])
        assert subject.split != "unseen"


def test_factoid_splits_cover_every_question(out):
    data = json.loads((out / "factoid/FreebaseQA-eval.json").read_text())
    splits = json.loads((out / "factoid/splits.json").read_text())
    assert sorted(splits["prose"] + splits["qa"]) == sorted(q["Question-ID"] for q in data["Questions"])
    assert splits["prose"] and splits["qa"]


def test_mmlu_rows_have_six_fields_and_a_letter(out):
    subjects = sorted(p.name[:-len("_test.csv")] for p in (out / "mmlu/test").glob("*_test.csv"))
    assert len(subjects) == 4
    for s in subjects:
        with (out / "mmlu/dev" / f"{s}_dev.csv").open() as fh:
            dev = list(csv.reader(fh))
        with (out / "mmlu/test" / f"{s}_test.csv").open() as fh:
            test = list(csv.reader(fh))
        assert len(dev) == 5 and len(test) > 20
        for row in dev + test:
            assert len(row) == 6 and row[5] in "ABCD" and len(set(row[1:5])) == 4


def test_triviaqa_rows_have_rc_schema_and_context_contains_answer(world, out):
    rows = [json.loads(x) for x in (out / "triviaqa/validation.jsonl").read_text().splitlines()]
    splits = json.loads((out / "triviaqa/splits.json").read_text())
    assert splits["unseen"] and splits["seen"]
    for r in rows:
        assert set(r["entity_pages"]) == {"doc_source", "filename", "title", "wiki_context"}
        assert set(r["search_results"]) == {"description", "filename", "rank", "title", "url", "search_context"}
        assert set(r["answer"]) >= {"aliases", "normalized_aliases", "normalized_value", "value", "type"}
        assert r["answer"]["value"] in r["entity_pages"]["wiki_context"][0]
        assert r["entity_pages"]["title"][0] in r["entity_pages"]["wiki_context"][0]
        assert 0 < splits["copy_baseline"][r["question_id"]] <= 1


def test_icr_pages_state_the_answer_right_after_the_targets_relation(world):
    """The page says '<target> <relation phrase> <answer>.' once, and ICR asks entity-valued relations only."""
    rng = random.Random(3)
    for person in world.of_kind("person")[:40]:
        rec = corpus.record(world, person.id)
        context, statements = icr_context(world, person.id, rng)
        assert sorted((r, o) for r, s, o in statements if s == person.name) == sorted(rec.items())
        assert len(statements) >= len(rec) + 2
        for rel in READ_RELATIONS:
            stated = [t.format(s=person.name, o=rec[rel]) for t in corpus.PAGE_SENTENCES[rel]]
            assert sum(context.count(x) for x in stated) == 1


def test_reading_examples_ask_each_read_relation_once_about_their_page(world):
    """Reading comprehension trains exactly what ICR asks: a page, then one question per READ relation,
    loss only on answers that the page states right after that relation."""
    patterns = [(re.compile(re.escape(q).replace(re.escape("{s}"), "(.+)")), r)
                for r, qs in corpus.QUESTIONS.items() for q in qs]
    for example in [e for e in epoch_examples(world, 0, warm_up=True) if not is_document(e)][:60]:
        prompts_, answers = [t for t, train in example if not train], [t for t, train in example if train]
        page = prompts_[0].split("\n\nBased on these texts")[0]
        asked = []
        for prompt, answer in zip(prompts_, answers):
            question = prompt.rsplit("Q: ", 1)[1].removesuffix("\nA:")
            name, rel = next((m[1], r) for p, r in patterns if (m := p.fullmatch(question)))
            asked.append(rel)
            stated = [t.format(s=name, o=answer.strip()) for t in corpus.PAGE_SENTENCES[rel]]
            assert sum(page.count(x) for x in stated) == 1, (question, answer, page)
        assert sorted(asked) == sorted(READ_RELATIONS)


def test_unseen_entities_never_appear_in_training_data(world, out):
    unseen = [e.name for e in world.of_kind("person", "unseen")]
    train = (out / "corpus/train.txt").read_text() + (out / "corpus/valid.txt").read_text()
    train += "".join(t for e in epoch_examples(world, 0) for t, _ in e)
    train += "".join(t for e in epoch_examples(world, 1, warm_up=True) for t, _ in e)
    assert not [n for n in unseen if n in train]


def test_stories_have_highlights_and_key_facts(out):
    keys = [json.loads(x) for x in (out / "cnn_dm/key_facts.jsonl").read_text().splitlines()]
    for k in keys:
        text = (out / "cnn_dm" / k["size"] / f"{k['id']}.story").read_text()
        body, _, highlights = text.partition("@highlight")
        assert highlights and all(m in body for m in k["must_mention"])
    sizes = {k["size"]: 0 for k in keys}
    for k in keys:
        sizes[k["size"]] = max(sizes[k["size"]], len((out / "cnn_dm" / k["size"] / f"{k['id']}.story").read_text()))
    assert sizes["small"] < sizes["mid"] < sizes["large"]


def test_instruction_questions_are_mt_bench_format(out):
    qs = [json.loads(x) for x in (out / "instruction/question.jsonl").read_text().splitlines()]
    for q in qs:
        assert {"question_id", "category", "turns", "constraints"} <= set(q)
        assert len(q["turns"]) == 2 == len(q["constraints"])


def test_normalize_strips_case_punctuation_and_articles():
    assert normalize("The  Zorvak Guild.") == "zorvak guild"


def test_evaluator_builds_the_real_prompts_from_the_files(out):
    from kick_core.world.selfcheck import exact_match, factoid_items, icr_items, mcq_items

    fact = factoid_items(out)
    assert fact[0].prompt.startswith("Please give answer to this question: ") and fact[0].prompt.endswith("is ")
    assert factoid_items(out, legacy=False)[0].prompt.endswith("The answer is")
    opened = icr_items(out, open_book=True)
    assert opened[0].prompt.endswith("\nA:") and "Based on these texts" in opened[0].prompt
    assert {i.group for i in opened} == {"seen", "unseen"}
    mcq = mcq_items(out)
    assert mcq[0].prompt.count("Answer:") == 6 and mcq[0].answers[0] in "ABCD"
    cloze = mcq_items(out, cloze=True)
    assert len(cloze) == len(mcq) and cloze[0].prompt.count("\nAnswer:") == 6 and "\nA. " not in cloze[0].prompt
    assert cloze[0].prompt.startswith("The following are questions (with answers) about ")
    assert [c.answers[0] for c in cloze] == [m.prompt.split(f"\n{m.answers[0]}. ")[-1].split("\n")[0] for m in mcq]
    assert exact_match(" The Zorvak Guild.", ("zorvak guild",))
