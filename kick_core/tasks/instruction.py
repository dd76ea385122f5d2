"""Instruction following: Vicuna-80 (what the study ran) and MT-Bench (what the paper says), judged.

Data (``dataset``), all in FastChat's ``question.jsonl`` format:

* ``vicuna80`` -- the study's 80 single-turn questions (``{question_id, text, category}``; 9
  categories) with its GPT-3.5 reference answers, shipped in ``kick_core/data/instruction/``. The
  paper calls this "multi-turn MT-Bench"; it is neither, so it is named for what it is.
* a ``.jsonl`` file, or a folder holding ``question.jsonl``: Vicuna-80 rows (``text``) or MT-Bench
  rows (``{question_id, category, turns: [t1, t2], reference?}``, FastChat
  ``llm_judge/data/mt_bench``; 8 categories x 10);
* ``world`` -- the embedded world's two-turn questions (MT-Bench format plus per-turn
  ``constraints`` checkable by rule, and per-turn ``reference`` answers);
* a hub id with MT-Bench rows (``turns``, or ``prompt`` as in ``HuggingFaceH4/mt_bench_prompts``).

Each turn is one record (id ``<question_id>/t<turn>``). Turn 2 is generated after the model's own
turn-1 answer (``followups``, run by ``evaluate`` as a second round), as MT-Bench does.

Legacy (docs/PROTOCOL.md §5.5): first turn only, first ``n_examples`` in file order, Vicuna v1.1 chat
template, up to 1024 new tokens; the study sampled at T = 0.7 (``decoding: sample``). The judge uses
the original pairwise prompts (general / coding / math), reference as Assistant 1, original parser.
Strict: every turn; a seeded sample of ``n_examples``; the judge is pairwise with both orders where
every record has a reference answer (Vicuna-80, world), else MT-Bench single-answer grading.

Metrics per answer: ``judge_score`` (1-10; also per category and per turn), the repetition
analysis behind the paper's "unique tokens" claim over the model's own generated token ids --
``unique_tokens``, ``distinct_1``, ``distinct_2``, ``repetition_rate`` (share of repeated 4-grams) --
``n_words``, on world data ``constraint_pass`` (share of the turn's rule-checked constraints met), and
where the turn has a reference answer (Vicuna-80: GPT-3.5's; MT-Bench: its reference turns) ROUGE-1/L
F1 against it (``rouge1``, ``rougeL``): a judge-free signal. ROUGE against the dense model's own
answer is computed across runs at report time (``kick_core.explorer.rouge_vs_dense``).
"""

from __future__ import annotations

import gzip
import json
import logging
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

SHIPPED = "vicuna80"
MAX_NEW = 1024
_DATA = ("kick_core", "data", "instruction")


def parse_question(row: Mapping[str, Any]) -> Example:
    """A FastChat question row (Vicuna-80 ``text`` or MT-Bench ``turns``/``prompt``) -> Example."""
    turns = row.get("turns") or row.get("prompt") or ([row["text"]] if "text" in row else None)
    if not turns or not all(isinstance(t, str) for t in turns):
        raise ConfigError(f"question {row.get('question_id')!r} has no 'text' or 'turns'; expected FastChat's "
                          "question.jsonl format.")
    qid = row.get("question_id", row.get("prompt_id"))
    reference = row.get("reference")
    if isinstance(reference, str):
        reference = [reference]
    meta: dict[str, Any] = {"turns": list(turns), "category": str(row.get("category", "none")),
                            "references": list(reference) if reference else None}
    if "constraints" in row:
        meta["constraints"] = row["constraints"]
    return Example(id=str(qid), input=turns[0], meta=meta)


