"""Pure answer-scoring helpers: normalisation, exact match, containment, token F1, and the legacy scorers.

Two families live side by side:

* **strict** scorers (SQuAD/TriviaQA normalisation, exact equality, word-boundary containment,
  token F1) used by the corrected protocol;
* **legacy** scorers that reproduce the original LLM-KICK code *including its bugs* (see
  docs/PROTOCOL.md §5 and §8), each named ``legacy_*`` and documented with the bug it keeps.

Everything here takes strings and returns numbers; nothing touches a model. Aggregation with
confidence intervals lives in :mod:`kick_core.stats`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache

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
    alias that appears in the question scores 1 (bug kept: docs/PROTOCOL.md §5.1).
    """
    haystack = decoded_full.lower().replace(" ", "")
    return float(any(a.lower().replace(" ", "") in haystack for a in aliases))


def legacy_trivia_em(prediction: str, answers: Iterable[str]) -> float:
    """The original ICR-QA "EM": normalised containment in *either* direction, max over aliases.

    An empty prediction (or one made only of articles/punctuation) normalises to '' which is a
    substring of everything, so it scores 1 (bug kept: docs/PROTOCOL.md §5.3).
    """
    pred = normalize_answer(prediction)
    return float(any((g := normalize_answer(a)) in pred or pred in g for a in answers))


def legacy_mmlu_prediction(decoded_full: str) -> str:
    """The original MMLU prediction: the last character of decode(prompt + one greedy token).

    When the token is EOS (skipped while decoding), a newline or any non-letter, the "prediction"
    is ':' or similar and the item counts as wrong (bug kept: docs/PROTOCOL.md §5.2).
    """
    return decoded_full[-1:] if decoded_full else ""


# -- generation metrics (summarisation, instruction following) ------------------------------------
def word_count(text: str) -> int:
    """Whitespace-separated words (the unit of the study's length buckets and its 150-word limit)."""
    return len(text.split())


def within_words(text: str, limit: int = 150) -> float:
    """1.0 if ``text`` has at most ``limit`` words ('in less than 150 words' is read as <= 150) and is non-empty."""
    n = word_count(text)
    return float(0 < n <= limit)


_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measure (Google ``rouge-score``, Porter stemming) of a prediction against one reference.

    For CNN/DM the reference is the highlights joined with spaces; ROUGE-L is computed over the whole
    text (not the newline-split ``rougeLsum``), so it does not depend on how a summary breaks lines.
    An empty prediction scores 0 on all three.
    """
    scores = _rouge_scorer().score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in _ROUGE_TYPES}


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)


def ngrams(tokens: Sequence, n: int) -> list[tuple]:
    """Consecutive n-grams of a token sequence (empty when it is shorter than n)."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence, n: int) -> float | None:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams; None when there is no n-gram.

    1.0 means no n-gram repeats; a degenerate loop ("the the the") tends to 0. Over model token ids
    this is the defined version of the paper's unspecified "unique token" count (Fig. 6c).
    """
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else None


def repetition_rate(tokens: Sequence, n: int = 4) -> float | None:
    """Share of n-grams that repeat an earlier n-gram of the same text (1 - distinct-n); None if none."""
    d = distinct_n(tokens, n)
    return None if d is None else 1.0 - d


def mention_recall(text: str, mentions: Iterable[str]) -> float | None:
    """Share of ``mentions`` (names, values) found in ``text`` case-insensitively; None if there are none."""
    mentions = [m for m in mentions if m]
    if not mentions:
        return None
    low = text.lower()
    return sum(str(m).lower() in low for m in mentions) / len(mentions)
