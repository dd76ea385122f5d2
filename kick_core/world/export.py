"""Write the world's tasks in the real datasets' file formats, so kick's loaders read them unchanged.

Layout under `out_dir`::

    factoid/FreebaseQA-eval.json, FreebaseQA-train.json, splits.json
    mmlu/dev/<subject>_dev.csv, mmlu/test/<subject>_test.csv, mmlu/splits.json
    triviaqa/validation.jsonl, triviaqa/splits.json
    cnn_dm/{small,mid,large}/<id>.story, cnn_dm/key_facts.jsonl
    instruction/question.jsonl
    corpus/train.txt, corpus/valid.txt
"""

from __future__ import annotations

import csv
import json
import random
import re
import string
from pathlib import Path

from kick_core.world import chat, corpus
from kick_core.world.examples import MCQ_SUBJECTS, READ_RELATIONS, mcq_item
from kick_core.world.generate import RELATIONS, Fact, World

N_MCQ_TEST = 60
N_ICR_SEEN = 120
N_ICR_UNSEEN = 60
N_STORIES = 8
N_INSTRUCTIONS = 10


def normalize(text: str) -> str:
    """Lower-case, strip punctuation and articles, collapse spaces (SQuAD/TriviaQA normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def aliases(world: World, fact: Fact) -> list[str]:
    """Lower-case answer aliases of a fact: the name, plus an organisation's name without its suffix."""
    value = world.value_name(fact)
    out = [value.lower()]
    if RELATIONS[fact.relation][1] == "org":
        out.append(value.rsplit(" ", 1)[0].lower())
    return out


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _freebase_item(world: World, qid: str, fact: Fact, q: str) -> dict:
    subj = world.entity(fact.subject)
    mid = f"m.world_{fact.object}" if RELATIONS[fact.relation][1] != "year" else f"m.world_year{fact.object}"
    return {"Question-ID": qid, "RawQuestion": q, "ProcessedQuestion": normalize(q),
            "Parses": [{"Parse-Id": f"{qid}.P0", "PotentialTopicEntityMention": subj.name.lower(),
                        "TopicEntityName": subj.name.lower(), "TopicEntityMid": f"m.world_{subj.id}",
                        "InferentialChain": f"world.{subj.kind}.{fact.relation}",
                        "Answers": [{"AnswersMid": mid, "AnswersName": aliases(world, fact)}]}]}


def write_factoid(world: World, out: Path, rng: random.Random) -> None:
    seen = [f for f in world.facts if world.entity(f.subject).split != "unseen"]
    items, splits = [], {"prose": [], "qa": []}
    for i, f in enumerate(seen):
        qid = f"WorldQA-eval-{i}"
        items.append(_freebase_item(world, qid, f, corpus.question(f.relation, world.entity(f.subject).name, rng)))
        splits[world.entity(f.subject).split].append(qid)
    train = [_freebase_item(world, f"WorldQA-train-{i}", f, corpus.question(f.relation, world.entity(f.subject).name, rng))
             for i, f in enumerate(f for f in seen if world.entity(f.subject).split == "qa")]
    _json(out / "factoid/FreebaseQA-eval.json", {"Dataset": "FreebaseQA-eval", "Version": "1.0", "Questions": items})
    _json(out / "factoid/FreebaseQA-train.json", {"Dataset": "FreebaseQA-train", "Version": "1.0", "Questions": train})
    _json(out / "factoid/splits.json", splits)


def write_mmlu(world: World, out: Path, rng: random.Random) -> None:
    splits = {}
    for subject, rels in MCQ_SUBJECTS.items():
        facts = [f for f in world.facts if f.relation in rels and world.entity(f.subject).split != "unseen"]
        rng.shuffle(facts)
        dev = [f for f in facts if world.entity(f.subject).split == "qa"][:5]
        test = [f for f in facts if f not in dev][:N_MCQ_TEST]
        for name, chosen in (("dev", dev), ("test", test)):
            path = out / "mmlu" / name / f"{subject}_{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                for f in chosen:
                    q, options, letter = mcq_item(world, f, rng)
                    writer.writerow([q, *options, letter])
        splits[subject] = {s: [i for i, f in enumerate(test) if world.entity(f.subject).split == s] for s in ("qa", "prose")}
    _json(out / "mmlu/splits.json", splits)


