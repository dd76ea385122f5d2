"""Who answers judge prompts: an OpenAI-compatible API, a local Hugging Face model, or a rubric callable.

Every backend turns a :class:`JudgeRequest` (chat messages + decoding settings + the raw question and
answers) into a :class:`Completion` (reply text, token usage, the model id that answered). Caching,
rate limiting, re-asking and parsing live in the stage (``stage.py``), not here.

- ``OpenAIJudge`` talks to OpenAI or any server speaking ``POST /v1/chat/completions`` (vLLM, TGI,
  llama.cpp, LiteLLM, Azure-compatible proxies) through the official ``openai`` client, whose own
  retry loop gives exponential backoff with jitter on 408/409/429/5xx, timeouts and dropped
  connections, and honours ``Retry-After``; a 200 whose body is cut off or holds no choices is
  retried here (up to ``max_retries``, backing off). The key comes from the environment at call time.
- ``HFJudge`` runs a local causal LM greedily on the prompt formatted with
  :func:`kick_core.models.format_chat` (device taken from the model; ``device_map='auto'`` works).
- ``RubricJudge`` wraps a plain callable ``(question, answers) -> verdict``; the embedded world's
  deterministic rubric judge plugs in here, with no text to parse.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kick_core.errors import ConfigError, KickError, MissingDependencyError
from kick_core.judge.parse import Verdict

log = logging.getLogger(__name__)

API_KEY_ENV = ("KICK_JUDGE_API_KEY", "OPENAI_API_KEY")


class JudgeAPIError(KickError):
    """A judge request failed after all retries (the item is recorded as failed, not scored)."""


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call: chat messages plus decoding settings; question/answers for rubric judges."""

    messages: tuple[tuple[str, str], ...]
    """(role, content) pairs: system, user, and for a re-ask the failed reply and a follow-up."""
    question: str
    answers: tuple[str, ...]
    temperature: float = 0.0
    max_tokens: int = 1024
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """A judge reply with its token usage and the model id the server reported."""

    text: str
    model: str
    usage: Mapping[str, int] = field(default_factory=dict)
    retries: int = 0
    """Retries this reply needed: HTTP faults (429/5xx, timeouts, dropped connections) and malformed bodies."""
    verdict: Verdict | None = None
    """Set by backends that return scores directly (rubric); the stage then skips parsing."""


class JudgeBackend(Protocol):
    """What the stage asks of a judge backend (``OpenAIJudge``, ``HFJudge``, ``RubricJudge``)."""

    model_id: str
    """The judge model's id: part of the cache key and of the run record."""
    concurrent: bool
    """Whether requests may run in parallel (``max_workers``), else one at a time."""
    remote: bool
    """Whether requests go over the network, so are rate-limited (``requests_per_second``)."""
    cacheable: bool
    """Whether replies go into (and come from) the judge cache."""

    def complete(self, request: JudgeRequest) -> Completion: ...


# -- OpenAI-compatible ----------------------------------------------------------------------------
def _api_key(explicit: str | None, base_url: str | None) -> str:
    key = explicit or next((os.environ[n] for n in API_KEY_ENV if os.environ.get(n)), None)
    if key:
        return key
    if base_url:  # local servers (vLLM, llama.cpp) accept any key unless started with --api-key
        return "EMPTY"
    raise ConfigError(
        "No judge API key: set KICK_JUDGE_API_KEY or OPENAI_API_KEY in the environment (never in a params "
        "file), or set KICK_JUDGE_BASE_URL / base_url to a local OpenAI-compatible server."
    )


