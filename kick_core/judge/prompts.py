"""Judge prompts: the original FastChat-style pairwise prompts (legacy) and structured ones (strict).

Legacy prompts are loaded verbatim from the shipped ``kick_core/data/judge/<task>/judge_prompts.jsonl``
and ``judge_reviewers.jsonl`` (copies of the study's ``table/prompt.jsonl`` / ``json_utils/prompt.jsonl``),
and chosen by question category exactly as the original ``gen_prompt`` did: the first reviewer
whose ``category`` equals the question's, else reviewer 0 ("general"). No Vicuna-80 question has
category "general", so every non-coding, non-math question falls back to the general prompt.

Strict prompts ask for a machine-checkable verdict: a JSON object with named fields (pairwise, and
single-answer summarisation) or MT-Bench's ``[[rating]]`` (single-answer instruction following,
FastChat ``llm_judge`` prompt "single-v1", which needs no reference answer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from kick_core.errors import ConfigError

CRITERIA = {
    "instruction": ("score",),
    "summarisation": ("coherence", "consistency", "fluency", "relevance"),
}
"""Criterion names per task, in the order the prompts list them."""

_DATA_DIRS = {"instruction": "vicuna80", "summarisation": "summarisation"}


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt: system message, user template and the verdict format it asks for.

    ``output_format`` is one of ``legacy_pair`` (first line "a b"), ``legacy_summary`` (four lines
    "a b"), ``json_pair``, ``json_single`` or ``rating`` (``[[r]]``); :mod:`kick_core.judge.parse`
    dispatches on it.
    """

    name: str
    system: str
    template: str
    output_format: str
    criteria: tuple[str, ...]
    defaults: Mapping[str, str] = field(default_factory=dict)
    reviewer_id: int | None = None
    """Legacy only: the 1-based reviewer index the original wrote into each judgment."""

    @property
    def n_answers(self) -> int:
        """2 for pairwise prompts, 1 for single-answer grading."""
        return 1 if self.output_format in ("json_single", "rating") else 2

    def render(self, question: str, answers: Sequence[str]) -> str:
        """The user message for `question` and the answers in prompt order (Assistant 1 first)."""
        if len(answers) != self.n_answers:
            raise ValueError(f"prompt {self.name!r} takes {self.n_answers} answer(s), got {len(answers)}")
        if self.n_answers == 1:
            return self.template.format(question=question, answer=answers[0], **self.defaults)
        return self.template.format(question=question, answer_1=answers[0], answer_2=answers[1], **self.defaults)

    def __hash__(self) -> int:  # defaults is a dict, so the generated hash would fail
        return hash((self.name, self.template_hash))

    @property
    def template_hash(self) -> str:
        """sha256 of everything that shapes the request; part of every cache key."""
        blob = json.dumps([self.system, self.template, dict(self.defaults), self.output_format, self.criteria])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- legacy ---------------------------------------------------------------------------------------
