"""The LLM-judge stage for the judged tasks (summarisation, instruction following).

Runs after generation, over records of (question, reference answer, candidate answer, category)::

    from kick_core.judge import JudgeConfig, judge_records, strict_table
    run = judge_records(records, JudgeConfig(task="instruction", protocol="strict"))
    strict_table(run.items)["all"]["score"].mean

``BACKENDS`` maps backend names to their classes; see ``README.md`` beside this file.
"""

from __future__ import annotations

from kick_core.judge.aggregate import (
    JudgeFailureError,
    LegacyScore,
    NoiseFloor,
    StrictScore,
    compare,
    legacy_aggregate,
    legacy_table,
    noise_floor,
    noise_floor_from_items,
    read_jsonl,
    strict_aggregate,
    strict_table,
)
from kick_core.judge.backends import (
    Completion,
    HFJudge,
    JudgeAPIError,
    JudgeBackend,
    JudgeRequest,
    OpenAIJudge,
    RubricJudge,
)
from kick_core.judge.reply_cache import JudgeCache, cache_key
from kick_core.judge.config import DEFAULT_JUDGE_MODEL, JudgeConfig
from kick_core.judge.parse import (
    Verdict,
    parse_legacy_instruction,
    parse_legacy_summary,
    parse_rating,
    parse_verdict,
)
from kick_core.judge.prompts import CRITERIA, STRICT_PROMPTS, JudgePrompt, legacy_prompt, select_prompt
from kick_core.judge.stage import JudgeRun, build_records, judge_records, make_backend

BACKENDS = {
    "openai": OpenAIJudge,
    "hf": HFJudge,
    "rubric": RubricJudge,
}
"""Judge backends by the name ``JudgeConfig.backend`` uses."""

__all__ = [
    "BACKENDS", "CRITERIA", "DEFAULT_JUDGE_MODEL", "STRICT_PROMPTS", "Completion", "HFJudge", "JudgeAPIError",
    "JudgeBackend", "JudgeCache", "JudgeConfig", "JudgeFailureError", "JudgePrompt", "JudgeRequest", "JudgeRun", "LegacyScore",
    "NoiseFloor", "OpenAIJudge", "RubricJudge", "StrictScore", "Verdict", "build_records", "cache_key", "compare",
    "judge_records", "legacy_aggregate", "legacy_prompt", "legacy_table", "make_backend", "noise_floor",
    "noise_floor_from_items", "parse_legacy_instruction", "parse_legacy_summary", "parse_rating", "parse_verdict",
    "read_jsonl", "select_prompt", "strict_aggregate", "strict_table",
]
