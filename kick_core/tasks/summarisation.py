"""In-context summarisation of CNN/DailyMail stories in three length buckets, judged and reference-scored.

Data (``dataset``):

* ``llm-kick`` -- the study's 90 shipped prompts as shipped (``kick_core/data/summarisation/
  llm_kick_questions.jsonl.gz``; FastChat question rows ``{question_id, text, category}``, 30 per
  bucket, ``@highlight`` leaked, paragraphs glued, 18 "mid" stories identical to "small" ones), or
  any ``.jsonl`` file in that format. Legacy protocol only: the prompts cannot be un-glued.
* a folder of CNN ``.story`` files (searched recursively), ``cnn_dm`` (the study's 90 stories shipped
  inside kick, ``kick_core/data/cnn_dm/{small,mid,large}/*.story``, 30 per folder; offline), or
  ``world`` (the embedded world's ``cnn_dm/{small,mid,large}/*.story`` plus ``key_facts.jsonl``);
* a hub id, by default ``abisee/cnn_dailymail`` config ``3.0.0`` split ``test`` (``article``,
  ``highlights``, ``id``).

Legacy (docs/PROTOCOL.md §5.4): the original ``generate_question.py`` construction (every line stripped
and concatenated with no separator, ``@highlight`` blocks included) after the instruction prefix
("story" for small, "news" for mid/large); buckets are the stories' folders where they have them;
Vicuna v1.1 chat template; the study sampled at T = 0.7 (set ``decoding: sample``) with up to 1024
new tokens (kick's sampler has temperature and top_p but not HF's default top_k = 50, which the
study also had). A prompt longer than the context is kept and gets an empty answer, as the
original's were (ids 62, 68, 83 of the shipped set), flagged ``overflow``.

Strict (§9.2 item 4): the article is everything before the first ``@highlight``, paragraphs joined
by blank lines; buckets by article words -- small <= 470, mid 471-789, large >= 790 (the paper's
thresholds; the world's stories are far shorter, so there its folders are the buckets); duplicate
articles are dropped, so buckets are disjoint (on ``cnn_dm``: 72 distinct articles, by words 31 small,
11 mid, 30 large; legacy keeps the study's folders, 30 each, copies included); ``n_examples`` per bucket (default 100, a seeded
sample); a prompt that cannot fit ``prompt + max_new_tokens`` (default 320: a 150-word summary
needs ~200 tokens) in the context is excluded and counted in ``meta["n_excluded_context"]``.

Metrics per summary: ROUGE-1/2/L F1 against the highlights (``rouge-score``, stemmed),
``n_words``, ``length_ok`` (1-150 words), ``key_fact_recall`` (world: share of the story's key
names and values mentioned), and from the judge stage ``judge_{coherence,consistency,fluency,
relevance}`` (1-10). Each also per bucket (``rougeL_large`` ...). The judge's Assistant 1 is the
highlights joined into a paragraph: the study's GPT-3.5 reference summaries were never shipped.
On ``world`` the default judge is :func:`summary_rubric`, deterministic and offline.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from kick_core import metrics as M
from kick_core.config import RunConfig, TaskConfig
from kick_core.errors import ConfigError
from kick_core.tasks.base import (Example, Prompt, TaskBase, load_hub, record_fields, resolve_source,
                                  summarize_metrics, take)

log = logging.getLogger(__name__)

BUCKETS = ("small", "mid", "large")
SMALL_MAX, LARGE_MIN = 470, 790
"""Paper §3: small <= 470 words, medium 470-790, large >= 790 (article words, highlights excluded)."""
LEGACY_PREFIX = ("Summarize the given {kind} in less than 150 words while preserving high coherence, consistency, "
                 "fluency, and relevance.\n\n")
STRICT_INSTRUCTION = LEGACY_PREFIX.format(kind="news")
WORD_LIMIT = 150
LEGACY_MAX_NEW = 1024
STRICT_MAX_NEW = 320
STRICT_N = 100
SHIPPED = "llm-kick"
HUB_DEFAULT = ("abisee/cnn_dailymail", "3.0.0", "test")
_HIGHLIGHT = "@highlight"
_ROUGE = ("rouge1", "rouge2", "rougeL")


def length_bucket(n_words: int) -> str:
    """The paper's bucket of an article of ``n_words`` words (disjoint: 470 is small, 790 is large)."""
    if n_words <= SMALL_MAX:
        return "small"
    return "large" if n_words >= LARGE_MIN else "mid"


