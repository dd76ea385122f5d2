"""ICR(A)-QA on TriviaQA: the same questions closed-book and open-book (evidence in the prompt).

Data: HF ``trivia_qa`` config ``rc`` (validation), local ``.json`` (a list of rows, or the HF
``{"data": [...]}`` export) / ``.jsonl`` files in that schema (``question``, ``question_id``,
``entity_pages.wiki_context``, ``search_results.search_context``, ``answer.normalized_aliases``), or
``dataset: world``. Each item yields one record per book (ids ``<question_id>/closed`` and
``<question_id>/open``), so closed and open book are compared on identical items.

Legacy (docs/PROTOCOL.md §5.3): first ``n_examples`` (default 10) in dataset order; evidence =
``wiki_context[0] + search_context[0]`` with no separator, cut to 3072 characters; the prompt is
``.strip()``-ped; 32 new tokens, first line; lenient EM (containment either way, empty prediction
scores 1) and F1.

Strict (§9.2): evidence documents joined with newlines and truncated by **tokens** to fit
``context_len - question - generation budget`` (the question is always kept; the number of
evidence tokens/characters kept and whether the answer survived are recorded); generated tokens
are sliced (never split on the prompt string), first line; ``exact_match`` (normalised equality,
empty = 0), ``contains`` (word-boundary) and ``f1`` as separate metrics.

Metric names carry the book: ``em_open``, ``f1_closed``, ``exact_match_open`` ...
``prompt_format: chat`` (strict) puts both books' questions in the model's chat template
(:data:`CHAT_CLOSED`, :data:`CHAT_OPEN`); the evidence is fitted to the context the same way, and the
headline metric is ``contains_<book>`` (a chat answer is a sentence, which exact match never equals).
The open-book chat prompt asks the question before the evidence as well as after it: a small model
then reads for it (SmolLM2-135M on 100 geofacts reading items: 0.61 open book against 0.33 with the
question after the evidence only; README, "A real model on the CPU").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kick_core import metrics as M
from kick_core.config import RunConfig, TaskConfig
from kick_core.errors import ConfigError
from kick_core.tasks.base import (Example, Prompt, TaskBase, load_hub, record_fields, resolve_source,
                                  summarize_metrics, take)

OPEN_PROMPT = "{context}\n\nBased on these texts, answer these questions:\n\nQ: {question}\nA:"
CLOSED_PROMPT = "Answer these questions:\n\nQ: {question}\nA:"
CHAT_OPEN = "Question: {question}\n\n{context}\n\nBased on these texts, answer in a few words: {question}"
CHAT_CLOSED = "Answer in a few words: {question}"
"""``prompt_format: chat``: user turns, wrapped in the model's chat template (``models.format_chat``)."""
LEGACY_CHARS = 3072
LEGACY_N = 10
MAX_NEW = 32
_BOOKS = {"closed": ("closed",), "open": ("open",), "both": ("closed", "open")}
_LEGACY_METRICS = ("em", "f1")
_STRICT_METRICS = ("exact_match", "contains", "f1")


def _first(value: Any) -> str:
    return str(value[0]) if value else ""


def parse_row(row: Mapping[str, Any]) -> Example:
    """One TriviaQA rc row -> Example(context = (wiki_context[0], search_context[0]) where present)."""
    wiki = (row.get("entity_pages") or {}).get("wiki_context") or []
    web = (row.get("search_results") or {}).get("search_context") or []
    answer = row.get("answer") or {}
    aliases = answer.get("normalized_aliases") or answer.get("aliases") or []
    return Example(id=str(row["question_id"]), input=str(row["question"]), answers=tuple(aliases),
                   context=(_first(wiki), _first(web)), meta={"value": answer.get("value")})