def read_questions(path: Path) -> list[Example]:
    """Examples from a ``question.jsonl`` file (one JSON row per line)."""
    return [parse_question(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _shipped_text(name: str) -> str:
    blob = resources.files(_DATA[0]).joinpath(*_DATA[1:], name).read_bytes()
    return gzip.decompress(blob).decode("utf-8") if name.endswith(".gz") else blob.decode("utf-8")


def vicuna80() -> list[Example]:
    """The study's 80 questions with the shipped GPT-3.5 answers as each one's reference."""
    answers = {json.loads(line)["question_id"]: json.loads(line)["text"]
               for line in _shipped_text("vicuna80_gpt35_answers.jsonl.gz").splitlines() if line.strip()}
    out = []
    for line in _shipped_text("vicuna80_questions.jsonl").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(parse_question({**row, "reference": [answers[row["question_id"]]]}))
    return out


def benchmark_name(question_turns: Sequence[int], dataset: str) -> str:
    """'world', 'vicuna80' (single-turn questions) or 'mt_bench' (multi-turn), from each question's turn count."""
    if dataset == "world":
        return "world"
    return "mt_bench" if any(n > 1 for n in question_turns) else "vicuna80"


def render_conversation(turns: Sequence[str], answers: Sequence[str]) -> str:
    """The conversation so far as the judge sees it: each user turn and the assistant's earlier answers."""
    parts = []
    for i, turn in enumerate(turns):
        parts.append(f"[User, turn {i + 1}]\n{turn}")
        if i < len(answers):
            parts.append(f"[Assistant, turn {i + 1}]\n{answers[i]}")
    return "\n\n".join(parts)


class Instruction(TaskBase):
    """Vicuna-80 / MT-Bench instruction following (see the module docstring)."""

    name = "instruction"
    version = "1"
    judge_task = "instruction"
    METRICS = {"judge_score": True, "unique_tokens": True, "distinct_1": True, "distinct_2": True,
               "repetition_rate": False, "n_words": True, "constraint_pass": True, "rouge1": True, "rougeL": True}

    def primary_metric(self, cfg: TaskConfig) -> str:
        return "judge_score"

    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]:
        if task_cfg.dataset == SHIPPED:
            examples = vicuna80()
        else:
            src = resolve_source(task_cfg, "instruction", world_seed=world_seed)
            if src.kind == "hub":
                examples = [parse_question(r) for r in load_hub(src.location, task_cfg.dataset_config,
                                                                 task_cfg.split or "train")]
            else:
                path = src.path / "question.jsonl" if src.path.is_dir() else src.path
                if not path.is_file():
                    raise ConfigError(f"no question.jsonl in {src.path}; instruction folders hold FastChat's "
                                      "question.jsonl.")
                examples = read_questions(path)
        if task_cfg.protocol == "legacy":
            return examples[: task_cfg.n_examples]
        return take(examples, task_cfg.n_examples, seed=seed)

    # -- prompts ------------------------------------------------------------------------------
    def _prompt(self, e: Example, turn: int, answers: Sequence[str], cfg: RunConfig, tokenizer: Any,
                context_len: int) -> Prompt | None:
        from kick_core.models import format_chat

        turns = e.meta["turns"][: turn]
        text = format_chat(tokenizer, turns, list(answers), template=cfg.model.chat_template)
        n_prompt = len(tokenizer(text, add_special_tokens=True)["input_ids"])
        max_new = min(cfg.eval.max_new_tokens or MAX_NEW, context_len - n_prompt)
        if max_new <= 0:
            log.warning("instruction: question %s turn %d does not fit the %d-token context; excluded",
                        e.id, turn, context_len)
            return None
        question = turns[0] if turn == 1 else render_conversation(turns, answers)
        return Prompt(id=f"{e.id}/t{turn}", example=e, kind="generate", text=text, max_new_tokens=max_new,
                      meta={"turn": turn, "judge_question": question})

    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]:
        if cfg.task.protocol == "legacy" and cfg.eval.decoding == "greedy":
            log.info("instruction/legacy: greedy decoding; the study sampled at T = 0.7 (decoding: sample)")
        out = [self._prompt(e, 1, [], cfg, tokenizer, context_len) for e in examples]
        return [p for p in out if p is not None]

    def followups(self, prompts: Sequence[Prompt], done: Mapping[str, Mapping[str, Any]], cfg: RunConfig,
                  tokenizer: Any, context_len: int) -> list[Prompt]:
        """The next turn of every multi-turn question, after the model's own earlier answers (strict only)."""
        if cfg.task.protocol == "legacy":
            return []
        out = []
        for p in prompts:
            e, turn = p.example, p.meta["turn"]
            if turn >= len(e.meta["turns"]):
                continue
            answers = [done[f"{e.id}/t{k}"]["output"] for k in range(1, turn + 1)]
            nxt = self._prompt(e, turn + 1, answers, cfg, tokenizer, context_len)
            if nxt is not None:
                out.append(nxt)
        return out

    # -- scoring ------------------------------------------------------------------------------
    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
        e, turn = prompt.example, prompt.meta["turn"]
        answer = output.text.strip()
        eos = tokenizer.eos_token_id
        ids = [t for t in output.token_ids if t != eos]
        scores: dict[str, float | None] = {
            "unique_tokens": len(set(ids)), "distinct_1": M.distinct_n(ids, 1), "distinct_2": M.distinct_n(ids, 2),
            "repetition_rate": M.repetition_rate(ids, 4), "n_words": M.word_count(answer)}
        refs = e.meta.get("references")
        reference = refs[turn - 1] if refs and turn <= len(refs) else None
        if reference:
            rouge = M.rouge(answer, reference)
            scores.update(rouge1=rouge["rouge1"], rougeL=rouge["rougeL"])
        extra: dict[str, Any] = {}
        if "constraints" in e.meta:
            from kick_core.world.rubric import check

            cons = e.meta["constraints"][turn - 1]
            extra["constraints"] = [{**c, "pass": check(c, answer)} for c in cons]
            scores["constraint_pass"] = sum(c["pass"] for c in extra["constraints"]) / len(cons) if cons else None
        return record_fields(prompt, answer, reference, scores, flags={"stop_reason": output.stop_reason},
                             question_id=e.id, turn=turn, n_question_turns=len(e.meta["turns"]),
                             category=e.meta["category"],
                             judge_question=prompt.meta["judge_question"], **extra)

    def judge_inputs(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> list[dict[str, Any]]:
        """One judge record per answered turn (turn 2's question is the whole conversation so far)."""
        out = []
        for r in records:
            row = {"question_id": r["id"], "question": r["judge_question"], "answer": r["output"],
                   "category": r["category"]}
            if isinstance(r.get("reference"), str):
                row["reference"] = r["reference"]
            out.append(row)
        return out

    def rubric(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> Any:
        """The world's rule-based judge (:func:`kick_core.world.rubric_score`) per turn, or None off-world."""
        if not records or any("constraints" not in r for r in records):
            return None
        from kick_core.judge import RubricJudge
        from kick_core.world.rubric import rubric_score

        rules = {r["judge_question"]: [{k: v for k, v in c.items() if k != "pass"} for c in r["constraints"]]
                 for r in records}

        def score(question: str, answers: Sequence[str]) -> list[float]:
            return [float(rubric_score({"constraints": [rules[question]]}, [a])["score"]) for a in answers]

        return RubricJudge(score, name="kick-world-rubric")

    # -- aggregation --------------------------------------------------------------------------
    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]:
        metrics = summarize_metrics(records, self.METRICS, cfg)
        categories = sorted({r["category"] for r in records})
        turns = sorted({r["turn"] for r in records})
        groups = [(f"_{c}", [r for r in records if r["category"] == c]) for c in categories]
        if len(turns) > 1:
            groups += [(f"_turn{t}", [r for r in records if r["turn"] == t]) for t in turns]
        for suffix, sub in groups:
            for name, value in summarize_metrics(sub, self.METRICS, cfg, names=["judge_score"]).items():
                metrics[name + suffix] = value
        meta = {"benchmark": benchmark_name([r["n_question_turns"] for r in records], cfg.task.dataset),
                "n_questions": len({r["question_id"] for r in records}), "n_turns": len(turns),
                "categories": {c: sum(r["category"] == c for r in records) for c in categories},
                "n_length_cut": sum(r["flags"].get("stop_reason") == "length" for r in records)}
        return metrics, meta


TASK = Instruction()