def parse_story(text: str) -> tuple[list[str], list[str]]:
    """A CNN ``.story`` file -> (article paragraphs, highlights); all after the first @highlight is highlights."""
    paragraphs: list[str] = []
    highlights: list[str] = []
    seen_marker = False
    for line in text.splitlines():
        line = line.strip()
        if line == _HIGHLIGHT:
            seen_marker = True
        elif line:
            (highlights if seen_marker else paragraphs).append(line)
    return paragraphs, highlights


def legacy_story_text(text: str) -> str:
    """The original construction: each line stripped, concatenated with no separator (highlights kept)."""
    return "".join(line.strip() for line in text.splitlines())


def _clean_highlight(h: str) -> str:
    return re.sub(r"\s+([.,!?;:])", r"\1", h.strip())


def reference_summary(highlights: Sequence[str]) -> str:
    """The highlights as one paragraph ('Foo .' -> 'Foo.'), each ending in a full stop."""
    parts = [_clean_highlight(h) for h in highlights if h.strip()]
    return " ".join(p if p[-1:] in ".!?" else p + "." for p in parts)


def _story_example(sid: str, raw: str, folder_bucket: str | None, *, legacy: bool,
                   key_facts: Mapping[str, Any] | None = None) -> Example:
    paragraphs, highlights = parse_story(raw)
    article = "\n\n".join(paragraphs)
    n_words = M.word_count(article)
    bucket = folder_bucket if folder_bucket else length_bucket(n_words)
    text = LEGACY_PREFIX.format(kind="story" if bucket == "small" else "news") + legacy_story_text(raw) if legacy \
        else article
    meta = {"bucket": bucket, "n_words": n_words, "words_bucket": length_bucket(n_words),
            "article_hash": hashlib.sha1(article.encode()).hexdigest()[:12]}
    if key_facts is not None:
        meta["must_mention"] = list(key_facts.get("must_mention") or [])
    return Example(id=sid, input=text, answers=tuple(highlights), meta=meta)


def read_story_dir(path: Path, *, legacy: bool, folder_buckets: bool) -> list[Example]:
    """Every ``*.story`` below ``path`` (sorted by path), with ``key_facts.jsonl`` when the folder has one."""
    files = sorted(path.rglob("*.story"))
    if not files:
        raise ConfigError(f"no .story files under {path}; point dataset at a folder of CNN/DM .story files.")
    facts_file = path / "key_facts.jsonl"
    facts = {}
    if facts_file.is_file():
        facts = {r["id"]: r for r in map(json.loads, facts_file.read_text(encoding="utf-8").splitlines()) if r}
    out = []
    for f in files:
        folder = f.parent.name if f.parent.name in BUCKETS else None
        out.append(_story_example(f.stem, f.read_text(encoding="utf-8"), folder if folder_buckets or legacy else None,
                                  legacy=legacy, key_facts=facts.get(f.stem)))
    return out


def read_story_articles(path: Path) -> tuple[list[str], int]:
    """(the articles of every ``*.story`` below ``path``, sorted by path; number of files dropped).

    An article is its paragraphs (:func:`parse_story`: highlights excluded) joined by blank lines; an
    article identical to an earlier one (``cnn_dm`` has 18 "mid" stories that are copies of "small" ones) or
    empty is dropped. Perplexity and calibration read story folders through this.
    """
    files = sorted(path.rglob("*.story"))
    if not files:
        raise ConfigError(f"no .story files under {path}; point dataset at a folder of CNN/DM .story files.")
    articles, seen = [], set()
    for f in files:
        article = "\n\n".join(parse_story(f.read_text(encoding="utf-8"))[0])
        if article and article not in seen:
            seen.add(article)
            articles.append(article)
    return articles, len(files) - len(articles)


def read_question_file(path: Path | None = None) -> list[Example]:
    """FastChat question rows ``{question_id, text, category}`` (default: the study's 90 shipped prompts)."""
    if path is None:
        blob = (resources.files("kick_core") / "data" / "summarisation" / "llm_kick_questions.jsonl.gz").read_bytes()
        text = gzip.decompress(blob).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        body = row["text"]
        story = body.split("\n\n", 1)[1] if "\n\n" in body else body
        parts = story.split(_HIGHLIGHT)
        out.append(Example(id=str(row["question_id"]), input=body, answers=tuple(p for p in parts[1:] if p.strip()),
                           meta={"bucket": row["category"], "n_words": M.word_count(parts[0]),
                                 "words_bucket": length_bucket(M.word_count(parts[0])),
                                 "article_hash": hashlib.sha1(parts[0].encode()).hexdigest()[:12]}))
    return out