def read_trivia_file(path: Path) -> list[Example]:
    """Rows from a ``.jsonl`` (one row per line) or ``.json`` (a list, or ``{"data": [...]}``) file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
        rows = data.get("data") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ConfigError(f"{path} is not a TriviaQA rc export: expected a list of rows or {{'data': [...]}}.")
    return [parse_row(r) for r in rows]


class ICRQA(TaskBase):
    """TriviaQA closed- vs open-book QA (see the module docstring)."""

    name = "icr_qa"
    version = "1"
    METRICS = {f"{m}_{b}": True for b in ("closed", "open") for m in (*_LEGACY_METRICS, *_STRICT_METRICS)}

    def primary_metric(self, cfg: TaskConfig) -> str:
        book = "closed" if cfg.book == "closed" else "open"
        if cfg.protocol == "legacy":
            return f"em_{book}"
        # a chat answer is a sentence ("The capital of Jersey is Saint Helier."): containment is its match
        return f"contains_{book}" if cfg.prompt_format == "chat" else f"exact_match_{book}"

    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]:
        legacy = task_cfg.protocol == "legacy"
        split = task_cfg.split or "validation"
        src = resolve_source(task_cfg, "triviaqa", world_seed=world_seed)
        if src.kind == "hub":
            examples = [parse_row(r) for r in load_hub(src.location, task_cfg.dataset_config or "rc", split)]
        else:
            path = src.path
            if path.is_dir():
                found = [path / f"{split}{ext}" for ext in (".jsonl", ".json") if (path / f"{split}{ext}").is_file()]
                if not found:
                    raise ConfigError(f"no {split}.jsonl or {split}.json in {path}; TriviaQA folders hold <split>.jsonl.")
                path = found[0]
            examples = read_trivia_file(path)
        if legacy:
            return examples[: task_cfg.n_examples or LEGACY_N]
        return take(examples, task_cfg.n_examples, seed=seed)

    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]:
        legacy = cfg.task.protocol == "legacy"
        max_new = cfg.eval.max_new_tokens or MAX_NEW
        if cfg.task.prompt_format == "chat":
            from kick_core.models import format_chat

            def render(template: str, **fields: str) -> str:
                return format_chat(tokenizer, [template.format(**fields)], template=cfg.model.chat_template)

            closed, opened = CHAT_CLOSED, CHAT_OPEN
        else:
            def render(template: str, **fields: str) -> str:
                return template.format(**fields)

            closed, opened = CLOSED_PROMPT, OPEN_PROMPT
        out = []
        for e in examples:
            for book in _BOOKS[cfg.task.book]:
                meta: dict[str, Any] = {"book": book}
                if book == "closed":
                    text = render(closed, question=e.input)
                elif legacy:
                    context = ("".join(e.context))[:LEGACY_CHARS]
                    text = OPEN_PROMPT.format(context=context, question=e.input).strip()
                    meta.update(evidence_chars=len(context))
                else:
                    text, kept = self._fit(e, tokenizer, context_len - max_new,
                                           lambda context, q=e.input: render(opened, context=context, question=q))
                    meta.update(kept)
                out.append(Prompt(id=f"{e.id}/{book}", example=e, kind="generate", text=text,
                                  max_new_tokens=max_new, stop=() if legacy else ("\n",), meta=meta))
        return out

    @staticmethod
    def _fit(e: Example, tokenizer: Any, budget: int, render: Any) -> tuple[str, dict[str, Any]]:
        """Open-book prompt ``render(context)`` whose evidence is cut by tokens so the whole prompt fits ``budget``."""
        evidence = "\n".join(doc for doc in e.context if doc)
        fixed = len(tokenizer(render(""), add_special_tokens=True)["input_ids"])
        room = max(0, budget - fixed)
        enc = tokenizer(evidence, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        truncated = len(offsets) > room
        kept_chars = offsets[room - 1][1] if truncated and room > 0 else (0 if truncated else len(evidence))
        context = evidence[:kept_chars]
        return render(context), {
            "evidence_tokens": min(room, len(offsets)), "evidence_chars": len(context), "truncated": truncated,
            "answer_in_evidence": bool(M.contains_answer(context, e.answers)),
        }

    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
        e, book = prompt.example, prompt.meta["book"]
        pred = M.first_line(output.text)  # output.text holds exactly the generated tokens, decoded
        if cfg.task.protocol == "legacy":
            scores = {f"em_{book}": M.legacy_trivia_em(pred, e.answers), f"f1_{book}": M.max_f1(pred, e.answers)}
        else:
            scores = {f"exact_match_{book}": M.exact_match(pred, e.answers),
                      f"contains_{book}": M.contains_answer(pred, e.answers), f"f1_{book}": M.max_f1(pred, e.answers)}
        flags = {k: v for k, v in prompt.meta.items() if k != "book"}
        return record_fields(prompt, output.text, list(e.answers), scores, prediction=pred, book=book,
                             flags={**flags, "stop_reason": output.stop_reason})

    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]:
        names = _LEGACY_METRICS if cfg.task.protocol == "legacy" else _STRICT_METRICS
        metrics = summarize_metrics(records, self.METRICS, cfg, names=[f"{m}_{b}" for b in ("open", "closed") for m in names])
        open_recs = [r for r in records if r.get("book") == "open"]
        meta = {"n_items": len({r["id"].rsplit("/", 1)[0] for r in records}),
                "n_truncated": sum(bool(r["flags"].get("truncated")) for r in open_recs),
                "mean_evidence_chars": (sum(r["flags"].get("evidence_chars", 0) for r in open_recs) / len(open_recs))
                if open_recs else None,
                "n_answer_in_evidence": sum(bool(r["flags"].get("answer_in_evidence")) for r in open_recs)}
        return metrics, meta


TASK = ICRQA()
