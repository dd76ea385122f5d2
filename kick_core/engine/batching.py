"""Shared pieces of the engine: token-budget batches, KV-cache row selection, hidden states -> log-probs.

Caches are transformers 5 ``DynamicCache`` objects (legacy tuple caches are rejected by the models).
A cache computed once (a shared few-shot prefix) is *never mutated*: :func:`select_rows` builds a new
cache whose layers hold freshly indexed tensors, so the shared one can be reused for every batch.
Generation decodes into ``kv_cache.PreallocatedLayer`` s, which write each step in place.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch
from torch import nn


def token_batches(lengths: Sequence[int], batch_tokens: int, *, extra: Sequence[int] | None = None,
                  max_pad: float | None = None) -> list[list[int]]:
    """Indices grouped into batches whose padded size ``rows * max(length + extra)`` fits ``batch_tokens``.

    Indices are visited longest first, so the largest batch (the likeliest to run out of memory)
    runs first and rows of similar length share a batch. A single row longer than the budget gets a
    batch of its own. With ``max_pad`` a batch is also closed before a row whose own ``length`` is
    below ``(1 - max_pad)`` times the batch's first (longest) row, so no row is more than that
    fraction padding: for compute-bound forwards (scoring), where a pad costs as much as a token.
    """
    extra = extra or [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: (-(lengths[i] + extra[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for i in order:
        size = lengths[i] + extra[i]
        new_widest = max(widest, size)
        too_short = max_pad is not None and current and lengths[i] < (1 - max_pad) * lengths[current[0]]
        if current and (new_widest * (len(current) + 1) > batch_tokens or too_short):
            batches.append(current)
            current, new_widest = [], size
        current.append(i)
        widest = new_widest
    if current:
        batches.append(current)
    return batches


def select_rows(cache, rows: torch.Tensor):
    """A new cache holding ``rows`` of ``cache`` (repeats allowed); ``cache`` itself is left untouched."""
    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        twin = copy.copy(layer)
        if getattr(layer, "keys", None) is not None and layer.keys.numel() > 0:
            idx = rows.to(layer.keys.device)
            twin.keys = layer.keys.index_select(0, idx)
            twin.values = layer.values.index_select(0, idx)
        new.layers.append(twin)
    return new


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, mask) of shape (rows, max_len), sequences right-aligned (left padding)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
            mask[r, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def positions_after(past_mask: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """Position ids of new tokens: count of real tokens before each one (pads get 0, never read)."""
    start = past_mask.sum(dim=1, keepdim=True) if past_mask is not None and past_mask.numel() else 0
    pos = start + mask.cumsum(dim=1) - 1
    return pos.clamp(min=0) * mask


def base_model(model: nn.Module) -> nn.Module:
    """The transformer under the LM head (LlamaModel, OPTModel, GPT2Model, ...): yields final hidden states."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        raise TypeError(f"{type(model).__name__} has no base_model under its LM head; pass a *ForCausalLM model.")
    return base


def cache_kwargs(module: nn.Module, cache) -> dict:
    """``{"cache": cache}`` on transformers >= 5.24 (where ``past_key_values`` is deprecated), else ``past_key_values``."""
    params = inspect.signature(module.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def token_logprobs(model: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``targets`` and the argmax token, from final hidden states of the scored positions only.

    Args:
        hidden: (k, d) final hidden states at the k scored positions.
        targets: (k,) token ids to score.

    Returns:
        (logprob (k,) float32, argmax (k,) long). Only k x vocab logits are ever materialised.
    """
    head = model.get_output_embeddings()
    logits = head(hidden).float()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:  # Gemma 2 style; applied by the model's forward, so repeat it here
        logits = torch.tanh(logits / softcap) * softcap
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, targets.to(logp.device)[:, None])[:, 0], logits.argmax(dim=-1)
