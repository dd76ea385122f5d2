"""The synthetic knowledge world: invented entities and typed facts, deterministic from a seed.

Entity kinds and relations (subject kind -> relation -> object kind):

* country  -- ``capital``     -> city
* city     -- ``country``     -> country
* org      -- ``founded``     -> year,  ``hq`` -> city
* person   -- ``born_in``     -> city,  ``birth_year`` -> year, ``works_for`` -> org

People are split three ways: ``qa`` (facts stated in prose *and* as QA examples in training),
``prose`` (facts stated only in prose) and ``unseen`` (never in training; open-book questions only).
Places and organisations are split into ``qa`` and ``prose`` the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kick_core.world.names import make_names

RELATIONS: dict[str, tuple[str, str]] = {
    "capital": ("country", "city"),
    "country": ("city", "country"),
    "founded": ("org", "year"),
    "hq": ("org", "city"),
    "born_in": ("person", "city"),
    "birth_year": ("person", "year"),
    "works_for": ("person", "org"),
}
"""relation -> (subject kind, object kind)."""

ORG_SUFFIXES = (" Guild", " Company", " Institute", " Foundry", " Society", " Bank")


@dataclass(frozen=True)
class WorldSpec:
    """Sizes of a world (defaults: about 300 entities, 800 facts)."""

    n_countries: int = 8
    n_cities: int = 30
    n_orgs: int = 20
    n_people: int = 240
    unseen_frac: float = 0.25
    """Fraction of people never mentioned in training (open-book questions only)."""
    qa_frac: float = 0.5
    """Fraction of the seen entities whose facts also appear as QA examples in training."""


@dataclass(frozen=True)
class Entity:
    id: str
    kind: str
    name: str
    split: str
    """'qa', 'prose' or 'unseen'."""


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str
    """An entity id, or a year as a string."""


@dataclass(frozen=True)
class World:
    seed: int
    entities: tuple[Entity, ...]
    facts: tuple[Fact, ...]

    def entity(self, entity_id: str) -> Entity:
        return self._index()[entity_id]

    def _index(self) -> dict[str, Entity]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {e.id: e for e in self.entities}
            object.__setattr__(self, "_idx", idx)
        return idx

    def of_kind(self, kind: str, split: str | None = None) -> list[Entity]:
        return [e for e in self.entities if e.kind == kind and (split is None or e.split == split)]

    def facts_of(self, entity_id: str) -> list[Fact]:
        by = self.__dict__.get("_by_subject")
        if by is None:
            by = {}
            for f in self.facts:
                by.setdefault(f.subject, []).append(f)
            object.__setattr__(self, "_by_subject", by)
        return list(by.get(entity_id, []))

    def value_name(self, fact: Fact) -> str:
        """The object of `fact` as text: an entity's name, or the year."""
        return fact.object if RELATIONS[fact.relation][1] == "year" else self.entity(fact.object).name

    def names(self) -> list[str]:
        return [e.name for e in self.entities]


def _split(rng: random.Random, ids: list[str], fracs: dict[str, float]) -> dict[str, str]:
    order = list(ids)
    rng.shuffle(order)
    out, start = {}, 0
    for i, (name, frac) in enumerate(fracs.items()):
        end = len(order) if i == len(fracs) - 1 else start + round(frac * len(order))
        out.update({x: name for x in order[start:end]})
        start = end
    return out


def generate_world(seed: int = 0, spec: WorldSpec = WorldSpec()) -> World:
    """Build the world for `seed`: same seed and spec, identical world."""
    rng = random.Random(f"kick-world-{seed}")
    countries = make_names(rng, spec.n_countries, syllables=(2, 3))
    cities = make_names(rng, spec.n_cities, syllables=(2, 3), taken=countries)
    orgs = make_names(rng, spec.n_orgs, syllables=(2, 2), suffixes=ORG_SUFFIXES, taken=countries + cities)
    people = make_names(rng, spec.n_people, n_words=2, syllables=(2, 2), taken=countries + cities + orgs)

    kinds = {"country": countries, "city": cities, "org": orgs, "person": people}
    splits: dict[str, str] = {}
    seen = 1.0 - spec.unseen_frac
    for kind, names in kinds.items():
        ids = [f"{kind}{i:04d}" for i in range(len(names))]
        fr = ({"qa": seen * spec.qa_frac, "prose": seen * (1 - spec.qa_frac), "unseen": spec.unseen_frac}
              if kind == "person" else {"qa": spec.qa_frac, "prose": 1 - spec.qa_frac})
        splits.update(_split(rng, ids, fr))
    entities = tuple(Entity(f"{k}{i:04d}", k, n, splits[f"{k}{i:04d}"]) for k, ns in kinds.items()
                     for i, n in enumerate(ns))

    facts: list[Fact] = []
    city_ids = [f"city{i:04d}" for i in range(spec.n_cities)]
    country_ids = [f"country{i:04d}" for i in range(spec.n_countries)]
    org_ids = [f"org{i:04d}" for i in range(spec.n_orgs)]
    # Each country gets a capital among its own cities; every country has at least one city.
    city_country = {c: country_ids[i % len(country_ids)] for i, c in enumerate(city_ids)}
    for c in city_ids:
        facts.append(Fact(c, "country", city_country[c]))
    for k in country_ids:
        facts.append(Fact(k, "capital", rng.choice([c for c in city_ids if city_country[c] == k])))
    for o in org_ids:
        facts.append(Fact(o, "founded", str(rng.randint(1600, 1950))))
        facts.append(Fact(o, "hq", rng.choice(city_ids)))
    for i in range(spec.n_people):
        p = f"person{i:04d}"
        facts.append(Fact(p, "born_in", rng.choice(city_ids)))
        facts.append(Fact(p, "birth_year", str(rng.randint(1850, 1999))))
        facts.append(Fact(p, "works_for", rng.choice(org_ids)))
    return World(seed=seed, entities=entities, facts=tuple(facts))
