"""Log-likelihood of continuations given a context, for multiple-choice scoring.

Tokenisation follows lm-evaluation-harness: ``context + continuation`` is encoded as a whole and
the continuation is what follows the first ``len(encode(context))`` tokens, so a continuation is
scored as it is tokenised *in context*. Trailing whitespace of the context moves to the
continuation first. Worked example (MMLU)::

    context      = "...\\nAnswer:"          continuations = (" A", " B", " C", " D")
    whole        = [<s>, ..., "Answer", ":", "▁A"]          n_ctx = len(encode(context))
    scored       = log p("▁A" | whole[:n_ctx])               -> read at position n_ctx - 1

Work is shared at two levels, and only the scored positions ever reach the LM head (the base
model runs to hidden states; ``[rows, seq, vocab]`` log-probs are never built):

1. **Group prefix.** Requests with the same ``group`` (e.g. one MMLU subject with its few-shot
   block) share their longest common token prefix. Its KV cache is computed once and every batch
   gets a row-broadcast *view* of it (new keys are concatenated into fresh tensors, so the shared
   cache is never mutated). On a CPU the grouped-query heads are not copied either
   (``batching.cpu_masked_gqa``). A request without a group is
   its own group, so its context is computed once for all of its choices.
2. **Rows.** A choice whose input tokens are a prefix of another choice's (e.g. single-token
   letters after the same context) reads its scores from that row: one row per MMLU question.

Rows are left-padded after the prefix (the mask hides the pad gap; position ids count real
tokens), batched longest first under a token budget, and a batch closes before a row that would be
more than :data:`ROW_PAD` padding: on a CPU a pad costs what a token costs, and one MMLU subject's
rows (a few to a few hundred tokens) padded to the longest were 38 % extra work (570 questions,
SmolLM2: 115.7k tokens instead of 83.7k). Every string is tokenised once, however many choices
share it. :func:`loglikelihood_naive` is the plain per-choice reference that tests and the
benchmark compare against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kick_core.engine.batching import (
    base_model,
    broadcast_rows,
    cache_kwargs,
    cpu_masked_gqa,
    left_pad,
    positions_after,
    token_batches,
    token_logprobs,
)
from kick_core.log import progress as progress_bar
from kick_core.models import model_device

log = logging.getLogger(__name__)

ROW_PAD = 0.2
"""Largest fraction of a scored row that may be left padding (``batching.token_batches(max_pad=...)``).
Measured on 570 MMLU questions (SmolLM2-135M, 2 CPU threads): see ``bench/bench_peers.py``."""


@dataclass(frozen=True)
class ScoreRequest:
    """Score each continuation after ``context``; requests with the same ``group`` share a KV prefix."""

    context: str
    continuations: tuple[str, ...]
    group: str | None = None


@dataclass(frozen=True)
class ScoreResult:
    """Per-continuation summed log-probabilities and token counts for one request."""

    logprobs: tuple[float, ...]
    """Sum of log p(token | everything before it) over each continuation's tokens."""
    n_tokens: tuple[int, ...]
    """Number of tokens of each continuation (as tokenised in context)."""
    n_context_tokens: int
    """Tokens of the context (of the first continuation's split)."""
    greedy_next: int | None
    """Argmax next-token id after the context, i.e. one greedy generated token; None when the
    in-context split differs from ``encode(context)`` (then it is not the prompt's greedy token)."""


def _split_ws(context: str, continuation: str) -> tuple[str, str]:
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n else (context, continuation)


def encode_requests(tokenizer, requests: Sequence[ScoreRequest]):
    """Token ids per (request, choice): whole sequence and context length, plus encode(context) per request."""
    pairs = [_split_ws(r.context, c) for r in requests for c in r.continuations]
    if not pairs:
        return [], [], []
    # Each distinct string once: the choices of a request share their context (and usually its raw form).
    texts = list(dict.fromkeys([p[0] for p in pairs] + [p[0] + p[1] for p in pairs] + [r.context for r in requests]))
    ids = dict(zip(texts, tokenizer(texts, add_special_tokens=True)["input_ids"]))
    ctx_ids = [ids[p[0]] for p in pairs]
    whole_ids = [ids[p[0] + p[1]] for p in pairs]
    raw_ctx = [ids[r.context] for r in requests]
    wholes, n_ctx, k = [], [], 0
    for r in requests:
        w_row, n_row = [], []
        for c in r.continuations:
            whole, n = list(whole_ids[k]), len(ctx_ids[k])
            if n < 1 or n >= len(whole):
                raise ValueError(
                    f"continuation {c!r} has no tokens of its own after context {r.context[-40:]!r} "
                    "(or the context is empty and the tokenizer adds no BOS); every choice must add at least one token."
                )
            w_row.append(whole)
            n_row.append(n)
            k += 1
        wholes.append(w_row)
        n_ctx.append(n_row)
    return wholes, n_ctx, [list(x) for x in raw_ctx]


