"""A small, fast evaluator of a model on the exported world tasks (used by the bench and training probes).

It reads the exported files (so it also checks them), builds the real tasks' prompts, decodes
greedily in left-padded batches with a KV cache, and scores normalised exact match.  kick's own
task modules remain the study's evaluator; this is the world's self-check.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from kick_core.world import prompts
from kick_core.world.export import normalize


@dataclass(frozen=True)
class Item:
    prompt: str
    answers: tuple[str, ...]
    group: str
    baseline: float = 0.0


def factoid_items(data_dir: Path, *, legacy: bool = True) -> list[Item]:
    data = json.loads((data_dir / "factoid/FreebaseQA-eval.json").read_text())
    splits = json.loads((data_dir / "factoid/splits.json").read_text())
    group = {q: s for s, qs in splits.items() for q in qs}
    tmpl = prompts.FACTOID_LEGACY if legacy else prompts.FACTOID_STRICT
    return [Item(tmpl.format(question=q["RawQuestion"]), tuple(a for p in q["Parses"] for ans in p["Answers"]
                                                             for a in ans["AnswersName"]), group[q["Question-ID"]])
            for q in data["Questions"]]


def icr_items(data_dir: Path, *, open_book: bool) -> list[Item]:
    splits = json.loads((data_dir / "triviaqa/splits.json").read_text())
    group = {q: s for s in ("seen", "unseen") for q in splits[s]}
    out = []
    for line in (data_dir / "triviaqa/validation.jsonl").read_text().splitlines():
        row = json.loads(line)
        text = (prompts.ICR_OPEN.format(context=row["entity_pages"]["wiki_context"][0], question=row["question"])
                if open_book else prompts.ICR_CLOSED.format(question=row["question"]))
        out.append(Item(text, tuple(row["answer"]["normalized_aliases"]), group[row["question_id"]],
                        splits["copy_baseline"][row["question_id"]]))
    return out


def mcq_items(data_dir: Path, *, legacy: bool = True, cloze: bool = False) -> list[Item]:
    """5-shot MMLU items; with `cloze`, the cloze formulation (options hidden, ``answers`` = the four
    options with the gold one first)."""
    out = []
    for test in sorted((data_dir / "mmlu/test").glob("*_test.csv")):
        subject = test.name[: -len("_test.csv")]
        with (data_dir / "mmlu/dev" / f"{subject}_dev.csv").open() as fh:
            dev = list(csv.reader(fh))
        if cloze:
            head = prompts.mcq_cloze_header(subject) + "".join(
                f"{prompts.mcq_cloze_question(r[0])} {r[1 + prompts.LETTERS.index(r[5])]}\n\n" for r in dev)
        else:
            head = prompts.mcq_header(subject, legacy=legacy) + "".join(
                prompts.mcq_question(r[0], r[1:5]) + f" {r[5]}\n\n" for r in dev)
        with test.open() as fh:
            for r in csv.reader(fh):
                if cloze:
                    gold = prompts.LETTERS.index(r[5]) + 1
                    out.append(Item(head + prompts.mcq_cloze_question(r[0]),
                                    (r[gold], *(c for i, c in enumerate(r[1:5], 1) if i != gold)), subject, 0.25))
                else:
                    out.append(Item(head + prompts.mcq_question(r[0], r[1:5]), (r[5],), subject, 0.25))
    return out


def choose_cloze(model, tokenizer, items: list[Item]) -> list[bool]:
    """Whether the gold option (``answers[0]``) has the highest per-character log-likelihood."""
    from kick_core.engine.scoring import ScoreRequest, loglikelihood

    reqs = [ScoreRequest(i.prompt, tuple(" " + a for a in i.answers), group=i.group) for i in items]
    results = loglikelihood(model, tokenizer, reqs, progress=False)
    return [max(range(4), key=lambda k: r.logprobs[k] / max(1, len(i.answers[k]))) == 0 for i, r in zip(items, results)]


def generate(model, tokenizer, texts: list[str], *, max_new_tokens: int = 12, batch_size: int = 64) -> list[str]:
    """Greedy continuations (cut at the first newline), left-padded batches, KV cache on."""
    import torch

    tokenizer.padding_side = "left"
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    res: dict[int, str] = {}
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id)
        for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:]):
            res[i] = tokenizer.decode(row, skip_special_tokens=True).split("\n")[0]
    return [res[i] for i in range(len(texts))]


def choose_letters(model, tokenizer, texts: list[str], *, batch_size: int = 32) -> list[str]:
    """The letter among ' A'..' D' with the highest next-token logit after each prompt."""
    import torch

    tokenizer.padding_side = "left"
    ids = [tokenizer(" " + L, add_special_tokens=False)["input_ids"][0] for L in prompts.LETTERS]
    out = []
    for b in range(0, len(texts), batch_size):
        enc = tokenizer(texts[b:b + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**enc).logits[:, -1, ids]
        out += [prompts.LETTERS[i] for i in logits.argmax(-1).tolist()]
    return out


def exact_match(prediction: str, answers: tuple[str, ...]) -> bool:
    return normalize(prediction) in {normalize(a) for a in answers}


def _summary(items: list[Item], hits: list[bool]) -> dict[str, float]:
    out = {"all": 100.0 * sum(hits) / len(hits), "n": len(hits)}
    for g in sorted({i.group for i in items}):
        sel = [h for i, h in zip(items, hits) if i.group == g]
        out[g] = 100.0 * sum(sel) / len(sel)
    return out


def _take(items: list[Item], limit: int | None) -> list[Item]:
    """Every k-th item so that about `limit` remain (all groups represented)."""
    return items if not limit or limit >= len(items) else items[:: len(items) // limit]


def evaluate_world(model, tokenizer, data_dir: str | Path, *, limit: int | None = None) -> dict[str, dict]:
    """Closed-book factoid EM, closed/open-book ICR EM (+ copy baseline) and 5-shot MCQ accuracy (letter and
    cloze formulations), in %."""
    data_dir = Path(data_dir)
    res = {}
    for name, legacy in (("factoid", True), ("factoid_strict", False)):
        fact = _take(factoid_items(data_dir, legacy=legacy), limit)
        preds = generate(model, tokenizer, [i.prompt for i in fact])
        res[name] = _summary(fact, [exact_match(p, i.answers) for p, i in zip(preds, fact)])
    for name, open_book in (("icr_closed", False), ("icr_open", True)):
        items = _take(icr_items(data_dir, open_book=open_book), limit)
        preds = generate(model, tokenizer, [i.prompt for i in items], batch_size=32)
        res[name] = _summary(items, [exact_match(p, i.answers) for p, i in zip(preds, items)])
    res["icr_open"]["copy_baseline"] = 100.0 * sum(i.baseline for i in items) / len(items)
    mcq = _take(mcq_items(data_dir), limit)
    res["mcq"] = _summary(mcq, [p == i.answers[0] for p, i in zip(choose_letters(model, tokenizer, [i.prompt for i in mcq]), mcq)])
    cloze = _take(mcq_items(data_dir, cloze=True), limit)
    res["mcq_cloze"] = _summary(cloze, choose_cloze(model, tokenizer, cloze))
    return res
