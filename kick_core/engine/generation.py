"""Batched greedy (or seeded sampled) generation with a KV cache and retirement of finished rows.

Why not ``model.generate``: it handles left padding, the cache and stop strings, but it keeps a
finished row in the batch until the *longest* row is done and takes one ``max_new_tokens`` per
call. The study's workloads are exactly the bad case: Factoid-QA allows 2x the prompt length per
prompt while most answers stop at the first newline. This loop (~100 lines) drops finished rows
from the batch and the cache after every step, and takes a per-prompt budget.

Per step: one forward of the live rows on ``[rows, 1]`` new tokens; prompts are left-padded, the
attention mask covers the pads and position ids count real tokens, so every row computes what it
would compute alone (tested against one-at-a-time decoding). Stops: EOS ids, any vocabulary token
whose text contains a stop string (pre-computed once per tokenizer and stop set), and for stop
strings spread over several tokens a check of the decoded tail. A stop string only counts once some
non-whitespace text precedes it (a leading newline does not end an answer). The returned text
ends before the stop string; the token ids include the stopping token.

Sampling draws one uniform number per row and step from a per-prompt generator seeded with
``(seed, prompt index)``, so a sampled output does not depend on how prompts were batched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from kick_core.engine.batching import cache_kwargs, left_pad, positions_after, token_batches
from kick_core.log import progress as progress_bar
from kick_core.models import model_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One generated continuation."""

    text: str
    """Decoded new tokens (special tokens skipped), cut before the first stop string."""
    prompt_ids: tuple[int, ...]
    """The prompt as tokenised (special tokens included)."""
    token_ids: tuple[int, ...]
    """Generated token ids, including the token that triggered a stop."""
    stop_reason: str
    """'eos', 'stop' (a stop string) or 'length'."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; ``None`` in :func:`generate` means greedy."""

    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0


@lru_cache(maxsize=16)
def _stop_token_ids(tokenizer, stops: tuple[str, ...]) -> frozenset[int]:
    """Vocabulary ids whose decoded text contains one of ``stops`` (e.g. every token holding a newline)."""
    if not stops:
        return frozenset()
    ids = range(len(tokenizer))
    texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
    return frozenset(i for i, t in zip(ids, texts) if any(s in t for s in stops))


