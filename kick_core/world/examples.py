"""Training examples, regenerated every epoch: prose, QA in the real prompt formats, reading comprehension.

An example is a list of segments ``(text, train)``; the trainer tokenises segments one by one (so a
prompt is tokenised exactly as at evaluation time) and computes loss only where ``train`` is true.
Examples are never split when packed, so a reading-comprehension context always stays with its
questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kick_core.world import corpus, prompts
from kick_core.world.generate import RELATIONS, World
from kick_core.world.names import make_names

Segment = tuple[str, bool]
Example = list[Segment]

READ_RELATIONS = ("born_in", "works_for")
"""What open-book pages are asked (reading-comprehension training and the ICR task): entity-valued
answers, like TriviaQA's. Not birth years: a 2-layer model does not learn to copy a year from a page
in budget, and training on birth-year questions next to birth-place ones ("In what year / In which
city was X born?") delays the birth-place lookup (reading-only, seed 2: birth places 24 % after 800
steps; without birth-year questions, seeds 1 and 2 read >= 98 % by step 500)."""
MCQ_SUBJECTS: dict[str, tuple[str, ...]] = {
    "world_geography": ("country", "capital"),
    "world_people": ("born_in",),
    "world_history": ("birth_year", "founded"),
    "world_organisations": ("works_for", "hq"),
}
"""MMLU-style subject -> relations its questions ask about."""


@dataclass(frozen=True)
class Mix:
    """How many examples of each kind one epoch holds."""

    prose_paraphrases: int = 3
    """Sentences per fact in each entity document (plus one biography per person); at most 3, the
    fewest templates any relation has. Going from 2 to 3 together with halving `n_rc` lifted
    prose-only strict EM from 24 % (2,400 steps) to 61 % (2,100 steps), seed 0."""
    qa_repeats: int = 2
    """QA examples per fact of a 'qa' entity per epoch."""
    n_mcq_blocks: int = 20
    """MMLU k-shot blocks: enough to teach the formats; the model answers the letter one at chance anyway."""
    mcq_cloze_frac: float = 0.5
    """Fraction of MMLU blocks in the cloze formulation (option text after 'Answer:') instead of letters."""
    n_rc: int = 150
    """Reading-comprehension pages per epoch (twice as many in the warm-up phase). 150 rather than 100:
    reading then survives 50 % magnitude pruning on every seed measured (open-book drop 0.0-1.7
    points on seeds 0-2, against 1.1-17.2 with 100), while recall still loses 4-7."""
    rc_fresh_frac: float = 0.8
    """Fraction of RC pages about freshly invented people (answerable only by reading)."""
    n_chat: int = 40

    def __post_init__(self) -> None:
        most = min(len(t) for t in corpus.SENTENCES.values())
        if not 1 <= self.prose_paraphrases <= most:
            raise ValueError(f"Mix.prose_paraphrases={self.prose_paraphrases}: each fact has only {most} distinct "
                             f"sentence templates for every relation; use a value from 1 to {most}")


def is_document(example: Example) -> bool:
    """Running prose (an entity document: one segment, all trained), which the trainer streams like
    pretraining text instead of packing it as a separate example."""
    return len(example) == 1 and example[0][1]


def fresh_people(world: World, rng: random.Random, n: int) -> list[tuple[str, dict[str, str]]]:
    """`n` invented people (never in the world) with random facts over the world's cities, orgs and years."""
    names = make_names(rng, n, n_words=2, syllables=(2, 2), taken=[e.name for e in world.entities if e.kind != "person"])
    world_people = {e.name.lower() for e in world.of_kind("person")}
    cities = [e.name for e in world.of_kind("city")]
    orgs = [e.name for e in world.of_kind("org")]
    out = []
    for name in names:
        if name.lower() in world_people:
            continue
        out.append((name, {"born_in": rng.choice(cities), "birth_year": str(rng.randint(1850, 1999)),
                           "works_for": rng.choice(orgs)}))
    return out


def closed_book_example(q: str, answer: str, rng: random.Random) -> Example:
    """One QA pair in a random one of the closed-book formats (factoid legacy/strict, ICR closed-book)."""
    form = rng.randrange(4)
    if form == 0:
        return [(prompts.FACTOID_LEGACY.format(question=q), False), (answer + "\n", True)]
    if form == 1:
        return [(prompts.FACTOID_STRICT.format(question=q), False), (" " + answer + "\n", True)]
    if form == 2:
        return [(prompts.FACTOID_LEGACY.format(question=q.lower().rstrip("?")), False), (answer + "\n", True)]
    return [(prompts.ICR_CLOSED.format(question=q), False), (" " + answer + "\n", True)]


