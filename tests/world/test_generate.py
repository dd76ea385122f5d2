"""World generator: determinism and invariants."""

from __future__ import annotations

import random

from kick_core.world import corpus
from kick_core.world.generate import RELATIONS, generate_world
from kick_core.world.names import is_ambiguous, make_names


def test_same_seed_gives_identical_world():
    assert generate_world(3) == generate_world(3)


def test_different_seeds_give_different_worlds():
    assert generate_world(0).entities != generate_world(1).entities


def test_names_are_unique_and_never_substrings_of_each_other():
    names = generate_world(0).names()
    assert len(set(n.lower() for n in names)) == len(names)
    cores = [n.lower() for n in names]
    for i, n in enumerate(cores):
        assert not is_ambiguous(n, cores[:i] + cores[i + 1:]), n


def test_make_names_respects_taken():
    names = make_names(random.Random(0), 20, taken=["Bora"])
    assert not any("bora" in n.lower() for n in names)


def test_every_fact_has_typed_subject_and_object():
    w = generate_world(0)
    for f in w.facts:
        subj_kind, obj_kind = RELATIONS[f.relation]
        assert w.entity(f.subject).kind == subj_kind
        if obj_kind == "year":
            assert f.object.isdigit()
        else:
            assert w.entity(f.object).kind == obj_kind


def test_capital_lies_in_its_country():
    w = generate_world(0)
    for f in (f for f in w.facts if f.relation == "capital"):
        assert corpus.record(w, f.object)["country"] == w.entity(f.subject).name


def test_people_are_split_into_qa_prose_and_unseen():
    splits = {e.split for e in generate_world(0).of_kind("person")}
    assert splits == {"qa", "prose", "unseen"}
