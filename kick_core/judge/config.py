"""The judge stage's own config: which judge, how it is asked, and how failures are handled.

The judge runs *after* generation and separately from it, so its settings live here rather than in
:class:`kick_core.config.RunConfig`. Values not given fall back to the environment
(``KICK_JUDGE_BASE_URL``, ``KICK_JUDGE_MODEL``), then to the protocol defaults below. The API key is
deliberately *not* a field: it is read from ``KICK_JUDGE_API_KEY`` or ``OPENAI_API_KEY`` by the
backend at call time, so it can never end up in a params file, a notebook or a run record.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from kick_core.checks import check_choice, check_positive
from kick_core.config import JUDGE_MODES
from kick_core.errors import ConfigError

JUDGE_TASKS = ("instruction", "summarisation")
JUDGE_PROTOCOLS = ("legacy", "strict")
JUDGE_BACKENDS = ("openai", "hf", "rubric")

DEFAULT_JUDGE_MODEL = "gpt-4-0613"
"""A pinned (dated) GPT-4 snapshot: the original called the unpinned alias ``gpt-4`` (spring 2023)."""

LEGACY_TEMPERATURE = {"instruction": 0.2, "summarisation": 0.1}
"""The temperatures the original judge scripts actually sent (docs/PROTOCOL.md §5.4, §5.5)."""


@dataclass(frozen=True)
class JudgeConfig:
    """How to judge one task's answers; frozen, validated on construction, recorded with the results."""

    task: str = "instruction"
    """instruction (Vicuna-80 style, one overall score) | summarisation (four criteria)."""
    protocol: str = "strict"
    """legacy: the original prompts, parser and aggregation | strict: structured verdicts, both orders."""
    mode: str = "pairwise"
    """pairwise: candidate vs reference answer | single: MT-Bench single-answer grading (strict only)."""
    backend: str = "openai"
    """openai (any OpenAI-compatible server) | hf (a local Hugging Face model) | rubric (a callable)."""
    model: str | None = None
    """Judge model id; None = $KICK_JUDGE_MODEL, else DEFAULT_JUDGE_MODEL. For 'hf', a hub id or path."""
    base_url: str | None = None
    """OpenAI-compatible endpoint; None = $KICK_JUDGE_BASE_URL, else the OpenAI API."""
    temperature: float | None = None
    """None = 0 (strict) or the original script's value (legacy: 0.2 instruction, 0.1 summarisation)."""
    max_tokens: int = 1024
    """Cap on the judge's reply, as in the original scripts."""
    seed: int | None = 0
    """Sent to APIs that honour it (OpenAI, vLLM); part of the cache key. None = not sent."""
    both_orders: bool | None = None
    """Judge reference-first and candidate-first and average; None = True in strict, False in legacy."""
    max_parse_retries: int = 2
    """Strict: re-ask this many times when a reply does not parse (legacy never re-asks)."""
    max_failure_rate: float = 0.05
    """Strict: the stage raises when more than this share of items has no parsed verdict."""
    n_repeats: int = 1
    """Independent judgments per item (>= 2 measures the judge-noise floor; repeats bypass the cache)."""
    requests_per_second: float = 2.0
    """Client-side rate limit over all workers."""
    max_workers: int = 4
    """Concurrent requests."""
    max_retries: int = 6
    """HTTP retries (exponential backoff, Retry-After honoured) on 408/409/429/5xx, timeouts, resets."""
    timeout_s: float = 120.0
    """Per-request timeout in seconds."""

    def __post_init__(self) -> None:
        check_choice(self.task, JUDGE_TASKS, "judge task")
        check_choice(self.protocol, JUDGE_PROTOCOLS, "judge protocol")
        check_choice(self.mode, JUDGE_MODES, "judge mode")
        check_choice(self.backend, JUDGE_BACKENDS, "judge backend")
        if self.protocol == "legacy":
            if self.mode != "pairwise":
                raise ConfigError("judge protocol 'legacy' only has the original pairwise prompts; "
                                  "use protocol='strict' for mode='single'.")
            if self.both_orders:
                raise ConfigError("judge protocol 'legacy' always puts the reference first (Assistant 1); "
                                  "use protocol='strict' for both_orders=True.")
        if self.mode == "single" and self.both_orders:
            raise ConfigError("mode='single' grades one answer at a time, so both_orders has no meaning; drop it.")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise ConfigError(f"judge temperature={self.temperature!r} must be in [0, 2].")
        check_positive(self.max_tokens, "judge max_tokens")
        check_positive(self.max_parse_retries, "max_parse_retries", zero=True)
        check_positive(self.n_repeats, "n_repeats")
        check_positive(self.max_workers, "max_workers")
        check_positive(self.max_retries, "max_retries", zero=True)
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigError(f"max_failure_rate={self.max_failure_rate!r} must be in [0, 1] (a share of items).")
        if not self.requests_per_second > 0:
            raise ConfigError(f"requests_per_second={self.requests_per_second!r} must be > 0.")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s={self.timeout_s!r} must be > 0.")

    # -- resolved values ------------------------------------------------------------------------
    @property
    def resolved_model(self) -> str:
        """The judge model id actually used (field, then $KICK_JUDGE_MODEL, then the pinned default)."""
        return self.model or os.environ.get("KICK_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL

    @property
    def resolved_base_url(self) -> str | None:
        """The endpoint actually used (field, then $KICK_JUDGE_BASE_URL; None = the OpenAI API)."""
        return self.base_url or os.environ.get("KICK_JUDGE_BASE_URL") or None

    @property
    def resolved_temperature(self) -> float:
        """0 in strict; the original script's temperature in legacy; or the field when set."""
        if self.temperature is not None:
            return self.temperature
        return LEGACY_TEMPERATURE[self.task] if self.protocol == "legacy" else 0.0

    @property
    def resolved_both_orders(self) -> bool:
        """Whether both answer orders are judged (default: strict pairwise yes, legacy no)."""
        if self.both_orders is not None:
            return self.both_orders
        return self.protocol == "strict" and self.mode == "pairwise"

    def to_record(self) -> dict[str, Any]:
        """The config with every default resolved, for the run record (never holds a key)."""
        out = asdict(self)
        out.update(model=self.resolved_model, base_url=self.resolved_base_url if self.backend == "openai" else None,
                   temperature=self.resolved_temperature, both_orders=self.resolved_both_orders)
        return out