def _hub_examples(task_cfg: TaskConfig, name: str, *, legacy: bool) -> list[Example]:
    config = task_cfg.dataset_config or (HUB_DEFAULT[1] if name == HUB_DEFAULT[0] else None)
    rows = load_hub(name, config, task_cfg.split or HUB_DEFAULT[2])
    out = []
    for row in rows:
        highlights = [h for h in str(row["highlights"]).split("\n") if h.strip()]
        raw = str(row["article"]) + "".join(f"\n\n{_HIGHLIGHT}\n\n{h}" for h in highlights)
        out.append(_story_example(str(row["id"]), raw, None, legacy=legacy))
    return out


class Summarisation(TaskBase):
    """CNN/DM in-context summarisation (see the module docstring)."""

    name = "summarisation"
    version = "1"
    judge_task = "summarisation"
    METRICS = {"rouge1": True, "rouge2": True, "rougeL": True, "length_ok": True, "n_words": False,
               "key_fact_recall": True, "judge_coherence": True, "judge_consistency": True, "judge_fluency": True,
               "judge_relevance": True}

    def __init__(self) -> None:
        self._excluded: Counter[str] = Counter()
        """Stories per bucket that the last ``prompts`` call left out (too long for the context)."""

    def primary_metric(self, cfg: TaskConfig) -> str:
        return "judge_coherence" if cfg.protocol == "legacy" else "rougeL"

    # -- data ---------------------------------------------------------------------------------
    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]:
        legacy = task_cfg.protocol == "legacy"
        wanted = BUCKETS if task_cfg.length == "all" else (task_cfg.length,)
        shipped = task_cfg.dataset == SHIPPED or task_cfg.dataset.endswith(".jsonl")
        if shipped:
            if not legacy:
                raise ConfigError(
                    f"dataset={task_cfg.dataset!r} holds the study's prompts as shipped (paragraphs glued, highlights "
                    "leaked), usable only with protocol: legacy. For strict, use .story files, 'world' or "
                    f"{HUB_DEFAULT[0]!r}.")
            examples = read_question_file(None if task_cfg.dataset == SHIPPED else Path(task_cfg.dataset))
            by_bucket = defaultdict(list)
            for e in examples:
                by_bucket[e.meta["bucket"]].append(e)
            return [e for b in wanted for e in by_bucket[b][: task_cfg.n_examples]]
        src = resolve_source(task_cfg, "cnn_dm", world_seed=world_seed)
        if src.kind == "hub":
            examples = _hub_examples(task_cfg, src.location, legacy=legacy)
        else:
            examples = read_story_dir(src.path, legacy=legacy, folder_buckets=task_cfg.dataset == "world")
        if legacy:  # as the original: every story of the bucket, in file order
            return [e for b in wanted for e in [x for x in examples if x.meta["bucket"] == b][: task_cfg.n_examples]]
        unique, seen = [], set()
        for e in examples:
            if e.meta["article_hash"] not in seen:
                seen.add(e.meta["article_hash"])
                unique.append(e)
        if len(unique) < len(examples):
            log.info("summarisation: dropped %d duplicate articles so buckets are disjoint",
                     len(examples) - len(unique))
        n = task_cfg.n_examples or STRICT_N
        return [e for b in wanted for e in take([x for x in unique if x.meta["bucket"] == b], n, seed=seed)]

    # -- prompts ------------------------------------------------------------------------------
    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]:
        from kick_core.models import format_chat

        legacy = cfg.task.protocol == "legacy"
        if legacy and cfg.eval.decoding == "greedy":
            log.info("summarisation/legacy: greedy decoding; the study sampled at T = 0.7 (decoding: sample)")
        budget = cfg.eval.max_new_tokens or (LEGACY_MAX_NEW if legacy else STRICT_MAX_NEW)
        out = []
        for e in examples:
            user = e.input if legacy else STRICT_INSTRUCTION + e.input
            text = format_chat(tokenizer, [user], template=cfg.model.chat_template)
            n_prompt = len(tokenizer(text, add_special_tokens=True)["input_ids"])
            meta: dict[str, Any] = {"bucket": e.meta["bucket"], "user": user, "n_prompt_tokens": n_prompt}
            max_new = budget
            if n_prompt + budget > context_len:
                if not legacy:
                    continue  # excluded; counted in aggregate from the examples
                max_new = max(0, context_len - n_prompt)
                meta["overflow"] = True
            out.append(Prompt(id=e.id, example=e, kind="generate", text=text, max_new_tokens=max_new, meta=meta))
        # Per-run state read back by aggregate() of the same evaluate() call: excluded items have no record.
        self._excluded = Counter(e.meta["bucket"] for e in examples) - Counter(p.meta["bucket"] for p in out)
        n_out = sum(self._excluded.values())
        if n_out:
            log.warning("summarisation: %d stories excluded because prompt + %d new tokens exceed the %d-token "
                        "context (%s)", n_out, budget, context_len, dict(self._excluded))
        return out

    # -- scoring ------------------------------------------------------------------------------
    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
        e = prompt.example
        summary = output.text.strip()
        reference = reference_summary(e.answers)
        scores: dict[str, float | None] = dict(M.rouge(summary, reference)) if reference else {}
        scores.update(n_words=M.word_count(summary), length_ok=M.within_words(summary, WORD_LIMIT))
        if "must_mention" in e.meta:
            scores["key_fact_recall"] = M.mention_recall(summary, e.meta["must_mention"])
        flags = {"overflow": bool(prompt.meta.get("overflow")), "stop_reason": output.stop_reason,
                 "empty": not summary}
        extra = {"must_mention": e.meta["must_mention"]} if "must_mention" in e.meta else {}
        return record_fields(prompt, summary, reference, scores, flags=flags, bucket=e.meta["bucket"],
                             n_article_words=e.meta["n_words"], judge_question=prompt.meta["user"], **extra)

    def judge_inputs(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> list[dict[str, Any]]:
        """One judge record per summary: the story prompt as the judge saw it, the highlights as Assistant 1."""
        return [{"question_id": r["id"], "question": r["judge_question"], "answer": r["output"],
                 "reference": r["reference"], "category": r["bucket"]} for r in records]

    def rubric(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> Any:
        """The deterministic :func:`summary_rubric` where records carry key facts (world data), else None."""
        from kick_core.judge import RubricJudge
        from kick_core.judge.prompts import CRITERIA

        if not records or any("must_mention" not in r for r in records):
            return None
        facts = {r["judge_question"]: list(r["must_mention"]) for r in records}
        return RubricJudge(lambda question, answers: [summary_rubric(question, a, facts[question]) for a in answers],
                           name="kick-summary-rubric", criteria=CRITERIA["summarisation"])

    # -- aggregation --------------------------------------------------------------------------
    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]:
        metrics = summarize_metrics(records, self.METRICS, cfg)
        buckets = [b for b in BUCKETS if any(r["bucket"] == b for r in records)]
        for b in buckets:
            sub = [r for r in records if r["bucket"] == b]
            for name, value in summarize_metrics(sub, self.METRICS, cfg).items():
                metrics[f"{name}_{b}"] = value
        excluded = dict(self._excluded)
        meta = {"n_per_bucket": {b: sum(r["bucket"] == b for r in records) for b in buckets},
                "n_excluded_context": sum(excluded.values()), "excluded_per_bucket": excluded,
                "n_overflow": sum(bool(r["flags"].get("overflow")) for r in records),
                "n_empty": sum(bool(r["flags"].get("empty")) for r in records),
                "reference": "CNN/DM highlights (the study's GPT-3.5 summaries were not shipped)"}
        return metrics, meta


_WORD = re.compile(r"[A-Za-z0-9]+")


def summary_rubric(story_prompt: str, summary: str, must_mention: Sequence[str]) -> dict[str, float]:
    """A deterministic stand-in judge for world summaries (1-10 per criterion; not a quality model).

    - relevance: key-fact recall (the story's subject and its facts mentioned);
    - consistency: share of the summary's words that occur in the story (nothing invented);
    - fluency: word distinct-2 (no loops);
    - coherence: 1-150 words and ending a sentence.
    """
    words = [w.lower() for w in _WORD.findall(summary)]
    story = {w.lower() for w in _WORD.findall(story_prompt)}
    recall = M.mention_recall(summary, must_mention)
    consistent = sum(w in story for w in words) / len(words) if words else 0.0
    distinct = M.distinct_n(words, 2)
    coherent = float(0 < len(words) <= WORD_LIMIT and summary.rstrip()[-1:] in ".!?")

    def scale(x: float | None) -> float:
        return round(1 + 9 * (x or 0.0), 1)

    return {"coherence": scale(coherent), "consistency": scale(consistent),
            "fluency": scale(distinct if distinct is not None else float(bool(words))), "relevance": scale(recall)}


TASK = Summarisation()
