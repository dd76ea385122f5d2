"""How the world is said in words: fact sentences, biographies, passages and questions.

Every function takes an explicit `random.Random` so callers control paraphrase choice; the same
rng state gives the same text.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from kick_core.world.generate import RELATIONS, World

SENTENCES: dict[str, tuple[str, ...]] = {
    "born_in": ("{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}.",
                "{s} came into the world in the city of {o}."),
    "birth_year": ("{s} was born in the year {o}.", "The year of birth of {s} is {o}.",
                   "{s} was born in {o}.", "In {o}, {s} was born."),
    "works_for": ("{s} works for {o}.", "{s} is employed by {o}.", "The employer of {s} is {o}.",
                  "{s} has a job at {o}."),
    "founded": ("{s} was founded in {o}.", "{s} was established in the year {o}.",
                "The founding year of {s} is {o}."),
    "hq": ("{s} is headquartered in {o}.", "The headquarters of {s} are in {o}.", "{s} has its head office in {o}."),
    "country": ("{s} is a city in {o}.", "The city of {s} lies in {o}.", "{s} is located in the country of {o}."),
    "capital": ("The capital of {s} is {o}.", "{o} is the capital city of {s}.", "{s} has its capital in {o}."),
}
"""Paraphrases stating one fact (subject {s}, object {o})."""

QUESTIONS: dict[str, tuple[str, ...]] = {
    "born_in": ("Where was {s} born?", "In which city was {s} born?"),
    "birth_year": ("In what year was {s} born?", "When was {s} born?"),
    "works_for": ("Which organisation does {s} work for?", "Who is the employer of {s}?"),
    "founded": ("In what year was {s} founded?", "When was {s} established?"),
    "hq": ("In which city is {s} headquartered?", "Where are the headquarters of {s}?"),
    "country": ("In which country is the city of {s}?", "Which country is {s} in?"),
    "capital": ("What is the capital of {s}?", "Which city is the capital of {s}?"),
}
"""Question paraphrases per relation; the answer is the fact's object."""

PAGE_SENTENCES: dict[str, tuple[str, ...]] = {
    "born_in": ("{s} was born in {o}.", "{s} is a native of {o}."),
    "birth_year": ("{s} was born in the year {o}.",),
    "works_for": ("{s} works for {o}.", "{s} is employed by {o}."),
    "founded": ("{s} was founded in {o}.", "{s} was established in the year {o}."),
    "hq": ("{s} is headquartered in {o}.", "{s} has its head office in {o}."),
    "country": ("{s} is a city in {o}.", "{s} is located in the country of {o}."),
}
"""The encyclopedic style of open-book pages: the object always ends the sentence, right after the
relation phrase, so a reader can find a value by its subject and relation alone (no template puts
the value first, where a left-to-right reader cannot yet know what it is)."""

Statement = tuple[str, str, str]
"""(relation, subject, object) as text."""

BIO_TEMPLATES = (
    "{s} was born in {born_in} in {birth_year}. Today {s} works for {works_for}.",
    "Born in {birth_year} in {born_in}, {s} now works for {works_for}.",
    "{s} works for {works_for}. {s} was born in {born_in} in the year {birth_year}.",
)


def sentence(relation: str, subject: str, obj: str, rng: random.Random) -> str:
    """One random paraphrase of (subject, relation, obj)."""
    return rng.choice(SENTENCES[relation]).format(s=subject, o=obj)


def question(relation: str, subject: str, rng: random.Random) -> str:
    """One random question asking for the object of `relation` about `subject`."""
    return rng.choice(QUESTIONS[relation]).format(s=subject)


def record(world: World, entity_id: str) -> dict[str, str]:
    """relation -> object text for one entity (e.g. {'born_in': 'Zoravin', 'birth_year': '1873', ...})."""
    return {f.relation: world.value_name(f) for f in world.facts_of(entity_id)}


def entity_paragraph(name: str, rec: Mapping[str, str], rng: random.Random) -> str:
    """A short passage naming `name` in every sentence and stating each fact in `rec` once, in random order."""
    rels = list(rec)
    rng.shuffle(rels)
    return " ".join(sentence(r, name, rec[r], rng) for r in rels)


def page_statements(world: World, name: str, rec: Mapping[str, str], rng: random.Random) -> list[Statement]:
    """What an entity page about person `name` says: each of their facts once, plus 2-5 facts about
    their employer, one other organisation and their birth city (same-type values under other
    relations, so copying any city, organisation or year from the page is not enough), shuffled."""
    ids = {e.name: e.id for e in world.entities if e.kind in ("org", "city")}
    own = [(r, name, o) for r, o in rec.items()]
    orgs = [rec["works_for"], rng.choice([e.name for e in world.of_kind("org") if e.name != rec["works_for"]])]
    related = [(r, org, o) for org in orgs for r, o in record(world, ids[org]).items()]
    related.append(("country", rec["born_in"], record(world, ids[rec["born_in"]])["country"]))
    chosen = own + rng.sample(related, rng.randint(2, len(related)))
    rng.shuffle(chosen)
    return chosen


def render_page(statements: list[Statement], rng: random.Random) -> str:
    """The page text: one `PAGE_SENTENCES` sentence per statement."""
    return " ".join(rng.choice(PAGE_SENTENCES[r]).format(s=s, o=o) for r, s, o in statements)


def biography(name: str, rec: Mapping[str, str], rng: random.Random) -> str:
    """A person's facts in one or two combined sentences."""
    return rng.choice(BIO_TEMPLATES).format(s=name, **rec)


def entity_document(world: World, entity_id: str, rng: random.Random, n_paraphrases: int = 2) -> str:
    """Training prose about one entity: a biography (people) and each fact in `n_paraphrases` sentences."""
    ent = world.entity(entity_id)
    rec = record(world, entity_id)
    parts = [biography(ent.name, rec, rng)] if ent.kind == "person" else []
    for rel, obj in rec.items():
        parts += [s.format(s=ent.name, o=obj) for s in rng.sample(SENTENCES[rel], n_paraphrases)]
    rng.shuffle(parts)
    return " ".join(parts)


def answer_kind(relation: str) -> str:
    return RELATIONS[relation][1]