def _eos_ids(model: nn.Module, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        ids.update(value if isinstance(value, (list, tuple)) else [value] if value is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string that follows some non-whitespace text."""
    body = text.lstrip()
    lead = len(text) - len(body)
    hits = []
    for s in stops:
        at = body.find(s)
        while at == 0:  # nothing before this occurrence yet: look for the next one
            at = body.find(s, 1)
        if at > 0:
            hits.append(at)
    return (text[: lead + min(hits)], True) if hits else (text, False)


def _pick(logits: torch.Tensor, sampling: Sampling | None, generators: list[torch.Generator]) -> torch.Tensor:
    """Next token per row: argmax, or inverse-CDF sampling with temperature and nucleus (top_p)."""
    if sampling is None:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p > sampling.top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(1, order, sorted_p)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    u = torch.stack([torch.rand((), generator=g) for g in generators]).to(probs.device)
    idx = torch.searchsorted(probs.cumsum(dim=-1), u[:, None]).clamp(max=probs.shape[-1] - 1)
    return idx[:, 0]


@torch.no_grad()
def generate(model: nn.Module, tokenizer, prompts: Sequence[str], *, max_new_tokens: int | Sequence[int] = 32,
             stop: Sequence[str] = (), batch_tokens: int = 16384, sampling: Sampling | None = None,
             progress: bool = True, on_result: Callable[[int, Generation], None] | None = None,
             row_seeds: Sequence[int] | None = None) -> list[Generation]:
    """Generate a continuation for every prompt; outputs come back in input order.

    Args:
        model: any Hugging Face causal LM (inputs go to ``models.model_device(model)``).
        tokenizer: its tokenizer; prompts are encoded with its default special tokens.
        prompts: the prompt strings.
        max_new_tokens: one cap for all, or one per prompt (legacy Factoid-QA: 2x the prompt length).
        stop: strings that end a generation (e.g. ``("\\n",)``); EOS always does.
        batch_tokens: budget of ``rows * (prompt + new tokens)`` per batch.
        sampling: None for greedy, else temperature / top_p / seed.
        progress: show a progress bar over prompts.
        on_result: called as ``on_result(prompt_index, generation)`` as each prompt finishes.
        row_seeds: per-prompt sampling seeds (default ``sampling.seed`` mixed with the prompt index);
            pass stable ones when the same prompt may come at another index (a resumed run).
    """
    device = model_device(model)
    n = len(prompts)
    budgets = [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
    if len(budgets) != n:
        raise ValueError(f"got {len(budgets)} max_new_tokens for {n} prompts; give one int or one per prompt")
    if n == 0:
        return []
    stops = tuple(stop)
    encoded = [list(x) for x in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
    stop_ids = _stop_token_ids(tokenizer, stops)
    eos = _eos_ids(model, tokenizer)
    multi_token_stops = [s for s in stops if len(s) > 1]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos), 0)
    results: list[Generation | None] = [None] * n
    bar = progress_bar(total=n, enabled=progress, desc="generating", unit="prompt")

    def finish(i: int, new: list[int], reason: str) -> None:
        text, cut = _cut(tokenizer.decode(new, skip_special_tokens=True), stops)
        if reason == "length" and cut:
            reason = "stop"
        results[i] = Generation(text=text, prompt_ids=tuple(encoded[i]), token_ids=tuple(new), stop_reason=reason)
        if on_result is not None:
            on_result(i, results[i])
        bar.update(1)

    from transformers import DynamicCache

    for batch in token_batches([len(e) for e in encoded], batch_tokens, extra=budgets):
        live = list(batch)
        new_tokens: dict[int, list[int]] = {i: [] for i in batch}
        for i in [i for i in batch if budgets[i] == 0]:
            finish(i, [], "length")
        live = [i for i in live if budgets[i] > 0]
        if not live:
            continue
        generators = {i: torch.Generator().manual_seed(row_seeds[i] if row_seeds is not None else sampling.seed * 1_000_003 + i)
                      for i in live} if sampling else {}
        ids, mask = left_pad([encoded[i] for i in live], pad, device)
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions_after(None, mask), use_cache=True,
                    logits_to_keep=1, **cache_kwargs(model, cache))
        pos = mask.sum(dim=1, keepdim=True)  # position id of the next token
        while live:
            nxt = _pick(out.logits[:, -1, :], sampling, [generators[i] for i in live] if sampling else [])
            keep: list[int] = []
            for r, (i, tok) in enumerate(zip(live, nxt.tolist())):
                new_tokens[i].append(tok)
                reason = None
                if tok in eos:
                    reason = "eos"
                elif (tok in stop_ids or (multi_token_stops and any(
                        s in tokenizer.decode(new_tokens[i][-8:]) for s in multi_token_stops))) \
                        and _cut(tokenizer.decode(new_tokens[i], skip_special_tokens=True), stops)[1]:
                    reason = "stop"
                elif len(new_tokens[i]) >= budgets[i]:
                    reason = "length"
                if reason is None:
                    keep.append(r)
                else:
                    finish(i, new_tokens[i], reason)
            if not keep:
                break
            if len(keep) < len(live):  # retire finished rows from the batch and the cache
                rows = torch.tensor(keep)  # a CPU index works on every device (device_map may split the cache)
                cache.batch_select_indices(rows)
                mask, pos, nxt = mask[rows.to(mask.device)], pos[rows.to(pos.device)], nxt[rows.to(nxt.device)]
                live = [live[r] for r in keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, use_cache=True,
                        **cache_kwargs(model, cache))
            pos = pos + 1
    bar.close()
    return results  # type: ignore[return-value]