def _read_jsonl(task: str, name: str) -> list[dict]:
    text = (resources.files("kick_core") / "data" / "judge" / _DATA_DIRS[task] / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@cache
def legacy_files(task: str) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """The shipped (prompt records, reviewer records) of the original judge for `task`."""
    if task not in _DATA_DIRS:
        raise ConfigError(f"judge task={task!r} has no legacy prompts; use one of {', '.join(_DATA_DIRS)}.")
    return tuple(_read_jsonl(task, "judge_prompts.jsonl")), tuple(_read_jsonl(task, "judge_reviewers.jsonl"))


def legacy_prompt(task: str, category: str) -> JudgePrompt:
    """The original prompt for a question of `category`, selected as the original ``gen_prompt`` did."""
    prompts, reviewers = legacy_files(task)
    reviewer_idx = 0  # default to the general reviewer (index 0), as the original
    for idx, reviewer in enumerate(reviewers):
        if reviewer["category"] == category:
            reviewer_idx = idx
            break
    prompt_id = reviewers[reviewer_idx]["prompt_id"]
    record = prompts[prompt_id - 1]
    if record["prompt_id"] != prompt_id:  # the original asserted this; a corrupted data file breaks it
        raise ConfigError(f"judge_prompts.jsonl for {task!r} is out of order at prompt_id {prompt_id}.")
    return JudgePrompt(
        name=f"legacy-{task}-{record['category']}",
        system=record["system_prompt"],
        template=record["prompt_template"],
        output_format="legacy_summary" if task == "summarisation" else "legacy_pair",
        criteria=CRITERIA[task],
        defaults=dict(record["defaults"]),
        reviewer_id=reviewer_idx + 1,
    )


# -- strict ---------------------------------------------------------------------------------------
_PAIR_FRAME = (
    "[{label}]\n{{question}}\n\n"
    "[The Start of Assistant 1's {kind}]\n{{answer_1}}\n[The End of Assistant 1's {kind}]\n\n"
    "[The Start of Assistant 2's {kind}]\n{{answer_2}}\n[The End of Assistant 2's {kind}]\n\n[System]\n"
)
_NO_BIAS = (
    "Be impartial: the order in which the two {things} are presented must not affect your judgment, and "
    "length is not a merit in itself."
)
_STRICT_PAIR_INSTRUCTION = _PAIR_FRAME.format(label="Question", kind="Answer") + (
    "Please rate the helpfulness, relevance, accuracy, level of detail and factual correctness of the two "
    "answers to the question above. Each assistant receives one overall score from 1 to 10, where a higher "
    "score indicates better overall performance. " + _NO_BIAS.format(things="answers") + "\n"
    "First give a brief explanation. Then end your reply with the verdict as one JSON object on its own "
    "line, with nothing after it, in exactly this form:\n"
    '{{"assistant_1": <score 1-10>, "assistant_2": <score 1-10>}}'
)
_SUMMARY_JSON = '{{"coherence": <1-10>, "consistency": <1-10>, "fluency": <1-10>, "relevance": <1-10>}}'
_STRICT_PAIR_SUMMARY = _PAIR_FRAME.format(label="Story", kind="Summary") + (
    "Please rate the two summaries of the story above for coherence, consistency (faithfulness to the "
    "story), fluency and relevance, each on a scale from 1 to 10, where a higher score is better. "
    + _NO_BIAS.format(things="summaries") + "\n"
    "First give a brief explanation. Then end your reply with the verdict as one JSON object on its own "
    "line, with nothing after it, in exactly this form:\n"
    '{{"assistant_1": ' + _SUMMARY_JSON + ', "assistant_2": ' + _SUMMARY_JSON + "}}"
)
_STRICT_SINGLE_SUMMARY = (
    "[Story]\n{question}\n\n[The Start of Assistant's Summary]\n{answer}\n[The End of Assistant's Summary]\n\n"
    "[System]\nPlease act as an impartial judge and rate the summary of the story above for coherence, "
    "consistency (faithfulness to the story), fluency and relevance, each on a scale from 1 to 10, where a "
    "higher score is better. First give a brief explanation. Then end your reply with the verdict as one "
    "JSON object on its own line, with nothing after it, in exactly this form:\n" + _SUMMARY_JSON
)
# FastChat llm_judge data/judge_prompts.jsonl, "single-v1" (MT-Bench single-answer grading), verbatim.
MT_BENCH_SINGLE_V1 = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an "
    "AI assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your "
    "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
    '"[[rating]]", for example: "Rating: [[5]]".\n\n[Question]\n{question}\n\n'
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)

STRICT_PROMPTS: dict[tuple[str, str], JudgePrompt] = {
    ("instruction", "pairwise"): JudgePrompt(
        "strict-instruction-pairwise",
        "You are a helpful and precise assistant for checking the quality of the answer.",
        _STRICT_PAIR_INSTRUCTION, "json_pair", CRITERIA["instruction"]),
    ("summarisation", "pairwise"): JudgePrompt(
        "strict-summarisation-pairwise",
        "You are a helpful and precise assistant for checking the quality of summaries.",
        _STRICT_PAIR_SUMMARY, "json_pair", CRITERIA["summarisation"]),
    ("instruction", "single"): JudgePrompt(
        "mt-bench-single-v1", "You are a helpful assistant.", MT_BENCH_SINGLE_V1, "rating", CRITERIA["instruction"]),
    ("summarisation", "single"): JudgePrompt(
        "strict-summarisation-single", "You are a helpful assistant.",
        _STRICT_SINGLE_SUMMARY, "json_single", CRITERIA["summarisation"]),
}
"""Strict prompts by (task, mode)."""

REASK = {
    "json_pair": "Your reply did not end with the required JSON verdict. Reply with only that JSON object.",
    "json_single": "Your reply did not end with the required JSON verdict. Reply with only that JSON object.",
    "rating": 'Your reply did not contain the rating in the required format. Reply with only "Rating: [[r]]".',
}
"""Follow-up user message when a strict reply does not parse (the failed reply stays in the chat)."""


def select_prompt(task: str, protocol: str, mode: str, category: str) -> JudgePrompt:
    """The prompt for one item: legacy by category as the original, strict by (task, mode)."""
    if protocol == "legacy":
        return legacy_prompt(task, category)
    return STRICT_PROMPTS[(task, mode)]
