"""Factoid-QA on FreebaseQA: can the compressed model still recall facts it was trained on?

Data: the original JSON files (``FreebaseQA-{train,dev,eval}.json``: ``{"Questions": [{"Question-ID",
"RawQuestion", "Parses": [{"Answers": [{"AnswersName": [...]}]}]}]}``; a file or a folder holding
them), the HF dataset ``freebase_qa`` (splits train/validation/test), or ``dataset: world``.

Legacy (docs/PROTOCOL.md §5.1, bugs kept): the **train** split in file order, ``n_examples`` (default
1000) **plus one** evaluated (the original counter's off-by-one) and divided by ``n_examples``;
prompt ``Please give answer to this question: {q}\\nThe answer is `` (trailing space); greedy with
up to 2x the prompt's tokens; an item is right when an alias of ``Parses[0].Answers[0]`` occurs in
the decoded *prompt + output*, lower-cased with all spaces removed.

Strict (§9.2): the **eval** split, or a seeded sample of ``n_examples`` of it (ids recorded);
no trailing space; the continuation only, cut at the first newline or sentence end, SQuAD
normalisation, all aliases of all parses; ``exact_match`` and word-boundary ``contains`` reported
separately; items whose answer appears in the question are flagged, and ``contains_excl_leaked``
leaves them out; the denominator is the number of items evaluated. Primary metric: ``contains``.
``prompt_format: chat`` (strict) puts the question in the model's chat template instead
(:data:`CHAT_PROMPT`), for instruction-tuned models that answer a completion prompt poorly
(SmolLM2-135M-Instruct on geofacts: 2.5 % raw, 42 % chat, 80 questions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kick_core import metrics as M
from kick_core.config import RunConfig, TaskConfig
from kick_core.errors import ConfigError
from kick_core.tasks.base import (Example, Prompt, TaskBase, load_hub, record_fields, resolve_source,
                                  summarize_metrics, take)

LEGACY_PROMPT = "Please give answer to this question: {question}\nThe answer is "
STRICT_PROMPT = "Please give answer to this question: {question}\nThe answer is"
CHAT_PROMPT = "Answer in a few words: {question}"
"""``prompt_format: chat``: the user turn, wrapped in the model's chat template (``models.format_chat``)."""
LEGACY_N = 1000
STRICT_MAX_NEW = 32
_HUB_SPLITS = {"train": "train", "dev": "validation", "eval": "test", "validation": "validation", "test": "test"}
_FILE_SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "eval": "eval", "test": "eval"}


def _as_list_of_dicts(value: Any) -> list[dict]:
    """HF datasets store a list of dicts as a dict of lists; accept both."""
    if isinstance(value, Mapping):
        keys = list(value)
        return [dict(zip(keys, row)) for row in zip(*(value[k] for k in keys))] if keys else []
    return list(value or [])


def parse_question(item: Mapping[str, Any]) -> Example:
    """One FreebaseQA question (JSON or HF row) -> Example with all aliases and the legacy alias list."""
    parses = _as_list_of_dicts(item.get("Parses"))
    aliases: list[str] = []
    legacy: list[str] = []
    for p, parse in enumerate(parses):
        for a, answer in enumerate(_as_list_of_dicts(parse.get("Answers"))):
            names = list(answer.get("AnswersName") or [])
            if p == 0 and a == 0:
                legacy = names
            aliases.extend(n for n in names if n not in aliases)
    return Example(id=str(item["Question-ID"]), input=str(item["RawQuestion"]), answers=tuple(aliases),
                   meta={"legacy_aliases": legacy})


