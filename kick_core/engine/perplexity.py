"""Perplexity over a long token stream: the study's rolling windows, and a strided (sliding) variant.

Rolling (the study's ``lib/eval.py``; legacy)::

    tokens  |--------- w0 ---------|--------- w1 ---------|-- (tail dropped) --|
    scored   every token after the first of each window; windows never see each other

    ppl = exp(mean over windows of the window's mean NLL)        (n_windows = len // seqlen)

Strided (overlapping context, like the Hugging Face perplexity guide)::

    |------ context ------|== stride ==|        each window scores only its last ``stride``
               |------ context ------|== stride ==|    tokens, each with up to seqlen - 1 of context

    ppl = exp(total NLL / scored tokens); every token after the first is scored exactly once.

Each window is one record (``nll`` = mean NLL over its scored tokens, ``n_tokens`` scored), so the
corpus metric can be recomputed, and bootstrapped over windows, without the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kick_core.engine.batching import base_model, token_logprobs
from kick_core.log import progress as progress_bar
from kick_core.models import model_device


@dataclass(frozen=True)
class Window:
    """One scoring window over the token stream: tokens [start, end), scoring those from ``score_from``."""

    start: int
    end: int
    score_from: int


def rolling_windows(n_tokens: int, seqlen: int) -> list[Window]:
    """Consecutive non-overlapping windows of exactly ``seqlen`` tokens; the incomplete tail is dropped."""
    return [Window(i * seqlen, (i + 1) * seqlen, i * seqlen + 1) for i in range(n_tokens // seqlen)]


def strided_windows(n_tokens: int, seqlen: int, stride: int) -> list[Window]:
    """Windows of up to ``seqlen`` tokens advancing by ``stride``; each scores only its new tokens."""
    if not 0 < stride <= seqlen:
        raise ValueError(f"stride={stride} must be in (0, seqlen={seqlen}]")
    windows, scored_to = [], 1  # token 0 has no context and is never scored
    for end in range(min(seqlen, n_tokens), n_tokens + stride, stride):
        end = min(end, n_tokens)
        if end <= scored_to:
            break
        windows.append(Window(max(0, end - seqlen), end, scored_to))
        scored_to = end
    return windows


@torch.no_grad()
def window_nll(model: nn.Module, tokens: Sequence[int], windows: Sequence[Window], *, batch_size: int = 1,
               progress: bool = True, on_result: Callable[[int, float, int], None] | None = None
               ) -> list[tuple[float, int]]:
    """(mean NLL, scored tokens) per window; LM head applied only to scored positions, windows batched.

    Windows of one batch must have equal length (true for all but possibly the last strided one,
    which then runs alone).
    """
    device = model_device(model)
    base = base_model(model)
    ids = torch.as_tensor(list(tokens), dtype=torch.long)
    out: list[tuple[float, int]] = [(math.nan, 0)] * len(windows)
    bar = progress_bar(total=len(windows), enabled=progress, desc="perplexity", unit="window")
    batches: list[list[int]] = []
    for k, w in enumerate(windows):
        if batches and len(batches[-1]) < batch_size and windows[batches[-1][0]].end - windows[batches[-1][0]].start == w.end - w.start \
                and windows[batches[-1][0]].score_from - windows[batches[-1][0]].start == w.score_from - w.start:
            batches[-1].append(k)
        else:
            batches.append([k])
    for batch in batches:
        x = torch.stack([ids[windows[k].start: windows[k].end] for k in batch]).to(device)
        hidden = base(input_ids=x, use_cache=False).last_hidden_state
        first = windows[batch[0]].score_from - windows[batch[0]].start  # first scored column
        h = hidden[:, first - 1: -1].reshape(-1, hidden.shape[-1])  # position t predicts token t + 1
        targets = x[:, first:].reshape(-1)
        logp, _ = token_logprobs(model, h, targets)
        per_window = logp.view(len(batch), -1)
        for row, k in enumerate(batch):
            out[k] = (float(-per_window[row].mean()), per_window.shape[1])
            if on_result is not None:
                on_result(k, *out[k])
            bar.update(1)
    bar.close()
    return out


def rolling_perplexity(window_nlls: Sequence[float]) -> float:
    """The study's perplexity: exp of the mean over windows of each window's mean NLL."""
    return math.exp(sum(window_nlls) / len(window_nlls))


def token_perplexity(window_nlls: Sequence[float], n_tokens: Sequence[int]) -> float:
    """Token-weighted perplexity: exp(total NLL / total scored tokens)."""
    total = sum(nll * n for nll, n in zip(window_nlls, n_tokens))
    return math.exp(total / sum(n_tokens))