def icr_context(world: World, target: str, rng: random.Random) -> tuple[str, list[corpus.Statement]]:
    """The target person's entity page (:func:`corpus.page_statements`): its text and statements."""
    statements = corpus.page_statements(world, world.entity(target).name, corpus.record(world, target), rng)
    return corpus.render_page(statements, rng), statements


def write_triviaqa(world: World, out: Path, rng: random.Random) -> None:
    seen = [e.id for e in world.of_kind("person") if e.split != "unseen"]
    unseen = [e.id for e in world.of_kind("person", "unseen")]
    targets = [(p, "seen") for p in rng.sample(seen, N_ICR_SEEN)] + [(p, "unseen") for p in rng.sample(unseen, N_ICR_UNSEEN)]
    rows, splits = [], {"seen": [], "unseen": [], "copy_baseline": {}}
    for i, (pid, split) in enumerate(targets):
        rel = rng.choice(READ_RELATIONS)
        fact = next(f for f in world.facts_of(pid) if f.relation == rel)
        context, statements = icr_context(world, pid, rng)
        value = world.value_name(fact)
        kind = RELATIONS[rel][1]
        same_type = {x for r, subj, o in statements for x, k in zip((subj, o), RELATIONS[r]) if k == kind}
        qid = f"world_tqa_{i}"
        rows.append({
            "question": corpus.question(rel, world.entity(pid).name, rng), "question_id": qid,
            "question_source": "kick-world",
            "entity_pages": {"doc_source": ["TagMe"], "filename": [f"{qid}.txt"], "title": [world.entity(pid).name],
                             "wiki_context": [context]},
            "search_results": {"description": [], "filename": [], "rank": [], "title": [], "url": [],
                               "search_context": []},
            "answer": {"aliases": [value], "normalized_aliases": [normalize(a) for a in aliases(world, fact)],
                       "matched_wiki_entity_name": "", "normalized_matched_wiki_entity_name": "",
                       "normalized_value": normalize(value), "type": "WikipediaEntity", "value": value},
        })
        splits[split].append(qid)
        splits["copy_baseline"][qid] = sum(v == value for v in same_type) / len(same_type)
    _jsonl(out / "triviaqa/validation.jsonl", rows)
    _json(out / "triviaqa/splits.json", splits)


def write_cnn_dm(world: World, out: Path, rng: random.Random) -> None:
    people = [e.id for e in world.of_kind("person") if e.split != "unseen"]
    keys = []
    for size in chat.STORY_SIZES:
        for j, pid in enumerate(rng.sample(people, N_STORIES)):
            sid = f"world_{size}_{j:02d}"
            paragraphs, highlights, key = chat.story(world, pid, size, rng)
            text = "\n\n".join(paragraphs) + "\n\n" + "".join(f"@highlight\n\n{h}\n\n" for h in highlights)
            path = out / "cnn_dm" / size / f"{sid}.story"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            keys.append({"id": sid, "size": size, **key})
    _jsonl(out / "cnn_dm/key_facts.jsonl", keys)


def write_instructions(world: World, out: Path, rng: random.Random) -> None:
    people = [e.id for e in world.of_kind("person") if e.split != "unseen"]
    rows = []
    for j, pid in enumerate(rng.sample(people, N_INSTRUCTIONS * 3)):
        turns, cons, refs = chat.instruction(world, pid, j % 3, rng)
        rows.append({"question_id": 1000 + j, "category": "world_instruction", "turns": turns,
                     "constraints": cons, "reference": refs})
    _jsonl(out / "instruction/question.jsonl", rows)


def write_corpus(world: World, out: Path, rng: random.Random) -> None:
    seen = [e.id for e in world.entities if e.split != "unseen"]
    train = [corpus.entity_document(world, e, rng) for e in seen]
    valid = [corpus.entity_document(world, e, rng, 1) for e in rng.sample(seen, len(seen) // 5)]
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    (out / "corpus/train.txt").write_text("\n\n".join(train) + "\n")
    (out / "corpus/valid.txt").write_text("\n\n".join(valid) + "\n")


def write_datasets(world: World, out_dir: str | Path) -> Path:
    """Write every world task under `out_dir` (see the module docstring); deterministic in the world seed."""
    out = Path(out_dir)
    for name, writer in (("factoid", write_factoid), ("mmlu", write_mmlu), ("triviaqa", write_triviaqa),
                         ("cnn_dm", write_cnn_dm), ("instruction", write_instructions), ("corpus", write_corpus)):
        writer(world, out, random.Random(f"kick-export-{world.seed}-{name}"))
    return out