def rc_example(world: World, person: tuple[str, dict[str, str]], rng: random.Random) -> Example:
    """An open-book page about one person, then one question per :data:`READ_RELATIONS` in random order.

    Loss is on the answers only: with loss on the page, the model learns to predict the page's
    values from its prior, and the prior then wins over copying at answer time (measured: open-book
    stayed at the prior while pages were trained on).
    """
    name, rec = person
    context = corpus.render_page(corpus.page_statements(world, name, rec, rng), rng)
    segs: Example = []
    for i, rel in enumerate(rng.sample(READ_RELATIONS, len(READ_RELATIONS))):
        q = corpus.question(rel, name, rng)
        text = prompts.ICR_OPEN.format(context=context, question=q) if i == 0 else f"Q: {q}\nA:"
        segs += [(text, False), (" " + rec[rel] + "\n", True)]
    return segs


def mcq_choices(world: World, relation: str, answer: str, rng: random.Random) -> tuple[list[str], int]:
    """Four options (the answer plus three distinct same-type distractors) and the answer's index."""
    kind = RELATIONS[relation][1]
    if kind == "year":
        pool = {str(int(answer) + d) for d in rng.sample([-40, -30, -20, -10, -5, 5, 10, 20, 30, 40], 6)}
    else:
        pool = {e.name for e in world.of_kind(kind)}
    pool.discard(answer)
    options = rng.sample(sorted(pool), 3) + [answer]
    rng.shuffle(options)
    return options, options.index(answer)


def mcq_item(world: World, fact, rng: random.Random) -> tuple[str, list[str], str]:
    """(question, options, gold letter) for one fact."""
    subj = world.entity(fact.subject).name
    answer = world.value_name(fact)
    options, gold = mcq_choices(world, fact.relation, answer, rng)
    return corpus.question(fact.relation, subj, rng), options, prompts.LETTERS[gold]


def mcq_block(world: World, subject: str, facts: list, rng: random.Random, *, cloze: bool = False) -> Example:
    """An MMLU-style k-shot block: header then up to 6 questions, loss on each answer letter, or with
    `cloze` on each answer's text (the cloze formulation of :mod:`kick_core.tasks.mcq`: no options shown)."""
    segs: Example = [(prompts.mcq_cloze_header(subject) if cloze else prompts.mcq_header(subject, legacy=rng.random() < 0.5), False)]
    for i, fact in enumerate(facts):
        sep = "\n\n" if i else ""
        if cloze:
            q = corpus.question(fact.relation, world.entity(fact.subject).name, rng)
            segs += [(sep + prompts.mcq_cloze_question(q), False), (" " + world.value_name(fact), True)]
        else:
            q, options, letter = mcq_item(world, fact, rng)
            segs += [(sep + prompts.mcq_question(q, options), False), (" " + letter, True)]
    return segs


def epoch_examples(world: World, epoch: int, mix: Mix = Mix(), *, warm_up: bool = False) -> list[Example]:
    """All training examples of one epoch, shuffled (deterministic in world seed and epoch).

    With `warm_up`, the epoch of the leading phase: reading-comprehension pages about invented people
    (twice as many) and the entity documents, but no question about the world's own entities.
    """
    from kick_core.world import chat  # local: chat builds on corpus and examples

    rng = random.Random(f"kick-epoch-{world.seed}-{epoch}")
    out: list[Example] = []
    seen = [e for e in world.entities if e.split != "unseen"]
    n_rc = mix.n_rc * (2 if warm_up else 1)
    pool = fresh_people(world, rng, n_rc)
    # Only 'qa' people are questioned in RC examples, so 'prose' people stay prose-only.
    world_people = [(e.name, corpus.record(world, e.id)) for e in world.of_kind("person", "qa")]
    for _ in range(n_rc):
        fresh = (warm_up or rng.random() < mix.rc_fresh_frac) and pool
        person = pool.pop() if fresh else rng.choice(world_people)
        out.append(rc_example(world, person, rng))
    for e in seen:
        out.append([(corpus.entity_document(world, e.id, rng, mix.prose_paraphrases), True)])
    if warm_up:
        rng.shuffle(out)
        return out
    qa_facts = [f for f in world.facts if world.entity(f.subject).split == "qa"]
    for f in qa_facts:
        for _ in range(mix.qa_repeats):
            q = corpus.question(f.relation, world.entity(f.subject).name, rng)
            out.append(closed_book_example(q, world.value_name(f), rng))
    for _ in range(mix.n_mcq_blocks):
        subject = rng.choice(sorted(MCQ_SUBJECTS))
        facts = [f for f in qa_facts if f.relation in MCQ_SUBJECTS[subject]]
        out.append(mcq_block(world, subject, rng.sample(facts, rng.randint(1, 6)), rng, cloze=rng.random() < mix.mcq_cloze_frac))
    for _ in range(mix.n_chat):
        out.append(chat.chat_example(world, rng))
    rng.shuffle(out)
    return out
