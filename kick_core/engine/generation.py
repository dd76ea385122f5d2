"""Batched greedy (or seeded sampled) generation with a KV cache and retirement of finished rows.

Why not ``model.generate``: it handles left padding, the cache and stop strings, but it keeps a
finished row in the batch until the *longest* row is done and takes one ``max_new_tokens`` per
call. The study's workloads are exactly the bad case: Factoid-QA allows 2x the prompt length per
prompt while most answers stop at the first newline. This loop retires finished rows from the
batch and the cache, and takes a per-prompt budget.

Prefill (:func:`_prefill`): the prefix every prompt of a batch shares (the task's template) runs
once; the rest runs in groups of similar length; all of it lands in one preallocated cache
(:class:`~kick_core.engine.kv_cache.PreallocatedLayer`, written in place instead of concatenated
at every step). Per step: one forward of all cache rows on ``[rows, 1]`` new tokens; the attention
mask covers the pads and position ids count real tokens, so every row computes what it would
compute alone (tested against one-at-a-time decoding). Finished rows are dropped in bulk
(:data:`COMPACT_FRACTION`). Stops: EOS ids, any vocabulary token
whose text contains a stop string (pre-computed once per tokenizer and stop set), and for stop
strings spread over several tokens a check of the decoded tail. A stop string only counts once some
non-whitespace text precedes it (a leading newline does not end an answer). The returned text
ends before the stop string; the token ids include the stopping token.

Speed against one-at-a-time ``model.generate``, and what bounds it: ``bench/bench_engine.py``.

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

PREFILL_TOKENS = 1024
"""Padded tokens per prefill forward. Prefill is compute-bound, so a batch's prompts (sorted by length)
go through in groups of similar length rather than all padded to the longest (benchmark, 48 prompts:
0.22 s instead of 0.34 s, 0.19 s with the shared prefix run once; 512-2048 are within noise).
Decoding, whose per-step cost (reading the weights, fixed overhead) is shared by the rows, then runs
every row of the batch at once."""
COMPACT_FRACTION = 0.25
"""Finished rows stay in the cache (re-fed their last token, position frozen) until they are this
fraction of its rows; then they are dropped at once. Dropping copies the whole cache: doing it at every finished
row made the benchmark's legacy-budget run 2.85 s instead of 2.50 s (0.5: 2.63 s)."""


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


def _prefill_groups(lengths: Sequence[int], budget: int) -> list[range]:
    """Consecutive index ranges with ``len(range) * max(lengths in it)`` within ``budget`` (lengths ascending)."""
    groups, start = [], 0
    for i, n in enumerate(lengths):
        if i > start and (i + 1 - start) * n > budget:
            groups.append(range(start, i))
            start = i
    groups.append(range(start, len(lengths)))
    return groups


def _shared_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix common to all ``seqs``, leaving each at least one token of its own."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        n = next((j for j in range(n) if s[j] != first[j]), n)
    return max(n, 0)