def _lcp(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


@torch.no_grad()
def loglikelihood(model: nn.Module, tokenizer, requests: Sequence[ScoreRequest], *, batch_tokens: int = 16384,
                  progress: bool = True,
                  on_result: Callable[[int, ScoreResult], None] | None = None) -> list[ScoreResult]:
    """Score every continuation of every request (see the module docstring for how work is shared).

    Args:
        model: any Hugging Face causal LM; inputs go to ``models.model_device(model)``.
        tokenizer: its tokenizer (special tokens are added as the tokenizer does by default).
        requests: contexts with their continuations.
        batch_tokens: budget of one forward batch, counting the shared prefix of every row.
        progress: show a progress bar over requests.
        on_result: called as ``on_result(request_index, result)`` as soon as a request is complete.

    Returns:
        One :class:`ScoreResult` per request, in input order.
    """
    device = model_device(model)
    with cpu_masked_gqa(device):
        return _loglikelihood(model, tokenizer, requests, device, batch_tokens, progress, on_result)


def _loglikelihood(model, tokenizer, requests, device, batch_tokens, progress, on_result) -> list[ScoreResult]:
    base = base_model(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    wholes, n_ctx, raw_ctx = encode_requests(tokenizer, requests)
    results: list[ScoreResult | None] = [None] * len(requests)
    sums = [[0.0] * len(r.continuations) for r in requests]
    greedy: list[int | None] = [None] * len(requests)
    remaining = [len(r.continuations) for r in requests]

    groups: dict[object, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(("g", r.group) if r.group is not None else ("r", i), []).append(i)

    bar = progress_bar(total=len(requests), enabled=progress, desc="scoring", unit="req")
    for members in groups.values():
        inputs = [wholes[i][j][:-1] for i in members for j in range(len(wholes[i]))]
        cap = min(n_ctx[i][j] for i in members for j in range(len(wholes[i]))) - 1
        P = min(_lcp(inputs), cap)
        prefix_cache = None
        if P > 0:
            from transformers import DynamicCache

            prefix = torch.tensor([wholes[members[0]][0][:P]], device=device)
            prefix_cache = DynamicCache(config=model.config)
            base(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True,
                 **cache_kwargs(base, prefix_cache))

        # Unique rows: a choice whose suffix is a prefix of another choice's suffix reads from that row.
        rows: list[list[int]] = []
        reads: list[list[tuple[int, int]]] = []  # per row: (request, choice) pairs scored from it
        for i in members:
            own: list[int] = []
            for j in sorted(range(len(wholes[i])), key=lambda j: -len(wholes[i][j])):
                suffix = wholes[i][j][P:-1]
                host = next((r for r in own if rows[r][: len(suffix)] == suffix), None)
                if host is None:
                    rows.append(suffix)
                    reads.append([])
                    host = len(rows) - 1
                    own.append(host)
                reads[host].append((i, j))

        for batch in token_batches([len(r) for r in rows], batch_tokens, extra=[P] * len(rows), max_pad=ROW_PAD):
            seqs = [rows[r] for r in batch]
            ids, mask = left_pad(seqs, pad, device)
            width = ids.shape[1]
            if prefix_cache is not None:
                past_mask = torch.ones((len(batch), P), dtype=mask.dtype, device=device)
                cache = broadcast_rows(prefix_cache, len(batch))
                out = base(input_ids=ids, attention_mask=torch.cat([past_mask, mask], dim=1),
                           position_ids=positions_after(past_mask, mask), use_cache=True, **cache_kwargs(base, cache))
            else:
                out = base(input_ids=ids, attention_mask=mask, position_ids=positions_after(None, mask), use_cache=False)
            hidden = out.last_hidden_state
            b_idx, t_idx, targets, owners = [], [], [], []
            for b, r in enumerate(batch):
                offset = width - len(rows[r]) - P  # column of absolute position 0 (may be negative)
                for i, j in reads[r]:
                    whole = wholes[i][j]
                    for pos in range(n_ctx[i][j] - 1, len(whole) - 1):  # logits at pos predict whole[pos + 1]
                        b_idx.append(b)
                        t_idx.append(pos + offset)
                        targets.append(whole[pos + 1])
                        owners.append((i, j, pos == n_ctx[i][j] - 1))
            h = hidden[torch.tensor(b_idx, device=hidden.device), torch.tensor(t_idx, device=hidden.device)]
            logp, argmax = token_logprobs(model, h, torch.tensor(targets))
            for (i, j, first), lp, am in zip(owners, logp.tolist(), argmax.tolist()):
                sums[i][j] += lp
                if first and j == 0 and wholes[i][0][: n_ctx[i][0]] == raw_ctx[i]:
                    greedy[i] = am
            for r in batch:
                for i, j in reads[r]:
                    remaining[i] -= 1
                    if remaining[i] == 0:
                        results[i] = _result(sums[i], wholes[i], n_ctx[i], greedy[i])
                        if on_result is not None:
                            on_result(i, results[i])
                        bar.update(1)
    bar.close()
    return results  # type: ignore[return-value]


def _result(sums: list[float], wholes: list[list[int]], n_ctx: list[int], greedy: int | None) -> ScoreResult:
    return ScoreResult(logprobs=tuple(sums), n_tokens=tuple(len(w) - n for w, n in zip(wholes, n_ctx)),
                       n_context_tokens=n_ctx[0], greedy_next=greedy)


@torch.no_grad()
def loglikelihood_naive(model: nn.Module, tokenizer, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    """Reference implementation: one full forward per choice, full-vocab log-softmax (slow; tests and bench)."""
    device = model_device(model)
    wholes, n_ctx, raw_ctx = encode_requests(tokenizer, requests)
    out = []
    for i in range(len(requests)):
        sums, greedy = [], None
        for j, whole in enumerate(wholes[i]):
            logits = model(input_ids=torch.tensor([whole], device=device)).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            n = n_ctx[i][j]
            tgt = torch.tensor(whole[n:], device=logp.device)
            sums.append(float(logp[n - 1: len(whole) - 1].gather(1, tgt[:, None]).sum()))
            if j == 0 and whole[:n] == raw_ctx[i]:
                greedy = int(logits[n - 1].argmax())
        out.append(_result(sums, wholes[i], n_ctx[i], greedy))
    return out
