"""Invented names built from syllables, so no pretrained prior (or guess) can supply them.

Names are unique, and no name is a substring of another (case-insensitive), so a normalised
answer can never match two entities at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "tr",
          "st", "sh", "th", "vr", "zh", "qu", "h", "j")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei", "ua", "y")
CODAS = ("", "", "", "n", "r", "l", "s", "th", "m", "x", "k")

# English words the templates use; a name containing one could collide with prose when scoring.
RESERVED = ("the", "and", "for", "born", "year", "work", "city", "capital", "guild", "company")


def make_word(rng: random.Random, n_syllables: int) -> str:
    """One capitalised invented word of `n_syllables` syllables (e.g. 'Zoravin')."""
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(n_syllables)]
    parts[-1] += rng.choice(CODAS)
    return "".join(parts).capitalize()


def is_ambiguous(name: str, others: Iterable[str]) -> bool:
    """True when `name` contains, or is contained in, any of `others` (case-insensitive)."""
    return _clashes(name.lower(), [o.lower() for o in others])


def _clashes(low: str, others_low: list[str]) -> bool:
    return any(low in o or o in low for o in others_low)


def make_names(rng: random.Random, n: int, *, n_words: int = 1, syllables: tuple[int, int] = (2, 3),
               suffixes: tuple[str, ...] = ("",), taken: Iterable[str] = (), max_tries: int = 200_000) -> list[str]:
    """`n` distinct names, none a substring of another or of anything in `taken`.

    Args:
        rng: the random source (the only source of variation).
        n: how many names.
        n_words: words per name ('Given Family' for people is 2).
        syllables: inclusive range of syllables per word.
        suffixes: one is appended to each name (e.g. ' Guild' for organisations).
        taken: names already in use.
        max_tries: give up after this many draws.

    Raises:
        ValueError: if `n` names cannot be found within `max_tries` draws (ask for fewer names or
            allow more syllables).
    """
    out: list[str] = []
    used = [t.lower() for t in taken]
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(f"make_names: found only {len(out)} of n={n} unambiguous names in {max_tries} draws; "
                             "ask for fewer names or widen `syllables`.")
        words = [make_word(rng, rng.randint(*syllables)) for _ in range(n_words)]
        if any(w.lower() in RESERVED or any(r in w.lower() for r in RESERVED) for w in words):
            continue
        if len({w[:3] for w in words}) < len(words):
            continue
        core = " ".join(words)
        if _clashes(core.lower(), used):
            continue
        used.append(core.lower())
        out.append(core + rng.choice(suffixes))
    return out