def _prefill(model: nn.Module, seqs: Sequence[Sequence[int]], pad: int, device: torch.device, capacity: int):
    """Run the prompts ``seqs`` (ascending length); return last-position logits, the KV cache and the mask.

    Returns ``(logits (rows, vocab), cache, mask (rows, widest))``. With plain full-attention layers:

    * the token prefix all prompts share (the task's prompt template) runs once, and every row's
      cache starts with a copy of it;
    * the rest of each prompt runs in groups of similar length (:data:`PREFILL_TOKENS`), left-padded
      after the prefix;
    * every group writes, right-aligned, into one :class:`PreallocatedLayer` per layer sized for
      ``capacity`` positions (the first group, run before the shapes are known, is copied in).

    A row of the cache then reads ``[gap | prefix | pad | own tokens]``; the mask hides the gap and the
    pad and position ids count real tokens, so each row computes what it would compute alone::

        prefix = "<s> Q :"      rows "<s> Q : a b c ?" (group 2), "<s> Q : d ?" (group 1)
        group 2 row:   [<s> Q :] [a b c ?]          mask 1 1 1 1 1 1 1
        group 1 row:   0 0 [<s> Q :] [d ?]          mask 0 0 1 1 1 1 1  (gap before the prefix)

    Other caches (sliding windows) get one left-padded forward of all rows and stay as the model built them.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    from kick_core.engine.kv_cache import PreallocatedLayer

    cache = DynamicCache(config=model.config)
    plain = bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)
    if not plain:
        ids, mask = left_pad(seqs, pad, device)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions_after(None, mask), use_cache=True,
                    logits_to_keep=1, **cache_kwargs(model, cache))
        return out.logits[:, -1, :], cache, mask
    n_prefix = _shared_prefix(seqs) if len(seqs) > 1 else 0
    if n_prefix:
        prefix = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([seqs[0][:n_prefix]], device=device), use_cache=True, logits_to_keep=1,
              **cache_kwargs(model, prefix))
        prefix_kv = [(layer.keys, layer.values) for layer in prefix.layers]
    width = max(len(s) for s in seqs)
    logits = []
    full_mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    buffers: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: (rows, heads, capacity, head_dim) keys, values
    for g in _prefill_groups([len(s) for s in seqs], PREFILL_TOKENS):
        ids, mask = left_pad([seqs[i][n_prefix:] for i in g], pad, device)
        past = torch.ones((len(g), n_prefix), dtype=mask.dtype, device=device)
        gap = width - n_prefix - ids.shape[1]  # this group's first column in the batch cache
        part = DynamicCache(config=model.config)
        if buffers:  # write straight into the batch cache: no copy, no concatenation
            part.layers = [PreallocatedLayer.over(k[g.start: g.stop, :, gap:], v[g.start: g.stop, :, gap:])
                           for k, v in buffers]
        if n_prefix:
            for layer, (k, v) in zip(part.layers, prefix_kv):
                layer.update(k.expand(len(g), -1, -1, -1), v.expand(len(g), -1, -1, -1))
        positions = positions_after(past, mask)
        mask = torch.cat([past, mask], dim=1)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                    **cache_kwargs(model, part))
        logits.append(out.logits[:, -1, :])
        full_mask[g.start: g.stop, gap:] = mask
        if not buffers:  # the first group tells the shapes: allocate, and copy that group in
            for layer in part.layers:
                k, v = layer.keys, layer.values
                buffers.append((k.new_empty((len(seqs), k.shape[1], capacity, k.shape[-1])),
                                v.new_empty((len(seqs), v.shape[1], capacity, v.shape[-1]))))
                buffers[-1][0][g.start: g.stop, :, gap:width] = k
                buffers[-1][1][g.start: g.stop, :, gap:width] = v
        for k, v in buffers:  # masked, but must be finite: a NaN times a zero weight is still NaN
            k[g.start: g.stop, :, :gap] = 0
            v[g.start: g.stop, :, :gap] = 0
    cache.layers = [PreallocatedLayer.over(k, v, width) for k, v in buffers]
    return torch.cat(logits), cache, full_mask


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

    for batch in token_batches([len(e) for e in encoded], batch_tokens, extra=budgets):
        for i in [i for i in batch if budgets[i] == 0]:
            finish(i, [], "length")
        live = sorted((i for i in batch if budgets[i] > 0), key=lambda i: len(encoded[i]))
        if not live:
            continue
        generators = {i: torch.Generator().manual_seed(row_seeds[i] if row_seeds is not None else sampling.seed * 1_000_003 + i)
                      for i in live} if sampling else {}
        new_tokens: dict[int, list[int]] = {i: [] for i in live}
        logits, cache, mask = _prefill(model, [encoded[i] for i in live], pad, device,
                                       capacity=max(len(encoded[i]) for i in live) + max(budgets[i] for i in live))
        kwargs = cache_kwargs(model, cache)
        slots = list(range(len(live)))  # cache row of each live prompt; finished rows stay until a compaction
        pos = mask.sum(dim=1, keepdim=True)  # position id of each row's next token
        advance = torch.ones_like(pos)  # 0 for finished rows still in the cache: their positions stay put
        step = torch.full_like(pos, pad)  # the token each cache row is fed next
        while True:
            if len(slots) < logits.shape[0]:
                logits = logits[torch.tensor(slots, device=logits.device)]
            nxt = _pick(logits, sampling, [generators[i] for i in live] if sampling else [])
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
            if len(keep) < len(live):
                kept = set(keep)
                gone = [slots[r] for r in range(len(live)) if r not in kept]
                live, slots = [live[r] for r in keep], [slots[r] for r in keep]
                nxt = nxt[torch.tensor(keep, device=nxt.device)]
                advance[torch.tensor(gone, device=advance.device)] = 0
                if pos.shape[0] - len(slots) >= COMPACT_FRACTION * pos.shape[0]:  # retire finished rows
                    rows = torch.tensor(slots)  # a CPU index works on every device (device_map may split the cache)
                    cache.batch_select_indices(rows)
                    mask, pos, step = mask[rows.to(mask.device)], pos[rows.to(pos.device)], step[rows.to(step.device)]
                    advance = torch.ones_like(pos)
                    slots = list(range(len(slots)))
            step[torch.tensor(slots, device=step.device), 0] = nxt.to(step.device)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(input_ids=step, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs)
            logits = out.logits[:, -1, :]
            pos = pos + advance
    bar.close()
    return results  # type: ignore[return-value]