class OpenAIJudge:
    """A judge behind an OpenAI-compatible chat-completions endpoint."""

    concurrent = True
    remote = True
    cacheable = True

    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None,
                 max_retries: int = 6, timeout_s: float = 120.0):
        try:
            import openai
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            raise MissingDependencyError("the 'openai' client is needed for the openai judge backend; "
                                         "pip install 'openai>=1.0'.") from e
        self.model_id = model
        self.base_url = base_url
        self.max_retries = max_retries
        self._openai = openai
        self._client = openai.OpenAI(api_key=_api_key(api_key, base_url), base_url=base_url,
                                     max_retries=max_retries, timeout=timeout_s)

    def complete(self, request: JudgeRequest) -> Completion:
        kwargs: dict[str, Any] = dict(
            model=self.model_id,
            messages=[{"role": role, "content": content} for role, content in request.messages],
            temperature=request.temperature,
            max_tokens=request.max_tokens,
        )
        if request.seed is not None:
            kwargs["seed"] = request.seed
        oa = self._openai
        malformed = 0
        while True:
            try:
                raw = self._client.chat.completions.with_raw_response.create(**kwargs)
            except (oa.AuthenticationError, oa.PermissionDeniedError, oa.NotFoundError, oa.BadRequestError) as e:
                # These fail every request alike: stop the stage instead of recording 80 failures.
                raise ConfigError(f"judge endpoint {self.base_url or 'api.openai.com'} refused model "
                                  f"{self.model_id!r}: {e}. Check the model id, key and base URL.") from e
            except oa.APIError as e:  # rate limits, 5xx, timeouts, connection errors after all retries
                raise JudgeAPIError(f"judge request failed after retries: {type(e).__name__}: {e}") from e
            try:  # a 200 can still be broken: a body cut off mid-JSON, or no choices at all
                response = raw.parse()
                if not response.choices:
                    raise ValueError("the reply holds no choices")
                text = response.choices[0].message.content or ""
                break
            except (ValueError, oa.APIResponseValidationError) as e:  # json.JSONDecodeError is a ValueError
                malformed += 1
                if malformed > self.max_retries:
                    raise JudgeAPIError(f"judge reply malformed {malformed} times: {type(e).__name__}: {e}") from e
                log.warning("judge reply malformed (%s: %s); retrying", type(e).__name__, str(e)[:100])
                time.sleep(min(8.0, 0.25 * 2 ** malformed))
        usage = response.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) \
            if response.usage is not None else {}
        return Completion(text=text, model=response.model or self.model_id, usage=usage,
                          retries=int(getattr(raw, "retries_taken", 0)) + malformed)


# -- local Hugging Face model ---------------------------------------------------------------------
class HFJudge:
    """A local causal LM as judge: greedy ``model.generate`` on the chat-formatted judge prompt."""

    concurrent = False
    remote = False
    cacheable = True

    def __init__(self, model: Any, tokenizer: Any = None, *, template: str = "auto"):
        if isinstance(model, str):
            from kick_core.models import load_model

            model, tokenizer = load_model(model)
        if tokenizer is None:
            raise ConfigError("HFJudge needs the model's tokenizer when given a model object.")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.model_id = getattr(model.config, "_name_or_path", "") or type(model).__name__

    def complete(self, request: JudgeRequest) -> Completion:
        import torch

        from kick_core.models import format_chat, model_device

        system = next((c for r, c in request.messages if r == "system"), None)
        turns = [c for r, c in request.messages if r == "user"]
        replies = [c for r, c in request.messages if r == "assistant"]
        prompt = format_chat(self.tokenizer, turns, replies, template=self.template, system=system)
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=True).input_ids
        limit = getattr(self.model.config, "max_position_embeddings", None)
        max_new = request.max_tokens
        if limit is not None:
            max_new = min(max_new, limit // 2)  # the prompt always keeps at least half the context
            keep = limit - max_new
            if ids.shape[1] > keep:
                # The instructions and the verdict format come last in every judge prompt, so cut the front.
                log.warning("judge prompt of %d tokens cut to its last %d to fit %s's context of %d",
                            ids.shape[1], keep, self.model_id, limit)
                ids = ids[:, -keep:]
        ids = ids.to(model_device(self.model))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=max_new, pad_token_id=pad)
        new = out[0, ids.shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        n_in, n_out = int(ids.shape[1]), int(new.shape[0])
        return Completion(text=text, model=self.model_id,
                          usage={"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out})


# -- rubric callable ------------------------------------------------------------------------------
RubricFn = Callable[[str, Sequence[str]], Any]


def _as_verdict(value: Any, criteria: Sequence[str], n_answers: int) -> Verdict:
    if isinstance(value, Verdict):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == n_answers:
        out = []
        for v in value:
            out.append(dict(v) if isinstance(v, Mapping) else {criteria[0]: float(v)})
        return Verdict(tuple(out))
    raise TypeError(f"a rubric judge must return a Verdict or {n_answers} scores (numbers or "
                    f"{{criterion: score}} dicts), got {value!r}")


class RubricJudge:
    """A callable ``(question, answers) -> verdict`` as judge (e.g. the embedded world's rubric).

    The callable returns a :class:`Verdict`, or one score per answer (a number, or a
    ``{criterion: score}`` dict for summarisation). Its reply text is the verdict as JSON.
    """

    concurrent = False
    remote = False
    cacheable = False  # cheap and deterministic; caching would serve stale verdicts after a rubric change

    def __init__(self, fn: RubricFn, *, name: str = "rubric", criteria: Sequence[str] = ("score",)):
        if not callable(fn):
            raise ConfigError(f"the rubric judge must be a callable (question, answers) -> verdict, got {fn!r}")
        self.fn, self.model_id, self.criteria = fn, name, tuple(criteria)

    def complete(self, request: JudgeRequest) -> Completion:
        verdict = _as_verdict(self.fn(request.question, request.answers), self.criteria, len(request.answers))
        return Completion(text=json.dumps(verdict.to_json()), model=self.model_id, verdict=verdict)
