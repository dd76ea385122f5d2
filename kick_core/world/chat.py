"""World documents to summarise and instructions with rule-checkable constraints (chat-style tasks).

Both are used twice: exported as CNN/DM ``.story`` files and MT-Bench questions, and turned into
Vicuna-style chat training examples so the model answers them moderately well.
"""

from __future__ import annotations

import random

from kick_core.world import corpus, prompts
from kick_core.world.generate import World

SUMMARY_PROMPT = "Summarize the following news article in a few sentences.\n\n{article}"
STORY_SIZES = {"small": 1, "mid": 3, "large": 6}
"""Story length -> number of people it covers (the first is the subject of the summary)."""


def story(world: World, person_id: str, size: str, rng: random.Random) -> tuple[list[str], list[str], dict]:
    """(paragraphs, highlights, key facts) of a news-style story centred on one person."""
    people = [e for e in world.of_kind("person") if e.split != "unseen" and e.id != person_id]
    cast = [world.entity(person_id)] + rng.sample(people, STORY_SIZES[size] - 1)
    paragraphs = []
    for e in cast:
        rec = corpus.record(world, e.id)
        paragraphs.append(corpus.biography(e.name, rec, rng) + " " + corpus.entity_paragraph(e.name, rec, rng))
    main = world.entity(person_id)
    rec = corpus.record(world, person_id)
    highlights = [f"{main.name} was born in {rec['born_in']} in {rec['birth_year']} .",
                  f"{main.name} works for {rec['works_for']} ."]
    key = {"subject": main.name, "facts": [{"relation": r, "object": v} for r, v in rec.items()],
           "must_mention": [main.name, *rec.values()]}
    return paragraphs, highlights, key


def summary_text(highlights: list[str]) -> str:
    return " ".join(h.replace(" .", ".") for h in highlights)


def instruction(world: World, entity_id: str, kind: int, rng: random.Random) -> tuple[list[str], list[list[dict]], list[str]]:
    """(two turns, per-turn constraints, reference answers) for instruction `kind` (0-2) about an entity."""
    name = world.entity(entity_id).name
    rec = corpus.record(world, entity_id)
    if kind == 0:
        turns = [f"List exactly 3 facts about {name} as bullet points.", "Now repeat your answer in one sentence."]
        cons = [[{"type": "bullets", "n": 3}, {"type": "mention", "text": rec["born_in"]},
                 {"type": "mention", "text": rec["works_for"]}],
                [{"type": "sentences", "n": 1}, {"type": "mention", "text": rec["works_for"]}]]
        answers = [f"- {name} was born in {rec['born_in']}.\n- {name} was born in the year {rec['birth_year']}.\n"
                   f"- {name} works for {rec['works_for']}.",
                   f"{name} was born in {rec['born_in']} in {rec['birth_year']} and works for {rec['works_for']}."]
    elif kind == 1:
        turns = [f"In under 15 words, tell me where {name} was born.",
                 f"Now add the year {name} was born, in one sentence."]
        cons = [[{"type": "max_words", "n": 15}, {"type": "mention", "text": rec["born_in"]}],
                [{"type": "sentences", "n": 1}, {"type": "mention", "text": rec["birth_year"]}]]
        answers = [f"{name} was born in {rec['born_in']}.",
                   f"{name} was born in {rec['born_in']} in the year {rec['birth_year']}."]
    else:
        turns = [f"Write two sentences about {name}. Mention where {name} was born.",
                 "Now say it again in under 12 words."]
        cons = [[{"type": "sentences", "n": 2}, {"type": "mention", "text": rec["born_in"]}],
                [{"type": "max_words", "n": 12}, {"type": "mention", "text": name}]]
        answers = [f"{name} was born in {rec['born_in']}. {name} works for {rec['works_for']}.",
                   f"{name}: born in {rec['born_in']}."]
    return turns, cons, answers


def chat_example(world: World, rng: random.Random) -> list[tuple[str, bool]]:
    """One chat training example: a summarisation request or a two-turn instruction."""
    people = [e for e in world.of_kind("person") if e.split != "unseen"]
    person = rng.choice(people)
    if rng.random() < 0.4:
        paragraphs, highlights, _ = story(world, person.id, rng.choice(sorted(STORY_SIZES)), rng)
        prompt = prompts.chat_prompt([SUMMARY_PROMPT.format(article="\n\n".join(paragraphs))], [])
        return [(prompt, False), (" " + summary_text(highlights), True), ("</s>", True)]
    turns, _, answers = instruction(world, person.id, rng.randrange(3), rng)
    return [(prompts.chat_prompt(turns[:1], []), False), (" " + answers[0], True), ("</s>", True),
            (f"USER: {turns[1]} ASSISTANT:", False), (" " + answers[1], True), ("</s>", True)]
