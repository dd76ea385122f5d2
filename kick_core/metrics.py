"""Pure answer-scoring helpers: normalisation, exact match, containment, token F1, and the legacy scorers.

Two families live side by side:

* **strict** scorers (SQuAD/TriviaQA normalisation, exact equality, word-boundary containment,
  token F1) used by the corrected protocol;
* **legacy** scorers that reproduce the original LLM-KICK code *including its bugs* (see
  PROTOCOL.md §5 and §8), each named ``legacy_*`` and documented with the bug it keeps.

Everything here takes strings and returns numbers; nothing touches a model. Aggregation with
confidence intervals lives in :mod:`kick_core.stats`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
# TriviaQA's official normaliser also treats these quote marks as punctuation.
_EXTRA_PUNCT = "\u2018\u2019\u00b4`"
_PUNCT = set(string.punctuation + _EXTRA_PUNCT)
_SENTENCE_END = re.compile(r"(?<=[.!?])(\s|$)")


def normalize_answer(text: str) -> str:
    """TriviaQA/SQuAD normalisation: '_'->' ', lower-case, punctuation->' ', drop a/an/the, collapse spaces.

    >>> normalize_answer("The  Eiffel_Tower!")
    'eiffel tower'
    """
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer; an empty prediction scores 0."""
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    return float(any(pred == normalize_answer(a) for a in answers))


def contains_answer(prediction: str, answers: Iterable[str]) -> float:
    """1.0 if some normalised answer occurs in the normalised prediction on word boundaries.

    '1' is *not* found in '10'; 'paris' is found in 'it is paris france'.
    """
    pred = f" {normalize_answer(prediction)} "
    for answer in answers:
        norm = normalize_answer(answer)
        if norm and f" {norm} " in pred:
            return 1.0
    return 0.0


def token_f1(prediction: str, answer: str) -> float:
    """SQuAD token-level F1 between normalised strings (0 when either is empty, 1 when both are)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def max_f1(prediction: str, answers: Iterable[str]) -> float:
    """Best token F1 over the answer aliases (0 if there are none)."""
    return max((token_f1(prediction, a) for a in answers), default=0.0)


def first_line(text: str) -> str:
    """The text up to its first newline, stripped (the study keeps only the first line of an answer)."""
    return text.strip().split("\n", 1)[0].strip()


def first_sentence(text: str) -> str:
    """The first line, cut after its first sentence end ('.', '!' or '?' followed by a space or the end).

    A full stop inside a token ("U.S.", "3.5") is kept because it is not followed by a space.
    """
    line = first_line(text)
    match = _SENTENCE_END.search(line)
    return line[: match.start()].rstrip(".!? ").strip() if match else line


# -- legacy scorers (bugs kept on purpose) -------------------------------------------------------
def legacy_freebase_match(decoded_full: str, aliases: Sequence[str]) -> float:
    """The original Factoid-QA ``validate_response``: alias substring of the *whole decoded sequence*.

    Both sides are lower-cased and **all** spaces removed; ``decoded_full`` is prompt + output, so an
    alias that appears in the question scores 1 (bug kept: PROTOCOL.md §5.1).
    """
    haystack = decoded_full.lower().replace(" ", "")
    return float(any(a.lower().replace(" ", "") in haystack for a in aliases))


def legacy_trivia_em(prediction: str, answers: Iterable[str]) -> float:
    """The original ICR-QA "EM": normalised containment in *either* direction, max over aliases.

    An empty prediction (or one made only of articles/punctuation) normalises to '' which is a
    substring of everything, so it scores 1 (bug kept: PROTOCOL.md §5.3).
    """
    pred = normalize_answer(prediction)
    return float(any((g := normalize_answer(a)) in pred or pred in g for a in answers))


def legacy_mmlu_prediction(decoded_full: str) -> str:
    """The original MMLU prediction: the last character of decode(prompt + one greedy token).

    When the token is EOS (skipped while decoding), a newline or any non-letter, the "prediction"
    is ':' or similar and the item counts as wrong (bug kept: PROTOCOL.md §5.2).
    """
    return decoded_full[-1:] if decoded_full else ""