def read_freebase_json(path) -> list[Example]:
    """Examples from an original ``FreebaseQA-*.json`` file, in file order."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if "Questions" not in data:
        raise ConfigError(f"{path} is not a FreebaseQA file: no top-level 'Questions' list.")
    return [parse_question(q) for q in data["Questions"]]


class FactoidQA(TaskBase):
    """FreebaseQA factoid recall (see the module docstring)."""

    name = "factoid_qa"
    version = "1"
    METRICS = {"accuracy": True, "exact_match": True, "contains": True, "contains_excl_leaked": True}

    def primary_metric(self, cfg: TaskConfig) -> str:
        return "accuracy" if cfg.protocol == "legacy" else "contains"

    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]:
        legacy = task_cfg.protocol == "legacy"
        split = task_cfg.split or ("train" if legacy else "eval")
        src = resolve_source(task_cfg, "factoid", world_seed=world_seed)
        if src.kind == "hub":
            rows = load_hub(src.location, task_cfg.dataset_config, _HUB_SPLITS.get(split, split))
            examples = [parse_question(r) for r in rows]
        else:
            path = src.path
            if path.is_dir():
                path = path / f"FreebaseQA-{_FILE_SPLITS.get(split, split)}.json"
                if not path.is_file():
                    held = sorted(f.name.removeprefix("FreebaseQA-").removesuffix(".json")
                                  for f in path.parent.glob("FreebaseQA-*.json"))
                    raise ConfigError(f"split={split!r}: no {path.name} in {src.location}; FreebaseQA folders hold "
                                      f"FreebaseQA-<split>.json, and this one has split {', '.join(held) or 'none'}.")
            examples = read_freebase_json(path)
        if legacy:  # the original loop evaluates n + 1 questions (off-by-one), in file order
            return examples[: (task_cfg.n_examples or LEGACY_N) + 1]
        return take(examples, task_cfg.n_examples, seed=seed)

    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]:
        if cfg.task.protocol == "legacy":
            texts = [LEGACY_PROMPT.format(question=e.input) for e in examples]
            lengths = [len(x) for x in tokenizer(texts, add_special_tokens=True)["input_ids"]]
            caps = [cfg.eval.max_new_tokens or 2 * n for n in lengths]  # max_length = 3 x prompt tokens
            return [Prompt(id=e.id, example=e, kind="generate", text=t, max_new_tokens=c)
                    for e, t, c in zip(examples, texts, caps)]
        cap = cfg.eval.max_new_tokens or STRICT_MAX_NEW
        if cfg.task.prompt_format == "chat":
            from kick_core.models import format_chat

            texts = [format_chat(tokenizer, [CHAT_PROMPT.format(question=e.input)], template=cfg.model.chat_template)
                     for e in examples]
        else:
            texts = [STRICT_PROMPT.format(question=e.input) for e in examples]
        return [Prompt(id=e.id, example=e, kind="generate", text=t, max_new_tokens=cap, stop=("\n",))
                for e, t in zip(examples, texts)]

    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
        e = prompt.example
        if cfg.task.protocol == "legacy":
            full = tokenizer.decode(list(output.prompt_ids) + list(output.token_ids), skip_special_tokens=True)
            aliases = list(e.meta["legacy_aliases"])
            return record_fields(prompt, output.text, aliases, {"accuracy": M.legacy_freebase_match(full, aliases)},
                                 flags={"stop_reason": output.stop_reason}, n_new_tokens=len(output.token_ids))
        pred = M.first_sentence(output.text)
        leaked = bool(M.contains_answer(e.input, e.answers))
        contains = M.contains_answer(pred, e.answers)
        scores = {"exact_match": M.exact_match(pred, e.answers), "contains": contains,
                  "contains_excl_leaked": None if leaked else contains}
        return record_fields(prompt, output.text, list(e.answers), scores, prediction=pred,
                             flags={"answer_in_question": leaked, "stop_reason": output.stop_reason},
                             n_new_tokens=len(output.token_ids))

    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]:
        meta: dict[str, Any] = {"example_ids": [r["id"] for r in records]}
        if cfg.task.protocol == "legacy":
            denominator = cfg.task.n_examples or LEGACY_N
            # The original divides the n + 1 evaluated items by n: scale the mean (and its CI) accordingly.
            scale = len(records) / denominator if records else 1.0
            metrics = summarize_metrics(records, self.METRICS, cfg, names=["accuracy"], scale={"accuracy": scale})
            meta.update(n_evaluated=len(records), legacy_denominator=denominator,
                        note="legacy off-by-one: n + 1 questions evaluated, divided by n")
            return metrics, meta
        metrics = summarize_metrics(records, self.METRICS, cfg, names=["exact_match", "contains", "contains_excl_leaked"])
        meta["n_answer_in_question"] = sum(bool(r["flags"].get("answer_in_question")) for r in records)
        return metrics, meta


TASK = FactoidQA()
